"""``car-dream trigger`` and ``consolidate.delay()``: what they leave in the broker, and
how they end when no worker answers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis

from .celery_env import process_env

pytestmark = pytest.mark.timeout(120)


def car_dream(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", "from car_dream.cli import main; main()", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


def test_wait_that_times_out_ends_cleanly(db: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    """No worker: one line, exit 1, and nothing printed while Python shuts down."""
    env = process_env(redis_url, tmp_path / "data", namespace="t-nobody")
    done = car_dream(env, "trigger", "--wait", "--timeout", "1")
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == ["car-dream: no result after 1s: is a worker running?"]
    assert "Exception ignored" not in done.stderr
