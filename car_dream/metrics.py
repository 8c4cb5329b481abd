"""The exporter's collector: every scrape reads Redis afresh and keeps nothing.

Counters come from the totals the passes keep (:mod:`car_dream.totals`), gauges from the
index sizes and the lock. Namespaces are shown one by one up to ``max_namespaces``, the
most recently passed; the counters of the rest are the all-namespace totals less those
shown, under ``namespace="_other"`` (gauges are per namespace shown only). A scrape costs
two round trips whatever the number of namespaces: the names, then one pipeline (one
MULTI/EXEC on a single server, so ``_other`` is computed from one snapshot).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import redis
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .connection import is_cluster
from .keys import METRICS_RECENT_KEY, METRICS_TOTALS_KEY, NAMESPACE_RE, NAMESPACES_KEY
from .lock import LockState, queue_lock_state
from .node import IndexSizes
from .store import MemoryStore
from .totals import ITEMS, RAN, STATUSES, Totals

__all__ = ["OTHER", "DreamCollector", "Shown", "Snapshot", "read_snapshot"]

log = logging.getLogger(__name__)

SizesReader = Callable[[list[Any]], IndexSizes]
LockReader = Callable[[list[Any]], LockState]

# The label of the namespaces not shown one by one. A real namespace of that name is
# never shown on its own (its series would collide): it is counted in the aggregate.
OTHER = "_other"


@dataclass
class Shown:
    """What one scrape read of a namespace shown on its own."""

    name: str
    totals: Totals
    sizes: IndexSizes
    lock: LockState


@dataclass
class Snapshot:
    shown: list[Shown]
    other: Totals
    everything: Totals
    registered: int
    reported: int
    now: float


def read_snapshot(client: Any, max_namespaces: int, now: float) -> Snapshot:
    """Read what a scrape shows: two round trips."""
    pipe = client.pipeline(transaction=False)
    pipe.zrevrange(METRICS_RECENT_KEY, 0, max_namespaces)  # one more, in case of OTHER
    pipe.zcard(METRICS_RECENT_KEY)
    pipe.scard(NAMESPACES_KEY)
    recent, reported, registered = pipe.execute()
    names = [n.decode() for n in recent]
    names = [n for n in names if n != OTHER and NAMESPACE_RE.match(n)][:max_namespaces]

    # A cluster pipeline spans slots only outside a transaction.
    pipe = client.pipeline(transaction=not is_cluster(client))
    pipe.hgetall(METRICS_TOTALS_KEY)
    spans: list[tuple[int, SizesReader, int, LockReader, int]] = []  # replies of each part
    for name in names:
        store = MemoryStore(client, name)
        pipe.hgetall(store.keys.totals)
        sizes_at, read_sizes = len(pipe), store.queue_index_sizes(pipe)
        lock_at, read_lock = len(pipe), queue_lock_state(pipe, store.keys)
        spans.append((sizes_at, read_sizes, lock_at, read_lock, len(pipe)))
    replies = pipe.execute()
    everything = Totals.from_hash(replies[0])
    shown = [
        Shown(
            name,
            totals=Totals.from_hash(replies[sizes_at - 1]),
            sizes=read_sizes(replies[sizes_at:lock_at]),
            lock=read_lock(replies[lock_at:end]),
        )
        for name, (sizes_at, read_sizes, lock_at, read_lock, end) in zip(names, spans, strict=True)
    ]
    return Snapshot(
        shown=shown,
        other=everything.minus(s.totals for s in shown),
        everything=everything,
        registered=int(registered),
        reported=int(reported),
        now=now,
    )


class DreamCollector(Collector):
    """Reads Redis on each ``collect()``; an unreachable Redis gives ``car_dream_redis_up 0``."""

    def __init__(
        self,
        client: Any,
        *,
        max_namespaces: int,
        interval_secs: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.max_namespaces = max_namespaces
        self.interval_secs = interval_secs
        self.clock = clock

    def collect(self) -> list[Metric]:
        started = time.perf_counter()
        up = GaugeMetricFamily("car_dream_redis_up", "1 if the exporter could read Redis.")
        families: list[Metric] = []
        try:
            snap = read_snapshot(self.client, self.max_namespaces, self.clock())
        except redis.RedisError as exc:
            log.warning("car-dream exporter: cannot read Redis: %s", exc)
            up.add_metric([], 0)
        else:
            families = [*counters(snap), *gauges(snap, self.interval_secs)]
            up.add_metric([], 1)
        took = GaugeMetricFamily(
            "car_dream_scrape_duration_seconds",
            "Seconds this scrape took to read Redis and build the metrics (not to encode them).",
            value=time.perf_counter() - started,
        )
        return [*families, up, took]


def counters(snap: Snapshot) -> Iterator[Metric]:
    rows = [(s.name, s.totals) for s in snap.shown] + [(OTHER, snap.other)]
    ns = ["namespace"]
    passes = CounterMetricFamily(
        "car_dream_passes",
        "Passes by status and whether trailing.",
        labels=[*ns, "status", "trailing"],
    )
    skipped = CounterMetricFamily(
        "car_dream_skipped_triggers", "Passes skipped, by reason.", labels=[*ns, "reason"]
    )
    items = CounterMetricFamily(
        "car_dream_items", "Items each step handled.", labels=[*ns, "step", "item"]
    )
    records = CounterMetricFamily(
        "car_dream_skipped_records", "Malformed input records skipped.", labels=ns
    )
    duration = HistogramMetricFamily(
        "car_dream_pass_duration_seconds",
        "Duration of the passes that took the lock (every status but skipped).",
        labels=ns,
    )
    steps = HistogramMetricFamily(
        "car_dream_step_duration_seconds",
        "Duration of each step that ran, all namespaces together.",
        labels=["step"],
    )
    for name, t in rows:
        # Zero series only where an alert or a rate() needs one from the start.
        for status in STATUSES:
            passes.add_metric([name, status, "false"], t.passes.get((status, "0"), 0.0))
            if t.passes.get((status, "1")):
                passes.add_metric([name, status, "true"], t.passes[(status, "1")])
        for reason, n in sorted(t.skipped.items()):
            if n:
                skipped.add_metric([name, reason], n)
        for field, (step, item) in ITEMS.items():
            items.add_metric([name, step, item], t.items.get(field, 0.0))
        records.add_metric([name], t.records_skipped)
        duration.add_metric([name], t.duration.buckets(), t.duration.sum)
    for step, h in sorted(snap.everything.steps.items()):
        steps.add_metric([step], h.buckets(), h.sum)
    yield from (passes, skipped, items, records, duration, steps)


def gauges(snap: Snapshot, interval_secs: int) -> Iterator[Metric]:
    ns = ["namespace"]
    nodes = GaugeMetricFamily("car_dream_nodes", "Nodes by kind.", labels=[*ns, "kind"])
    coverage = GaugeMetricFamily(
        "car_dream_embedding_coverage_ratio",
        "Share of nodes with an embedding for the current model (1 when empty).",
        labels=ns,
    )
    lock = GaugeMetricFamily(
        "car_dream_lock_state",
        "1, labelled with the namespace lock's state: free, running or done.",
        labels=[*ns, "state"],
    )
    ttl = GaugeMetricFamily(
        "car_dream_lock_ttl_seconds", "Seconds left on the namespace lock (0 when free).", labels=ns
    )
    paused = GaugeMetricFamily("car_dream_paused", "1 while passes are paused.", labels=ns)
    age = GaugeMetricFamily(
        "car_dream_last_completed_pass_age_seconds",
        "Seconds since the last completed pass (since the first report if none completed).",
        labels=ns,
    )
    lag = GaugeMetricFamily(
        "car_dream_report_list_lag_seconds",
        "Seconds since the newest report in the namespace's report list was stored.",
        labels=ns,
    )
    last = GaugeMetricFamily(
        "car_dream_last_pass_status",
        "1, labelled with the status of the last pass that took the lock (not skipped).",
        labels=[*ns, "status"],
    )
    for s in snap.shown:
        for kind, n in s.sizes.nodes.items():
            nodes.add_metric([s.name, kind], n)
        coverage.add_metric([s.name], s.sizes.embedding_coverage)
        lock.add_metric([s.name, s.lock.state], 1.0)
        ttl.add_metric([s.name], s.lock.ttl or 0.0)
        paused.add_metric([s.name], float(s.lock.paused))
        stamps = s.totals.stamps
        since = stamps.get("last_completed_at") or stamps.get("first_report_at")
        if since:
            age.add_metric([s.name], max(0.0, snap.now - float(since)))
        if "last_report_at" in stamps:
            lag.add_metric([s.name], max(0.0, snap.now - float(stamps["last_report_at"])))
        if stamps.get("last_run_status") in RAN:
            last.add_metric([s.name, stamps["last_run_status"]], 1.0)
    namespaces = GaugeMetricFamily(
        "car_dream_namespaces",
        "Namespaces registered (written to), reported (a pass stored a report), shown here.",
        labels=["set"],
    )
    namespaces.add_metric(["registered"], snap.registered)
    namespaces.add_metric(["reported"], snap.reported)
    namespaces.add_metric(["shown"], len(snap.shown))
    interval = GaugeMetricFamily(
        "car_dream_interval_seconds",
        "CAR_DREAM_INTERVAL_SECS as the exporter reads it (for the alert rules).",
        value=interval_secs,
    )
    yield from (nodes, coverage, lock, ttl, paused, age, lag, last, namespaces, interval)
