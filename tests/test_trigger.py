"""``car-dream trigger`` and ``consolidate.delay()``: what they leave in the broker, and
how they end when no worker answers."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import redis

from car_dream.store import MemoryStore

from .celery_env import Processes, process_env, procs_fixture  # noqa: F401
from .conftest import wait_for

pytestmark = pytest.mark.timeout(120)


def car_dream(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", "from car_dream.cli import main; main()", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


def queued(db: redis.Redis) -> list[dict[str, object]]:
    """The task messages waiting in the broker's default queue."""
    return [json.loads(raw) for raw in db.lrange("celery", 0, -1)]


def test_wait_that_times_out_ends_cleanly(db: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    """No worker: one line, exit 1, and nothing printed while Python shuts down."""
    env = process_env(redis_url, tmp_path / "data", namespace="t-nobody")
    done = car_dream(env, "trigger", "--wait", "--timeout", "1")
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == ["car-dream: no result after 1s: is a worker running?"]
    assert "Exception ignored" not in done.stderr


@pytest.mark.integration
def test_a_queued_trigger_expires_like_a_scheduled_one(
    db: redis.Redis, redis_url: str, tmp_path: Path, procs: Processes, namespace: str
) -> None:
    env = process_env(redis_url, tmp_path / "data", interval_secs=2, namespace=namespace)
    sent = time.time()
    done = car_dream(env, "trigger")
    assert done.returncode == 0, done.stderr
    task_id = done.stdout.split()[-1]
    (message,) = queued(db)
    expires = message["headers"]["expires"]  # type: ignore[index]
    assert isinstance(expires, str), message
    deadline = datetime.fromisoformat(expires).timestamp()
    assert sent < deadline <= time.time() + 2  # one interval
    # Stale by the time a worker comes: it is revoked, not run.
    wait_for(lambda: time.time() > deadline + 0.5, timeout=10)
    procs.worker(env)

    def state() -> str | None:
        raw = db.get(f"celery-task-meta-{task_id}")
        return json.loads(raw)["status"] if raw else None

    assert wait_for(state, timeout=60) == "REVOKED"
    assert MemoryStore(db, namespace).reports(10) == []
