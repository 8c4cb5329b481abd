"""The Celery task ``car_dream.consolidate``: one pass, and its trailing pass.

The report is the task's result (JSON), so Flower and ``AsyncResult.get()`` show it;
``run_pass`` has already stored it in the namespace's report list.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from celery import Celery, Task

from .app import app, dream_config, get_redis
from .consolidate import run_pass
from .errors import InvalidInputError, PassFailedError
from .keys import validate_namespace
from .store import MemoryStore

__all__ = ["TASK_NAME", "consolidate", "register"]

TASK_NAME = "car_dream.consolidate"

log = logging.getLogger(__name__)


def _consolidate(
    self: Task,
    namespace: str | None = None,
    force: bool = False,
    trailing: bool = False,
    lock_token: str | None = None,
    depth: int = 0,
) -> dict[str, Any]:
    """Run one pass over ``namespace`` (default: ``CAR_DREAM_NAMESPACE``); return its report.

    ``lock_token`` is set only on trailing passes: they take over the lock the pass
    before them finished with. A failed pass raises :class:`PassFailedError`, so the
    task is a FAILURE in Flower while its report is still in the report list.
    """
    config = dream_config(self.app)
    try:
        ns = validate_namespace(config.namespace if namespace is None else namespace)
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None
    store = MemoryStore(get_redis(self.app), ns)
    token = lock_token or secrets.token_hex(16)
    report = run_pass(
        store, config, force=bool(force), trailing=bool(trailing), token=token,
        takeover=lock_token is not None,
    )  # fmt: skip
    if report.status == "failed":
        raise PassFailedError(report.reason or "consolidation pass failed")
    if report.status == "completed" and report.did_work and int(depth) < config.max_trailing:
        # What agents wrote during this pass gets its own pass, under the same lock.
        try:
            self.apply_async(
                kwargs={"namespace": ns, "trailing": True, "lock_token": token,
                        "depth": int(depth) + 1},
            )  # fmt: skip
        except Exception as exc:  # the pass itself succeeded; the next beat catches up
            log.warning("car-dream: could not enqueue the trailing pass: %s", exc)
    return report.model_dump(mode="json")


_OPTIONS: dict[str, Any] = {
    "name": TASK_NAME,
    "bind": True,
    # Failed passes are expected errors: the pass has logged them; no traceback twice.
    "throws": (PassFailedError,),
    # Flower shows the result's repr from the task event; the default 1 KiB cuts it.
    "resultrepr_maxsize": 16384,
}


def register(celery_app: Celery) -> Any:
    """Register the task on another car-dream app (see :func:`car_dream.app.create_app`)."""
    return celery_app.task(**_OPTIONS)(_consolidate)


consolidate = register(app)
