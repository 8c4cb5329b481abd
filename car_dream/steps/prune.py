"""Remove the environment observations whose ``expires_at`` has passed."""

from __future__ import annotations

from ..pipeline import PassContext


class Prune:
    name = "prune"

    def due(self, ctx: PassContext) -> bool:
        return ctx.sizes.expiry_due > 0

    def run(self, ctx: PassContext) -> None:
        ctx.report.expired_pruned = ctx.drain(ctx.store.scripts.prune)
