"""The fault suite, continued: what production Redis does to a memory store.

8 a worker's clock an hour fast, 9 Redis full, 10 an evicting maxmemory-policy,
11 a Sentinel fail-over mid-pass, 12 Redis killed mid-pass and restarted from its AOF.
Each adds its row to the table ``make chaos`` prints.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from car_dream.clock import ServerClock
from car_dream.connection import memory_client
from car_dream.store import MemoryStore
from car_dream.tasks import TASK_NAME

from ..celery_env import FAST_WORKER, fresh_app, process_env, start_up_failure
from ..conftest import FAKETIME_ENV, celery_bin, faketime
from ..sentinels import SentinelGroup
from .acked import AckedWriters
from .conftest import (
    ChaosProcesses,
    RedisServer,
    ReportTap,
    Row,
    assert_invariants,
    missing_keepers,
    overlapping,
    seed,
    wait_for,
)
from .test_chaos import running, secs, start_worker

pytestmark = [pytest.mark.timeout(300)]


def redis_now(client: Any) -> float:
    return ServerClock(client, "car-dream:{default}:lock")()


# -- 8 -----------------------------------------------------------------------------


def test_8_clock_skew(
    server: RedisServer,
    procs: ChaosProcesses,
    tap: ReportTap,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    record: Any,
) -> None:
    """One worker's wall clock an hour fast (libfaketime): it prunes nothing early."""
    client = server.client()
    store = MemoryStore(client, "default")
    start = redis_now(client)
    soon, later = 100, 1800  # expiring during the run / over the next 30 minutes
    expiry = {f"soon.{i}": start + 8 + i * 0.1 for i in range(soon)}
    expiry |= {f"later.{i}": start + 60 + i for i in range(later)}
    batch = store.batch()
    for node_id, exp in expiry.items():
        batch.ingest_environment(node_id, f"observation {node_id}", expires_at=exp)
    assert all(r is True for r in batch.execute())
    seed(store, expired=100)
    settings = {"interval_secs": 2, "max_trailing": 0}
    env = process_env(server.url, tmp_path / "data", **settings) | FAKETIME_ENV
    cmd = [*faketime("+1h"), *celery_bin(), "-A", "car_dream", "worker", *FAST_WORKER]
    log = procs.start(
        "skewed", [*cmd, "--concurrency", "1", "-Q", "skewed", "--hostname", "skewed@%h"], env
    )
    procs.wait_log(log, " ready.", timeout=60)
    # The fault is there: the worker's log lines are stamped an hour ahead.
    stamp = re.search(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", log.read_text(), re.M)
    assert stamp is not None
    ahead = time.mktime(time.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S")) - time.time()
    assert 3500 < ahead < 3700, ahead
    task = fresh_app(monkeypatch, server.url, **settings).tasks[TASK_NAME]
    # The test sends the triggers: Celery itself would discard each one as expired on a
    # worker an hour fast (its expiry is the worker's clock; see README).
    deadline = time.monotonic() + 24
    while time.monotonic() < deadline:
        task.apply_async(kwargs={"force": True}, queue="skewed", expires=None)
        time.sleep(2)
    wait_for(lambda: not running(client), 30)
    end = redis_now(client)
    pipe = client.pipeline(transaction=False)
    for node_id in expiry:
        pipe.exists(store.keys.node(node_id))
    there = dict(zip(expiry, pipe.execute(), strict=True))
    early = [n for n, exp in expiry.items() if exp > end and not there[n]]
    pruned_in_time = sum(1 for n, exp in expiry.items() if exp <= end and not there[n])
    assert early == [], early[:10]
    done = tap.completed()
    assert len(done) >= 5
    assert pruned_in_time == soon and sum(r.expired_pruned for r in done) == 100 + soon
    # The reports are dated by the Redis clock, not the worker's hour ahead.
    assert all(abs(r.started_at.timestamp() - end) < 120 for r in done)
    assert_invariants(store)
    record(
        Row(
            "8 clock skew",
            "worker clock +1h (libfaketime)",
            len(done),
            len(early),
            overlapping(tap.reports),
            "-",
            f"{soon + 100} pruned at or after expires_at by the Redis clock, "
            f"{later} expiring over 30 min kept",
        )
    )


# -- 9 -----------------------------------------------------------------------------

FULL = 10 * 1024 * 1024  # the memory Redis's maxmemory: room for the first passes and their journal


def outcomes(log: Path) -> list[str]:
    """Each pass's outcome as the worker logged it ("completed", "failed (...)", ...)."""
    return re.findall(
        r"dream consolidation pass (\w+(?: \(.*?\))?) expired_pruned=", log.read_text()
    )


def test_9_redis_full(
    server: RedisServer,
    procs: ChaosProcesses,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    record: Any,
) -> None:
    """Writers fill a memory Redis with maxmemory and noeviction while passes run: every
    refused write is told to its writer, every pass it stops fails out-of-memory, nothing
    is half-written, and once maxmemory is raised the next pass completes. Celery's
    broker, results and schedule are on another Redis (``server``), as the README says."""
    small = RedisServer(
        tmp_path / "memory", ["--maxmemory", str(FULL), "--maxmemory-policy", "noeviction"]
    )
    small.start()
    try:
        client = small.client()
        store = MemoryStore(client, "default")
        seed(store, expired=2000, facts=2000, keepers=100)
        settings = {"interval_secs": 2, "max_trailing": 0, "batch_size": 50}
        env = process_env(server.url, tmp_path / "data", memory_url=small.url, **settings)
        log = procs.worker(env, concurrency=1)
        procs.beat(env)
        wait_for(lambda: "completed" in outcomes(log), 60)  # passes run before it fills
        writers = AckedWriters(small.url, threads=3, size=2000, pause=0).start()
        try:
            wait_for(lambda: writers.refused["full"] >= 200, 60)
            full_at = time.monotonic()
            wait_for(lambda: any("out of memory" in o for o in outcomes(log)), 30)
            time.sleep(4)  # passes keep meeting a full Redis
        finally:
            writers.stop()
        client.config_set("maxmemory", str(16 * FULL))
        raised = time.monotonic()
        seen = len(outcomes(log))
        wait_for(lambda: "completed" in outcomes(log)[seen:], 60)
        recovered = time.monotonic() - raised
        procs.stop()
        procs.procs.clear()
        assert writers.unexpected == [], writers.unexpected[:5]
        lost = writers.missing(client)
        assert lost == [], lost[:5]  # every acknowledged write is there
        results = outcomes(log)
        failed = [o for o in results if o.startswith("failed")]
        assert failed and all("RedisFullError: out of memory: Redis is full" in o for o in failed)
        assert all(o == "completed" or o in failed or o.startswith("skipped") for o in results)
        check = assert_invariants(store)  # nothing half-written
        assert missing_keepers(store, 100) == 0
        # The refused writes left nothing behind: every node is a seeded or acknowledged one.
        assert check.nodes == 2000 + 100 + len(writers.acked)
        record(
            Row(
                "9 Redis full",
                f"maxmemory {FULL // 2**20} MiB, noeviction, "
                f"{writers.refused['full']} writes refused",
                results.count("completed"),
                len(lost),
                0,
                secs(recovered),
                f"{len(failed)} passes failed out-of-memory, {writers.refused['full']} writes "
                f"refused with RedisFullError, none half-written; full for "
                f"{secs(raised - full_at)}, next pass completed after maxmemory was raised",
            )
        )
    finally:
        small.stop()


# -- 10 ----------------------------------------------------------------------------


def test_10_eviction_policy(
    procs: ChaosProcesses, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record: Any
) -> None:
    """A Redis with allkeys-lru: the worker refuses to start and says why; with
    CAR_DREAM_ALLOW_EVICTION=true it starts, warns, and passes run."""
    evicting = RedisServer(tmp_path / "redis", ["--maxmemory-policy", "allkeys-lru"])
    evicting.start()
    try:
        started = time.monotonic()
        text = start_up_failure("worker", evicting.url, tmp_path)
        refused_in = time.monotonic() - started
        assert "CAR_DREAM_REDIS_URL: Redis at redis://127.0.0.1:" in text
        assert "has maxmemory-policy allkeys-lru" in text
        assert "CONFIG SET maxmemory-policy noeviction" in text
        assert "CAR_DREAM_ALLOW_EVICTION=true" in text
        assert " ready." not in text
        env = process_env(evicting.url, tmp_path / "data", allow_eviction="true")
        log = procs.worker(env, concurrency=1)
        warned = "allowed by CAR_DREAM_ALLOW_EVICTION=true" in log.read_text()
        assert warned, log.read_text()[-2000:]
        task = fresh_app(monkeypatch, evicting.url, allow_eviction="true").tasks[TASK_NAME]
        report = task.delay(force=True).get(timeout=60)
        assert report["status"] == "completed"
        record(
            Row(
                "10 eviction policy",
                "maxmemory-policy allkeys-lru",
                1,
                0,
                0,
                "-",
                f"worker refused to start in {secs(refused_in)}, naming the setting and the "
                "fix; with CAR_DREAM_ALLOW_EVICTION=true it started, warned and passed",
            )
        )
    finally:
        evicting.stop()


# -- 11 ----------------------------------------------------------------------------

PASSWORD = "chaos-redis-pw"
SENTINEL_PASSWORD = "chaos-sentinel-pw"
WINDOW = 3.0  # acknowledged writes may be lost this long after SENTINEL FAILOVER (README)
RESUME_WITHIN = 30.0  # a pass completes on the new primary this soon after (README)


def test_11_sentinel_fail_over(procs: ChaosProcesses, tmp_path: Path, record: Any) -> None:
    """A primary, a replica and three Sentinels; worker, beat and writers on a
    redis+sentinel:// URL; SENTINEL FAILOVER mid-pass."""
    group = SentinelGroup(tmp_path / "sentinel", PASSWORD, SENTINEL_PASSWORD)
    group.start()
    taps: list[ReportTap] = []
    try:
        url = group.url()
        store = MemoryStore(memory_client(url), "default")
        seed(store, facts=6000, keepers=100)
        env = process_env(url, tmp_path / "data", interval_secs=4, batch_size=5, max_trailing=1)
        start_worker(procs, env, "worker-a")
        start_worker(procs, env, "worker-b")
        procs.beat(env)
        # Every report published on either server (a replica gets its primary's too).
        taps = [
            ReportTap(f"redis://:{PASSWORD}@127.0.0.1:{port}/0")
            for port in (group.primary.port, group.replica.port)
        ]
        writers = AckedWriters(url, threads=2, pause=0.01).start()
        waiting = AckedWriters(url, threads=1, tag="wait", pause=0.01, wait=1).start()
        try:
            wait_for(
                lambda: (
                    running(store.client) and store.client.scard(store.keys.unembedded) < 6000 - 300
                ),
                90,
            )
            failed_over_at = time.time()
            group.fail_over()
            promoted_at = time.time()
            promoted = promoted_at - failed_over_at

            def resumed() -> float | None:
                """When the first pass stored on the new primary that started after the
                promotion finished."""
                after = [
                    r.finished_at.timestamp()
                    for r in MemoryStore(group.primary_client(), "default").reports(20)
                    if r.status == "completed"
                    and r.finished_at
                    and r.started_at.timestamp() > promoted_at
                ]
                return min(after) if after else None

            resumed_in = wait_for(resumed, 60) - failed_over_at
            time.sleep(3)
        finally:
            writers.stop()
            waiting.stop()
        procs.stop()
        procs.procs.clear()
        new_primary = group.primary_client()
        assert writers.unexpected == waiting.unexpected == [], writers.unexpected[:5]
        lost = writers.missing(new_primary)
        late = [(w, t - failed_over_at) for w, t in lost if not 0 <= t - failed_over_at <= WINDOW]
        assert late == [], late[:5]  # lost only in the fail-over's window
        assert waiting.missing(new_primary) == []  # WAIT 1 confirmed: kept
        assert resumed_in < RESUME_WITHIN
        reports = unique(taps)
        dup = overlapping(reports)
        assert dup == 0
        across = [
            r.status
            for r in reports
            if r.started_at.timestamp()
            < failed_over_at
            < (r.finished_at or r.started_at).timestamp()
        ]
        memory = MemoryStore(memory_client(url), "default")
        assert_invariants(memory)
        assert missing_keepers(memory, 100) == 0
        record(
            Row(
                "11 Sentinel fail-over",
                "SENTINEL FAILOVER mid-pass",
                len([r for r in reports if r.status == "completed"]),
                len(late),
                dup,
                secs(resumed_in),
                f"replica promoted in {secs(promoted)}; {len(lost)} of {len(writers.acked)} "
                f"acknowledged writes lost, all within {WINDOW:.0f}s after the fail-over (the "
                f"old primary's last, documented); with WAIT 1: 0 of {len(waiting.acked)} "
                f"lost, {waiting.refused['unreplicated']} told unreplicated; the pass running "
                f"at the fail-over: {', '.join(across) or 'none reported'}",
            )
        )
    finally:
        for tap in taps:
            tap.close()
        group.stop()


def unique(taps: list[ReportTap]) -> list[Any]:
    seen: dict[str, Any] = {}
    for tap in taps:
        for r in list(tap.reports):
            seen.setdefault(r.model_dump_json(), r)
    return sorted(seen.values(), key=lambda r: r.started_at)


# -- 12 ----------------------------------------------------------------------------

EVERYSEC = 2.0  # appendfsync everysec: Redis may hold back a write this long (README)


def test_12_restart_from_disk(
    server: RedisServer,
    procs: ChaosProcesses,
    tap: ReportTap,
    tmp_path: Path,
    record: Any,
) -> None:
    """AOF on (appendfsync everysec), kill -9 of Redis mid-pass, restart from the AOF:
    check_store clean, the next pass completes, nothing acknowledged lost beyond the
    everysec window."""
    client = server.client()
    store = MemoryStore(client, "default")
    seed(store, expired=3000, facts=8000, keepers=100)
    env = process_env(server.url, tmp_path / "data", interval_secs=4, batch_size=5)
    start_worker(procs, env, "worker")
    procs.beat(env)
    writers = AckedWriters(server.url, threads=2, pause=0.01).start()
    try:
        wait_for(lambda: running(client) and client.scard(store.keys.unembedded) < 8000 - 300, 90)
        assert server.proc is not None
        os.killpg(server.proc.pid, signal.SIGKILL)
        killed_at = time.time()
        server.proc.wait(10)
        server.proc = None
        time.sleep(2)
        server.start()  # from the append-only file
        back = time.time()
        wait_for(lambda: [r for r in tap.completed() if r.started_at.timestamp() > back], 90)
        recovered = time.time() - killed_at
        time.sleep(1)
    finally:
        writers.stop()
    procs.stop()
    procs.procs.clear()
    assert writers.unexpected == [], writers.unexpected[:5]
    lost = writers.missing(client)
    late = [(w, killed_at - t) for w, t in lost if killed_at - t > EVERYSEC]
    assert late == [], late[:5]  # lost only within the everysec window before the kill
    check = assert_invariants(store)  # every batch whole or not at all, after the replay
    assert missing_keepers(store, 100) == 0
    assert check.nodes >= 8000 + 100 + len(writers.acked) - len(lost)
    dup = overlapping(tap.reports)
    assert dup == 0
    record(
        Row(
            "12 restart from disk",
            "kill -9 Redis mid-pass, restart from AOF",
            len(tap.completed()),
            len(late),
            dup,
            secs(recovered),
            f"{len(lost)} of {len(writers.acked)} acknowledged writes lost (everysec allows "
            f"{EVERYSEC:.0f}s' worth); check_store clean after the AOF replay",
        )
    )
