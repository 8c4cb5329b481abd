"""The RedBeat entry: created once (even by beats starting together), shown, changed."""

from __future__ import annotations

import threading

import pytest

from car_dream.schedule import (
    ensure_dream_task,
    entry_name,
    get_schedule,
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
