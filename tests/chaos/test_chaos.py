"""The fault suite: real redis-servers of our own, real ``celery worker`` / ``beat``.

Each scenario injects its faults, asserts the store's invariants with check_store,
and adds one row to the table ``make chaos`` prints at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis

from car_dream.celery_config import beat_max_loop_interval
from car_dream.dedup import normalise
from car_dream.journal import REMOVALS, JournalEntry, entries
from car_dream.store import MemoryStore
from car_dream.tasks import TASK_NAME

from ..celery_env import FAST_WORKER, Processes, fresh_app, process_env
from ..conftest import digest
from .conftest import (
    RedisServer,
    ReportTap,
    Row,
    assert_invariants,
    lock_value,
    missing_keepers,
    overlapping,
    seed,
    wait_for,
)

pytestmark = [pytest.mark.timeout(300)]

HERE = Path(__file__).parent


def start_worker(
    procs: Processes, env: dict[str, str], name: str, queue: str | None = None
) -> subprocess.Popen[bytes]:
    args = ["worker", *FAST_WORKER, "--concurrency", "1", "--hostname", f"{name}-{os.getpid()}@%h"]
    if queue:
        args += ["-Q", queue]
    log = procs.celery(name, args, env)
    procs.wait_log(log, " ready.", timeout=60)
    return procs.procs[-1][0]


def forget(procs: Any, proc: subprocess.Popen[Any]) -> None:
    """Stop watching a process we killed on purpose (its log is still shown)."""
    procs.forget(proc)


def signal_group(proc: subprocess.Popen[Any], sig: int) -> None:
    os.killpg(proc.pid, sig)


def running(client: redis.Redis) -> bool:
    return (lock_value(client) or "").startswith("running:")


def secs(t: float) -> str:
    return f"{t:.1f}s"


# -- 1 -----------------------------------------------------------------------------


def test_1_kill_9_worker_mid_pass(
    server: RedisServer,
    procs: Processes,
    tap: ReportTap,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    record: Any,
) -> None:
    client = server.client()
    store = MemoryStore(client, "default")
    seed(store, expired=20000, facts=10000, keepers=300)
    settings = {"interval_secs": 8, "batch_size": 5, "max_trailing": 0}  # lock TTL 4 s
    env = process_env(server.url, tmp_path / "data", **settings)
    worker = start_worker(procs, env, "worker1")
    task = fresh_app(monkeypatch, server.url, **settings).tasks[TASK_NAME]
    task.delay()
    # Mid-pass: the lock is held and some, not all, expired nodes are gone.
    wait_for(lambda: running(client) and client.zcard(store.keys.expiry) < 20300 - 2000, 60)
    signal_group(worker, signal.SIGKILL)
    killed = time.monotonic()
    worker.wait(10)
    forget(procs, worker)
    assert running(client)  # the dead pass still "holds" the lock ...
    assert 0 < client.pttl(store.keys.lock) <= 4000  # ... for at most its TTL
    wait_for(lambda: lock_value(client) is None, timeout=10, interval=0.02)
    freed = time.monotonic() - killed
    check = assert_invariants(store)  # every batch was all-or-nothing
    left = client.zcard(store.keys.expiry) - 300
    assert 0 < left < 20000 and check.nodes == 300 + 10000 + left
    lost = missing_keepers(store, 300) + (10000 - int(client.scard(store.keys.kind("fact"))))

    start_worker(procs, env, "worker2")
    report = task.delay().get(timeout=120)
    recovered = time.monotonic() - killed
    assert report["status"] == "completed" and report["expired_pruned"] == left
    check = assert_invariants(store)
    assert check.nodes == 10300 and check.embedded == 10300
    lost += missing_keepers(store, 300)
    assert lost == 0
    dup = overlapping(tap.reports)
    assert dup == 0
    record(
        Row(
            "1 kill -9 worker mid-pass",
            "1 SIGKILL",
            len(tap.completed()),
            lost,
            dup,
            secs(recovered),
            f"lock freed by its TTL {secs(freed)} after the kill",
        )
    )


# -- 2 -----------------------------------------------------------------------------


def test_2_pass_loses_its_lock_while_frozen(
    server: RedisServer,
    procs: Processes,
    tap: ReportTap,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    record: Any,
) -> None:
    client = server.client()
    store = MemoryStore(client, "default")
    seed(store, expired=5000, facts=15000, keepers=200)
    settings = {"interval_secs": 6, "batch_size": 5, "max_trailing": 0}  # lock TTL 3 s
    env = process_env(server.url, tmp_path / "data", **settings)
    frozen = start_worker(procs, env, "worker-a", queue="qa")
    start_worker(procs, env, "worker-b", queue="qb")
    task = fresh_app(monkeypatch, server.url, **settings).tasks[TASK_NAME]
    task.apply_async(queue="qa")
    wait_for(lambda: running(client) and client.scard(store.keys.unembedded) < 20000 - 500, 60)
    token_a = lock_value(client)
    signal_group(frozen, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        wait_for(lambda: lock_value(client) != token_a, timeout=10, interval=0.02)
        other = task.apply_async(queue="qb").get(timeout=120)
        assert other["status"] == "completed"
        before = digest(client, store.keys.prefix)
    finally:
        signal_group(frozen, signal.SIGCONT)
    woke = time.monotonic()
    lost_reports = wait_for(lambda: [r for r in tap.reports if r.status == "lost_lock"], 60)
    assert len(lost_reports) == 1 and lost_reports[0].reason
    after = digest(client, store.keys.prefix)
    assert after == before  # the woken pass wrote nothing at all
    assert (lock_value(client) or "").startswith("done:")  # the other pass's result stands
    check = assert_invariants(store)
    assert check.nodes == 15200 and check.embedded == 15200
    lost = missing_keepers(store, 200) + (15000 - int(client.scard(store.keys.kind("fact"))))
    assert lost == 0
    dup = overlapping(tap.reports)
    assert dup == 0
    record(
        Row(
            "2 lock lost while frozen",
            "SIGSTOP past TTL + SIGCONT",
            len(tap.completed()),
            lost,
            dup,
            secs(woke - stopped),
            "frozen pass ended lost_lock, wrote nothing after waking",
        )
    )


# -- 3 -----------------------------------------------------------------------------


@pytest.mark.parametrize("server", ["redis8"], indirect=True)  # the vector index kept too
def test_3_writers_during_passes(
    server: RedisServer, procs: Processes, tap: ReportTap, tmp_path: Path, record: Any
) -> None:
    client = server.client()
    store = MemoryStore(client, "default")
    env = process_env(server.url, tmp_path / "data", interval_secs=2, max_trailing=1)
    start_worker(procs, env, "worker")
    procs.beat(env)
    wait_for(lambda: tap.completed(), timeout=60)
    duration = 60.0
    logs = [tmp_path / f"writer{i}.jsonl" for i in range(4)]
    writers = [
        subprocess.Popen(
            [
                sys.executable,
                str(HERE / "writer.py"),
                server.url,
                "default",
                f"w{i}",
                str(duration),
                str(log),
            ],
            env=env,
            start_new_session=True,
        )
        for i, log in enumerate(logs)
    ]
    try:
        for w in writers:
            assert w.wait(duration + 60) == 0
    finally:
        for w in writers:
            if w.poll() is None:
                signal_group(w, signal.SIGKILL)
    rows = [json.loads(line) for log in logs for line in log.read_text().splitlines()]
    ops = sum(1 for r in rows if r["op"] != "end")
    # Environment nodes refreshed before they expired must never have been removed:
    # a refresh that had to re-create its node (created=True) finished before the
    # previous expiry only if a pass removed an unexpired node.
    early = [
        r for r in rows if r["op"] == "env" and r["prev"] and r["created"] and r["t1"] < r["prev"]
    ]
    # Kept alive to the end: still there while their last expiry is ahead.
    ends = [r for r in rows if r["op"] == "end"]
    gone_alive = []
    for end in ends:
        for eid, exp in end["expiry"].items():
            exists = client.exists(store.keys.node(eid))
            if not exists and time.time() < exp:
                gone_alive.append(eid)
    superseded = {r["old"] for r in rows if r["op"] == "supersede"}
    facts = [r["id"] for r in rows if r["op"] in ("fact", "supersede", "shared")]
    vanished = [f for f in facts if f not in superseded and not client.exists(store.keys.node(f))]
    # No conclusion lost or invalidated unless its premise was superseded by a writer (or
    # merged before the conclusion was written: then it cites a superseded node).
    gone_conclusions = []
    for r in rows:
        if r["op"] == "conclusion" and r["premise"] not in superseded:
            key = store.keys.node(r["id"])
            if not client.exists(key) or client.hget(key, "superseded_by") is not None:
                gone_conclusions.append(r)
    # Merged duplicates, read after the nodes (passes still run: whatever vanished above
    # was journaled before); each is checked against its canonical once they stop.
    merged, _ = merged_duplicates(client, store)
    lost_facts = [f for f in vanished if f not in merged]
    lost_conclusions = [
        r["id"]
        for r in gone_conclusions
        if merged.get(r["premise"], float("inf")) > r.get("t0", 0.0)
    ]
    lost = len(early) + len(gone_alive) + len(lost_facts) + len(lost_conclusions)
    assert lost == 0, (early[:5], gone_alive[:5], lost_facts[:5], lost_conclusions[:5])
    # Passes really did remove things meanwhile: expired, superseded, invalidated.
    done = tap.completed()
    assert sum(r.expired_pruned for r in done) > 0
    assert sum(r.superseded_gc for r in done) > 0
    assert sum(r.conclusions_invalidated for r in done) > 0
    assert sum(r.duplicates_merged for r in done) > 0
    procs.stop()
    procs.procs.clear()
    # Read once the passes have stopped: the journal and the nodes at the same moment.
    unaccounted = journal_accounts(client, store, rows)
    assert unaccounted == [], unaccounted[:5]
    # Each merged node superseded by a live node of the same content (through later merges).
    _, wrong_merges = merged_duplicates(client, store)
    assert wrong_merges == [], wrong_merges[:5]
    checked = assert_invariants(store)  # the vector index included: Redis 8
    assert checked.vector_index, checked
    dup = overlapping(tap.reports)
    assert dup == 0
    record(
        Row(
            "3 writers during passes",
            f"{ops} writes by 4 writers in {duration:.0f}s",
            len(done),
            lost,
            dup,
            "-",
            f"{sum(r.expired_pruned for r in done)} expired pruned, "
            f"{sum(r.superseded_gc for r in done)} superseded collected, "
            f"{sum(r.duplicates_merged for r in done)} duplicates merged, "
            f"each vanished node journaled once, vector index of {checked.vector_index} "
            "checked (Redis 8)",
        )
    )


def merged_duplicates(
    client: redis.Redis, store: MemoryStore
) -> tuple[dict[str, float], list[Any]]:
    """Each node the merge step superseded (its journal entry) -> when; and those whose
    canonical, followed through later merges, is not a live node of the same normalised
    content."""
    merges = {e.node: e for e in entries(client, store.keys) if e.step == "merge"}
    by: dict[str, str | None] = {}
    for e in entries(client, store.keys):
        if e.step == "collect" and e.node in merges:
            by[e.node] = e.fields.get("superseded_by")
    for node in merges:
        raw = client.hget(store.keys.node(node), "superseded_by")
        if raw is not None:
            by[node] = raw.decode()
    wrong: list[Any] = []
    for node, e in merges.items():
        cur, hops = by.get(node), 0
        while cur in merges and hops < 100:
            cur, hops = by.get(cur), hops + 1
        canon = store.get(cur) if cur else None
        same = canon is not None and not canon.superseded
        same = same and normalise(canon.content) == normalise(e.fields["content"])  # type: ignore[union-attr]
        if not same or e.reason != "duplicate":
            wrong.append((node, e.reason, cur))
    return {node: e.at for node, e in merges.items()}, wrong


def journal_accounts(client: redis.Redis, store: MemoryStore, rows: list[Any]) -> list[Any]:
    """Every node the writers created that vanished, one removal entry per vanishing,
    each with a reason that held when it was written; what does not add up."""
    created: Counter[str] = Counter()
    for r in rows:
        if r["op"] in ("fact", "supersede", "conclusion", "shared") or (
            r["op"] == "env" and r["created"]
        ):
            created[r["id"]] += 1
    removals: dict[str, list[JournalEntry]] = {}
    for e in entries(client, store.keys):
        if e.step in REMOVALS:
            removals.setdefault(e.node, []).append(e)
    wrong: list[Any] = []
    for node, times in created.items():
        vanished = times - (1 if client.exists(store.keys.node(node)) else 0)
        got = removals.get(node, [])
        if len(got) != vanished:
            wrong.append((node, "vanished", vanished, "journaled", len(got)))
        for e in got:
            f = e.fields
            if e.step == "prune":
                true = float(f["expires_at"]) <= e.at + 1 and e.reason.startswith("expired at ")
            elif e.step == "collect":
                by = f.get("superseded_by")
                true = by is not None and f.get("pinned") != "1"
                true = true and e.reason == (f"superseded by {by}" if by else e.reason)
                true = true and (by != "" or e.reason.startswith("invalidated: "))
            else:
                true = False
            if not true:
                wrong.append((node, e.step, e.reason, f))
    return wrong


# -- 4 -----------------------------------------------------------------------------


def test_4_redis_goes_away(
    server: RedisServer, procs: Processes, tap: ReportTap, tmp_path: Path, record: Any
) -> None:
    client = server.client()
    store = MemoryStore(client, "default")
    seed(store, facts=15000, keepers=100)
    env = process_env(server.url, tmp_path / "data", interval_secs=6, batch_size=5)
    worker_log = procs.celery(
        "worker", ["worker", *FAST_WORKER, "--concurrency", "1", "--hostname", "w4@%h"], env
    )
    procs.wait_log(worker_log, " ready.")
    beat_log = procs.beat(env)
    # Fault 1: during a pass.
    wait_for(lambda: running(client) and client.scard(store.keys.unembedded) < 15100 - 300, 60)
    server.stop()
    time.sleep(10)
    server.start()
    back = time.time()
    procs.wait_log(worker_log, 'status="failed"', timeout=60)
    wait_for(lambda: [r for r in tap.completed() if r.started_at.timestamp() > back], 90)
    first_recovery = time.time() - back
    procs.check_alive()  # worker and beat reconnected by themselves
    # Fault 2: during a beat tick (no pass running; beat ticks every second).
    wait_for(lambda: not running(client), 60)
    server.stop()
    time.sleep(10)
    server.start()
    back2 = time.time()
    wait_for(lambda: [r for r in tap.completed() if r.started_at.timestamp() > back2], 90)
    second_recovery = time.time() - back2
    procs.check_alive()
    assert "Sending due task" in beat_log.read_text()
    procs.stop()
    procs.procs.clear()
    check = assert_invariants(store)
    lost = missing_keepers(store, 100) + (15000 - int(client.scard(store.keys.kind("fact"))))
    assert lost == 0 and check.nodes == 15100
    dup = overlapping(tap.reports)
    assert dup == 0
    record(
        Row(
            "4 Redis goes away",
            "2 x Redis down 10s (mid-pass, beat tick)",
            len(tap.completed()),
            lost,
            dup,
            f"{secs(first_recovery)} / {secs(second_recovery)}",
            "interrupted pass ended failed; worker and beat reconnected",
        )
    )


# -- 5 -----------------------------------------------------------------------------


def test_5_beat_fail_over(
    server: RedisServer, procs: Processes, tap: ReportTap, tmp_path: Path, record: Any
) -> None:
    client = server.client()
    store = MemoryStore(client, "default")
    seed(store, keepers=50)
    env = process_env(server.url, tmp_path / "data", interval_secs=2)
    start_worker(procs, env, "worker")
    logs = [procs.beat(env, "beat1"), procs.beat(env, "beat2")]
    beats = [procs.procs[-2][0], procs.procs[-1][0]]
    wait_for(lambda: len(tap.completed(trailing=False)) >= 2, 60)

    def sender() -> int | None:
        sent = [i for i, log in enumerate(logs) if "Sending due task" in log.read_text()]
        return sent[0] if len(sent) == 1 else None

    active = (
        wait_for(lambda: sender() is not None and sender(), 30) if sender() is None else sender()
    )
    assert active is not None
    standby = 1 - active
    signal_group(beats[active], signal.SIGKILL)
    beats[active].wait(10)
    forget(procs, beats[active])
    killed, killed_at = time.monotonic(), time.time()
    wait_for(lambda: "Sending due task" in logs[standby].read_text(), 60, interval=0.1)
    took_over = time.monotonic() - killed
    wait_for(
        lambda: [r for r in tap.completed(trailing=False) if r.started_at.timestamp() > killed_at],
        30,
    )
    recovered = time.monotonic() - killed
    lock_timeout = max(10, beat_max_loop_interval(2) * 5)
    assert took_over <= lock_timeout + 2 * 2 + 3  # RedBeat's lock timeout, plus two ticks
    procs.stop()
    procs.procs.clear()
    assert_invariants(store)
    assert missing_keepers(store, 50) == 0
    dup = overlapping(tap.reports)
    assert dup == 0
    record(
        Row(
            "5 beat fail-over",
            "SIGKILL the sending beat",
            len(tap.completed()),
            0,
            dup,
            secs(recovered),
            f"standby sent after {secs(took_over)} (RedBeat lock timeout {lock_timeout}s)",
        )
    )


# -- 6 -----------------------------------------------------------------------------


def test_6_warm_shutdown_mid_pass(
    server: RedisServer,
    procs: Processes,
    tap: ReportTap,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    record: Any,
) -> None:
    client = server.client()
    store = MemoryStore(client, "default")
    settings = {"interval_secs": 8, "batch_size": 5, "max_trailing": 0}
    env = process_env(server.url, tmp_path / "data", **settings)
    task = fresh_app(monkeypatch, server.url, **settings).tasks[TASK_NAME]
    outcomes = []
    recover = []
    for variant, to_group in (("worker", False), ("group", True)):
        seed(store, facts=12000, keepers=100, tag=variant)
        worker = start_worker(procs, env, f"worker-{variant}")
        task.delay(force=True)
        wait_for(lambda: running(client) and client.scard(store.keys.unembedded) < 12000 - 300, 60)
        token = (lock_value(client) or "").split(":", 1)[1]
        sent = time.monotonic()
        if to_group:  # systemd's default: every process of the unit gets TERM
            signal_group(worker, signal.SIGTERM)
        else:  # docker stop: PID 1 only
            worker.send_signal(signal.SIGTERM)
        worker.wait(120)
        recover.append(time.monotonic() - sent)
        forget(procs, worker)
        mine = wait_for(
            lambda: [
                r
                for r in tap.reports
                if r.status != "skipped" and r.started_at.timestamp() > time.time() - 300
            ],
            10,
        )
        status = mine[-1].status
        assert status in ("completed", "cancelled"), (variant, status, mine[-1].reason)
        value = lock_value(client)
        # Left valid ("done" for the window) or released; never "running" with no pass.
        assert value in (None, f"done:{token}"), (variant, value)
        assert_invariants(store)
        assert missing_keepers(store, 100) == 0
        outcomes.append(
            f"{variant} TERM -> {status}, lock {'released' if value is None else 'done'}"
        )
        tap.reports.clear()
        client.delete(store.keys.lock)
    dup = overlapping(tap.reports)
    record(
        Row(
            "6 warm shutdown (SIGTERM)",
            "SIGTERM worker, SIGTERM group",
            2,
            0,
            dup,
            " / ".join(secs(r) for r in recover),
            "; ".join(outcomes),
        )
    )


# -- 7 -----------------------------------------------------------------------------

STORM = """
import sys
from car_dream import consolidate
ids = []
for _ in range(50):
    ids.append(consolidate.delay().id)
print("\\n".join(ids))
"""


def test_7_trigger_storm(
    server: RedisServer,
    procs: Processes,
    tap: ReportTap,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    record: Any,
) -> None:
    client = server.client()
    store = MemoryStore(client, "default")
    seed(store, expired=50, facts=50, keepers=50)
    settings = {"interval_secs": 600, "max_trailing": 1}
    env = process_env(server.url, tmp_path / "data", **settings)
    procs.worker(env, concurrency=2)
    app = fresh_app(monkeypatch, server.url, **settings)
    started = time.monotonic()
    storms = [
        subprocess.Popen(
            [sys.executable, "-c", STORM],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        for _ in range(10)
    ]
    ids: list[str] = []
    for p in storms:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()[-2000:]  # no delay() raised
        ids += out.decode().split()
    assert len(ids) == 500
    results = [app.AsyncResult(i).get(timeout=120) for i in ids]  # none raises
    settled = time.monotonic() - started
    non_trailing = [r for r in results if r["status"] == "completed" and not r["trailing"]]
    assert len(non_trailing) == 1 and non_trailing[0]["expired_pruned"] == 50
    skipped = [r for r in results if r["status"] == "skipped"]
    assert len(skipped) == 499 and {r["reason"] for r in skipped} == {"coalesced"}
    wait_for(lambda: tap.completed(trailing=True), 30)
    assert_invariants(store)
    assert missing_keepers(store, 50) == 0
    dup = overlapping(tap.reports)
    assert dup == 0
    record(
        Row(
            "7 trigger storm",
            "500 delay() from 10 processes",
            len(tap.completed()),
            0,
            dup,
            secs(settled),
            "1 pass did work, 499 stored 'skipped', 0 raised",
        )
    )
