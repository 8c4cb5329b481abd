"""What the exporter's counters must say, computed straight from a list of reports."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from car_dream.report import ConsolidationReport
from car_dream.totals import BUCKETS, ITEMS


@dataclass
class Expected:
    passes: Counter[tuple[str, str]] = field(default_factory=Counter)  # (status, "true"/"false")
    skipped: Counter[str] = field(default_factory=Counter)
    items: Counter[tuple[str, str]] = field(default_factory=Counter)  # (step, item)
    records: int = 0
    count: int = 0  # passes that took the lock
    sum: float = 0.0  # their durations, seconds
    buckets: dict[str, int] = field(default_factory=dict)  # cumulative, "+Inf" last
    steps: Counter[str] = field(default_factory=Counter)  # step -> times it ran


def expected(reports: Iterable[ConsolidationReport]) -> Expected:
    e = Expected()
    durations: list[float] = []
    for r in reports:
        e.passes[(r.status, "true" if r.trailing else "false")] += 1
        if r.status == "skipped":
            e.skipped[r.reason or ""] += 1
            continue
        for name, key in ITEMS.items():
            e.items[key] += getattr(r, name)
        e.records += r.skipped_records
        durations.append(r.duration_ms / 1000)
        e.steps.update(r.step_ms.keys())
    e.count, e.sum = len(durations), sum(durations)
    e.buckets = {repr(b): sum(1 for d in durations if d <= b) for b in BUCKETS}
    e.buckets["+Inf"] = len(durations)
    return e
