"""Remove superseded, unpinned nodes (superseded by a newer write or invalidated)."""

from __future__ import annotations

from ..pipeline import PassContext


class Collect:
    name = "collect"

    def due(self, ctx: PassContext) -> bool:
        return ctx.sizes.collectable > 0 or ctx.report.conclusions_invalidated > 0

    def run(self, ctx: PassContext) -> None:
        ctx.report.superseded_gc = ctx.drain(ctx.store.scripts.collect)
