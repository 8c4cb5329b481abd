"""Restarts: a Redis killed in the middle of writing a batch to its append-only file
comes back without any of that batch (the whole pass: tests/chaos, scenario 12)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from car_dream.check import check_store
from car_dream.lock import PassLock
from car_dream.store import MemoryStore

from .servers import RedisServer

pytestmark = pytest.mark.integration


def test_a_batch_cut_off_in_the_append_only_file_is_dropped_whole(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", ["--appendfsync", "always"])
    server.start()
    try:
        client = server.client()
        store = MemoryStore(client, "restart")
        for i in range(20):
            store.ingest_environment(f"e{i}", f"observation {i}", expires_at=1.0)
        lock = PassLock(client, store.keys, 60)
        assert lock.acquire().ok
        aof = next((tmp_path / "redis" / "appendonlydir").glob("*.incr.aof"))
        before = aof.stat().st_size
        reply = store.scripts.prune(
            keys=[store.keys.lock],
            args=[store.keys.prefix, lock.token, "2.0", 100, "restart-test", 86400],
        )
        assert int(reply[1]) == 20 and store.count() == 0
        written = aof.read_bytes()[before:]
        # Redis 7 writes the script's effects as one MULTI/EXEC block.
        assert written.count(b"MULTI") == 1 and written.rstrip().endswith(b"EXEC")
        assert server.proc is not None
        os.killpg(server.proc.pid, signal.SIGKILL)  # no clean shutdown
        server.proc.wait(10)
        server.proc = None
        with open(aof, "r+b") as fh:  # as if killed half-way through writing the batch
            fh.truncate(before + len(written) // 2)
        server.start()
        store = MemoryStore(server.client(), "restart")
        assert store.count() == 20  # none of the batch, not half of it
        assert check_store(store).ok
    finally:
        server.stop()
