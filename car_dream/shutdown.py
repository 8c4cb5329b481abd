"""Warm shutdown inside a worker's pool process.

A service manager that stops a unit sends SIGTERM to every process of it (systemd's
default, ``kill -TERM -<pgid>``), pool processes included. billiard makes a pool
process exit on SIGTERM, so a pass would die between two batches and leave its lock
``running`` until the TTL (half an interval) ran out. Here, while a pass runs in a
pool process, SIGTERM asks it to stop between batches instead: it ends ``cancelled``
and releases its lock, and the main process's warm shutdown waits for it. Outside a
pass the pool process's own handler is back in place and it exits as before.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from celery.signals import worker_process_init

__all__ = ["SHUTDOWN", "pass_running"]

SHUTDOWN = threading.Event()
_in_pool = False


@worker_process_init.connect
def _pool_process_started(**_: Any) -> None:
    global _in_pool
    _in_pool = True


def _on_sigterm(signum: int, frame: Any) -> None:
    SHUTDOWN.set()


@contextlib.contextmanager
def pass_running() -> Iterator[None]:
    """While the block runs a pass in a pool process, SIGTERM sets :data:`SHUTDOWN`."""
    SHUTDOWN.clear()
    previous: Any = None
    if _in_pool and threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError, OSError):
            previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
