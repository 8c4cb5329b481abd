"""The namespace lock: window, force, takeover, fencing, cancel, pause, keepalive."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from car_dream.config import DreamConfig, load_config
from car_dream.consolidate import run_pass
from car_dream.embedder import HashingEmbedder
from car_dream.lock import PassLock, lock_state, pause, request_cancel, resume
from car_dream.store import MemoryStore

from .conftest import stop_process, wait_for


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest) -> MemoryStore:
    return request.getfixturevalue("fake_store" if request.param == "fake" else "real_store")


class HookEmbedder:
    """Runs ``hook`` the first time the pass embeds: a pause in the middle of a pass."""

    model_id = HashingEmbedder().model_id

    def __init__(self, hook: Callable[[], None]) -> None:
        self.hook = hook
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        if self.calls == 1:
            self.hook()
        return HashingEmbedder().embed(texts)


def test_completed_pass_keeps_the_window(store: MemoryStore, config: DreamConfig) -> None:
    assert run_pass(store, config).status == "completed"
    state = lock_state(store.client, store.keys)
    assert state.state == "done" and state.ttl is not None
    assert 0 < state.ttl <= config.lock_ttl
    skipped = run_pass(store, config)
    assert (skipped.status, skipped.reason) == ("skipped", "coalesced")
    assert skipped.lock_ttl_remaining is not None and skipped.lock_ttl_remaining > 0


def test_lock_ttl_is_half_the_interval(store: MemoryStore, tmp_path: Path) -> None:
    config = load_config(interval_secs=3600, data_dir=tmp_path)
    run_pass(store, config)
    ttl = store.client.ttl(store.keys.lock)
    assert 1790 <= ttl <= 1800


def test_force_skips_the_window_but_not_a_running_pass(
    store: MemoryStore, config: DreamConfig
) -> None:
    run_pass(store, config)
    assert run_pass(store, config, force=True).status == "completed"
    other = PassLock(store.client, store.keys, config.lock_ttl)
    store.client.delete(store.keys.lock)
    assert other.acquire().ok
    forced = run_pass(store, config, force=True)
    assert (forced.status, forced.reason) == ("skipped", "running")
    plain = run_pass(store, config)  # merges into the running pass
    assert (plain.status, plain.reason) == ("skipped", "coalesced")


def test_trailing_pass_takes_over_by_token(store: MemoryStore, config: DreamConfig) -> None:
    first = PassLock(store.client, store.keys, config.lock_ttl, "tok-1")
    assert first.acquire().ok and first.finish()
    wrong = run_pass(store, config, trailing=True, token="tok-2", takeover=True)
    assert (wrong.status, wrong.reason) == ("skipped", "coalesced")
    right = run_pass(store, config, trailing=True, token="tok-1", takeover=True)
    assert right.status == "completed" and right.trailing
    assert store.client.get(store.keys.lock) == b"done:tok-1"


def test_paused_namespace_skips(store: MemoryStore, config: DreamConfig) -> None:
    pause(store.client, store.keys)
    assert lock_state(store.client, store.keys).paused
    report = run_pass(store, config, force=True)
    assert (report.status, report.reason) == ("skipped", "paused")
    assert resume(store.client, store.keys) is True
    assert resume(store.client, store.keys) is False  # was not paused any more
    assert run_pass(store, config).status == "completed"


def test_fencing_stops_a_pass_whose_lock_was_taken(store: MemoryStore, config: DreamConfig) -> None:
    for i in range(3):
        store.ingest_fact(f"f{i}", "s", f"fact {i}")
    store.ingest_fact("new", "s", "newer", supersedes="f0")

    def stolen() -> None:  # another pass takes the namespace while this one is mid-pass
        store.client.set(store.keys.lock, "running:intruder", ex=60)

    report = run_pass(store, config, embedder=HookEmbedder(stolen))
    assert report.status == "lost_lock"
    assert report.superseded_gc == 1  # done before the lock was lost
    assert report.nodes_embedded == 0  # the refused batch wrote nothing
    assert all(store.embedding(f"f{i}") is None for i in (1, 2))
    assert store.client.get(store.keys.lock) == b"running:intruder"  # never deleted


def test_release_compares_the_token(store: MemoryStore, config: DreamConfig) -> None:
    mine = PassLock(store.client, store.keys, 30, "mine")
    assert mine.acquire().ok
    assert not PassLock(store.client, store.keys, 30, "theirs").release()
    assert store.client.get(store.keys.lock) == b"running:mine"
    assert not PassLock(store.client, store.keys, 30, "theirs").extend()
    assert mine.release()
    assert store.client.get(store.keys.lock) is None


def test_operator_cancel_stops_between_batches(store: MemoryStore, config: DreamConfig) -> None:
    for i in range(3):
        store.ingest_fact(f"f{i}", "s", f"fact {i}")
    tokens: list[str | None] = []

    def cancel() -> None:
        tokens.append(request_cancel(store.client, store.keys, config.lock_ttl))

    report = run_pass(store, config, embedder=HookEmbedder(cancel))
    assert tokens[0] is not None
    assert report.status == "cancelled" and report.nodes_embedded == 0
    assert store.client.get(store.keys.lock) is None  # released: the next trigger runs
    assert run_pass(store, config).nodes_embedded == 3


def test_in_process_cancel_event(store: MemoryStore, config: DreamConfig) -> None:
    store.ingest_fact("f", "s", "fact")
    event = threading.Event()
    report = run_pass(store, config, embedder=HookEmbedder(event.set), cancel_event=event)
    assert report.status == "cancelled"


def test_cancel_without_a_running_pass_is_a_no_op(store: MemoryStore, config: DreamConfig) -> None:
    assert request_cancel(store.client, store.keys, 30) is None
    run_pass(store, config)
    assert request_cancel(store.client, store.keys, 30) is None  # done, not running
    assert not store.client.exists(store.keys.cancel)


def test_keepalive_outlives_the_ttl(real_store: MemoryStore, tmp_path: Path) -> None:
    """A pass longer than its TTL keeps the lock (real server, real expiry)."""
    config = load_config(interval_secs=2, data_dir=tmp_path)  # TTL 1 s
    real_store.ingest_fact("f", "s", "slow to embed")
    seen: list[bytes | None] = []
    done = threading.Event()

    def slow() -> None:
        done.wait(1.6)  # longer than the TTL: only the keepalive keeps the lock
        seen.append(real_store.client.get(real_store.keys.lock))

    report = run_pass(real_store, config, embedder=HookEmbedder(slow))
    assert report.status == "completed"
    assert seen[0] is not None and seen[0].startswith(b"running:")


# A holder in a process of its own: takes the lock with a 1 s TTL, keeps it alive, and
# says so; then waits to be killed.
HOLDER = """
import sys, time, redis
from car_dream.keys import Keys
from car_dream.lock import PassLock

lock = PassLock(redis.Redis.from_url(sys.argv[1]), Keys(sys.argv[2]), 1)
assert lock.acquire().ok
with lock.keepalive():
    print(lock.token, flush=True)
    time.sleep(3600)
"""


def test_lock_expires_when_its_holder_dies(
    real_store: MemoryStore, redis_url: str, tmp_path: Path
) -> None:
    client, key = real_store.client, real_store.keys.lock
    cmd = [sys.executable, "-c", HOLDER, redis_url, real_store.namespace]
    holder = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert holder.stdout is not None
        token = holder.stdout.readline().strip()
        mine = f"running:{token}".encode()
        assert token and client.get(key) == mine
        # Alive, it outlives its TTL: the keepalive re-arms it (the TTL goes back up).
        lowest = [client.pttl(key)]

        def rearmed() -> bool:
            ttl = client.pttl(key)
            lowest[0] = min(lowest[0], ttl)
            return ttl > lowest[0]

        wait_for(rearmed, timeout=10, interval=0.02)
        assert client.get(key) == mine
        os.killpg(holder.pid, signal.SIGKILL)  # dies without a word: no release, no finish
        holder.wait(10)
        seen: set[bytes | None] = set()

        def freed() -> bool:
            seen.add(client.get(key))
            return None in seen

        wait_for(freed, timeout=10, interval=0.02)  # its TTL ran out
        assert seen <= {mine, None}  # nobody else touched it
        config = load_config(interval_secs=2, data_dir=tmp_path)
        assert run_pass(real_store, config).status == "completed"  # the namespace is free
    finally:
        stop_process(holder)
        if holder.stdout is not None:
            holder.stdout.close()


def test_the_logged_line_says_what_became_of_the_pass(
    fake_store: MemoryStore, config: DreamConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """Not "pass complete" for a pass that was cancelled or skipped."""
    caplog.set_level("INFO", logger="car_dream")
    fake_store.ingest_fact("f", "s", "fact")
    event = threading.Event()
    run_pass(fake_store, config, embedder=HookEmbedder(event.set), cancel_event=event)
    run_pass(fake_store, config)
    run_pass(fake_store, config)
    fake_store.client.set(fake_store.keys.paused, "1")
    run_pass(fake_store, config, force=True)
    prefix = "dream consolidation pass "
    heads = [
        r.getMessage().removeprefix(prefix).split(" expired_pruned=")[0]
        for r in caplog.records
        if r.getMessage().startswith(prefix)
    ]
    assert len(heads) == 4, heads
    assert heads[0].startswith("cancelled (") and "cancel" in heads[0]
    assert heads[1:] == ["completed", "skipped (coalesced)", "skipped (paused)"]
