"""One thread per process re-arms the lock of every pass running in it.

A thread of its own per pass cost an idle pass a thread start (about a third of a
millisecond, a tenth of the pass); this one starts once per process (again in a forked
pool process) and sleeps until the next lock is due, every third of its TTL.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from typing import Protocol

__all__ = ["KEEPALIVE", "Keepalive"]

log = logging.getLogger("car_dream.lock")


class Extendable(Protocol):
    ttl: int

    def extend(self) -> bool: ...


class Keepalive:
    """Extends each lock :meth:`add`-ed every ``ttl / 3`` seconds until :meth:`remove`,
    or until an extension finds it lost."""

    def __init__(self) -> None:
        self._keys = itertools.count()
        self._reset()

    def _reset(self) -> None:
        """A fresh state: at start, and in a forked child (the thread is the parent's, and
        its condition may have been held by it at the fork)."""
        self._cond = threading.Condition()
        self._due: dict[int, tuple[Extendable, float]] = {}  # key -> (lock, next time)
        self._busy: int | None = None  # the key being extended now
        self._pid: int | None = None
        self._thread: threading.Thread | None = None

    def add(self, lock: Extendable) -> int:
        with self._cond:
            thread = self._thread
            if thread is None or self._pid != os.getpid() or not thread.is_alive():
                self._pid = os.getpid()
                self._busy = None
                thread = threading.Thread(target=self._run, name="car-dream-keepalive")
                thread.daemon = True
                thread.start()
                self._thread = thread
            key = next(self._keys)
            self._due[key] = (lock, time.monotonic() + lock.ttl / 3)
            self._cond.notify_all()
            return key

    def remove(self, key: int) -> None:
        """Stop extending; returns once no extension of that lock is under way (or 5 s)."""
        with self._cond:
            self._due.pop(key, None)
            self._cond.wait_for(lambda: self._busy != key, timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                key = min(self._due, key=lambda k: self._due[k][1], default=None)
                if key is None or self._due[key][1] > now:
                    self._cond.wait(None if key is None else self._due[key][1] - now)
                    continue
                lock = self._due[key][0]
                self._due[key] = (lock, now + lock.ttl / 3)
                self._busy = key
            try:
                alive = lock.extend()
            except Exception as exc:  # a blip: fencing still protects the data
                log.warning("car-dream: lock keepalive failed: %s", exc)
                alive = True
            with self._cond:
                if not alive:
                    self._due.pop(key, None)
                self._busy = None
                self._cond.notify_all()


KEEPALIVE = Keepalive()
os.register_at_fork(after_in_child=KEEPALIVE._reset)
