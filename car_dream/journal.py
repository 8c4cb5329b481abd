"""The journal: every node a pass removed or superseded, and every restore, newest last.

One Redis Stream per namespace (``Keys.journal``). The entries are written by the Lua
scripts themselves (``journal`` in ``lib.lua``), in the same script as the change, so a
removal and its entry exist together or not at all. Each holds the pass id, the step,
the node id, the reason, the node's fields as they were (not its vector) and the
conclusions that cited it. The pass trims entries older than
``CAR_DREAM_JOURNAL_RETENTION_SECS`` as it adds new ones (``XADD ... MINID``) and when
it completes (``XTRIM ... MINID`` in ``end_pass.lua``, so an idle namespace's too).
Reading goes newest first, a page at a time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from .keys import Keys, validate_node_id
from .report import new_pass_id
from .scripts import Scripts

__all__ = ["REMOVALS", "JournalEntry", "Restored", "entries", "restore", "undo"]

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


@dataclass(frozen=True)
class Restored:
    """What became of one node asked back: restored (or, in a dry run, restorable) from
    ``entry``, or refused and why."""

    node: str
    ok: bool
    why: str
    entry: JournalEntry | None = None


def restore(
    client: Any, keys: Keys, node_id: str, *, pin: bool = False, now: float | None = None
) -> Restored:
    """Bring ``node_id`` back from its newest journal entry (see :func:`restore_entry`)."""
    validate_node_id(node_id)
    newest = next(entries(client, keys, node=node_id), None)
    if newest is None:
        return Restored(node_id, False, "no journal entry (never removed by a pass, or trimmed)")
    if newest.step == "restore":
        return Restored(node_id, False, f"already restored ({newest.id})", newest)
    return restore_entry(client, keys, newest, op=new_pass_id(), pin=pin, now=now)


def restore_entry(
    client: Any,
    keys: Keys,
    entry: JournalEntry,
    *,
    op: str,
    pin: bool = False,
    now: float | None = None,
    check_only: bool = False,
) -> Restored:
    """Bring back the node of ``entry`` as the entry holds it, in one atomic script that
    journals the restore under ``op``. An invalidated conclusion comes back live; refused
    if the node was written since. ``check_only``: say so without writing."""
    reply = Scripts.of(client).restore(
        keys=[keys.node(entry.node)],
        args=[
            keys.prefix,
            entry.node,
            entry.id,
            entry.step,
            json.dumps(entry.fields),
            json.dumps(entry.deps),
            op,
            repr(time.time() if now is None else now),
            int(pin),
            int(check_only),
        ],
    )
    if reply[0] == b"ok":
        return Restored(
            entry.node, True, f"{entry.step} of pass {entry.pass_id}: {entry.reason}", entry
        )
    return Restored(entry.node, False, reply[1].decode(), entry)


def undo(
    client: Any, keys: Keys, pass_id: str, *, dry_run: bool = False, pin: bool = False
) -> list[Restored]:
    """Restore every node pass ``pass_id`` removed or invalidated, each from the pass's
    newest entry for it, in the reverse order of removal except that a node comes back
    after the premises it cites that come back too. ``dry_run``: what would happen."""
    chosen: dict[str, JournalEntry] = {}
    seen = False
    for e in entries(client, keys):
        if e.pass_id == pass_id:
            seen = True
            chosen.setdefault(e.node, e)  # newest first: the state the pass left last
        elif seen and e.step != "restore":
            break  # one pass at a time per namespace: its entries are together
    order: list[JournalEntry] = []
    placed: set[str] = set()

    def visit(e: JournalEntry, path: set[str]) -> None:
        if e.node in placed or e.node in path:
            return
        path.add(e.node)
        for p in json.loads(e.fields.get("premises", "[]")):
            if p in chosen:
                visit(chosen[p], path)
        placed.add(e.node)
        order.append(e)

    for e in chosen.values():
        visit(e, set())
    op = new_pass_id()
    return [restore_entry(client, keys, e, op=op, pin=pin, check_only=dry_run) for e in order]
