"""pass_running under a real SIGTERM sent to this process, in the middle of a pass."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from types import FrameType

import pytest

from car_dream import shutdown
from car_dream.config import DreamConfig
from car_dream.consolidate import run_pass
from car_dream.lock import lock_state
from car_dream.store import MemoryStore

from .conftest import wait_for
from .test_lock import HookEmbedder


@pytest.fixture
def own_handler() -> Iterator[list[int]]:
    """SIGTERM handled by a handler of the test's own (the pool process's, in a worker):
    the signals it received. Python's handlers are put back afterwards."""
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutdown.SHUTDOWN.clear()


def sigterm_myself_until(seen: Callable[[], object]) -> Callable[[], None]:
    """A hook for HookEmbedder: SIGTERM to this process, then wait until it was handled."""

    def hook() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        # Python runs handlers in the main thread; the embedder may run in another one.
        wait_for(seen, timeout=10)

    return hook


def test_sigterm_in_a_pool_process_cancels_the_pass_between_batches(
    fake_store: MemoryStore,
    config: DreamConfig,
    own_handler: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shutdown, "_in_pool", True)  # as in a worker's pool process
    before = signal.getsignal(signal.SIGTERM)
    for i in range(3):
        fake_store.ingest_fact(f"f{i}", "s", f"fact {i}")
    report = run_pass(
        fake_store, config, embedder=HookEmbedder(sigterm_myself_until(shutdown.SHUTDOWN.is_set))
    )
    assert report.status == "cancelled" and "SIGTERM" in (report.reason or "")
    assert report.nodes_embedded == 0  # stopped before the batch was written
    assert shutdown.SHUTDOWN.is_set()
    assert own_handler == []  # the pass's handler had it, not the process's
    assert lock_state(fake_store.client, fake_store.keys).state == "free"  # released
    # After the pass the process's own handler is back: SIGTERM reaches it as before.
    assert signal.getsignal(signal.SIGTERM) is before
    os.kill(os.getpid(), signal.SIGTERM)
    wait_for(lambda: own_handler == [signal.SIGTERM], timeout=10)


def test_outside_a_pool_process_sigterm_is_left_to_the_process(
    fake_store: MemoryStore,
    config: DreamConfig,
    own_handler: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In the worker's main process (or a script) warm shutdown is Celery's business."""
    monkeypatch.setattr(shutdown, "_in_pool", False)
    fake_store.ingest_fact("f", "s", "fact")
    report = run_pass(
        fake_store, config, embedder=HookEmbedder(sigterm_myself_until(lambda: own_handler))
    )
    assert own_handler == [signal.SIGTERM]
    assert report.status == "completed" and report.nodes_embedded == 1
    assert not shutdown.SHUTDOWN.is_set()
