"""The one clock of a pass: the Redis server's ``TIME``.

Workers on many machines never share one clock, and a worker whose clock runs fast
would prune observations before they expire. The Redis server that holds the memory
is the one clock they all see, so a pass decides by its ``TIME``. Tests inject a clock
of their own instead.

A reading is carried forward by the worker's monotonic clock for up to a second: that
keeps the server's time (a monotonic clock only counts how long it was since) while an
idle pass, which asks the time three times in a few milliseconds, pays no round trip of
its own for it: the script that takes the lock returns ``TIME`` (:meth:`ServerClock.seed`).
"""

from __future__ import annotations

import time
from typing import Any

from .connection import is_cluster

__all__ = ["ServerClock"]


class ServerClock:
    """``clock()`` -> the epoch seconds of the Redis server holding ``key`` (one round trip)."""

    REREAD_SECS = 1.0

    def __init__(self, client: Any, key: str) -> None:
        self.client = client
        self.key = key
        self._anchor: tuple[float, float] | None = None  # (server time, monotonic then)

    def __call__(self) -> float:
        now = time.monotonic()
        anchor = self._anchor
        if anchor is not None and now - anchor[1] <= self.REREAD_SECS:
            return anchor[0] + (now - anchor[1])
        server = self._read()
        self._anchor = (server, time.monotonic())
        return server

    def seed(self, server: float) -> None:
        """A reading taken elsewhere (the script that begins a pass returns ``TIME``):
        carried forward as one of its own, so the pass pays no round trip for it."""
        self._anchor = (server, time.monotonic())

    def _read(self) -> float:
        if is_cluster(self.client):  # the node of the namespace's slot, not any node
            node = self.client.get_node_from_key(self.key)
            reply = self.client.execute_command("TIME", target_nodes=node)
        else:
            reply = self.client.time()
        secs, micros = reply
        return int(secs) + int(micros) / 1_000_000
