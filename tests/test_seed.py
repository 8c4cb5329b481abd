"""Python counterparts of the three tests of the Rust seed (dream.rs)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from car_dream.config import load_config
from car_dream.embedder import HashingEmbedder
from car_dream.lock import lock_state
from car_dream.loop import DreamHandle, spawn_dream_loop
from car_dream.store import MemoryStore

from .conftest import wait_for


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest) -> MemoryStore:
    return request.getfixturevalue("fake_store" if request.param == "fake" else "real_store")


class CancellingEmbedder(HashingEmbedder):
    """Cancels the loop from inside a pass, when that pass embeds the text "cancel me"."""

    def __init__(self) -> None:
        super().__init__()
        self.handle: DreamHandle | None = None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if "cancel me" in texts and self.handle is not None:
            self.handle.cancel()
        return super().embed(texts)


def test_dream_loop_runs_and_cancels(store: MemoryStore, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    store.ingest_fact("f1", "test", "data", source="user", provenance="peer", timestamp=now)
    store.ingest_environment(
        "stale", "old", observed_at=now - timedelta(hours=2), expires_at=now - timedelta(hours=1)
    )
    config = load_config(interval_secs=2, data_dir=tmp_path)
    embedder = CancellingEmbedder()

    handle = spawn_dream_loop(store, config, embedder=embedder)  # no limit: runs until cancelled
    embedder.handle = handle
    wait_for(lambda: len(handle.reports) >= 2, timeout=30)
    first, second = handle.reports[:2]
    assert first.expired_pruned == 1  # the first pass prunes the expired node
    assert second.expired_pruned == 0  # the second finds nothing left
    assert second.trailing  # it ran at once, as the first pass's trailing pass
    assert store.get("f1") is not None

    # A later pass (after the interval) embeds this node, and is cancelled while it does.
    store.ingest_fact("f2", "test", "cancel me", timestamp=now)
    reports = handle.join(timeout=30)
    assert handle.thread is not None and not handle.thread.is_alive()  # the loop stopped
    assert reports[-1].status == "cancelled"
    assert all(r.status == "completed" for r in reports[:-1])
    assert store.embedding("f2") is None  # the cancelled batch wrote nothing
    assert len(store.reports(100)) == len(reports)  # and no pass ran after it
    assert lock_state(store.client, store.keys).state == "free"  # the loop's claim is gone


def test_dream_loop_cancellation(store: MemoryStore, tmp_path: Path) -> None:
    config = load_config(interval_secs=3600, data_dir=tmp_path)
    handle = spawn_dream_loop(store, config)
    deadline = time.monotonic() + 10
    while not handle.reports and time.monotonic() < deadline:
        time.sleep(0.01)  # let it finish one pass; it then waits an hour
    handle.cancel()
    reports = handle.join(timeout=10)
    assert handle.thread is not None and not handle.thread.is_alive()
    assert len(reports) >= 1 and reports[0].status == "completed"


def test_ensure_dream_task_creates_once(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from car_dream.schedule import ensure_dream_task, get_schedule

    from .celery_env import fresh_app

    app = fresh_app(monkeypatch, redis_url, interval_secs=3600)
    assert ensure_dream_task(app) is True
    entry = get_schedule(app)
    assert entry is not None
    assert entry["task"] == "car_dream.consolidate"
    assert entry["every_secs"] == 3600
    assert ensure_dream_task(app) is False  # idempotent
