"""Out of memory: a full Redis (``maxmemory``, ``noeviction``) refuses every write whole.

Redis checks ``maxmemory`` once per script, at the script's first write: a script whose
first write is one that needs memory is refused before it has written anything, and a
script that got past its first write runs to its end. So no batch of car-dream is ever
half-written by a full Redis; ingest raises :class:`RedisFullError`, a pass ends
``failed`` naming out-of-memory, and the next pass after memory is freed completes.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from car_dream.check import check_store
from car_dream.config import load_config
from car_dream.consolidate import run_pass
from car_dream.errors import RedisFullError
from car_dream.pipeline import PassContext
from car_dream.steps import STEPS
from car_dream.store import MemoryStore

from .celery_env import process_env
from .conftest import digest
from .metrics_env import CLI
from .servers import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

LIMIT = 4 * 1024 * 1024


@pytest.fixture
def small(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(
        tmp_path / "redis", ["--maxmemory", str(LIMIT), "--maxmemory-policy", "noeviction"]
    )
    server.start()
    yield server
    server.stop()


def fill(client: redis.Redis) -> None:
    """Write 1 KiB strings until Redis refuses one, then lower maxmemory by 1 MiB: full
    for sure, not hovering at the limit where freed buffers let a write through."""
    n = 0
    while True:
        try:
            client.set(f"fill:{n}", b"x" * 1024)
            n += 1
        except redis.exceptions.OutOfMemoryError:
            break
    client.config_set("maxmemory", LIMIT - 1024 * 1024)


def free(client: redis.Redis) -> None:
    """Raise maxmemory (as an operator would) and drop the filler."""
    client.config_set("maxmemory", 4 * LIMIT)
    for keys in iter(lambda: list(client.scan_iter(match="fill:*", count=1000))[:1000], []):
        client.delete(*keys)


def test_redis_refuses_a_script_whole_or_runs_it_to_its_end(small: RedisServer) -> None:
    """The semantics car-dream relies on (Redis 7, scripts without flags)."""
    client = small.client()
    client.set("old", "1")
    fill(client)
    # First write needs memory: refused before anything is written (DEL included).
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        client.eval("redis.call('HSET', 'a', 'f', 'v') redis.call('DEL', 'old')", 0)
    assert client.exists("a", "old") == 1
    # First write needs none: the script has started writing and runs to its end,
    # past maxmemory (so a script never stops half-way).
    client.eval(
        "redis.call('DEL', 'old') for i = 1, 200 do "
        "redis.call('HSET', 'b', i, string.rep('y', 1024)) end",
        0,
    )
    assert client.hlen("b") == 200 and not client.exists("old")
    # A script with flags (a shebang) that may write is refused up front.
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        client.eval("#!lua\nredis.call('DEL', 'b')", 0)
    assert client.exists("b")


def test_ingest_on_a_full_redis_raises_redis_full_and_writes_nothing(
    small: RedisServer, tmp_path: Path
) -> None:
    client = small.client()
    store = MemoryStore(client, "full")
    store.ingest_fact("f1", "s", "a fact")
    store.ingest_conclusion("c1", "a conclusion", premises=["f1"])
    fill(client)
    before = digest(client, store.keys.prefix)
    writes: list[Any] = [
        lambda: store.ingest_fact("f2", "s", "a new fact"),
        lambda: store.ingest_fact("f1", "s", "f1 rewritten"),
        lambda: store.ingest_fact("f3", "s", "replaces f1", supersedes="f1"),
        lambda: store.ingest_environment("e1", "an observation", expires_at=2e9),
        lambda: store.ingest_conclusion("c1", "c1 rewritten", premises=["f1"]),
    ]
    for write in writes:
        with pytest.raises(RedisFullError, match="out of memory: Redis is full"):
            write()
    batch = store.batch()
    batch.ingest_fact("f4", "s", "queued")
    batch.ingest_fact("f5", "s", "queued", supersedes="nope")  # refused by car-dream first
    results = batch.execute()
    assert isinstance(results[0], RedisFullError) and len(results) == 2
    assert digest(client, store.keys.prefix) == before
    free(client)
    assert store.ingest_fact("f2", "s", "a new fact") is True
    assert check_store(store).ok


def test_cli_ingest_stops_at_a_full_redis_saying_so(small: RedisServer, tmp_path: Path) -> None:
    fill(small.client())
    lines = "".join(
        f'{{"kind": "fact", "id": "f{i}", "subject": "s", "content": "fact {i}"}}\n'
        for i in range(20)
    )
    env = process_env(small.url, tmp_path / "data", batch_size=5, namespace="full")
    done = subprocess.run(
        [*CLI, "ingest", "-"],
        input=lines,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "car-dream: out of memory: Redis is full" in done.stderr
    assert "not written: line 1 and 4 more of its batch" in done.stderr
    assert "ingested 0 line(s), rejected 0, stopped at line 5" in done.stdout


class FillRedis:
    """A step that fills Redis, so the steps after it meet a full Redis mid-pass."""

    name = "fill"

    def due(self, ctx: PassContext) -> bool:
        return True

    def run(self, ctx: PassContext) -> None:
        fill(ctx.store.client)


def test_a_pass_meeting_a_full_redis_fails_naming_it_and_the_next_one_completes(
    small: RedisServer, tmp_path: Path
) -> None:
    client = small.client()
    store = MemoryStore(client, "full")
    for i in range(50):
        store.ingest_fact(f"f{i}", "s", f"fact {i}")
        store.ingest_environment(f"e{i}", f"obs {i}", expires_at=1.0)  # long expired
    config = load_config(interval_secs=60, data_dir=tmp_path, batch_size=10)
    at = [s.name for s in STEPS].index("embed")
    steps = (*STEPS[:at], FillRedis(), *STEPS[at:])
    report = run_pass(store, config, steps=steps)
    assert report.status == "failed", report
    assert report.reason and "out of memory: Redis is full" in report.reason
    assert report.expired_pruned == 50  # the steps before ran whole
    assert report.nodes_embedded == 0 and store.count() == 50
    assert check_store(store).ok  # nothing half-written
    # Full before a pass: the lock cannot even be taken.
    refused = run_pass(store, config, force=True)
    assert refused.status == "failed" and "out of memory" in (refused.reason or "")
    free(client)
    again = run_pass(store, config, force=True)
    assert again.status == "completed", again.reason
    assert again.nodes_embedded == 50 and again.embedding_coverage == 1.0
    assert check_store(store).ok
