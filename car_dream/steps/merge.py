"""Merge duplicates of the nodes embedded in this pass (README "Merging duplicates").

Runs only when the embed step stored vectors in this pass: an idle pass sends nothing.
:func:`car_dream.merging.plan_merges` decides (exact duplicates through the digest
index on any Redis, near ones through the vector index, one ``VSIM`` per new node); one
fenced ``merge.lua`` call per batch of groups supersedes each duplicate by its group's
canonical (reason ``duplicate``, journaled) and moves the conclusions citing it to the
canonical. GC collects the duplicates as superseded nodes.
"""

from __future__ import annotations

from ..dedup import default_threshold
from ..merging import Member, plan_merges
from ..pipeline import PassContext


class Merge:
    name = "merge"

    def due(self, ctx: PassContext) -> bool:
        return ctx.config.merge and bool(ctx.embedded)

    def run(self, ctx: PassContext) -> None:
        config = ctx.config
        threshold = config.merge_threshold or default_threshold(ctx.embedder.model_id)
        batch = ctx.batch_size
        for start in range(0, len(ctx.embedded), batch):
            ctx.checkpoint()
            plan = plan_merges(
                ctx.store,
                ctx.embedded[start : start + batch],
                ctx.embedder.model_id,
                threshold,
                config.merge_across_subjects,
                ctx.clock(),
            )
            if not plan.groups and not plan.digests:
                continue
            journal = (ctx.report.pass_id, config.journal_retention_secs)
            _, merged, _moved = ctx.fenced(
                ctx.store.scripts.merge,
                repr(ctx.clock()),
                *journal,
                "\n".join(_group_line(g) for g in plan.groups),
                "\n".join(f"{m.id} {m.rev} {m.digest}" for m in plan.digests),
            )
            ctx.report.duplicates_merged += int(merged)
        ctx.embedded.clear()


def _group_line(group: list[Member]) -> str:
    return " ".join(f"{m.id} {m.rev}" for m in group)
