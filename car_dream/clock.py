"""The one clock of a pass: the Redis server's ``TIME``.

Workers on many machines never share one clock, and a worker whose clock runs fast
would prune observations before they expire. The Redis server that holds the memory
is the one clock they all see, so a pass reads its ``TIME`` whenever it decides by the
clock (once per batch). Tests inject a clock of their own instead.
"""

from __future__ import annotations

from typing import Any

from .connection import is_cluster

__all__ = ["ServerClock"]


class ServerClock:
    """``clock()`` -> the epoch seconds of the Redis server holding ``key`` (one round trip)."""

    def __init__(self, client: Any, key: str) -> None:
        self.client = client
        self.key = key

    def __call__(self) -> float:
        if is_cluster(self.client):  # the node of the namespace's slot, not any node
            node = self.client.get_node_from_key(self.key)
            reply = self.client.execute_command("TIME", target_nodes=node)
        else:
            reply = self.client.time()
        secs, micros = reply
        return int(secs) + int(micros) / 1_000_000
