"""Storing a report: one script call (``lua/end_pass.lua``) that keeps it in the capped
list, adds it to the totals (:mod:`car_dream.totals` says what it adds) and publishes it
to live watchers, all or nothing; at the end of a pass the same call finishes the lock
(the window "consolidated recently") and trims the journal past its retention.
"""

from __future__ import annotations

import json
from typing import Any

from .connection import database_of, is_cluster
from .keys import METRICS_RECENT_KEY, METRICS_TOTALS_KEY, Keys
from .lock import PassLock, lock_script
from .registry import PerClient
from .report import ConsolidationReport
from .totals import queue_shared, report_totals

__all__ = ["REPORTS_KEPT", "store_report"]

REPORTS_KEPT = 100


class _Script(PerClient):
    def __init__(self, client: Any) -> None:
        self.end = client.register_script(lock_script("end_pass"))


def store_report(
    client: Any,
    keys: Keys,
    report: ConsolidationReport,
    *,
    finish: PassLock | None = None,
    journal_retention: int | None = None,
) -> bool:
    """Store ``report``; with ``finish``, only if that lock can still be finished, and
    finish it in the same script (False: it was lost, nothing stored)."""
    data = report.model_dump_json()
    cluster = is_cluster(client)
    counted = not report.dry_run  # a dry run did nothing the totals count
    shared = counted and not cluster
    script_keys = [keys.lock, keys.reports, keys.totals, keys.journal]
    if shared:
        script_keys += [METRICS_TOTALS_KEY, METRICS_RECENT_KEY]
    totals = report_totals(keys, report, shared=shared) if counted else {}
    args = [
        finish.token if finish is not None else "",
        finish.ttl if finish is not None else 0,
        data,
        REPORTS_KEPT,
        keys.reports_channel(database_of(client)),
        json.dumps(totals),
        "" if finish is None or journal_retention is None else journal_retention,
    ]
    if not int(_Script.of(client).end(keys=script_keys, args=args)):
        return False
    if cluster and counted:  # the shared keys live in other slots: sent next
        pipe = client.pipeline(transaction=False)
        queue_shared(pipe, keys, report)
        pipe.execute()
    return True
