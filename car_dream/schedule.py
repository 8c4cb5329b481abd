"""The beat schedule, kept in Redis by RedBeat: create it once, show it, change it."""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timedelta
from typing import Any

from celery import Celery
from celery.schedules import schedule as every
from redbeat.decoder import RedBeatJSONEncoder
from redbeat.schedulers import RedBeatSchedulerEntry, ensure_conf
from redbeat.schedulers import get_redis as redbeat_redis

from .app import app as default_app
from .app import dream_config
from .keys import DREAM_ENTRY_NAME

__all__ = ["ensure_dream_task", "entry_name", "get_schedule", "parse_every", "set_schedule"]

log = logging.getLogger(__name__)

TASK_NAME = "car_dream.consolidate"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_EVERY = re.compile(r"(\d+)\s*([smhd])")
MIN_EVERY = 2


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


def _entry(celery_app: Celery, every_secs: int, namespace: str) -> RedBeatSchedulerEntry:
    return RedBeatSchedulerEntry(
        name=entry_name(namespace),
        task=TASK_NAME,
        schedule=every(timedelta(seconds=every_secs)),
        kwargs={"namespace": namespace},
        # A trigger still queued an interval later is stale: the next one replaces it.
        options={"expires": every_secs},
        app=celery_app,
    )


def ensure_dream_task(celery_app: Celery | None = None) -> bool:
    """Create the beat entry (every ``interval_secs``) unless it exists; True if created.

    Atomic (HSETNX on the definition), so beats starting together create it once.
    """
    target = celery_app or default_app
    config = dream_config(target)
    conf = ensure_conf(target)
    entry = _entry(target, config.interval_secs, config.namespace)
    definition = {
        "name": entry.name, "task": entry.task, "args": entry.args, "kwargs": entry.kwargs,
        "options": entry.options, "schedule": entry.schedule, "enabled": True,
    }  # fmt: skip
    client = redbeat_redis(target)
    if client.hsetnx(entry.key, "definition", json.dumps(definition, cls=RedBeatJSONEncoder)):
        with client.pipeline() as pipe:
            pipe.hsetnx(entry.key, "meta", json.dumps({"last_run_at": None}))
            pipe.zadd(conf.schedule_key, {entry.key: entry.score})
            pipe.execute()
        log.info("car-dream: created beat entry %r every %ss", entry.name, config.interval_secs)
        return True
    current = get_schedule(target)
    if current and current["every_secs"] != config.interval_secs:
        log.warning(
            "car-dream: beat entry %r runs every %ss, not CAR_DREAM_INTERVAL_SECS=%s; "
            "change it with `car-dream schedule set --every ...`",
            entry.name, current["every_secs"], config.interval_secs,
        )  # fmt: skip
    return False


def _load(target: Celery, namespace: str) -> RedBeatSchedulerEntry | None:
    ensure_conf(target)
    key = RedBeatSchedulerEntry.generate_key(target, entry_name(namespace))
    try:
        return RedBeatSchedulerEntry.from_key(key, app=target)
    except KeyError:
        return None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def get_schedule(celery_app: Celery | None = None) -> dict[str, Any] | None:
    """The namespace's beat entry as plain data, or None if there is none."""
    target = celery_app or default_app
    entry = _load(target, dream_config(target).namespace)
    if entry is None:
        return None
    run_every = getattr(entry.schedule, "run_every", None)
    return {
        "name": entry.name,
        "task": entry.task,
        "kwargs": entry.kwargs,
        "enabled": entry.enabled,
        "every_secs": int(run_every.total_seconds()) if run_every else None,
        "last_run_at": _iso(entry.last_run_at),
        "next_run_at": _iso(entry.due_at) if entry.enabled else None,
        "total_run_count": entry.total_run_count,
    }


def set_schedule(every_secs: int, celery_app: Celery | None = None) -> dict[str, Any]:
    """Run the namespace's pass every ``every_secs`` from now on (creating the entry)."""
    if every_secs < MIN_EVERY:
        raise ValueError(f"the interval must be at least {MIN_EVERY}s")
    target = celery_app or default_app
    namespace = dream_config(target).namespace
    entry = _load(target, namespace)
    if entry is None:
        entry = _entry(target, every_secs, namespace)
    else:
        entry.schedule = every(timedelta(seconds=every_secs))
        entry.options = {**(entry.options or {}), "expires": every_secs}
    entry.save()  # keeps last_run_at, re-scores the entry for the new interval
    result = get_schedule(target)
    assert result is not None
    return result
