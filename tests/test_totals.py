"""The running totals each stored report adds to, for the exporter's counters."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import fakeredis
import pytest
import redis

from car_dream.config import DreamConfig
from car_dream.consolidate import run_pass
from car_dream.keys import METRICS_RECENT_KEY, METRICS_TOTALS_KEY
from car_dream.report import ConsolidationReport
from car_dream.store import MemoryStore
from car_dream.totals import BUCKETS, ITEMS, Totals

from .metrics_expect import Expected, expected

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def report(i: int, namespace: str = "unit", **fields: Any) -> ConsolidationReport:
    at = T0 + timedelta(seconds=10 * i)
    base: dict[str, Any] = {
        "namespace": namespace,
        "started_at": at,
        "finished_at": at + timedelta(seconds=1),
    }
    return ConsolidationReport(**{**base, **fields})


def varied(namespace: str = "unit") -> list[ConsolidationReport]:
    """Every status, trailing or not, each skip reason, items, durations in every bucket
    and above the last, steps with a name that may not become a label."""
    out = []
    durations = [b * 1000 for b in BUCKETS] + [BUCKETS[-1] * 2000, 3.5, 0.0]
    for i, ms in enumerate(durations):
        out.append(
            report(
                i,
                namespace,
                status="completed",
                trailing=i % 3 == 0,
                duration_ms=ms,
                expired_pruned=i,
                superseded_gc=2 * i,
                nodes_embedded=3,
                conclusions_invalidated=1,
                trajectory_insights=i % 2,
                model_insights=1,
                skipped_records=i % 4,
                step_ms={"prune": ms / 2, "embed": ms / 4, "Not A Label": 1.0},
            )
        )
    for j, (status, reason) in enumerate(
        [
            ("skipped", "coalesced"),
            ("skipped", "running"),
            ("skipped", "paused"),
            ("skipped", "coalesced"),
            ("failed", "RuntimeError: boom"),
            ("lost_lock", "lost"),
            ("cancelled", "asked"),
        ]
    ):
        ran = status != "skipped"
        out.append(
            report(
                100 + j,
                namespace,
                status=status,
                reason=reason,
                trailing=j == 5,
                duration_ms=7.0 if ran else 0.3,
                expired_pruned=1 if ran else 0,
                step_ms={"prune": 2.0} if ran else {},
            )
        )
    return out


def totals(client: Any, key: str) -> Totals:
    return Totals.from_hash(client.hgetall(key))


def assert_counts(t: Totals, e: Expected) -> None:
    assert {(s, "true" if tr == "1" else "false"): n for (s, tr), n in t.passes.items()} == e.passes
    assert t.skipped == e.skipped
    assert {ITEMS[name]: n for name, n in t.items.items()} == +e.items
    assert t.records_skipped == e.records
    assert t.duration.count == e.count
    assert t.duration.sum == pytest.approx(e.sum, rel=1e-12)
    assert dict(t.duration.buckets()) == e.buckets


def test_totals_add_up_every_report_stored(fake_store: MemoryStore) -> None:
    reports = varied()
    for r in reports:
        fake_store.record_report(r)
    e = expected(reports)
    own, everything = (
        totals(fake_store.client, fake_store.keys.totals),
        totals(fake_store.client, METRICS_TOTALS_KEY),
    )
    assert_counts(own, e)
    assert_counts(everything, e)
    # A pass above the last bound is in the count (+Inf) only.
    assert e.buckets[repr(BUCKETS[-1])] == e.count - 1
    # Step histograms: all namespaces together only, plain step names only.
    assert own.steps == {}
    assert set(everything.steps) == {"prune", "embed"}
    assert everything.steps["prune"].count == e.steps["prune"]
    assert everything.steps["embed"].count == e.steps["embed"]


def test_stamps_and_recency(fake: fakeredis.FakeRedis) -> None:
    a, b = MemoryStore(fake, "a"), MemoryStore(fake, "b")
    a.record_report(report(0, "a", status="completed"))
    b.record_report(report(1, "b", status="completed"))
    a.record_report(report(2, "a", status="failed", reason="x"))
    a.record_report(report(3, "a", status="skipped", reason="coalesced"))
    stamps = totals(fake, a.keys.totals).stamps
    assert float(stamps["first_report_at"]) == (T0 + timedelta(seconds=1)).timestamp()
    assert float(stamps["last_completed_at"]) == (T0 + timedelta(seconds=1)).timestamp()
    assert float(stamps["last_report_at"]) == (T0 + timedelta(seconds=31)).timestamp()
    assert stamps["last_run_status"] == "failed"  # a skipped pass does not count
    recent = fake.zrevrange(METRICS_RECENT_KEY, 0, -1, withscores=True)
    assert [(n.decode(), s) for n, s in recent] == [
        ("a", (T0 + timedelta(seconds=31)).timestamp()),
        ("b", (T0 + timedelta(seconds=11)).timestamp()),
    ]
    # All namespaces together: the sum.
    assert totals(fake, METRICS_TOTALS_KEY).passes == {
        ("completed", "0"): 2,
        ("failed", "0"): 1,
        ("skipped", "0"): 1,
    }


def test_a_pass_adds_its_own_report(fake_store: MemoryStore, config: DreamConfig) -> None:
    now = time.time()
    for i in range(3):
        fake_store.ingest_environment(f"e{i}", "old", expires_at=now - 1)
    fake_store.ingest_fact("f", "s", "to embed")
    first = run_pass(fake_store, config)
    second = run_pass(fake_store, config)  # coalesced
    assert (first.status, second.status) == ("completed", "skipped")
    assert_counts(totals(fake_store.client, fake_store.keys.totals), expected([first, second]))
    steps = totals(fake_store.client, METRICS_TOTALS_KEY).steps
    assert {s: h.count for s, h in steps.items()} == dict.fromkeys(first.step_ms, 1)


def test_report_and_totals_are_one_transaction(db: redis.Redis) -> None:
    """A reader in a transaction never sees a report without its totals, or the reverse."""
    store = MemoryStore(db, "atomic")
    reader = redis.Redis(connection_pool=db.connection_pool)
    seen: list[tuple[int, float, float]] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            pipe = reader.pipeline(transaction=True)
            pipe.llen(store.keys.reports)
            pipe.hget(store.keys.totals, "passes|completed|0")
            pipe.hget(METRICS_TOTALS_KEY, "passes|completed|0")
            n, own, everything = pipe.execute()
            seen.append((int(n), float(own or 0), float(everything or 0)))

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for i in range(90):  # under the 100 the list keeps
            store.record_report(report(i, "atomic", status="completed"))
    finally:
        done.set()
        thread.join(10)
    assert len(seen) > 10
    assert all(n == own == everything for n, own, everything in seen), [
        s for s in seen if len(set(s)) > 1
    ][:5]
    assert seen[-1][0] <= 90
