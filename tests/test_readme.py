"""The README's Python examples run as written, against a real Redis and a real worker."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from .celery_env import Processes, process_env, procs_fixture  # noqa: F401

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def python_blocks() -> list[str]:
    return BLOCK.findall(README.read_text())


def test_the_python_examples_run_as_written(
    db: redis.Redis, redis_url: str, procs: Processes, tmp_path: Path
) -> None:
    blocks = python_blocks()
    assert len(blocks) >= 2, "the README's Python examples were not found"
    # A URL written in an example would be used as is: someone else's database, not ours.
    assert not any("redis://" in b for b in blocks), "an example hard-codes a Redis URL"
    env = process_env(redis_url, tmp_path / "data")  # the default interval: an hour
    procs.worker(env)
    # One session, as a reader pastes them: later blocks use what earlier ones defined.
    out = subprocess.run(
        [sys.executable, "-c", "\n\n".join(blocks)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    report = ast.literal_eval(out.stdout.strip().splitlines()[0])
    assert report["status"] == "completed", report
    # f1 superseded by f2, so c1 invalidated: both collected; f2 and the door are left.
    assert report["conclusions_invalidated"] == 1 and report["superseded_gc"] == 2
    assert report["total_nodes"] == 2
