"""The beat scheduler: RedBeat, made to outlive a Redis outage.

Plain RedBeat extends its lock at the start of every tick and lets any Redis error
escape, so ``celery beat`` exits the moment Redis goes away (and a beat whose lock
expired meanwhile exits with ``LockNotOwnedError`` when it comes back); it also reads
Redis while it starts, so a beat started before Redis exits at once. This scheduler
instead skips the ticks Redis cannot serve, does what start-up could not (RedBeat's
set-up, car-dream's schedule entry) in the first tick Redis answers, and takes its
lock in its ticks, without blocking: whichever beat holds it sends, the others stand
by and try again each tick.

It serves any Celery app, not only car-dream's own: what it needs it reads from the
app's RedBeat settings, as RedBeat does, and it touches Redis only where RedBeat would.
car-dream's own settings matter only on an app that runs car-dream's tasks: there it
creates car-dream's entry (unless ``beat_schedule`` already has one for them).

Deliberate differences from RedBeat (tests/test_beat_any_app.py checks them): a tick
without the lock takes it, or stands by, where RedBeat's raises AttributeError; the
lock is taken in the ticks, not at ``beat_init`` (which blocks until it has it); a
Redis error or a lost lock makes a tick stand by, where RedBeat's raises; start-up with
Redis away is finished in the first tick that reaches it.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery.signals import beat_init
from redbeat.schedulers import (
    LUA_EXTEND_TO_SCRIPT,
    RedBeatScheduler,
    acquire_distributed_beat_lock,
    get_redis,
)

from .celery_config import is_own, preflight
from .config import mask_url
from .connection import certificate_error
from .schedule import ensure_dream_task
from .tasks import DISPATCH_TASK_NAME, TASK_NAME

__all__ = ["DreamScheduler"]

log = logging.getLogger(__name__)

_OUTAGE = (redis.ConnectionError, redis.TimeoutError)


class DreamScheduler(RedBeatScheduler):  # type: ignore[misc]
    """RedBeat that survives Redis going away and coming back."""

    _redis_down = False
    _set_up = False  # RedBeat's set-up (it reads Redis) is done
    _entry_ensured = False  # car-dream's beat entry exists
    lock: Any = None  # taken in the first tick that can

    def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
        if is_own(app):  # car-dream's settings, and its Redis's credentials, checked first
            # Beat writes no memory: an evicting memory Redis is the worker's to refuse.
            preflight(app, refuse_eviction=False)
        super().__init__(app, *args, **kwargs)

    def setup_schedule(self) -> None:
        try:
            super().setup_schedule()
        except _OUTAGE as exc:  # called from __init__: done again in the first tick
            self._refused(exc)
            self._outage(exc)
        else:
            self._set_up = True

    def _refused(self, exc: BaseException) -> None:
        """Stop beat if Redis refused the credentials or the certificate: unlike an
        outage, retrying never helps (redis-py's AuthenticationError is a ConnectionError)."""
        reason = certificate_error(exc)
        if reason is None and not isinstance(exc, redis.AuthenticationError):
            return
        url = mask_url(self.app.redbeat_conf.redis_url)
        what = "CAR_DREAM_REDIS_URL" if is_own(self.app) else "redbeat_redis_url"
        message = f"beat: {what}: Redis at {url} refused us ({reason or exc})"
        log.critical(message)
        raise SystemExit(message) from None

    def _wants_dream_entry(self) -> bool:
        """car-dream's entry belongs on this schedule if the app runs car-dream's tasks and
        its static ``beat_schedule`` does not send them already."""
        if TASK_NAME not in self.app.tasks:
            return False
        static = self.app.conf.beat_schedule or {}
        ours = (TASK_NAME, DISPATCH_TASK_NAME)
        return not any(entry.get("task") in ours for entry in static.values())

    def _catch_up(self) -> None:
        """What start-up could not do while Redis was away."""
        if not self._set_up:
            try:
                super().setup_schedule()
            except _OUTAGE as exc:
                self._refused(exc)
                raise
            self._set_up = True
        if not self._entry_ensured and self._wants_dream_entry():
            try:
                ensure_dream_task(self.app)
            except _OUTAGE:
                raise
            except Exception:  # beat still runs whatever is scheduled already
                log.exception("car-dream: could not ensure the dream schedule entry")
            self._entry_ensured = True

    def _outage(self, exc: BaseException) -> None:
        if not self._redis_down:
            log.warning(
                "beat: Redis %s unreachable (%s); retrying every %ss",
                mask_url(self.app.redbeat_conf.redis_url),
                exc,
                self.max_interval,
            )
        self._redis_down = True

    def _new_lock(self) -> Any:
        client = get_redis(self.app)
        lock = client.lock(self.lock_key, timeout=self.lock_timeout, sleep=self.max_interval)
        lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)
        return lock

    def _holds_lock(self) -> bool:
        """Make sure this beat holds the RedBeat lock (without blocking); False: stand by."""
        if not self.lock_key:
            return True
        if self.lock is None:  # lost, or never taken because Redis was down at start
            lock = self._new_lock()
            if not lock.acquire(blocking=False):
                return False
            self.lock = lock
            log.info("beat: Acquired lock")
        return True

    def tick(self, min: Any = min, **kwargs: Any) -> Any:
        try:
            self._catch_up()
            if not self._holds_lock():
                return self.max_interval
            interval = super().tick(min=min, **kwargs)
        except redis.exceptions.LockError as exc:
            log.warning("beat: lost the RedBeat lock (%s); standing by", exc)
            self.lock = None
            return self.max_interval
        except _OUTAGE as exc:
            self._outage(exc)
            return self.max_interval
        if self._redis_down:
            log.info("beat: Redis is back")
            self._redis_down = False
        return interval

    def close(self) -> None:
        try:
            super().close()
        except _OUTAGE as exc:  # shutting down while Redis is away: the lock's TTL frees it
            log.warning("beat: could not release the RedBeat lock: %s", exc)


def _take_lock_at_start(sender: Any = None, **kwargs: Any) -> None:
    # RedBeat's own receiver blocks until it has the lock, and fails when Redis is not
    # there yet; a DreamScheduler takes the lock in its ticks instead.
    if isinstance(getattr(sender, "scheduler", None), DreamScheduler):
        return
    acquire_distributed_beat_lock(sender, **kwargs)


beat_init.disconnect(acquire_distributed_beat_lock)
beat_init.connect(_take_lock_at_start, weak=False)
