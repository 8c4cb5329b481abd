"""DreamScheduler on a Celery app car-dream did not configure, against a real Redis.

The behaviours RedBeat's own test suite checks (its schedule, its tick, update from a
dict, the lock timeout, the start-up lock), written for DreamScheduler: the same
outcomes as RedBeat's, except the deliberate differences its docstring lists, each
tested here as such (a tick without the lock, the lock taken in the ticks rather than
at ``beat_init``, Redis away at start-up). Messages go to the app's in-memory broker,
where the tests read them back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from celery import Celery
from celery.beat import DEFAULT_MAX_INTERVAL
from celery.schedules import schedule as every
from celery.signals import beat_init
from redbeat.schedulers import RedBeatScheduler, RedBeatSchedulerEntry, get_redis

import car_dream
from car_dream.beat import DreamScheduler
from car_dream.keys import DREAM_ENTRY_NAME
from car_dream.tasks import TASK_NAME

from .conftest import free_port
from .servers import RedisServer
from .test_security import secured  # noqa: F401

PREFIX = "their-beat:"


def their_app(redis_url: str, **conf: Any) -> Celery:
    """Someone else's app: an in-memory broker, RedBeat's settings, nothing of car-dream's."""
    app = Celery("someone-else", broker="memory://", set_as_current=False)
    app.conf.redbeat_redis_url = redis_url
    app.conf.redbeat_key_prefix = PREFIX
    app.conf.task_default_queue = f"their-queue-{uuid.uuid4().hex[:8]}"
    app.conf.update(conf)
    return app


@pytest.fixture
def app(redis_url: str, db: redis.Redis) -> Iterator[Celery]:
    # CAR_DREAM_* nonsense: a scheduler that read car-dream's settings would fail on it.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CAR_DREAM_INTERVAL_SECS", "nonsense")
        yield their_app(redis_url)


@pytest.fixture
def scheduler(app: Celery) -> Iterator[DreamScheduler]:
    s = DreamScheduler(app=app)
    yield s
    s.close()


def add(app: Celery, name: str, every_secs: float, ran_ago: float, **kw: Any) -> Any:
    """Save an entry that last ran ``ran_ago`` seconds ago (due when that exceeds every_secs)."""
    last = datetime.now(UTC) - timedelta(seconds=ran_ago)
    task = kw.pop("task", f"their.{name}")
    entry = RedBeatSchedulerEntry(
        name, task, every(timedelta(seconds=every_secs)), app=app, last_run_at=last, **kw
    )
    return entry.save()


def sent(app: Celery) -> list[tuple[str, str, str]]:
    """The messages beat sent so far: (task, argsrepr, kwargsrepr), each read once."""
    out = []
    with app.connection_for_read() as conn:
        queue = conn.SimpleQueue(app.conf.task_default_queue, no_ack=True)
        while True:
            try:
                msg = queue.get(timeout=0.2)
            except queue.Empty:
                break
            h = msg.headers
            out.append((h["task"], h["argsrepr"], h["kwargsrepr"]))
        queue.close()
    return out


# -- the schedule ----------------------------------------------------------------------


def test_a_new_schedule_is_empty(scheduler: DreamScheduler) -> None:
    assert scheduler.schedule == {}


def test_the_schedule_holds_the_due_entries_and_the_next_one(
    app: Celery, scheduler: DreamScheduler
) -> None:
    assert scheduler.max_interval == DEFAULT_MAX_INTERVAL  # 300s: wide margins below
    # Just ran (RedBeat scores an entry at last_run_at + the time remaining from now).
    due = add(app, "due", 60, ran_ago=120)
    soon = add(app, "soon", 100, ran_ago=0)  # due in 100s
    after = add(app, "after", 150, ran_ago=0)  # due in 150s: not the next one
    later = add(app, "later", 5000, ran_ago=0)  # beyond max_interval
    got = scheduler.schedule
    assert sorted(got) == ["due", "soon"]
    assert got["due"].key == due.key and got["soon"].key == soon.key
    assert after.name not in got and later.name not in got


def test_an_entry_whose_definition_vanished_is_dropped_from_the_schedule(
    app: Celery, scheduler: DreamScheduler
) -> None:
    due = add(app, "due", 60, ran_ago=120)
    get_redis(app).delete(due.key)  # evicted, say, while the sorted set kept its member
    assert scheduler.schedule == {}
    assert due.key not in get_redis(app).zrange(app.redbeat_conf.schedule_key, 0, -1)


# -- the tick --------------------------------------------------------------------------


def test_a_tick_on_an_empty_schedule_sends_nothing(app: Celery, scheduler: DreamScheduler) -> None:
    assert scheduler.tick() == scheduler.max_interval
    assert sent(app) == []


def test_a_tick_sends_a_due_entry_and_sleeps_until_its_next_run(
    app: Celery, scheduler: DreamScheduler
) -> None:
    add(app, "now", 60, ran_ago=61, args=[1, 2], kwargs={"x": "y"})
    sleep = scheduler.tick()
    assert sent(app) == [("their.now", "[1, 2]", "{'x': 'y'}")]
    assert 55 <= sleep <= 60  # sent now: next in one interval
    assert scheduler.tick() == pytest.approx(sleep, abs=5)
    assert sent(app) == []  # once


def test_a_tick_waits_for_an_entry_due_soon(app: Celery, scheduler: DreamScheduler) -> None:
    add(app, "soon", 100, ran_ago=0)
    sleep = scheduler.tick()
    assert sent(app) == []
    assert 90 < sleep <= 100


def test_a_tick_ignores_an_entry_due_after_max_interval(
    app: Celery, scheduler: DreamScheduler
) -> None:
    add(app, "later", scheduler.max_interval * 10, ran_ago=0)
    assert scheduler.tick() == scheduler.max_interval
    assert sent(app) == []


def test_static_entries_removed_from_beat_schedule_leave_redis(app: Celery) -> None:
    app.conf.beat_schedule = {"static": {"task": "their.static", "schedule": 42}}
    DreamScheduler(app=app).close()  # its set-up stores the static entries
    client = get_redis(app)
    assert "static" in client.smembers(app.redbeat_conf.statics_key)
    assert client.exists(PREFIX + "static")
    app.conf.beat_schedule = {}
    s = DreamScheduler(app=app)
    assert "static" not in s.schedule
    assert not client.smembers(app.redbeat_conf.statics_key)
    assert not client.exists(PREFIX + "static")
    s.close()


# -- update from a dict ----------------------------------------------------------------


def test_update_from_dict_keeps_when_an_existing_entry_last_ran(
    app: Celery, scheduler: DreamScheduler
) -> None:
    old = add(app, "job", 60, ran_ago=30)
    scheduler.update_from_dict({"job": {"task": "their.job2", "schedule": timedelta(seconds=90)}})
    got = RedBeatSchedulerEntry.from_key(old.key, app=app)
    assert got.task == "their.job2" and got.schedule.run_every == timedelta(seconds=90)
    assert abs((got.last_run_at - old.last_run_at).total_seconds()) < 0.01


def test_update_from_dict_saves_a_new_entry(app: Celery, scheduler: DreamScheduler) -> None:
    scheduler.update_from_dict({"new": {"task": "their.new", "schedule": timedelta(seconds=30)}})
    got = RedBeatSchedulerEntry.from_key(PREFIX + "new", app=app)
    assert got.task == "their.new" and got.schedule.run_every == timedelta(seconds=30)


def test_update_from_dict_skips_an_entry_it_cannot_read(
    app: Celery, scheduler: DreamScheduler
) -> None:
    scheduler.update_from_dict(
        {
            "bad": {"task": "their.bad", "schedule": "every tuesday"},
            "good": {"task": "their.good", "schedule": 30},
        }
    )
    assert get_redis(app).exists(PREFIX + "good") and not get_redis(app).exists(PREFIX + "bad")


# -- the lock --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conf", "max_interval", "lock_timeout"),
    [
        ({}, DEFAULT_MAX_INTERVAL, DEFAULT_MAX_INTERVAL * 5),
        ({"beat_max_loop_interval": 5}, 5, 25),
        ({"beat_max_loop_interval": 7, "redbeat_lock_timeout": 13}, 7, 13),
    ],
)
def test_the_lock_timeout_is_five_ticks_unless_set(
    redis_url: str, conf: dict[str, Any], max_interval: int, lock_timeout: int
) -> None:
    s = DreamScheduler(app=their_app(redis_url, **conf))
    assert (s.max_interval, s.lock_timeout) == (max_interval, lock_timeout)
    s.close()


class _Service:
    """Stands for ``celery.beat.Service``, the sender of beat_init."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler, self.app = scheduler, scheduler.app


def _beat_started(s: Any) -> None:
    """What ``celery beat`` does once its scheduler exists: send beat_init."""
    beat_init.send(sender=_Service(s))


def test_difference_the_lock_is_taken_in_the_first_tick_not_at_beat_init(
    app: Celery, scheduler: DreamScheduler
) -> None:
    # RedBeat's beat_init receiver blocks until it holds the lock; DreamScheduler's ticks take it.
    _beat_started(scheduler)
    assert scheduler.lock is None and not get_redis(app).exists(scheduler.lock_key)
    add(app, "now", 60, ran_ago=61)
    scheduler.tick()
    assert scheduler.lock is not None and scheduler.lock.owned()
    assert [t for t, _, _ in sent(app)] == ["their.now"]


def test_a_plain_redbeat_still_takes_the_lock_at_beat_init(app: Celery) -> None:
    s = RedBeatScheduler(app=app)
    _beat_started(s)
    assert s.lock is not None and s.lock.owned()
    s.close()


def test_difference_a_tick_without_the_lock_stands_by_while_another_beat_holds_it(
    app: Celery, scheduler: DreamScheduler
) -> None:
    # RedBeat: AttributeError ('NoneType' object has no attribute 'extend').
    other = get_redis(app).lock(scheduler.lock_key, timeout=60)
    assert other.acquire(blocking=False)
    add(app, "now", 60, ran_ago=61)
    assert scheduler.tick() == scheduler.max_interval
    assert scheduler.lock is None and sent(app) == []
    other.release()
    scheduler.tick()
    assert scheduler.lock is not None and [t for t, _, _ in sent(app)] == ["their.now"]


def test_a_tick_extends_the_lock_to_its_timeout(app: Celery, scheduler: DreamScheduler) -> None:
    scheduler.tick()
    client = get_redis(app)
    client.pexpire(scheduler.lock_key, 5000)
    scheduler.tick()
    assert client.pttl(scheduler.lock_key) > 5000


def test_close_releases_the_lock(app: Celery, scheduler: DreamScheduler) -> None:
    scheduler.tick()
    assert get_redis(app).exists(scheduler.lock_key)
    scheduler.close()
    assert scheduler.lock is None and not get_redis(app).exists(scheduler.lock_key)


def test_difference_redis_away_at_start_up_is_waited_for(tmp_path: Any) -> None:
    # RedBeat: ConnectionError from the constructor (its set-up) and from beat_init.
    server = RedisServer(tmp_path / "redis")  # its port, nothing listening yet
    app = their_app(server.url, beat_max_loop_interval=1)
    app.conf.beat_schedule = {"static": {"task": "their.static", "schedule": 1}}
    s = DreamScheduler(app=app)
    _beat_started(s)
    assert s.tick() == 1 and s.lock is None
    server.start()
    try:
        s.tick()  # set-up done now, lock taken
        assert s.lock is not None and s.lock.owned()
        assert server.client().exists(PREFIX + "static")
        s.close()
    finally:
        server.stop()


# -- what car-dream adds, on someone else's app ------------------------------------------


def test_no_car_dream_entry_on_an_app_without_car_dream(
    app: Celery, scheduler: DreamScheduler, db: redis.Redis
) -> None:
    scheduler.tick()
    assert not get_redis(app).exists(PREFIX + DREAM_ENTRY_NAME)


def test_an_app_with_car_dream_installed_gets_its_entry(
    redis_url: str, db: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAR_DREAM_INTERVAL_SECS", "90")
    app = their_app(redis_url)
    car_dream.install(app)
    s = DreamScheduler(app=app)
    s.tick()
    entry = RedBeatSchedulerEntry.from_key(PREFIX + DREAM_ENTRY_NAME, app=app)
    assert entry.task == TASK_NAME and entry.schedule.run_every == timedelta(seconds=90)
    s.close()


def test_a_static_entry_for_car_dream_is_the_only_one(
    redis_url: str, db: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = their_app(redis_url)
    car_dream.install(app)
    app.conf.beat_schedule = {"dream": car_dream.beat_entry()}
    s = DreamScheduler(app=app)
    s.tick()
    client = get_redis(app)
    assert client.exists(PREFIX + "dream") and not client.exists(PREFIX + DREAM_ENTRY_NAME)
    s.close()


def test_refused_credentials_stop_beat_naming_the_setting(
    secured: RedisServer,  # noqa: F811
) -> None:
    # redis-py's AuthenticationError is a ConnectionError: not an outage to wait out.
    url = f"redis://:wrong-pw@127.0.0.1:{secured.port}/0"
    with pytest.raises(SystemExit) as stop:
        DreamScheduler(app=their_app(url))
    assert "redbeat_redis_url" in str(stop.value) and "wrong-pw" not in str(stop.value)


def test_a_port_nobody_listens_on_is_an_outage_not_a_refusal() -> None:
    app = their_app(f"redis://127.0.0.1:{free_port()}/0", beat_max_loop_interval=2)
    s = DreamScheduler(app=app)
    assert s.tick() == 2
