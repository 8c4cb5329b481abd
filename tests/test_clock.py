"""One clock: a pass decides by the Redis server's TIME, never by the worker's own clock."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path

import fakeredis
import pytest
import redis

from car_dream.clock import ServerClock
from car_dream.config import load_config
from car_dream.consolidate import run_pass
from car_dream.store import MemoryStore

from .celery_env import process_env
from .conftest import FAKETIME_ENV, faketime
from .metrics_env import CLI


def test_the_server_clock_is_the_redis_servers_time(real_client: redis.Redis) -> None:
    clock = ServerClock(real_client, "car-dream:{x}:lock")
    secs, micros = real_client.time()
    assert abs(clock() - (secs + micros / 1e6)) < 5


def test_a_reading_is_carried_forward_for_a_second_then_read_again(
    real_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ServerClock(real_client, "car-dream:{x}:lock")
    reads: list[float] = []
    read = clock._read
    monkeypatch.setattr(clock, "_read", lambda: reads.append(0) or read())
    first, second = clock(), clock()
    assert len(reads) == 1 and 0 <= second - first < 1  # one round trip, time still moves
    monkeypatch.setattr(ServerClock, "REREAD_SECS", 0.0)
    third = clock()
    assert len(reads) == 2 and third >= second


def test_a_worker_clock_an_hour_fast_prunes_nothing_early(
    real_store: MemoryStore, redis_url: str, tmp_path: Path
) -> None:
    """``car-dream run-once`` under libfaketime, its wall clock an hour ahead: of
    observations expiring over the next 30 minutes by the Redis clock none is pruned,
    those already expired are."""
    now = ServerClock(real_store.client, real_store.keys.lock)()
    for i in range(30):
        real_store.ingest_environment(f"soon.{i}", f"obs {i}", expires_at=now + 60 * (i + 1))
    for i in range(5):
        real_store.ingest_environment(f"gone.{i}", f"old {i}", expires_at=now - 60)
    env = process_env(redis_url, tmp_path / "data", namespace=real_store.namespace)
    env.update(FAKETIME_ENV)
    done = subprocess.run(
        [*faketime("+1h"), *CLI, "run-once", "--force", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "completed" and report["expired_pruned"] == 5
    assert all(real_store.get(f"soon.{i}") for i in range(30))
    assert not any(real_store.get(f"gone.{i}") for i in range(5))
    # The report is dated by the Redis clock too, not an hour ahead.
    started = datetime.fromisoformat(report["started_at"]).timestamp()
    assert abs(started - now) < 600


def test_an_injected_clock_is_still_used(fake_store: MemoryStore, tmp_path: Path) -> None:
    """Tests keep their own clock: with one given, the pass never asks Redis the time."""
    fake_store.ingest_environment("e", "obs", expires_at=1_000.0)
    sent: list[str] = []
    client: fakeredis.FakeRedis = fake_store.client
    original = client.execute_command

    def spy(*args: object, **kwargs: object) -> object:
        sent.append(str(args[0]))
        return original(*args, **kwargs)

    client.execute_command = spy  # type: ignore[method-assign]
    config = load_config(interval_secs=60, data_dir=tmp_path)
    report = run_pass(fake_store, config, force=True, clock=lambda: 2_000.0)
    assert report.status == "completed" and report.expired_pruned == 1
    assert report.started_at.timestamp() == 2_000.0
    assert "TIME" not in sent
    sent.clear()
    fake_store.ingest_environment("e2", "obs", expires_at=1_000.0)
    report = run_pass(fake_store, config, force=True)
    assert report.expired_pruned == 1
    # Without one, the server's clock: its TIME, read by the script that takes the lock.
    assert "TIME" not in sent
    secs, micros = original("TIME")
    assert abs(report.started_at.timestamp() - (int(secs) + int(micros) / 1e6)) < 5
