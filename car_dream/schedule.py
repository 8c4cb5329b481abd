"""The beat schedule: the entry for any scheduler (:func:`beat_entry`), and the one RedBeat
keeps in Redis: create it once, show it, change it."""

from __future__ import annotations

import json
import logging
import re
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Celery
from celery.schedules import schedule as every
from redbeat.decoder import RedBeatJSONEncoder
from redbeat.schedulers import RedBeatSchedulerEntry, ensure_conf
from redbeat.schedulers import get_redis as redbeat_redis

from .celery_config import dream_config, load_settings
from .config import DreamConfig
from .keys import DREAM_ENTRY_NAME
from .tasks import DISPATCH_TASK_NAME, TASK_NAME

__all__ = [
    "DISPATCH_ENTRY_NAME",
    "beat_entry",
    "ensure_dream_task",
    "entry_name",
    "get_schedule",
    "next_run",
    "parse_every",
    "set_schedule",
]

log = logging.getLogger(__name__)

# Not of the form ``car-dream:<namespace>``, so no namespace can take its name.
DISPATCH_ENTRY_NAME = f"{DREAM_ENTRY_NAME}-dispatch"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_EVERY = re.compile(r"(\d+)\s*([smhd])")
MIN_EVERY = 2
_client_guard = threading.Lock()


def parse_every(text: str) -> int:
    """Seconds from ``"90s"``, ``"30m"``, ``"1h30m"``, ``"2d"`` or a bare number of seconds."""
    s = str(text).strip().lower().replace(" ", "")
    if s.isdigit():
        secs = int(s)
    elif s and _EVERY.sub("", s) == "":
        secs = sum(int(n) * _UNITS[u] for n, u in _EVERY.findall(s))
    else:
        raise ValueError(f"cannot read {text!r} as a duration: use e.g. 90s, 30m, 1h, 1h30m")
    if secs < MIN_EVERY:
        raise ValueError(f"the interval must be at least {MIN_EVERY}s, got {text!r}")
    return secs


def entry_name(namespace: str) -> str:
    """``car-dream`` for the default namespace; others get their own entry."""
    return DREAM_ENTRY_NAME if namespace == "default" else f"{DREAM_ENTRY_NAME}:{namespace}"


def _name(config: DreamConfig) -> str:
    """The entry this configuration's beat keeps: dispatch, or the one namespace's."""
    return DISPATCH_ENTRY_NAME if config.dispatch else entry_name(config.namespace)


def _definition(config: DreamConfig, every_secs: int) -> dict[str, Any]:
    return {
        "task": DISPATCH_TASK_NAME if config.dispatch else TASK_NAME,
        "schedule": timedelta(seconds=every_secs),
        "kwargs": {} if config.dispatch else {"namespace": config.namespace},
        # A trigger still queued an interval later is stale: the next one replaces it.
        "options": {"expires": every_secs},
    }


def beat_entry(config: DreamConfig | None = None) -> dict[str, Any]:
    """car-dream's entry for ``app.conf.beat_schedule`` (any beat scheduler): the pass
    (or, with ``CAR_DREAM_DISPATCH``, the dispatch) every ``CAR_DREAM_INTERVAL_SECS``.

    ``config`` defaults to the settings of the environment (or Django's ``CAR_DREAM``);
    give the one given to :func:`car_dream.install`, if any. Beat never reads a result:
    the entry asks for none (with the RPC backend they would pile up in beat's reply
    queue); the report is in the report list, and in the task event Flower shows.
    """
    config = config or load_settings()
    entry = _definition(config, config.interval_secs)
    entry["options"]["ignore_result"] = True
    return entry


def _entry(celery_app: Celery, every_secs: int, config: DreamConfig) -> RedBeatSchedulerEntry:
    definition = _definition(config, every_secs)
    return RedBeatSchedulerEntry(
        name=_name(config),
        task=definition["task"],
        schedule=every(definition["schedule"]),
        kwargs=definition["kwargs"],
        options=definition["options"],
        app=celery_app,
    )


def ensure_dream_task(celery_app: Celery, *, warn: bool = True) -> bool:
    """Create the beat entry (every ``interval_secs``) unless it exists; True if created.

    With ``warn``, an existing entry whose interval differs from the setting is logged.

    Atomic (HSETNX on the definition), so beats starting together create it once.
    With ``CAR_DREAM_DISPATCH=true`` the entry is ``car-dream-dispatch`` (task
    ``car_dream.dispatch``, every namespace) and the single-namespace entry of
    ``CAR_DREAM_NAMESPACE`` is removed, since dispatch covers it; with it false, the
    reverse. So a namespace is never triggered by both.
    """
    target = celery_app
    config = dream_config(target)
    conf = ensure_conf(target)
    with _client_guard:  # RedBeat creates its client lazily, and not thread-safely
        client = redbeat_redis(target)
    _remove_other(target, config)
    entry = _entry(target, config.interval_secs, config)
    definition = {
        "name": entry.name,
        "task": entry.task,
        "args": entry.args,
        "kwargs": entry.kwargs,
        "options": entry.options,
        "schedule": entry.schedule,
        "enabled": True,
    }
    if client.hsetnx(entry.key, "definition", json.dumps(definition, cls=RedBeatJSONEncoder)):
        with client.pipeline() as pipe:
            pipe.hsetnx(entry.key, "meta", json.dumps({"last_run_at": None}))
            pipe.zadd(conf.schedule_key, {entry.key: entry.score})
            pipe.execute()
        log.info("car-dream: created beat entry %r every %ss", entry.name, config.interval_secs)
        return True
    current = get_schedule(target) if warn else None
    if current and current["every_secs"] != config.interval_secs:
        log.warning(
            "car-dream: beat entry %r runs every %ss, not CAR_DREAM_INTERVAL_SECS=%s; "
            "change it with `car-dream schedule set --every ...`",
            entry.name,
            current["every_secs"],
            config.interval_secs,
        )
    return False


def _remove_other(target: Celery, config: DreamConfig) -> None:
    other = entry_name(config.namespace) if config.dispatch else DISPATCH_ENTRY_NAME
    entry = _load(target, other)
    if entry is not None:
        entry.delete()
        log.info("car-dream: removed beat entry %r (CAR_DREAM_DISPATCH=%s)", other, config.dispatch)


def _load(target: Celery, name: str) -> RedBeatSchedulerEntry | None:
    ensure_conf(target)
    key = RedBeatSchedulerEntry.generate_key(target, name)
    try:
        return RedBeatSchedulerEntry.from_key(key, app=target)
    except KeyError:
        return None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def next_run(
    last_run_at: datetime | None, every: timedelta, now: datetime
) -> tuple[datetime, datetime | None]:
    """When the entry runs next, and since when it is overdue (None if it is not).

    RedBeat's ``due_at`` adds the *remaining* time to ``last_run_at``, so it drifts
    backwards as time passes; the truth is ``last_run_at + every``. An entry that never
    ran, or whose time has passed, runs at the next beat tick: now.
    """
    if last_run_at is None:
        return now, None
    if last_run_at.tzinfo is None:  # RedBeat stores UTC
        last_run_at = last_run_at.replace(tzinfo=UTC)
    due = last_run_at + every
    return (due, None) if due > now else (now, due)


def get_schedule(celery_app: Celery, now: datetime | None = None) -> dict[str, Any] | None:
    """The beat entry (dispatch, or the namespace's) as plain data, or None if there is none.

    ``next_run_at`` is when beat sends it next (None if disabled); ``due_since`` is set
    when that is now because the entry is overdue.
    """
    target = celery_app
    entry = _load(target, _name(dream_config(target)))
    if entry is None:
        return None
    run_every = getattr(entry.schedule, "run_every", None)
    upcoming: datetime | None = None
    overdue: datetime | None = None
    if entry.enabled and run_every:
        upcoming, overdue = next_run(entry.last_run_at, run_every, now or datetime.now(UTC))
    elif entry.enabled:  # not an interval (a crontab set by hand): RedBeat's estimate
        upcoming = entry.due_at
    return {
        "name": entry.name,
        "task": entry.task,
        "kwargs": entry.kwargs,
        "enabled": entry.enabled,
        "every_secs": int(run_every.total_seconds()) if run_every else None,
        "last_run_at": _iso(entry.last_run_at),
        "next_run_at": _iso(upcoming),
        "due_since": _iso(overdue),
        "total_run_count": entry.total_run_count,
    }


def set_schedule(every_secs: int, celery_app: Celery) -> dict[str, Any]:
    """Run the namespace's pass every ``every_secs`` from now on (creating the entry)."""
    if every_secs < MIN_EVERY:
        raise ValueError(f"the interval must be at least {MIN_EVERY}s")
    target = celery_app
    config = dream_config(target)
    entry = _load(target, _name(config))
    if entry is None:
        entry = _entry(target, every_secs, config)
    else:
        entry.schedule = every(timedelta(seconds=every_secs))
        entry.options = {**(entry.options or {}), "expires": every_secs}
    entry.save()  # keeps last_run_at, re-scores the entry for the new interval
    result = get_schedule(target)
    assert result is not None
    return result
