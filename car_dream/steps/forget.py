"""The memory budget: forget the lowest-scoring unpinned facts (``CAR_DREAM_MAX_NODES``)
and the facts unused for too long (``CAR_DREAM_FORGET_UNUSED_AFTER_SECS``); off unless
one is set. The score is kept in a sorted set (``forget_score`` in lib.lua), so this
costs the facts forgotten plus a log, never a scan."""

from __future__ import annotations

from ..pipeline import PassContext


def cutoff(ctx: PassContext) -> str:
    """The lowest score kept: a fact never accessed is unused after the setting's age."""
    age = ctx.config.forget_unused_after_secs
    return "" if age is None else repr(ctx.clock() - age)


class Forget:
    name = "forget"

    def due(self, ctx: PassContext) -> bool:
        c = ctx.config
        if c.forget_unused_after_secs is not None:
            return ctx.sizes.forgettable > 0
        return c.max_nodes is not None and ctx.sizes.total_nodes > c.max_nodes

    def run(self, ctx: PassContext) -> None:
        budget = "" if ctx.config.max_nodes is None else str(ctx.config.max_nodes)
        script = ctx.store.scripts.forget
        ctx.report.forgotten = ctx.drain(script, 0, budget, cutoff(ctx))
