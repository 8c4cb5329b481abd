"""The namespace lock: ``SET NX EX`` with a random token, fenced and kept alive.

Its value is ``running:<token>`` while a pass runs and ``done:<token>`` for the rest
of the window after a completed pass, so a trigger can tell "running" from
"consolidated recently". Every change compares the token first. This module owns that
format: it builds and parses the value, here, in its scripts below and in the rules
of ``lua/lock.lua`` that the scripts beginning and ending a pass share; the fence of
the destructive scripts (``lib.lua``) gets :data:`RUNNING` from here. The pause flag
is set and cleared here too.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from .keepalive import KEEPALIVE
from .keys import Keys
from .lua_files import lua
from .registry import PerClient

__all__ = [
    "DONE",
    "RUNNING",
    "Acquired",
    "LockState",
    "PassLock",
    "lock_script",
    "lock_state",
    "pause",
    "queue_lock_state",
    "request_cancel",
    "resume",
]

log = logging.getLogger(__name__)

Outcome = Literal["acquired", "coalesced", "running", "paused"]

RUNNING = "running:"  # + token: a pass holds the lock
DONE = "done:"  # + token: that pass completed; the window stays closed until the TTL

# The lock scripts, each after this prelude. held(v, prefix) is the token of a lock
# value v of that state, or nil.
_FORMAT = f"""
local RUNNING, DONE = '{RUNNING}', '{DONE}'
local function held(v, prefix)
  if v and string.sub(v, 1, #prefix) == prefix then return string.sub(v, #prefix + 1) end
  return nil
end
"""

# The rules of acquire and finish are functions in car_dream/lua/lock.lua, shared with
# the scripts that begin and end a pass; lock_script() assembles such a script.
_RULES = _FORMAT + lua("lock")

# KEYS: lock, paused. ARGV: token, ttl_secs, force (0/1), takeover|'', ignore_pause (0/1).
ACQUIRE = _RULES + "return acquire(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])"

# KEYS: lock, cancel. ARGV: token, ttl_ms. 0 lost, 1 extended, 2 extended but cancelled.
EXTEND = (
    _FORMAT
    + r"""
if held(redis.call('GET', KEYS[1]), RUNNING) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[1] then return 2 end
return 1
"""
)

# KEYS: lock. ARGV: token, ttl_secs. Marks the window "consolidated recently".
FINISH = _RULES + "return finish(KEYS[1], ARGV[1], ARGV[2])"

# KEYS: lock. ARGV: token. Deletes the lock only if this token holds it.
RELEASE = (
    _FORMAT
    + r"""
local v = redis.call('GET', KEYS[1])
if held(v, RUNNING) == ARGV[1] or held(v, DONE) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""
)

# KEYS: lock, cancel. ARGV: ttl_secs. Asks the running pass to stop; returns its token.
REQUEST_CANCEL = (
    _FORMAT
    + r"""
local tok = held(redis.call('GET', KEYS[1]), RUNNING)
if not tok then return false end
redis.call('SET', KEYS[2], tok, 'EX', ARGV[1])
return tok
"""
)


def lock_script(name: str) -> str:
    """The script ``car_dream/lua/<name>.lua`` after the lock's format and rules: it may
    call ``acquire`` and ``finish`` of ``lock.lua``."""
    return _RULES + lua(name)


class _Scripts(PerClient):
    def __init__(self, client: Any) -> None:
        self.acquire = client.register_script(ACQUIRE)
        self.extend = client.register_script(EXTEND)
        self.finish = client.register_script(FINISH)
        self.release = client.register_script(RELEASE)
        self.request_cancel = client.register_script(REQUEST_CANCEL)


@dataclass(frozen=True)
class Acquired:
    outcome: Outcome
    ttl_remaining: float | None  # seconds left on someone else's lock

    @property
    def ok(self) -> bool:
        return self.outcome == "acquired"

    @classmethod
    def from_reply(cls, outcome: bytes | str, pttl: int | bytes) -> Acquired:
        """From ``acquire``'s reply ``{outcome, pttl}``."""
        ms = int(pttl)
        text = outcome.decode() if isinstance(outcome, bytes) else outcome
        return cls(text, ms / 1000 if ms > 0 else None)  # type: ignore[arg-type]


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
        self.scripts = _Scripts.of(client)
        self.lost = threading.Event()
        self.cancelled = threading.Event()

    def acquire(
        self, *, force: bool = False, takeover: bool = False, ignore_pause: bool = False
    ) -> Acquired:
        """Take the lock. ``force`` also takes it over a "done" window; ``takeover`` over
        this token's own "done" (a trailing pass); ``ignore_pause`` even while paused
        (``check --repair``). Never beside a running pass."""
        reply = self.scripts.acquire(
            keys=[self.keys.lock, self.keys.paused],
            args=self.acquire_args(force=force, takeover=takeover, ignore_pause=ignore_pause),
        )
        return Acquired.from_reply(reply[0], reply[1])

    def acquire_args(
        self, *, force: bool = False, takeover: bool = False, ignore_pause: bool = False
    ) -> list[Any]:
        """ARGV[1..5] of ``acquire`` in ``lock.lua`` (KEYS: lock, paused), for
        :func:`lock_script` scripts that take the lock too."""
        return [self.token, self.ttl, int(force), self.token if takeover else "", int(ignore_pause)]

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
        """Extend the lock every third of its TTL while the body runs (the process's
        keepalive thread, :mod:`car_dream.keepalive`)."""
        key = KEEPALIVE.add(self)
        try:
            yield
        finally:
            KEEPALIVE.remove(key)


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
        ttl = int(pttl) / 1000 if int(pttl) > 0 else None
        text = value.decode()
        if text.startswith(DONE):
            return LockState("done", text.removeprefix(DONE), ttl, bool(paused))
        # Held, by a pass or by a value of unknown form: nothing may run beside it.
        return LockState("running", text.removeprefix(RUNNING), ttl, bool(paused))

    return read


def request_cancel(client: Any, keys: Keys, ttl: int) -> str | None:
    """Ask the running pass to stop between batches; returns its token, or None."""
    token = _Scripts.of(client).request_cancel(keys=[keys.lock, keys.cancel], args=[max(ttl, 1)])
    return token.decode() if token else None


def pause(client: Any, keys: Keys) -> None:
    """Skip every pass of the namespace (reason ``paused``) until :func:`resume`."""
    client.set(keys.paused, repr(time.time()))


def resume(client: Any, keys: Keys) -> bool:
    """Let passes run again; False if the namespace was not paused."""
    return bool(client.delete(keys.paused))
