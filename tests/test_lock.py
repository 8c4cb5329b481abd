"""The namespace lock: window, force, takeover, fencing, cancel, pause, keepalive."""

from __future__ import annotations

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


@pytest.fixture(params=["fake", "real"])
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


def test_lock_expires_when_its_holder_dies(real_store: MemoryStore) -> None:
    lock = PassLock(real_store.client, real_store.keys, 1)
    assert lock.acquire().ok  # and never extended: its process "died"
    ttl = real_store.client.pttl(real_store.keys.lock)
    assert 0 < ttl <= 1000
