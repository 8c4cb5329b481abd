"""The process's keepalive thread: every lock added is extended every third of its TTL,
until removed or found lost; an error is a blip, not the end (no Redis: stand-in locks)."""

from __future__ import annotations

import os
import threading

from car_dream.keepalive import Keepalive

from .conftest import wait_for


class StandIn:
    def __init__(self, ttl: float, answer: bool | Exception = True) -> None:
        self.ttl = ttl  # type: ignore[assignment]
        self.answer = answer
        self.calls = 0
        self.guard = threading.Lock()

    def extend(self) -> bool:
        with self.guard:
            self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_each_lock_is_extended_until_removed() -> None:
    keeper = Keepalive()
    a, b = StandIn(0.03), StandIn(0.06)
    ka, kb = keeper.add(a), keeper.add(b)
    wait_for(lambda: a.calls >= 3 and b.calls >= 3, timeout=20)
    keeper.remove(ka)
    stopped = a.calls
    seen = b.calls
    wait_for(lambda: b.calls >= seen + 3, timeout=20)
    assert a.calls == stopped  # nothing after remove() returned
    keeper.remove(kb)


def test_a_lost_lock_is_dropped_and_an_error_retried() -> None:
    keeper = Keepalive()
    lost, failing, alive = StandIn(0.03, False), StandIn(0.03, OSError("blip")), StandIn(0.03)
    keys = [keeper.add(x) for x in (lost, failing, alive)]
    wait_for(lambda: alive.calls >= 5 and failing.calls >= 5, timeout=20)
    assert lost.calls == 1
    for key in keys:
        keeper.remove(key)


def test_a_forked_child_starts_its_own_thread() -> None:
    keeper = Keepalive()
    parent = StandIn(0.03)
    key = keeper.add(parent)
    pid = os.fork()
    if pid == 0:  # the child: a fresh keeper state, and its own thread when it adds a lock
        code = 1
        try:
            keeper._reset()  # what os.register_at_fork does for the module's KEEPALIVE
            child = StandIn(0.03)
            keeper.add(child)
            wait_for(lambda: child.calls >= 2, timeout=20)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    wait_for(lambda: parent.calls >= 2, timeout=20)
    keeper.remove(key)
