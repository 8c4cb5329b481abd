"""The pass as a pipeline: a :class:`PassContext` shared by an ordered tuple of steps.

A step is a small object with a ``name``, a ``due(ctx)`` test (on the index sizes and what
earlier steps reported, so an idle pass skips it without a round trip) and a ``run(ctx)``.
Every destructive batch a step sends goes through :meth:`PassContext.fenced`, so a pass
that lost its lock, was cancelled or is shutting down stops at its next batch unwritten.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis.commands.core import Script

from .config import DreamConfig
from .embedder import Embedder
from .errors import LockLostError, PassCancelledError
from .lock import PassLock
from .merging import Embedded
from .node import text
from .pass_start import PassStart
from .report import ConsolidationReport
from .shutdown import SHUTDOWN
from .store import IndexSizes, MemoryStore

__all__ = ["PassContext", "Step", "run_steps"]


class Step(Protocol):
    """One step of a pass. ``due`` must not touch Redis except through ``ctx.sizes``."""

    name: str

    def due(self, ctx: PassContext) -> bool: ...

    def run(self, ctx: PassContext) -> None: ...


@dataclass
class PassContext:
    """What the steps of one pass share: the store, the lock, the report and the clock
    (the Redis server's ``TIME``, see :mod:`car_dream.clock`, unless a test gives one)."""

    store: MemoryStore
    config: DreamConfig
    lock: PassLock
    report: ConsolidationReport
    embedder: Embedder
    clock: Callable[[], float]
    cancel_event: threading.Event | None = None
    # The nodes the embed step stored vectors for in this pass (the merge step's input).
    embedded: list[Embedded] = field(default_factory=list)
    # What the script that took the lock read (pass_start.py); None: read when asked.
    start: PassStart | None = None
    # What a step's due() found that its run() uses (a directory listing, a version).
    found: dict[str, Any] = field(default_factory=dict)
    _sizes: IndexSizes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.start is not None:
            self._sizes = self.start.sizes

    @property
    def batch_size(self) -> int:
        return self.config.batch_size

    @property
    def sizes(self) -> IndexSizes:
        """The work indexes' sizes: as read when the lock was taken, or read again (one
        round trip) when a step asks after :meth:`sizes_changed`."""
        if self._sizes is None:
            self._sizes = self.store.index_sizes(due=self.clock())
            self.checkpoint()
        return self._sizes

    def sizes_changed(self) -> None:
        """A step wrote nodes (the ingest steps' insight facts): the next step to ask
        reads the sizes again, so what was written is counted, and collected."""
        self._sizes = None

    def bookkeeping(self, name: str) -> str | None:
        """A meta field as the lock's script read it (``pass_start.META_READ``)."""
        if self.start is not None and self.start.meta is not None:
            return self.start.bookkeeping(name)
        return text(self.store.client.hget(self.store.keys.meta, name))

    def refresh_sizes(self) -> IndexSizes:
        self._sizes = self.store.index_sizes()
        return self._sizes

    def checkpoint(self) -> None:
        """Between batches: stop if the lock was lost or the pass cancelled."""
        if self.lock.lost.is_set():
            raise LockLostError("lock lost: another pass holds the namespace")
        if self.lock.cancelled.is_set() or (self.cancel_event and self.cancel_event.is_set()):
            raise PassCancelledError("cancelled between batches")
        if SHUTDOWN.is_set():
            raise PassCancelledError("worker shutting down (SIGTERM): stopped between batches")

    def fenced(self, script: Script, *args: Any) -> list[Any]:
        """Run a destructive script behind the lock's fence; raise if it was refused."""
        self.checkpoint()
        keys = self.store.keys
        reply = script(keys=[keys.lock], args=[keys.prefix, self.lock.token, *args])
        code = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
        if code == "lost":
            self.lock.lost.set()
            raise LockLostError("lock lost: a batch was refused by its fence")
        if code == "cancelled":
            self.lock.cancelled.set()
            raise PassCancelledError("cancelled by an operator")
        return list(reply)

    def drain(self, script: Script, extra: int = 0, *args: Any) -> int:
        """Run a batch script (reply ``ok, done, left``) until no work is left; the total.
        Its arguments: now, the batch size, the pass id, the journal's retention, ``args``.

        Rounds are capped by the work left after the first batch (plus ``extra`` items the
        step may add itself), so work that writers add meanwhile is left to the trailing
        pass instead of keeping this one busy.
        """
        batch = self.batch_size
        journal = (self.report.pass_id, self.config.journal_retention_secs, *args)
        _, done, left = self.fenced(script, repr(self.clock()), batch, *journal)
        done, left = int(done), int(left)
        rounds = math.ceil((left + extra) / batch) + 1 if left else 0
        for _ in range(rounds):
            _, n, left = self.fenced(script, repr(self.clock()), batch, *journal)
            done += int(n)
            if not int(left):
                break
        return done


def run_steps(ctx: PassContext, steps: Sequence[Step]) -> None:
    """Run each due step in order; its duration goes into ``report.step_ms``."""
    for step in steps:
        if not step.due(ctx):
            continue
        started = time.perf_counter()
        try:
            step.run(ctx)
        finally:
            ctx.report.step_ms[step.name] = round((time.perf_counter() - started) * 1000, 3)
