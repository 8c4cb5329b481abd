"""The namespace lock: ``SET NX EX`` with a random token, fenced and kept alive.

Its value is ``running:<token>`` while a pass runs and ``done:<token>`` for the rest
of the window after a completed pass, so a trigger can tell "running" from
"consolidated recently". Every change compares the token first.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from .keys import Keys
from .scripts import Scripts

__all__ = ["Acquired", "LockState", "PassLock", "lock_state", "queue_lock_state", "request_cancel"]

log = logging.getLogger(__name__)

Outcome = Literal["acquired", "coalesced", "running", "paused"]


@dataclass(frozen=True)
class Acquired:
    outcome: Outcome
    ttl_remaining: float | None  # seconds left on someone else's lock

    @property
    def ok(self) -> bool:
        return self.outcome == "acquired"


@dataclass(frozen=True)
class LockState:
    state: Literal["free", "running", "done"]
    token: str | None
    ttl: float | None
    paused: bool


class PassLock:
    """The lock one pass holds; ``token`` is reused when a trailing pass takes over."""

    def __init__(self, client: Any, keys: Keys, ttl: int, token: str | None = None) -> None:
        self.client = client
        self.keys = keys
        self.ttl = max(int(ttl), 1)
        self.token = token or secrets.token_hex(16)
        self.scripts = Scripts.of(client)
        self.lost = threading.Event()
        self.cancelled = threading.Event()

    def acquire(self, *, force: bool = False, takeover: bool = False) -> Acquired:
        outcome, pttl = self.scripts.acquire(
            keys=[self.keys.lock, self.keys.paused],
            args=[self.token, self.ttl, int(force), self.token if takeover else ""],
        )
        pttl = int(pttl)
        return Acquired(outcome.decode(), pttl / 1000 if pttl > 0 else None)

    def extend(self) -> bool:
        """Re-arm the TTL while running; notes loss and cancellation. False if lost."""
        reply = int(
            self.scripts.extend(
                keys=[self.keys.lock, self.keys.cancel], args=[self.token, self.ttl * 1000]
            )
        )
        if reply == 0:
            self.lost.set()
        elif reply == 2:
            self.cancelled.set()
        return reply != 0

    def finish(self) -> bool:
        """Mark the window "consolidated recently" for a full TTL. False if lost."""
        return bool(self.scripts.finish(keys=[self.keys.lock], args=[self.token, self.ttl]))

    def release(self) -> bool:
        return bool(self.scripts.release(keys=[self.keys.lock], args=[self.token]))

    @contextlib.contextmanager
    def keepalive(self) -> Iterator[None]:
        """Extend the lock every third of its TTL from a daemon thread while the body runs."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.ttl / 3):
                try:
                    if not self.extend():
                        return
                except Exception as exc:  # a blip: fencing still protects the data
                    log.warning("car-dream: lock keepalive failed: %s", exc)

        thread = threading.Thread(target=beat, name=f"car-dream-lock-{self.keys.namespace}")
        thread.daemon = True
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)


def lock_state(client: Any, keys: Keys) -> LockState:
    pipe = client.pipeline(transaction=False)
    read = queue_lock_state(pipe, keys)
    return read(pipe.execute())


def queue_lock_state(pipe: Any, keys: Keys) -> Callable[[list[Any]], LockState]:
    """Queue the reads of :func:`lock_state` on ``pipe`` (to share its round trip);
    returns what turns their replies, in order, into the state."""
    pipe.get(keys.lock)
    pipe.pttl(keys.lock)
    pipe.exists(keys.paused)

    def read(replies: list[Any]) -> LockState:
        value, pttl, paused = replies
        if value is None:
            return LockState("free", None, None, bool(paused))
        state, _, token = value.decode().partition(":")
        ttl = int(pttl) / 1000 if int(pttl) > 0 else None
        return LockState(
            state if state in ("running", "done") else "running", token, ttl, bool(paused)
        )  # type: ignore[arg-type]

    return read


def request_cancel(client: Any, keys: Keys, ttl: int) -> str | None:
    """Ask the running pass to stop between batches; returns its token, or None."""
    token = Scripts.of(client).request_cancel(keys=[keys.lock, keys.cancel], args=[max(ttl, 1)])
    return token.decode() if token else None
