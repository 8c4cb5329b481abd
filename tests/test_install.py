"""car_dream.install(app) on an app car-dream did not configure, and its settings: from the
environment, from install(config=...), or from Django's CAR_DREAM dict."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.beat import Scheduler

import car_dream
from car_dream import celery_config
from car_dream.app import create_app
from car_dream.celery_config import dream_config, get_redis, preflight
from car_dream.config import load_config
from car_dream.errors import ConfigError
from car_dream.keys import NAMESPACES_KEY
from car_dream.report import ConsolidationReport
from car_dream.store import MemoryStore
from car_dream.tasks import DISPATCH_TASK_NAME, TASK_NAME

from .conftest import free_port
from .servers import RedisServer
from .test_security import secured  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent


def user_app(broker: str = "amqp://guest:guest@nowhere.invalid:5672//", tag: str = "") -> Celery:
    """An app as its owner configured it: pickle, routes, its own default queue."""
    tag = tag or uuid.uuid4().hex[:8]
    app = Celery("user-app", broker=broker, backend="rpc://", set_as_current=False)
    app.conf.update(
        task_serializer="pickle",
        result_serializer="pickle",
        accept_content=["pickle", "json"],
        task_default_queue=f"user-default-{tag}",
        task_routes={"user.*": {"queue": f"user-reports-{tag}"}},
        result_expires=60,
    )

    @app.task(name=f"user.report-{uuid.uuid4().hex[:8]}")  # one name, one callable
    def report() -> str:
        return "done"

    return app


def settings_of(app: Celery) -> dict[str, str]:
    app.finalize()
    return {key: repr(app.conf[key]) for key in sorted(app.conf.keys())}


def test_install_changes_none_of_the_apps_settings() -> None:
    theirs, ours = user_app(tag="twin"), user_app(tag="twin")
    consolidate, dispatch = car_dream.install(ours)
    assert not ours.configured  # nothing read, nothing connected: lazily, as app.task does
    assert settings_of(ours) == settings_of(theirs)
    assert ours.tasks[TASK_NAME] is consolidate._get_current_object()
    assert ours.tasks[DISPATCH_TASK_NAME] is dispatch._get_current_object()


def messages(app: Celery, queue: str) -> list[Any]:
    with app.connection_for_read() as conn:
        q = conn.SimpleQueue(queue, no_ack=True, accept=["json", "pickle"])
        out = []
        while True:
            try:
                out.append(q.get(timeout=0.2))
            except q.Empty:
                break
        q.close()
    return out


@pytest.mark.parametrize("own_queue", [False, True])
def test_car_dream_messages_are_json_with_their_own_expiry_and_queue(
    monkeypatch: pytest.MonkeyPatch, own_queue: bool
) -> None:
    car_dream_queue = f"dreams-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("CAR_DREAM_INTERVAL_SECS", "90")
    if own_queue:
        monkeypatch.setenv("CAR_DREAM_QUEUE", car_dream_queue)
    app = user_app(broker="memory://")
    consolidate, dispatch = car_dream.install(app)
    sent_at = datetime.now(UTC)
    consolidate.delay(namespace="n1")
    dispatch.delay()
    report = next(t for name, t in app.tasks.items() if name.startswith("user."))
    report.delay()

    # CAR_DREAM_QUEUE when set; else the app's default queue, where its workers listen.
    queue = car_dream_queue if own_queue else app.conf.task_default_queue
    ours = messages(app, queue)
    assert [m.headers["task"] for m in ours] == [TASK_NAME, DISPATCH_TASK_NAME]
    assert all(m.content_type == "application/json" for m in ours)
    expires = datetime.fromisoformat(ours[0].headers["expires"])
    assert timedelta(seconds=85) < expires - sent_at <= timedelta(seconds=95)
    # The app's own task kept its route and its serializer.
    (theirs,) = messages(app, app.conf.task_routes["user.*"]["queue"])
    assert theirs.content_type == "application/x-python-serialize"
    assert theirs.headers["task"] == report.name


def test_what_the_tasks_send_themselves_asks_for_no_result(
    redis_url: str, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nobody waits for a trailing pass or a dispatched one: with the RPC backend their
    results would pile up in a reply queue of the worker that nobody reads."""
    db.sadd(NAMESPACES_KEY, "alpha", "beta")
    monkeypatch.setattr("car_dream.tasks.run_pass", _did_work)
    app = user_app(broker="memory://")
    consolidate, dispatch = car_dream.install(app, load_config(redis_url=redis_url))
    consolidate.run(namespace="alpha")
    dispatch.run()
    sent = messages(app, app.conf.task_default_queue)
    kinds = sorted((m.payload[1]["namespace"], bool(m.payload[1].get("trailing"))) for m in sent)
    assert kinds == [("alpha", False), ("alpha", True), ("beta", False)]  # dispatch, trailing
    assert all(m.headers["ignore_result"] is True for m in sent)  # the worker stores none


def _did_work(store: MemoryStore, config: Any, **kw: Any) -> ConsolidationReport:
    return ConsolidationReport(
        namespace=store.namespace,
        trailing=kw["trailing"],
        started_at="2026-01-01T00:00:00Z",
        expired_pruned=1,
    )


def test_a_second_install_changes_nothing(redis_url: str) -> None:
    app = user_app()
    first = load_config(redis_url=redis_url, namespace="first")
    tasks = car_dream.install(app, first)
    assert car_dream.install(app, load_config(namespace="second")) is tasks
    assert car_dream.install(app) is tasks
    assert dream_config(app) is first
    own = create_app(load_config(redis_url=redis_url))
    assert car_dream.install(own) is car_dream.install(own)  # car-dream's own app: its tasks


def test_an_installed_task_runs_a_pass_on_the_memory_redis_of_its_config(
    real_store: MemoryStore, redis_url: str
) -> None:
    now = datetime.now(UTC).timestamp()
    real_store.ingest_environment("env.old", "stale", observed_at=now - 60, expires_at=now - 1)
    app = user_app()  # a broker nobody answers on: the memory Redis is car-dream's own
    config = load_config(redis_url=redis_url, namespace=real_store.namespace, max_trailing=0)
    consolidate, _ = car_dream.install(app, config)
    report = consolidate.run()
    assert report["status"] == "completed" and report["namespace"] == real_store.namespace
    assert report["expired_pruned"] == 1
    assert real_store.reports(1)[0].status == "completed"


def test_an_installed_task_reads_the_environment(
    real_store: MemoryStore, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAR_DREAM_REDIS_URL", redis_url)
    monkeypatch.setenv("CAR_DREAM_NAMESPACE", real_store.namespace)
    app = user_app()
    consolidate, _ = car_dream.install(app)
    assert celery_config.redis_url(app) == redis_url
    assert consolidate.run(force=True)["namespace"] == real_store.namespace


def test_without_a_redis_url_the_variable_is_named(tmp_path: Path) -> None:
    app = user_app()
    consolidate, _ = car_dream.install(app, load_config(data_dir=tmp_path))
    with pytest.raises(ConfigError, match="CAR_DREAM_REDIS_URL is not set"):
        consolidate.run()
    with pytest.raises(ConfigError, match="CAR_DREAM_REDIS_URL"):
        get_redis(app)
    with pytest.raises(SystemExit, match="CAR_DREAM_REDIS_URL"):
        preflight(app)  # a worker of the app stops at start-up
    assert not (tmp_path / "embedded.json").exists()  # no embedded server for someone's app


def test_a_memory_url_alone_will_do(redis_url: str) -> None:
    app = user_app()
    car_dream.install(app, load_config(memory_url=redis_url))
    assert get_redis(app).ping()


def test_a_refused_password_stops_the_worker_naming_the_variable(
    secured: RedisServer,  # noqa: F811
) -> None:
    app = user_app()
    car_dream.install(app, load_config(redis_url=f"redis://:wrong@127.0.0.1:{secured.port}/0"))
    with pytest.raises(SystemExit, match=r"CAR_DREAM_REDIS_URL.*refused the credentials"):
        preflight(app)
    away = user_app()
    car_dream.install(away, load_config(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    preflight(away)  # unreachable is no reason to stop: the worker retries


# -- Django's CAR_DREAM dict ------------------------------------------------------------


def _python(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter: configuring Django here would be for the whole test session."""
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.integration  # fresh interpreters
def test_under_django_the_settings_come_from_its_car_dream_dict(tmp_path: Path) -> None:
    code = (
        "from django.conf import settings\n"
        "settings.configure(CAR_DREAM={'REDIS_URL': 'redis://127.0.0.1:1/3', "
        "'NAMESPACE': 'dj', 'INTERVAL_SECS': 7})\n"
        "from celery import Celery\n"
        "import car_dream\n"
        "from car_dream.celery_config import dream_config, redis_url\n"
        "app = Celery('x', set_as_current=False)\n"
        "car_dream.install(app)\n"
        "print(dream_config(app).namespace, redis_url(app), car_dream.beat_entry()['options'])\n"
    )
    out = _python(code, tmp_path, CAR_DREAM_INTERVAL_SECS="99", CAR_DREAM_BATCH_SIZE="5")
    expected = "dj redis://127.0.0.1:1/3 {'expires': 7, 'ignore_result': True}"
    assert out.stdout.strip() == expected, out.stderr
    wrong = code.replace("CAR_DREAM={", "CAR_DREAM=[{").replace("7})", "7}])")
    out = _python(wrong, tmp_path)
    assert out.returncode != 0
    assert "CAR_DREAM in Django's settings must be a dict" in out.stderr


@pytest.mark.integration  # a fresh interpreter
def test_without_django_settings_none_are_loaded(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from celery import Celery\n"
        "import car_dream\n"
        "from car_dream.celery_config import dream_config\n"
        "app = Celery('x', set_as_current=False)\n"
        "car_dream.install(app)\n"
        "print(dream_config(app).namespace, 'django.conf' in sys.modules)\n"
    )
    out = _python(code, tmp_path, CAR_DREAM_NAMESPACE="env-ns")
    assert out.stdout.strip() == "env-ns False", out.stderr


# -- the beat entry ----------------------------------------------------------------------


def test_beat_entry_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAR_DREAM_INTERVAL_SECS", "45")
    monkeypatch.setenv("CAR_DREAM_NAMESPACE", "n1")
    assert car_dream.beat_entry() == {
        "task": TASK_NAME,
        "schedule": timedelta(seconds=45),
        "kwargs": {"namespace": "n1"},
        "options": {"expires": 45, "ignore_result": True},
    }
    fan_out = car_dream.beat_entry(load_config(dispatch=True, interval_secs=10))
    assert fan_out["task"] == DISPATCH_TASK_NAME and fan_out["kwargs"] == {}
    assert fan_out["options"] == {"expires": 10, "ignore_result": True}


def test_celerys_own_scheduler_takes_the_entry() -> None:
    app = user_app(broker="memory://")
    car_dream.install(app)
    app.conf.beat_schedule = {"car-dream": car_dream.beat_entry(load_config(interval_secs=30))}
    entry = Scheduler(app)._maybe_entry("car-dream", app.conf.beat_schedule["car-dream"])
    assert entry.task == TASK_NAME and entry.schedule.run_every == timedelta(seconds=30)
    assert entry.options == {"expires": 30, "ignore_result": True}
