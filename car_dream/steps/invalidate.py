"""Invalidate conclusions whose premises were removed or superseded (the cascade)."""

from __future__ import annotations

from ..pipeline import PassContext


class Invalidate:
    name = "invalidate"

    def due(self, ctx: PassContext) -> bool:
        r = ctx.report  # what pruning and forgetting removed queued its dependents
        return ctx.sizes.conclusions_to_check > 0 or r.expired_pruned > 0 or r.forgotten > 0

    def run(self, ctx: PassContext) -> None:
        # Each conclusion is invalidated at most once: that bounds the cascade.
        cascade = ctx.store.count("conclusion")
        ctx.report.conclusions_invalidated = ctx.drain(ctx.store.scripts.invalidate, cascade)
