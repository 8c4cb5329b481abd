"""``car-dream exporter``: a real process scraped over HTTP, and its collector in-process."""

from __future__ import annotations

import re
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
from prometheus_client import generate_latest

from car_dream.config import DreamConfig, load_config
from car_dream.consolidate import run_pass
from car_dream.exporter import registry
from car_dream.metrics import OTHER, gauges, read_snapshot
from car_dream.report import ConsolidationReport
from car_dream.store import MemoryStore

from .celery_env import Processes, process_env, procs_fixture  # noqa: F401
from .conftest import wait_for
from .metrics_env import CLI, counters, promtool, start_exporter, stop, value, values
from .metrics_expect import Expected, expected
from .servers import RedisServer

FAMILIES = {
    "car_dream_passes": "counter",
    "car_dream_skipped_triggers": "counter",
    "car_dream_items": "counter",
    "car_dream_skipped_records": "counter",
    "car_dream_pass_duration_seconds": "histogram",
    "car_dream_step_duration_seconds": "histogram",
    "car_dream_nodes": "gauge",
    "car_dream_embedding_coverage_ratio": "gauge",
    "car_dream_lock_state": "gauge",
    "car_dream_lock_ttl_seconds": "gauge",
    "car_dream_paused": "gauge",
    "car_dream_last_completed_pass_age_seconds": "gauge",
    "car_dream_report_list_lag_seconds": "gauge",
    "car_dream_last_pass_status": "gauge",
    "car_dream_namespaces": "gauge",
    "car_dream_interval_seconds": "gauge",
    "car_dream_redis_up": "gauge",
    "car_dream_scrape_duration_seconds": "gauge",
}


def passes(store: MemoryStore, config: DreamConfig, work: int = 2) -> list[ConsolidationReport]:
    """A pass with work, a coalesced trigger, a forced pass: what the store now reports."""
    now = time.time()
    for i in range(work):
        store.ingest_environment(f"e{i}-{now}", "old", expires_at=now - 1)
        store.ingest_fact(f"f{i}-{now}", "s", f"fact {i}")
    run_pass(store, config)
    run_pass(store, config)
    run_pass(store, config, force=True)
    return list(reversed(store.reports(100)))


def assert_matches(text: str, namespace: str, e: Expected) -> None:
    """The scrape's counters of ``namespace`` say what the reports say."""
    got = values(text, "car_dream_passes_total", namespace=namespace)
    want = {(s, t): float(n) for (s, t), n in e.passes.items()}
    assert {(dict(k)["status"], dict(k)["trailing"]): v for k, v in got.items() if v} == want
    got = values(text, "car_dream_skipped_triggers_total", namespace=namespace)
    assert {dict(k)["reason"]: v for k, v in got.items()} == e.skipped
    got = values(text, "car_dream_items_total", namespace=namespace)
    assert {(dict(k)["step"], dict(k)["item"]): v for k, v in got.items() if v} == +e.items
    assert value(text, "car_dream_skipped_records_total", namespace=namespace) == e.records
    name = "car_dream_pass_duration_seconds"
    assert value(text, f"{name}_count", namespace=namespace) == e.count
    assert value(text, f"{name}_sum", namespace=namespace) == pytest.approx(e.sum, rel=1e-9)
    got = values(text, f"{name}_bucket", namespace=namespace)
    assert {dict(k)["le"]: v for k, v in got.items()} == {
        _le(le): float(n) for le, n in e.buckets.items()
    }


def _le(bound: str) -> str:
    return bound if bound == "+Inf" else repr(float(bound))


@pytest.fixture
def env(redis_url: str, tmp_path: Path) -> dict[str, str]:
    return process_env(redis_url, tmp_path / "data", interval_secs=60)


def test_scrape_passes_promtool_and_every_metric_has_help_and_type(
    db: redis.Redis, procs: Processes, env: dict[str, str], config: DreamConfig
) -> None:
    for ns in ("alpha", "beta"):
        passes(MemoryStore(db, ns), config)
    text = start_exporter(procs, env).scrape()
    promtool("check", "metrics", stdin=text.encode())
    helps = set(re.findall(r"^# HELP (\S+) \S", text, re.M))
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    exposed = {f"{n}_total" if t == "counter" else n: t for n, t in FAMILIES.items()}
    assert types == exposed
    assert helps == set(types)
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = re.match(r"[a-z_]+", line)
            assert name is not None
            family = re.sub(r"_(bucket|sum|count)$", "", name.group())
            assert family in types or name.group() in types, line


def test_counters_say_what_the_reports_say_and_the_rest_is_other(
    db: redis.Redis, config: DreamConfig
) -> None:
    stores = [MemoryStore(db, ns) for ns in ("one", "two", "three")]
    reports = {s.namespace: passes(s, config, work=i + 1) for i, s in enumerate(stores)}
    cfg = load_config(interval_secs=60, metrics_max_namespaces=2)
    text = generate_latest(registry(db, cfg)).decode()
    # The two most recently passed are shown; "one" passed first and is the rest.
    assert value(text, "car_dream_namespaces", set="shown") == 2
    assert {dict(k)["namespace"] for k in values(text, "car_dream_nodes")} == {"two", "three"}
    assert_matches(text, "two", expected(reports["two"]))
    assert_matches(text, "three", expected(reports["three"]))
    assert_matches(text, OTHER, expected(reports["one"]))
    for s in stores[1:]:
        sizes = s.index_sizes()
        for kind, n in sizes.nodes.items():
            assert value(text, "car_dream_nodes", namespace=s.namespace, kind=kind) == n
        got = value(text, "car_dream_embedding_coverage_ratio", namespace=s.namespace)
        assert got == sizes.embedding_coverage
        assert value(text, "car_dream_lock_state", namespace=s.namespace, state="done") == 1
        ttl = value(text, "car_dream_lock_ttl_seconds", namespace=s.namespace)
        assert 0 < ttl <= cfg.lock_ttl
        assert value(text, "car_dream_last_pass_status", namespace=s.namespace, status="completed")
    # Step durations: every namespace together, one observation per step run.
    every = [r for rs in reports.values() for r in rs]
    for step, n in expected(every).steps.items():
        assert value(text, "car_dream_step_duration_seconds_count", step=step) == n


def test_two_exporters_and_a_restart_never_count_twice_or_go_back(
    db: redis.Redis, procs: Processes, env: dict[str, str], config: DreamConfig
) -> None:
    store = MemoryStore(db, "twice")
    passes(store, config)
    a, b = start_exporter(procs, env, "a"), start_exporter(procs, env, "b")
    first_a, first_b = counters(a.scrape()), counters(b.scrape())
    assert first_a == first_b
    reports = passes(store, config)
    stop(procs, "a")
    a = start_exporter(procs, env, "a")  # restarted: it kept nothing
    text = a.scrape()
    again_a, again_b = counters(text), counters(b.scrape())
    assert again_a == again_b
    assert_matches(text, "twice", expected(reports))
    assert set(first_a) <= set(again_a)
    assert all(again_a[k] >= v for k, v in first_a.items())
    assert (
        len(reports) == 6
        and again_a[
            (
                "car_dream_passes_total",
                (("namespace", "twice"), ("status", "skipped"), ("trailing", "false")),
            )
        ]
        == 3
    )


def test_lock_state_while_a_pass_runs_and_while_paused(fake: fakeredis.FakeRedis) -> None:
    store = MemoryStore(fake, "busy")
    store.ingest_fact("f", "s", "x")
    store.record_report(ConsolidationReport(namespace="busy", started_at=_now()))
    fake.set(store.keys.lock, "running:abc", ex=30)
    fake.set(store.keys.paused, "1")
    text = generate_latest(registry(fake, load_config())).decode()
    assert value(text, "car_dream_lock_state", namespace="busy", state="running") == 1
    assert 29 < value(text, "car_dream_lock_ttl_seconds", namespace="busy") <= 30
    assert value(text, "car_dream_paused", namespace="busy") == 1


def test_ages_count_from_the_last_completed_pass_and_the_last_report(
    fake: fakeredis.FakeRedis,
) -> None:
    store = MemoryStore(fake, "aging")
    at = datetime.fromtimestamp(1_000_000, UTC)
    later = datetime.fromtimestamp(1_000_500, UTC)
    store.record_report(ConsolidationReport(namespace="aging", started_at=at, finished_at=at))
    store.record_report(
        ConsolidationReport(
            namespace="aging", status="failed", reason="x", started_at=later, finished_at=later
        )
    )
    snap = read_snapshot(fake, 10, now=1_000_600)
    text = generate_latest(_Fixed(gauges(snap, 60))).decode()
    assert value(text, "car_dream_last_completed_pass_age_seconds", namespace="aging") == 600
    assert value(text, "car_dream_report_list_lag_seconds", namespace="aging") == 100
    assert value(text, "car_dream_last_pass_status", namespace="aging", status="failed") == 1
    assert not values(text, "car_dream_last_pass_status", namespace="aging", status="completed")


def test_a_namespace_called_other_is_counted_in_the_aggregate(fake: fakeredis.FakeRedis) -> None:
    for ns in ("_other", "real"):
        MemoryStore(fake, ns).record_report(ConsolidationReport(namespace=ns, started_at=_now()))
    snap = read_snapshot(fake, 10, now=time.time())
    assert [s.name for s in snap.shown] == ["real"]
    assert snap.other.passes == {("completed", "0"): 1}
    text = generate_latest(registry(fake, load_config())).decode()
    promtool("check", "metrics", stdin=text.encode())  # no duplicate series


def test_one_round_trip_for_the_names_and_one_for_everything_shown(
    redis_url: str, db: redis.Redis
) -> None:
    sent = []

    class Counting(redis.Connection):
        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            sent.append(command)
            super().send_packed_command(command, check_health)

    for i in range(30):
        MemoryStore(db, f"ns{i}").record_report(
            ConsolidationReport(namespace=f"ns{i}", started_at=_now())
        )
    client = redis.Redis(
        connection_pool=redis.ConnectionPool.from_url(redis_url, connection_class=Counting)
    )
    client.ping()  # the connection's own handshake is not the scrape's
    for shown in (1, 30):
        sent.clear()
        snap = read_snapshot(client, shown, time.time())
        assert len(snap.shown) == shown
        assert len(sent) == 2


def test_unreachable_redis_is_redis_up_0_not_an_error(procs: Processes, tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    env = process_env(server.url, tmp_path / "data")
    exporter = start_exporter(procs, env)
    assert value(exporter.scrape(), "car_dream_redis_up") == 1
    server.stop()
    text = exporter.scrape()
    assert value(text, "car_dream_redis_up") == 0
    promtool("check", "metrics", stdin=text.encode())


def test_started_before_redis_it_waits_for_it(procs: Processes, tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    env = process_env(f"redis://127.0.0.1:{server.port}/0", tmp_path / "data")
    exporter = start_exporter(procs, env)
    assert value(exporter.scrape(), "car_dream_redis_up") == 0
    server.start()
    try:
        wait_for(lambda: value(exporter.scrape(), "car_dream_redis_up") == 1, timeout=30)
    finally:
        server.stop()


def test_bad_settings_and_a_busy_port_are_clear_errors(
    env: dict[str, str], procs: Processes
) -> None:
    run: Any = lambda *args, **extra: subprocess.run(  # noqa: E731
        [*CLI, "exporter", *args],
        env={**env, **extra},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    out = run(CAR_DREAM_METRICS_MAX_NAMESPACES="0")
    assert out.returncode == 2 and "CAR_DREAM_METRICS_MAX_NAMESPACES" in out.stderr
    busy = start_exporter(procs, env)
    port = busy.url.split(":")[2].split("/")[0]
    out = run("--port", port)
    assert out.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in out.stderr


class _Fixed:
    """A registry-like source of fixed metric families."""

    def __init__(self, families: Any) -> None:
        self.families = list(families)

    def collect(self) -> Any:
        return iter(self.families)


def _now() -> datetime:
    return datetime.now(UTC)
