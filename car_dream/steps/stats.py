"""The node count and embedding coverage the report states."""

from __future__ import annotations

from ..pipeline import PassContext


class Stats:
    name = "stats"

    def due(self, ctx: PassContext) -> bool:
        return True

    def run(self, ctx: PassContext) -> None:
        r = ctx.report
        # The sizes read at the start still hold unless a step removed or embedded nodes.
        changed = r.expired_pruned or r.superseded_gc or r.nodes_embedded or r.forgotten
        sizes = ctx.refresh_sizes() if changed else ctx.sizes
        r.total_nodes = sizes.total_nodes
        r.embedding_coverage = sizes.embedding_coverage
