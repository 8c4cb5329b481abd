"""The Celery tasks: ``car_dream.consolidate`` (one pass, and its trailing pass) and
``car_dream.dispatch`` (one ``consolidate`` per registered namespace).

The report is the task's result (JSON), so Flower and ``AsyncResult.get()`` show it;
``run_pass`` has already stored it in the namespace's report list.
"""

from __future__ import annotations

import logging
import secrets
import threading
from typing import Any

from celery import Celery, Task

from .celery_config import dream_config, get_redis
from .consolidate import run_pass
from .errors import InvalidInputError, PassFailedError
from .keys import NAMESPACE_RE, NAMESPACES_KEY, validate_namespace
from .store import MemoryStore

__all__ = ["DISPATCH_TASK_NAME", "TASK_NAME", "register"]

TASK_NAME = "car_dream.consolidate"
DISPATCH_TASK_NAME = "car_dream.dispatch"

log = logging.getLogger(__name__)

_TASKS_ATTR = "_car_dream_tasks"  # the app's (consolidate, dispatch), once registered
_register_guard = threading.Lock()


def _consolidate(
    self: Task,
    namespace: str | None = None,
    force: bool = False,
    trailing: bool = False,
    lock_token: str | None = None,
    depth: int = 0,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Run one pass over ``namespace`` (default: ``CAR_DREAM_NAMESPACE``); return its report.

    ``lock_token`` is set only on trailing passes: they take over the lock the pass
    before them finished with. A failed pass raises :class:`PassFailedError`, so the
    task is a FAILURE in Flower while its report is still in the report list.
    ``dry_run``: report what a pass would do and write nothing (no lock, no trailing pass).
    """
    config = dream_config(self.app)
    try:
        ns = validate_namespace(config.namespace if namespace is None else namespace)
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None
    store = MemoryStore(get_redis(self.app), ns)
    token = lock_token or secrets.token_hex(16)
    report = run_pass(
        store,
        config,
        force=bool(force),
        trailing=bool(trailing),
        token=token,
        takeover=lock_token is not None,
        dry_run=bool(dry_run),
    )
    if report.status == "failed":
        raise PassFailedError(report.reason or "consolidation pass failed")
    trail = report.did_work and not report.dry_run
    if report.status == "completed" and trail and int(depth) < config.max_trailing:
        # What agents wrote during this pass gets its own pass, under the same lock.
        try:
            self.apply_async(
                kwargs={
                    "namespace": ns,
                    "trailing": True,
                    "lock_token": token,
                    "depth": int(depth) + 1,
                },
                ignore_result=True,  # nobody waits for it: its report is in the report list
            )
        except Exception as exc:  # the pass itself succeeded; the next beat catches up
            log.warning("car-dream: could not enqueue the trailing pass: %s", exc)
    return report.model_dump(mode="json")


class _DreamTask(Task):  # type: ignore[misc]
    """car-dream's options travel with its tasks, whatever app they are installed on:
    JSON messages, and the queue ``CAR_DREAM_QUEUE`` when it is set (else the app's
    default queue, where its workers already listen)."""

    serializer = "json"

    @property
    def queue(self) -> str | None:  # read when the first message is sent
        config = dream_config(self.app)
        return config.queue if "queue" in config.model_fields_set else None


class _PassTask(_DreamTask):
    """``consolidate``: a trigger expires an interval after it was sent, as beat's do."""

    def apply_async(  # type: ignore[override]
        self, args: Any = None, kwargs: Any = None, **options: Any
    ) -> Any:
        # A trigger still queued an interval later is stale (with no worker running they
        # would pile up); ``expires=None`` keeps one for good.
        if "expires" not in options:
            options["expires"] = dream_config(self.app).interval_secs
        return super().apply_async(args, kwargs, **options)


_OPTIONS: dict[str, Any] = {
    "name": TASK_NAME,
    "base": _PassTask,
    "bind": True,
    # Failed passes are expected errors: the pass has logged them; no traceback twice.
    "throws": (PassFailedError,),
    # Flower shows the result's repr from the task event; the default 1 KiB cuts it.
    "resultrepr_maxsize": 16384,
}


def _dispatch(self: Task, cursor: int = 0) -> dict[str, Any]:
    """Send one ``consolidate(namespace)`` per registered namespace, one page at a time.

    Each run reads one ``SSCAN`` page of ``car-dream:namespaces`` (about
    ``dispatch_chunk`` names), first re-enqueues itself with the next cursor (so another
    worker pages on while this one sends), then sends this page's passes. Every message
    is small, and every one expires after an interval: the next beat tick replaces it.
    A name SSCAN repeats (it may, while the set is rehashed) is coalesced by the lock.
    Nobody waits for what it sends: no results (with the RPC backend they would pile up
    in a reply queue of this worker that nobody reads).
    """
    config = dream_config(self.app)
    client = get_redis(self.app)
    nxt, members = client.sscan(NAMESPACES_KEY, cursor=int(cursor), count=config.dispatch_chunk)
    names = sorted({m.decode() if isinstance(m, bytes) else str(m) for m in members})
    valid = [n for n in names if NAMESPACE_RE.match(n)]
    with self.app.producer_or_acquire() as producer:
        options = {"expires": config.interval_secs, "producer": producer, "ignore_result": True}
        if int(nxt):
            self.apply_async(kwargs={"cursor": int(nxt)}, **options)
        task = self.app.tasks[TASK_NAME]
        for ns in valid:
            task.apply_async(kwargs={"namespace": ns}, **options)
    if len(valid) < len(names):
        log.warning(
            "car-dream: dispatch skipped %d invalid namespace names", len(names) - len(valid)
        )
    return {"cursor": int(cursor), "next_cursor": int(nxt), "dispatched": len(valid)}


_DISPATCH_OPTIONS: dict[str, Any] = {"name": DISPATCH_TASK_NAME, "base": _DreamTask, "bind": True}


def register(celery_app: Celery) -> tuple[Any, Any]:
    """Register ``car_dream.consolidate`` and ``car_dream.dispatch`` on ``celery_app``
    (once: again, the same two); returns them. Lazily, as ``app.task`` does: the app is
    neither finalized nor configured by this."""
    with _register_guard:
        tasks: tuple[Any, Any] | None = getattr(celery_app, _TASKS_ATTR, None)
        if tasks is None:
            dispatch = celery_app.task(**_DISPATCH_OPTIONS)(_dispatch)
            tasks = (celery_app.task(**_OPTIONS)(_consolidate), dispatch)
            setattr(celery_app, _TASKS_ATTR, tasks)
    return tasks
