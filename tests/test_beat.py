"""DreamScheduler.tick on its own (fakeredis): a Redis outage and a lost RedBeat lock.

RedBeat's own tick (the parent) is replaced by a script of outcomes; the lock is a real
redis-py lock on fakeredis, extended the way RedBeat's tick extends it, so losing it
raises the LockNotOwnedError a real beat meets.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import fakeredis
import pytest
import redis
from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT, RedBeatScheduler

from car_dream import beat
from car_dream.beat import DreamScheduler

LOCK_KEY = "car-dream:redbeat::lock"
MAX_INTERVAL = 5
URL = "redis://:s3cret-pw@127.0.0.1:6379/0"


class ParentTick:
    """Stands in for RedBeatScheduler.tick: extends the lock first, as it does, then
    plays the next outcome (a value to return or an exception to raise)."""

    def __init__(self) -> None:
        self.outcomes: list[Any] = []
        self.calls = 0

    def __call__(self, scheduler: DreamScheduler, min: Any = min, **kwargs: Any) -> Any:
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        scheduler.lock.extend(int(scheduler.lock_timeout))
        return outcome


@pytest.fixture
def parent(monkeypatch: pytest.MonkeyPatch) -> ParentTick:
    tick = ParentTick()
    # A function, so that it binds to the scheduler as the method it replaces.
    monkeypatch.setattr(RedBeatScheduler, "tick", lambda self, **kw: tick(self, **kw))
    return tick


@pytest.fixture
def scheduler(fake: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch) -> DreamScheduler:
    """A scheduler holding the RedBeat lock, built without start-up (which reads Redis)."""
    monkeypatch.setattr(beat, "get_redis", lambda app: fake)
    s = DreamScheduler.__new__(DreamScheduler)
    s.app = SimpleNamespace(redbeat_conf=SimpleNamespace(redis_url=URL))
    s.lock_key, s.lock_timeout, s.max_interval = LOCK_KEY, 25, MAX_INTERVAL
    s._set_up = s._entry_ensured = True  # start-up got that far: Redis answered then
    s.lock = s._new_lock()
    assert s.lock.acquire(blocking=False)
    return s


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def test_tick_waits_out_a_redis_outage_and_logs_it_once(
    scheduler: DreamScheduler, parent: ParentTick, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="car_dream.beat")
    lock = scheduler.lock
    down = [redis.ConnectionError("refused"), redis.TimeoutError("timed out")]
    parent.outcomes = [*down, redis.ConnectionError("refused"), 3.0, down[0], 4.0]
    got = [scheduler.tick() for _ in range(6)]
    # Down: retry after max_interval; back: the parent's own interval.
    assert got == [MAX_INTERVAL, MAX_INTERVAL, MAX_INTERVAL, 3.0, MAX_INTERVAL, 4.0]
    warned = messages(caplog, "unreachable")
    assert len(warned) == 2  # once per outage, not once per tick
    assert all("redis://:***@127.0.0.1:6379/0" in m and "s3cret" not in m for m in warned)
    assert len(messages(caplog, "Redis is back")) == 2
    assert scheduler.lock is lock  # an outage does not give the lock up


def test_tick_stands_by_when_the_lock_is_lost_and_takes_it_back(
    scheduler: DreamScheduler,
    parent: ParentTick,
    fake: fakeredis.FakeRedis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="car_dream.beat")
    parent.outcomes = [2.0, 2.0]  # only ever played while this beat holds the lock
    assert scheduler.tick() == 2.0
    # The lock expired (say, Redis was away longer than its TTL) and another beat took it.
    fake.delete(LOCK_KEY)
    other = fake.lock(LOCK_KEY, timeout=25)
    other.lua_extend = fake.register_script(LUA_EXTEND_TO_SCRIPT)
    assert other.acquire(blocking=False)
    parent.outcomes.insert(0, None)  # the next parent tick gets as far as extending

    assert scheduler.tick() == MAX_INTERVAL  # LockNotOwnedError: stand by
    assert scheduler.lock is None
    assert len(messages(caplog, "lost the RedBeat lock")) == 1
    calls = parent.calls
    for _ in range(3):  # the other beat holds it: this one sends nothing, says nothing more
        assert scheduler.tick() == MAX_INTERVAL
    assert parent.calls == calls
    assert len(messages(caplog, "lost the RedBeat lock")) == 1
    assert not messages(caplog, "Acquired lock")

    other.release()  # the other beat went away: this one takes the lock back and sends
    assert scheduler.tick() == 2.0
    assert scheduler.lock is not None and scheduler.lock.owned()
    assert len(messages(caplog, "Acquired lock")) == 1
    assert parent.calls == calls + 1
