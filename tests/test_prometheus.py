"""A real Prometheus server scrapes a real exporter while a real worker runs passes.

Prometheus (Debian's ``/usr/bin/prometheus``) runs on a private port with a temporary
config and storage directory, scraping every second and evaluating the alert rules of
deploy/prometheus; what its HTTP API answers must equal what the reports in Redis say.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from car_dream.report import ConsolidationReport
from car_dream.store import MemoryStore
from car_dream.tasks import TASK_NAME

from .celery_env import Processes, fresh_app, process_env, procs_fixture  # noqa: F401
from .conftest import free_port, wait_for
from .metrics_env import start_exporter, tool
from .metrics_expect import Expected, expected
from .test_dashboard import queries

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parent.parent


class Prometheus:
    def __init__(self, procs: Processes, tmp_path: Path, target: str) -> None:
        port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ROOT / "deploy" / "prometheus" / "alerts.yml")],
            "scrape_configs": [
                {"job_name": "car-dream", "static_configs": [{"targets": [target]}]}
            ],
        }
        path = tmp_path / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        procs.start(
            "prometheus",
            [
                tool("prometheus"),
                f"--config.file={path}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            {"PATH": "/usr/bin:/bin"},
        )
        self.base = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            procs.check_alive()
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(self.base + "/-/ready", timeout=5) as resp,
            ):
                return bool(resp.status == 200)
            return False

        wait_for(ready, timeout=60, interval=0.2)

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.base}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> dict[tuple[tuple[str, str], ...], float]:
        """Instant vector: labels (without job, instance) -> value."""
        out = {}
        for item in self.api("query", query=expr)["result"]:
            labels = {k: v for k, v in item["metric"].items() if k not in ("job", "instance")}
            out[tuple(sorted(labels.items()))] = float(item["value"][1])
        return out


def seen(prom: Prometheus, ns: str) -> dict[str, Any]:
    """What Prometheus holds of the namespace's counters and duration histogram."""
    sel = f'{{namespace="{ns}"}}'
    h = "car_dream_pass_duration_seconds"

    def by(expr: str, *keys: str) -> dict[Any, float]:
        return {tuple(dict(k)[x] for x in keys): v for k, v in prom.query(expr).items() if v}

    return {
        "passes": by(f"car_dream_passes_total{sel}", "status", "trailing"),
        "skipped": by(f"car_dream_skipped_triggers_total{sel}", "reason"),
        "items": by(f"car_dream_items_total{sel}", "step", "item"),
        "count": sum(prom.query(f"{h}_count{sel}").values()),
        "sum": round(sum(prom.query(f"{h}_sum{sel}").values()), 6),
        "buckets": {k[0]: v for k, v in by(f"{h}_bucket{sel}", "le").items()},
    }


def said(e: Expected) -> dict[str, Any]:
    """The same, from the reports."""
    return {
        "passes": {k: float(v) for k, v in e.passes.items()},
        "skipped": {(k,): float(v) for k, v in e.skipped.items()},
        "items": {k: float(v) for k, v in e.items.items() if v},
        "count": float(e.count),
        "sum": round(e.sum, 6),
        "buckets": {
            (b if b == "+Inf" else repr(float(b))): float(n) for b, n in e.buckets.items() if n
        },
    }


def test_prometheus_scrapes_what_the_reports_say(
    db: redis.Redis,
    redis_url: str,
    procs: Processes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = {"interval_secs": 60, "max_trailing": 1}
    store = MemoryStore(db, "default")
    now = time.time()
    for i in range(5):
        store.ingest_environment(f"env{i}", "stale", expires_at=now - 1)
        store.ingest_fact(f"fact{i}", "subject", f"fact {i} to embed")
    store.ingest_fact("fact5", "subject", "newer", supersedes="fact0")
    env = process_env(redis_url, tmp_path / "data", **settings)
    procs.worker(env)
    exporter = start_exporter(procs, env)
    prom = Prometheus(procs, tmp_path, exporter.url.split("/")[2])
    task = fresh_app(monkeypatch, redis_url, **settings).tasks[TASK_NAME]

    def run(**kwargs: Any) -> ConsolidationReport:
        return ConsolidationReport.model_validate(task.delay(**kwargs).get(timeout=60))

    first = run()  # did work: a trailing pass follows it
    assert first.status == "completed" and first.expired_pruned == 5, first
    assert run().status == "skipped"  # coalesced (or running, while the trailing pass runs)
    wait_for(lambda: any(r.trailing for r in store.reports(100)), timeout=60)
    store.ingest_environment("late", "stale", expires_at=time.time() - 1)
    assert run(force=True).status == "completed"  # did work: a second trailing pass
    wait_for(lambda: sum(r.trailing for r in store.reports(100)) == 2, timeout=60)
    db.set(store.keys.paused, "1")
    assert run(force=True).reason == "paused"
    db.delete(store.keys.paused)

    reports = store.reports(100)
    assert len(reports) == 6
    want = said(expected(reports))
    assert want["passes"][("completed", "true")] == 2 and want["count"] == 4
    with contextlib.suppress(AssertionError):  # the assertion below shows the difference
        wait_for(lambda: seen(prom, "default") == want, timeout=60, interval=0.5)
    assert seen(prom, "default") == want

    # The alert rules evaluate on real series without errors; none fires on this run.
    groups = prom.api("rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == 6 and all(r["health"] == "ok" for r in rules), rules
    assert prom.api("alerts")["alerts"] == []
    # Every dashboard query is accepted by the server and has data (increase() as soon as
    # a series has two samples).
    shown = queries({"$exporter": exporter.url.split("/")[2], "$namespace": ".*", "$window": "1h"})

    def empty() -> list[str]:
        return [q for q in shown if not prom.api("query", query=q)["result"]]

    wait_for(lambda: not empty(), timeout=30, interval=0.5)
