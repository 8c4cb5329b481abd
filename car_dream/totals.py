"""Running totals of the reports, kept in Redis for the exporter's counters.

Each report adds to two hashes in the script that stores it (``end_pass.lua``, see
:mod:`car_dream.record`; this module says what it adds): the namespace's own
(``Keys.totals``) and the one of all namespaces together (``METRICS_TOTALS_KEY``), and
it moves the namespace to the top of ``METRICS_RECENT_KEY``. Counters read from these
never go backwards and never count twice, however many exporters run or restart.

Field names of a totals hash (one place: this module):

- ``passes|<status>|<trailing 0/1>``, ``skipped|<reason>``, ``items|<report field>``,
  ``records_skipped``: counts;
- ``pass_le|<bound>``, ``pass_sum``, ``pass_count``: the pass duration histogram
  (seconds; passes that took the lock, i.e. all but ``skipped``), one non-cumulative
  count per bucket;
- all-namespace hash only: ``step_le|<step>|<bound>``, ``step_sum|<step>``,
  ``step_count|<step>``: the same per step, from ``report.step_ms`` (one histogram per
  step for all namespaces: per namespace it would be most of a scrape);
- namespace hash only: ``first_report_at``, ``last_report_at``, ``last_completed_at``
  (epoch seconds) and ``last_run_status`` (of the last pass that was not skipped).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .keys import METRICS_RECENT_KEY, METRICS_TOTALS_KEY, Keys
from .report import ConsolidationReport, PassStatus

__all__ = [
    "BUCKETS",
    "ITEMS",
    "RAN",
    "SKIP_REASONS",
    "STATUSES",
    "Histogram",
    "Totals",
    "queue_shared",
    "report_totals",
]

STATUSES: tuple[PassStatus, ...] = ("completed", "skipped", "cancelled", "lost_lock", "failed")
RAN: tuple[PassStatus, ...] = tuple(s for s in STATUSES if s != "skipped")
SKIP_REASONS = ("coalesced", "running", "paused")  # the lock's answers; anything else: other
# Report field -> (step, item): what each step removed, wrote or embedded.
ITEMS: dict[str, tuple[str, str]] = {
    "trajectory_insights": ("trajectories", "insights"),
    "model_insights": ("profiles", "insights"),
    "expired_pruned": ("prune", "pruned"),
    "forgotten": ("forget", "forgotten"),
    "conclusions_invalidated": ("invalidate", "invalidated"),
    "superseded_gc": ("collect", "collected"),
    "nodes_embedded": ("embed", "embedded"),
}
# Upper bounds (seconds) of the duration buckets: an idle pass takes milliseconds, a pass
# embedding a large backlog minutes.
# Few: each bound is one series per namespace shown, and a scrape's cost is its series.
BUCKETS: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 60.0, 300.0, 1800.0)
# Step names come from code, not data; still, only plain names become fields and labels.
STEP_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}\Z")
STAMPS = ("first_report_at", "last_report_at", "last_completed_at", "last_run_status")


def _bucket(seconds: float) -> str | None:
    """The bound of the bucket ``seconds`` falls in (None: above the last, +Inf only)."""
    return next((repr(b) for b in BUCKETS if seconds <= b), None)


def increments(
    report: ConsolidationReport, *, steps: bool
) -> tuple[dict[str, int], dict[str, float]]:
    """What ``report`` adds: integer fields and float fields (duration sums); the step
    histograms only with ``steps``."""
    ints: dict[str, int] = {f"passes|{report.status}|{int(report.trailing)}": 1}
    floats: dict[str, float] = {}
    if report.status == "skipped":
        reason = report.reason if report.reason in SKIP_REASONS else "other"
        ints[f"skipped|{reason}"] = 1
        return ints, floats
    for name in ITEMS:
        if value := int(getattr(report, name)):
            ints[f"items|{name}"] = value
    if report.skipped_records:
        ints["records_skipped"] = report.skipped_records
    _observe(ints, floats, "pass", "", report.duration_ms / 1000)
    for step, ms in report.step_ms.items() if steps else ():
        if STEP_RE.match(step):
            _observe(ints, floats, "step", f"|{step}", ms / 1000)
    return ints, floats


def _observe(
    ints: dict[str, int], floats: dict[str, float], kind: str, label: str, seconds: float
) -> None:
    seconds = max(0.0, seconds)
    bound = _bucket(seconds)
    if bound is not None:
        ints[f"{kind}_le{label}|{bound}"] = 1
    ints[f"{kind}_count{label}"] = 1
    floats[f"{kind}_sum{label}"] = seconds


def report_totals(keys: Keys, report: ConsolidationReport, *, shared: bool) -> dict[str, Any]:
    """What ``report`` adds, as ``end_pass.lua`` applies it (every value a string): to the
    namespace's own totals and, with ``shared``, to those of all namespaces and the
    recency set (on a cluster those are :func:`queue_shared`'s, in other slots)."""
    ints, floats = increments(report, steps=shared)
    at = repr(_at(report))
    own = {k: v for k, v in ints.items() if not k.startswith("step_")}
    out: dict[str, Any] = {
        "own": {
            "incr": {k: str(v) for k, v in own.items()},
            "incrf": {k: repr(v) for k, v in floats.items() if not k.startswith("step_")},
            "set": _stamps(report, at),
            "setnx": {"first_report_at": at},
        }
    }
    if shared:
        out["shared"] = {
            "incr": {k: str(v) for k, v in ints.items()},
            "incrf": {k: repr(v) for k, v in floats.items()},
        }
        out["recent"] = [keys.namespace, at]
    return out


def _stamps(report: ConsolidationReport, at: str) -> dict[str, str]:
    stamps = {"last_report_at": at}
    if report.status != "skipped":
        stamps["last_run_status"] = report.status
    if report.status == "completed":
        stamps["last_completed_at"] = at
    return stamps


def queue_shared(pipe: Any, keys: Keys, report: ConsolidationReport) -> None:
    """Queue on ``pipe`` what ``report`` adds outside the namespace's slot: the totals of
    all namespaces and the namespace's place in the recency set."""
    ints, floats = increments(report, steps=True)
    _queue_adds(pipe, METRICS_TOTALS_KEY, ints, floats)
    pipe.zadd(METRICS_RECENT_KEY, {keys.namespace: _at(report)})


def _queue_adds(pipe: Any, key: str, ints: dict[str, int], floats: dict[str, float]) -> None:
    for name, value in ints.items():
        pipe.hincrby(key, name, value)
    for name, fvalue in floats.items():
        pipe.hincrbyfloat(key, name, repr(fvalue))


def _at(report: ConsolidationReport) -> float:
    return (report.finished_at or report.started_at).timestamp()


@dataclass
class Histogram:
    """Cumulative buckets (``(bound, count)``, ``+Inf`` last), sum and count."""

    counts: dict[str, float] = field(default_factory=dict)
    sum: float = 0.0
    count: float = 0.0

    def buckets(self) -> list[tuple[str, float]]:
        out, running = [], 0.0
        for b in BUCKETS:
            running += self.counts.get(repr(b), 0.0)
            out.append((repr(b), running))
        out.append(("+Inf", self.count))
        return out


@dataclass
class Totals:
    """One totals hash, parsed (missing fields are zero)."""

    passes: dict[tuple[str, str], float] = field(default_factory=dict)  # (status, trailing)
    skipped: dict[str, float] = field(default_factory=dict)
    items: dict[str, float] = field(default_factory=dict)
    records_skipped: float = 0.0
    duration: Histogram = field(default_factory=Histogram)
    steps: dict[str, Histogram] = field(default_factory=dict)
    stamps: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> Totals:
        t = cls()
        for k, v in raw.items():
            name, value = k.decode(), v.decode()
            head, _, rest = name.partition("|")
            if head in STAMPS:
                t.stamps[head] = value
                continue
            try:
                n = float(value)
            except ValueError:
                continue  # not ours: ignored rather than failing the scrape
            if head == "passes":
                status, _, trailing = rest.partition("|")
                t.passes[(status, trailing)] = n
            elif head == "skipped":
                t.skipped[rest] = n
            elif head == "items":
                t.items[rest] = n
            elif head == "records_skipped":
                t.records_skipped = n
            elif head.startswith("pass_"):
                _add(t.duration, head, rest, n)
            elif head.startswith("step_"):
                step, _, bound = rest.partition("|")
                _add(t.steps.setdefault(step, Histogram()), head, bound, n)
        return t

    def minus(self, parts: Iterable[Totals]) -> Totals:
        """These counts less the sum of ``parts`` (none below zero; no step histograms)."""
        out = Totals(
            passes=dict(self.passes),
            skipped=dict(self.skipped),
            items=dict(self.items),
            records_skipped=self.records_skipped,
            duration=Histogram(dict(self.duration.counts), self.duration.sum, self.duration.count),
        )
        for p in parts:
            _sub(out.passes, p.passes)
            _sub(out.skipped, p.skipped)
            _sub(out.items, p.items)
            out.records_skipped = max(0.0, out.records_skipped - p.records_skipped)
            _sub(out.duration.counts, p.duration.counts)
            out.duration.sum = max(0.0, out.duration.sum - p.duration.sum)
            out.duration.count = max(0.0, out.duration.count - p.duration.count)
        return out


def _add(h: Histogram, head: str, bound: str, n: float) -> None:
    if head.endswith("_le"):
        h.counts[bound] = n
    elif head.endswith("_sum"):
        h.sum = n
    elif head.endswith("_count"):
        h.count = n


def _sub(into: dict[Any, float], other: dict[Any, float]) -> None:
    for k, v in other.items():
        into[k] = max(0.0, into.get(k, 0.0) - v)
