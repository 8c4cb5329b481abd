"""Outcome profiles -> one insight fact per model, rewritten when its profile changes."""

from __future__ import annotations

from ..insight_reads import PROFILES_FILE_READ
from ..insights import slot_id
from ..pipeline import PassContext
from ..profiles import MISSING, load_profiles, profile_digest, profile_insight
from .trajectories import apply_insights, insight_fact


class Profiles:
    name = "profiles"

    def due(self, ctx: PassContext) -> bool:
        return ctx.config.outcome_profiles_path is not None

    def run(self, ctx: PassContext) -> None:
        """The version of the file last read (its digest, or MISSING) is kept in the meta
        hash, written last: a file unchanged since was written already and its problems
        reported, so it costs one read and no repeated warning."""
        path = ctx.config.outcome_profiles_path
        assert path is not None
        loaded = load_profiles(path)
        if ctx.store.profiles_file_read() == loaded.version:
            return
        if loaded.version == MISSING:
            ctx.report.warn(f"profiles {path}: no such file (CAR_DREAM_OUTCOME_PROFILES_PATH)")
        for problem in loaded.problems:
            ctx.report.warn(problem, skipped=1)
        profiles = loaded.by_id
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
        meta = {ctx.store.keys.meta: {PROFILES_FILE_READ: loaded.version}}
        apply_insights(ctx, {"hset": meta})
