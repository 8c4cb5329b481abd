"""Outcome profiles -> one insight fact per model, rewritten when its profile changes."""

from __future__ import annotations

from ..file_versions import stat_cached
from ..insight_reads import PROFILES_FILE_READ
from ..insights import slot_id
from ..pipeline import PassContext
from ..profiles import MISSING, load_profiles, profile_digest, profile_insight, profiles_version
from .trajectories import apply_insights, insight_fact


class Profiles:
    name = "profiles"

    def due(self, ctx: PassContext) -> bool:
        """The version of the file last read (its digest, or MISSING) is kept in the meta
        hash, written last: a file unchanged since was written already and its problems
        reported, so it costs a ``stat`` (a read if it changed) and no repeated warning."""
        path = ctx.config.outcome_profiles_path
        if path is None:
            return False
        return stat_cached(path, profiles_version) != ctx.bookkeeping(PROFILES_FILE_READ)

    def run(self, ctx: PassContext) -> None:
        path = ctx.config.outcome_profiles_path
        assert path is not None
        loaded = load_profiles(path)
        if ctx.bookkeeping(PROFILES_FILE_READ) == loaded.version:
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
