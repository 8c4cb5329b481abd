"""One consolidation pass: take the lock, run the steps in order, record the report.

The steps are :data:`car_dream.steps.STEPS` (see :mod:`car_dream.pipeline`). Every
destructive batch is one fenced Lua script, so a pass that lost its lock stops at its
next batch without writing; each step works from an index, so an idle pass costs a
handful of round trips whatever the size of the store.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from .clock import ServerClock
from .config import DreamConfig
from .embedder import Embedder
from .embedding_models import configured_embedder
from .errors import LockLostError, PassCancelledError
from .lock import PassLock
from .pass_start import begin_pass
from .pipeline import PassContext, Step, run_steps
from .plan import plan_pass
from .record import store_report
from .report import ConsolidationReport, failure_reason
from .shutdown import pass_running
from .steps import STEPS
from .store import MemoryStore

__all__ = ["log_report", "run_pass"]

log = logging.getLogger("car_dream")

LOST_AT_FINISH = "lock taken over before the pass could finish"


def run_pass(
    store: MemoryStore,
    config: DreamConfig,
    *,
    force: bool = False,
    trailing: bool = False,
    token: str | None = None,
    takeover: bool = False,
    embedder: Embedder | None = None,
    clock: Callable[[], float] | None = None,
    cancel_event: threading.Event | None = None,
    steps: Sequence[Step] = STEPS,
    dry_run: bool = False,
) -> ConsolidationReport:
    """Run one pass over ``store`` under its namespace lock and return the report.

    ``force`` ignores the "consolidated recently" window but never a running pass;
    ``takeover`` lets a trailing pass take over the finished lock of ``token``.
    ``embedder`` defaults to the one ``CAR_DREAM_EMBEDDER`` names, loaded once per process.
    ``clock`` (epoch seconds) is the Redis server's ``TIME`` unless a test gives one.
    ``dry_run``: report what the pass would do, write nothing, take no lock (so the
    coalescing window stays open); the report is stored, marked ``dry_run``.
    """
    started = time.monotonic()
    server = ServerClock(store.client, store.keys.lock) if clock is None else None
    now: Callable[[], float] = clock or server  # type: ignore[assignment]
    report = ConsolidationReport(
        namespace=store.namespace,
        trailing=trailing,
        started_at=_utc(time.time()),  # dated below, by the clock of the pass
        dry_run=dry_run,
    )
    try:  # before the lock: loading a model can take longer than a short lock's TTL
        embedder = configured_embedder(config) if embedder is None else embedder
    except Exception as exc:
        log.error("car-dream: no pass over %s: %s", store.namespace, failure_reason(exc))
        _date(report, now)
        return _finish(store, config, report, started, now, "failed", failure_reason(exc))
    if dry_run:
        status, reason = "completed", None
        try:
            plan_pass(store, config, report, embedder, _date(report, now, strict=True))
        except Exception as exc:
            status, reason = "failed", failure_reason(exc)
        return _finish(store, config, report, started, now, status, reason)
    lock = PassLock(store.client, store.keys, config.lock_ttl, token)
    try:  # one round trip: the lock, the server's time, the sizes and the bookkeeping
        due = None if server is not None else now()
        start = begin_pass(store, lock, force=force, takeover=takeover, due=due)
    except Exception as exc:
        return _finish(store, config, report, started, now, "failed", failure_reason(exc))
    if server is not None:
        server.seed(start.server_time)
    report.started_at = _utc(start.server_time if due is None else due)
    if not start.acquired.ok:
        report.lock_ttl_remaining = start.acquired.ttl_remaining
        return _finish(store, config, report, started, now, "skipped", start.acquired.outcome)
    ctx = PassContext(store, config, lock, report, embedder, now, cancel_event, start=start)
    try:
        with lock.keepalive(), pass_running():
            run_steps(ctx, steps)
    except LockLostError as exc:
        return _finish(store, config, report, started, now, "lost_lock", str(exc))
    except PassCancelledError as exc:
        _quietly(lock.release)
        return _finish(store, config, report, started, now, "cancelled", str(exc))
    except Exception as exc:
        log.exception("car-dream: pass over %s failed", store.namespace)
        _quietly(lock.release)  # if Redis is gone the TTL frees it instead
        return _finish(store, config, report, started, now, "failed", failure_reason(exc))
    # One round trip more: finish the lock and store the report, in one script.
    return _finish(store, config, report, started, now, "completed", None, lock)


def _date(
    report: ConsolidationReport, clock: Callable[[], float], *, strict: bool = False
) -> float:
    """Date the start of a pass that takes no lock by ``clock``; without Redis the
    worker's time only dates the report (``strict``: raise instead)."""
    try:
        at = clock()
    except Exception:
        if strict:
            raise
        at = time.time()
    report.started_at = _utc(at)
    return at


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _quietly(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception as exc:
        log.warning("car-dream: %s", failure_reason(exc))


def _finish(
    store: MemoryStore,
    config: DreamConfig,
    report: ConsolidationReport,
    started: float,
    clock: Callable[[], float],
    status: str,
    reason: str | None,
    lock: PassLock | None = None,
) -> ConsolidationReport:
    """Store the report; with ``lock`` (a completed pass) finish the lock in the same
    script, and if it was lost meanwhile the report says ``lost_lock`` instead."""
    report.status = status  # type: ignore[assignment]
    report.reason = reason
    elapsed = time.monotonic() - started
    try:
        report.finished_at = _utc(clock())
    except Exception:  # Redis went away: the start's reading plus the time it took
        report.finished_at = report.started_at + timedelta(seconds=elapsed)
    report.duration_ms = round(elapsed * 1000, 3)
    retention = config.journal_retention_secs
    try:
        if not store_report(
            store.client, store.keys, report, finish=lock, journal_retention=retention
        ):
            report.status, report.reason = "lost_lock", LOST_AT_FINISH
            store.record_report(report)
    except Exception as exc:
        if lock is None or report.status != "completed":
            log.warning("car-dream: report not stored: %s", failure_reason(exc))
        else:  # whether the lock was finished is unknown: the pass failed at its end
            report.status, report.reason = "failed", failure_reason(exc)
            _quietly(lock.release)
            _quietly(lambda: store.record_report(report))
    log_report(report)
    return report


def log_report(report: ConsolidationReport) -> None:
    if not log.isEnabledFor(logging.INFO):  # the line costs a tenth of an idle pass
        return
    fields = report.model_dump(mode="json", exclude={"warnings"})
    fields["warnings"] = len(report.warnings)
    if report.embedding_coverage is not None:  # null when the pass measured nothing
        fields["embedding_coverage"] = f"{report.embedding_coverage * 100:.1f}%"
    line = " ".join(f"{k}={json.dumps(v)}" for k, v in fields.items())
    log.info("dream consolidation pass %s %s", outcome(report), line, extra={"report": fields})


def outcome(report: ConsolidationReport) -> str:
    """What became of the pass, in words: ``completed``, ``skipped (paused)``, ..."""
    if report.status == "completed" or not report.reason:
        return report.status
    return f"{report.status} ({report.reason})"
