"""An in-process dream loop, the seed's ``spawn_dream_loop``, for scripts and tests.

Under Celery, beat is the loop; this one runs passes in a thread, waits the
interval between them, and can be cancelled at any time.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable

from .config import DreamConfig
from .consolidate import run_pass
from .embedder import Embedder
from .lock import PassLock
from .report import ConsolidationReport
from .store import MemoryStore

__all__ = ["DreamHandle", "spawn_dream_loop"]


class DreamHandle:
    """A running loop: ``cancel()`` stops it, ``join()`` returns its reports."""

    def __init__(self) -> None:
        self.cancel_event = threading.Event()
        self.reports: list[ConsolidationReport] = []
        self.thread: threading.Thread | None = None

    def cancel(self) -> None:
        self.cancel_event.set()

    def join(self, timeout: float | None = None) -> list[ConsolidationReport]:
        if self.thread is not None:
            self.thread.join(timeout)
        return list(self.reports)


def spawn_dream_loop(
    store: MemoryStore,
    config: DreamConfig,
    max_iterations: int | None = None,
    *,
    embedder: Embedder | None = None,
    clock: Callable[[], float] | None = None,
) -> DreamHandle:
    """Start the loop in a daemon thread. A pass that did work is followed at once
    by up to ``max_trailing`` trailing passes, even past ``max_iterations``."""
    handle = DreamHandle()

    def loop() -> None:
        token = secrets.token_hex(16)
        trailing = 0
        while not handle.cancel_event.is_set():
            report = run_pass(
                store,
                config,
                trailing=trailing > 0,
                token=token,
                takeover=trailing > 0,
                embedder=embedder,
                clock=clock,
                cancel_event=handle.cancel_event,
            )
            handle.reports.append(report)
            if report.status == "completed" and report.did_work and trailing < config.max_trailing:
                trailing += 1
                continue
            trailing = 0
            if max_iterations is not None and len(handle.reports) >= max_iterations:
                break
            if handle.cancel_event.wait(config.interval_secs):
                break
            token = secrets.token_hex(16)
        # Like the seed's lock file, the loop's claim goes with it.
        PassLock(store.client, store.keys, config.lock_ttl, token).release()

    handle.thread = threading.Thread(target=loop, name="car-dream-loop", daemon=True)
    handle.thread.start()
    return handle
