"""The journal: every node a pass removed or superseded, and every restore, newest last.

One Redis Stream per namespace (``Keys.journal``). The entries are written by the Lua
scripts themselves (``journal`` in ``lib.lua``), in the same script as the change, so a
removal and its entry exist together or not at all. Each holds the pass id, the step,
the node id, the reason, the node's fields as they were (not its vector) and the
conclusions that cited it. The pass trims entries older than
``CAR_DREAM_JOURNAL_RETENTION_SECS`` as it adds new ones (``XADD ... MINID``).
Reading goes newest first, a page at a time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from .keys import Keys

__all__ = ["REMOVALS", "JournalEntry", "entries"]

# Steps whose entry means the node was deleted; "invalidate" marks it superseded (it is
# collected later, with an entry of its own); "restore" brought one back.
REMOVALS = ("prune", "collect", "forget")
PAGE = 500


@dataclass(frozen=True)
class JournalEntry:
    id: str  # the stream id: <server ms>-<seq>
    pass_id: str
    step: str
    node: str
    reason: str
    fields: dict[str, str]  # the node's hash as it was, without its vector
    deps: list[str]  # the conclusions that cited it

    @property
    def at(self) -> float:
        """When it was written (epoch seconds, the server's clock)."""
        return int(self.id.split("-", 1)[0]) / 1000

    @classmethod
    def from_stream(cls, entry_id: bytes | str, raw: dict[bytes, bytes]) -> JournalEntry:
        f = {k.decode(): v.decode("utf-8", "replace") for k, v in raw.items()}
        fields = json.loads(f.get("fields", "{}"))
        deps = json.loads(f.get("deps", "[]"))
        return cls(
            id=entry_id.decode() if isinstance(entry_id, bytes) else entry_id,
            pass_id=f.get("pass", ""),
            step=f.get("step", ""),
            node=f.get("node", ""),
            reason=f.get("reason", ""),
            # Lua's cjson writes an empty table as {}: no fields, or no dependents.
            fields=fields if isinstance(fields, dict) else {},
            deps=deps if isinstance(deps, list) else [],
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "at": self.at}


def entries(
    client: Any,
    keys: Keys,
    *,
    pass_id: str | None = None,
    node: str | None = None,
    since: float | None = None,
    page: int = PAGE,
) -> Iterator[JournalEntry]:
    """The entries matching every filter given, newest first; ``since`` in epoch seconds."""
    low = "-" if since is None else str(int(since * 1000))
    high = "+"
    while True:
        rows = client.xrevrange(keys.journal, high, low, count=page)
        for entry_id, raw in rows:
            entry = JournalEntry.from_stream(entry_id, raw)
            if (pass_id is None or entry.pass_id == pass_id) and (
                node is None or entry.node == node
            ):
                yield entry
        if len(rows) < page:
            return
        high = "(" + JournalEntry.from_stream(rows[-1][0], {}).id
