"""The RedBeat entry: created once (even by beats starting together), shown, changed."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from redbeat.schedulers import RedBeatSchedulerEntry

from car_dream.cli_env import next_run_text
from car_dream.schedule import (
    ensure_dream_task,
    entry_name,
    get_schedule,
    next_run,
    parse_every,
    set_schedule,
)

from .celery_env import fresh_app


@pytest.mark.parametrize(
    ("text", "secs"),
    [("90s", 90), ("30m", 1800), ("1h", 3600), ("1h30m", 5400), ("2d", 172800), ("45", 45)],
)
def test_parse_every(text: str, secs: int) -> None:
    assert parse_every(text) == secs


@pytest.mark.parametrize("text", ["", "1x", "m", "1", "-5m", "1.5h", "1s"])
def test_parse_every_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_every(text)


def test_entry_name_per_namespace() -> None:
    assert entry_name("default") == "car-dream"
    assert entry_name("team-a") == "car-dream:team-a"


def test_beats_starting_together_create_the_entry_once(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = fresh_app(monkeypatch, redis_url, interval_secs=600)
    barrier = threading.Barrier(8)
    created: list[bool] = []

    def start() -> None:
        barrier.wait(5)
        created.append(ensure_dream_task(app))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(created) == [False] * 7 + [True]
    entry = get_schedule(app)
    assert entry is not None and entry["every_secs"] == 600
    assert entry["kwargs"] == {"namespace": "default"}
    assert entry["last_run_at"] is None  # due at once: the first pass runs on beat start


def test_set_schedule_changes_the_interval_and_keeps_the_entry(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = fresh_app(monkeypatch, redis_url, interval_secs=3600, namespace="team-a")
    assert get_schedule(app) is None
    entry = set_schedule(parse_every("30m"), app)  # creates it when absent
    assert entry["name"] == "car-dream:team-a" and entry["every_secs"] == 1800
    assert entry["kwargs"] == {"namespace": "team-a"}
    assert ensure_dream_task(app) is False
    assert set_schedule(90, app)["every_secs"] == 90
    assert get_schedule(app)["every_secs"] == 90  # type: ignore[index]
    with pytest.raises(ValueError):
        set_schedule(1, app)


LAST = datetime(2026, 11, 26, 19, 40, 33, tzinfo=UTC)


def test_next_run_is_the_last_run_plus_the_interval(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = fresh_app(monkeypatch, redis_url, interval_secs=3600)
    set_schedule(parse_every("30m"), app)
    # What beat does after sending: record the run.
    key = RedBeatSchedulerEntry.generate_key(app, entry_name("default"))
    RedBeatSchedulerEntry.from_key(key, app=app).reschedule(LAST)
    due = LAST + timedelta(minutes=30)
    # The same answer whenever it is asked (RedBeat's due_at moved back a second a second).
    for later in (10, 13, 600, 1799):
        entry = get_schedule(app, now=LAST + timedelta(seconds=later))
        assert entry is not None
        assert entry["next_run_at"] == due.isoformat() and entry["due_since"] is None
        assert next_run_text(entry) == due.isoformat()
    now = LAST + timedelta(seconds=2000)  # no beat ran it: overdue, it goes at the next tick
    entry = get_schedule(app, now=now)
    assert entry is not None
    assert entry["next_run_at"] == now.isoformat() and entry["due_since"] == due.isoformat()
    assert next_run_text(entry) == f"now (due since {due.isoformat()})"


def test_an_entry_that_never_ran_runs_now(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    app = fresh_app(monkeypatch, redis_url, interval_secs=600)
    ensure_dream_task(app)
    entry = get_schedule(app, now=LAST)
    assert entry is not None and entry["last_run_at"] is None
    assert entry["next_run_at"] == LAST.isoformat() and entry["due_since"] is None
    assert next_run_text(entry) == "now (never run)"


def test_next_run_reads_a_naive_last_run_as_utc() -> None:
    naive = LAST.replace(tzinfo=None)
    assert next_run(naive, timedelta(seconds=90), LAST) == (LAST + timedelta(seconds=90), None)
