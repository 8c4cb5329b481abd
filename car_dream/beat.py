"""The beat scheduler: RedBeat, made to outlive a Redis outage.

Plain RedBeat extends its lock at the start of every tick and lets any Redis error
escape, so ``celery beat`` exits the moment Redis goes away (and a beat whose lock
expired meanwhile exits with ``LockNotOwnedError`` when it comes back). This
scheduler instead skips the ticks Redis cannot serve, and when its lock is gone it
stands by, trying each tick to take the lock again without blocking: whichever beat
holds it sends, the others wait, exactly as at start-up.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT, RedBeatScheduler, get_redis

from .config import mask_url

__all__ = ["DreamScheduler"]

log = logging.getLogger(__name__)

_OUTAGE = (redis.ConnectionError, redis.TimeoutError)


class DreamScheduler(RedBeatScheduler):  # type: ignore[misc]
    """RedBeat that survives Redis going away and coming back."""

    _redis_down = False
    lock: Any = None  # RedBeat sets it at start-up (beat_init) when it gets the lock

    def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
        from .app import preflight  # RedBeat reads Redis while it sets up, before beat_init

        preflight(app)
        super().__init__(app, *args, **kwargs)

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
            if not self._holds_lock():
                return self.max_interval
            interval = super().tick(min=min, **kwargs)
        except redis.exceptions.LockError as exc:
            log.warning("beat: lost the RedBeat lock (%s); standing by", exc)
            self.lock = None
            return self.max_interval
        except _OUTAGE as exc:
            if not self._redis_down:
                log.warning(
                    "beat: Redis %s unreachable (%s); retrying every %ss",
                    mask_url(self.app.redbeat_conf.redis_url), exc, self.max_interval,
                )  # fmt: skip
            self._redis_down = True
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
