"""Outcome profiles -> one insight fact per model, rewritten when its profile changes."""

from __future__ import annotations

from ..insights import slot_id
from ..pipeline import PassContext
from ..profiles import load_profiles, profile_digest, profile_insight
from .trajectories import apply_insights, insight_fact


class Profiles:
    name = "profiles"

    def due(self, ctx: PassContext) -> bool:
        return ctx.config.outcome_profiles_path is not None

    def run(self, ctx: PassContext) -> None:
        assert ctx.config.outcome_profiles_path is not None
        profiles, problems = load_profiles(ctx.config.outcome_profiles_path)
        for problem in problems:
            ctx.report.warn(problem, skipped=1)
        ids = list(profiles)
        for i in range(0, len(ids), ctx.batch_size):
            chunk = ids[i : i + ctx.batch_size]
            digests = {m: profile_digest(profiles[m]) for m in chunk}
            old = ctx.store.profile_digests(chunk)
            changed = [m for m, o in zip(chunk, old, strict=True) if o != digests[m]]
            if not changed:
                continue
            facts = [
                insight_fact(f"model:{m}", slot_id("model", m), profile_insight(m, profiles[m]))
                for m in changed
            ]
            hset = {ctx.store.keys.profile_digests: {m: digests[m] for m in changed}}
            ctx.report.model_insights += apply_insights(ctx, {"hset": hset, "facts": facts})
