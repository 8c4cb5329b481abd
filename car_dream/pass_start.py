"""The first round trip of a pass: take the lock and read, in the same script, all the
steps decide from (``lua/begin_pass.lua``).

That is the server's ``TIME`` (the pass's clock, see :mod:`car_dream.clock`), the index
sizes and the bookkeeping the file checks compare against: the trajectory directory's
listing digest, the profiles file's version, the embedding version and model. An idle
pass decides from these that nothing is due, and :mod:`car_dream.record` ends it in
one more round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .insight_reads import PROFILES_FILE_READ, TRAJ_LISTING
from .lock import Acquired, PassLock, lock_script
from .node import KINDS, IndexSizes, text
from .registry import PerClient
from .store import MemoryStore

__all__ = ["PassStart", "begin_pass"]

# Fields of the meta hash read at the start: what the steps' due tests compare against.
META_READ = ("embed_model", "emb_version", PROFILES_FILE_READ, TRAJ_LISTING)


@dataclass(frozen=True)
class PassStart:
    """What ``begin_pass.lua`` answered. ``sizes`` and ``meta`` only when ``acquired.ok``."""

    acquired: Acquired
    server_time: float
    sizes: IndexSizes | None = None
    dirty_insights: int = 0
    meta: dict[str, str | None] | None = None

    def bookkeeping(self, field: str) -> str | None:
        """A meta field as it was when the lock was taken (None: not set)."""
        return (self.meta or {}).get(field)


class _Script(PerClient):
    def __init__(self, client: Any) -> None:
        self.begin = client.register_script(lock_script("begin_pass"))


def begin_pass(
    store: MemoryStore, lock: PassLock, *, force: bool, takeover: bool, due: float | None
) -> PassStart:
    """Take ``lock`` and, if taken, read the index sizes (``expiry_due`` counted at
    ``due``, epoch seconds, or at the server's time when None) and the bookkeeping."""
    k = store.keys
    keys = [
        k.lock,
        k.paused,
        k.meta,
        k.insight_dirty,
        *(k.kind(kind) for kind in KINDS),
        k.expiry,
        k.collectable,
        k.invalidate,
        k.unembedded,
        k.forgettable,
    ]
    args = [
        *lock.acquire_args(force=force, takeover=takeover),
        "" if due is None else repr(due),
        len(KINDS),
        *META_READ,
    ]
    reply = _Script.of(store.client).begin(keys=keys, args=args)
    acquired = Acquired.from_reply(reply[0], reply[1])
    server_time = int(reply[2]) + int(reply[3]) / 1_000_000
    if not acquired.ok:
        return PassStart(acquired, server_time)
    dirty, expired, *rest = reply[4:]
    counts = [int(n) for n in rest[: len(KINDS) + 5]]
    meta = dict(zip(META_READ, map(text, rest[len(KINDS) + 5 :]), strict=True))
    expiry, collectable, invalidate, unembedded, forget = counts[len(KINDS) :]
    sizes = IndexSizes(
        nodes=dict(zip(KINDS, counts[: len(KINDS)], strict=True)),
        expiry_scheduled=expiry,
        collectable=collectable,
        conclusions_to_check=invalidate,
        unembedded=unembedded,
        embedding_model=meta["embed_model"],
        expiry_due=int(expired),
        forgettable=forget,
    )
    return PassStart(acquired, server_time, sizes, int(dirty), meta)
