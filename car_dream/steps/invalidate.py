"""Invalidate conclusions whose premises were removed or superseded (the cascade)."""

from __future__ import annotations

from ..pipeline import PassContext


class Invalidate:
    name = "invalidate"

    def due(self, ctx: PassContext) -> bool:
        # Pruning queues the dependents of what it removed.
        return ctx.sizes.conclusions_to_check > 0 or ctx.report.expired_pruned > 0

    def run(self, ctx: PassContext) -> None:
        # Each conclusion is invalidated at most once: that bounds the cascade.
        cascade = ctx.store.count("conclusion")
        ctx.report.conclusions_invalidated = ctx.drain(ctx.store.scripts.invalidate, cascade)
