"""Trajectories -> one insight fact per tool and per source, rewritten as counts change.

Records are read from ``CAR_DREAM_TRAJECTORY_DIR`` past each file's watermark, when the
directory's listing (names, sizes, times) differs from the one the last pass read
through. Each batch is one fenced write of the new absolute counts and the watermark,
sent by a writer thread in order while the next batch is parsed; insights are then
written from the "dirty" set, which survives a crash between the two.
"""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from ..insight_reads import TRAJ_LISTING
from ..insights import slot_id, source_insight, tool_insight
from ..pipeline import PassContext
from ..trajectory_reader import Batch, Listing, list_directory, read_batches

# Running counts kept in memory during a pass (tools plus sources).
COUNTS_CACHED = 10_000

Counts = dict[str, dict[str, Counter[str]]]  # key (traj_tools/traj_sources) -> name -> counts


class Trajectories:
    name = "trajectories"

    def due(self, ctx: PassContext) -> bool:
        """Due when the directory's listing differs from the one the last pass read
        through (one listing, no file opened, no round trip) or insights wait."""
        if ctx.config.trajectory_dir is None:
            return False
        listing = ctx.found[self.name] = list_directory(ctx.config.trajectory_dir)
        dirty = ctx.start.dirty_insights if ctx.start is not None else 1
        return bool(listing.problem or dirty or listing.digest != ctx.bookkeeping(TRAJ_LISTING))

    def run(self, ctx: PassContext) -> None:
        """The counts are read from Redis once per tool or source and then kept here (only
        a pass holding this namespace's lock writes them)."""
        directory = ctx.config.trajectory_dir
        assert directory is not None
        listing: Listing = ctx.found.get(self.name) or list_directory(directory)
        k = ctx.store.keys
        offsets = ctx.store.trajectory_offsets()
        counts: Counts = {k.traj_tools: {}, k.traj_sources: {}}
        pending: Future[int] | None = None
        whole = False  # a file could not be read to its end: listed again next pass
        with ThreadPoolExecutor(1, thread_name_prefix="car-dream-traj") as writer:
            try:
                for item in read_batches(directory, offsets, ctx.batch_size, listing):
                    if isinstance(item, str):
                        ctx.report.warn(item)
                        whole = True
                        continue
                    ctx.checkpoint()
                    if sum(map(len, counts.values())) > COUNTS_CACHED:
                        if pending is not None:  # what it writes is read again afterwards
                            pending.result()
                            pending = None
                        for cached in counts.values():
                            cached.clear()
                    payload = batch_payload(ctx, item, counts)
                    if pending is not None:
                        pending.result()
                    pending = writer.submit(apply_insights, ctx, payload)
            finally:
                if pending is not None:
                    pending.result()
        ctx.report.trajectory_insights += write_dirty_insights(ctx)
        if not whole and listing.digest != ctx.bookkeeping(TRAJ_LISTING):
            apply_insights(ctx, {"hset": {k.meta: {TRAJ_LISTING: listing.digest}}})


def apply_insights(ctx: PassContext, payload: dict[str, Any]) -> int:
    """One fenced APPLY_INSIGHTS write; the number of insight facts it wrote."""
    script = ctx.store.scripts.apply_insights
    written = int(ctx.fenced(script, repr(ctx.clock()), json.dumps(payload))[1])
    if written:
        ctx.sizes_changed()
    return written


def insight_fact(slot: str, base: str, content: str) -> dict[str, Any]:
    """An insight fact for APPLY_INSIGHTS; it supersedes the slot's previous fact."""
    return {
        "slot": slot,
        "base": base,
        "subject": slot,
        "content": content,
        "tags": ["car-dream", "insight", slot.split(":", 1)[0]],
    }


def batch_payload(ctx: PassContext, batch: Batch, counts: Counts) -> dict[str, Any]:
    """The APPLY_INSIGHTS payload of one batch: new absolute counts, watermark, dirty."""
    k = ctx.store.keys
    for problem in batch.skipped:
        ctx.report.warn(problem, skipped=1)
    hset: dict[str, dict[str, Any]] = {k.traj_offsets: {batch.file: batch.end_offset}}
    for key, tally in ((k.traj_tools, batch.tally.tools), (k.traj_sources, batch.tally.sources)):
        known = counts[key]
        unknown = [name for name in tally if name not in known]
        known.update(zip(unknown, ctx.store.trajectory_counts(key, unknown), strict=True))
        if tally:
            for name, delta in tally.items():
                known[name].update(delta)
            hset[key] = {name: json.dumps(dict(known[name])) for name in tally}
    dirty = [f"tool:{t}" for t in batch.tally.tools]
    dirty += [f"source:{s}" for s in batch.tally.sources]
    return {"hset": hset, "sadd": {k.insight_dirty: dirty} if dirty else {}}


def write_dirty_insights(ctx: PassContext) -> int:
    """One fact per tool and source whose counts changed, superseding the last one."""
    written = 0
    dirty = ctx.store.dirty_insights()
    for i in range(0, len(dirty), ctx.batch_size):
        chunk = dirty[i : i + ctx.batch_size]
        tools = [s.removeprefix("tool:") for s in chunk if s.startswith("tool:")]
        sources = [s.removeprefix("source:") for s in chunk if s.startswith("source:")]
        tool_counts, source_counts = ctx.store.insight_counts(tools, sources)
        facts = [
            insight_fact(f"tool:{t}", slot_id("tool", t), tool_insight(t, c))
            for t, c in zip(tools, tool_counts, strict=True)
        ] + [
            insight_fact(f"source:{s}", slot_id("source", s), source_insight(s, c))
            for s, c in zip(sources, source_counts, strict=True)
        ]
        written += apply_insights(
            ctx, {"facts": facts, "srem": {ctx.store.keys.insight_dirty: chunk}}
        )
    return written
