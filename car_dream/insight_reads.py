"""What the trajectories and profiles steps read from a namespace: watermarks, running
counts, digests. A part of :class:`car_dream.store.MemoryStore`."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from .keys import Keys
from .node import text

__all__ = ["PROFILES_FILE_READ", "TRAJ_LISTING", "InsightReads"]

# Field of the meta hash: the version of the profiles file the last pass read.
PROFILES_FILE_READ = "profiles_file"
# Field of the meta hash: the digest of the trajectory directory's listing (names, sizes,
# times) as of the last pass that read every file in it to its end.
TRAJ_LISTING = "traj_listing"


class InsightReads:
    client: Any
    keys: Keys

    def trajectory_offsets(self) -> dict[str, int]:
        """Trajectory file name -> bytes already consumed."""
        raw = self.client.hgetall(self.keys.traj_offsets)
        return {f.decode(): int(v) for f, v in raw.items()}

    def trajectory_counts(self, key: str, names: Sequence[str]) -> list[Counter[str]]:
        """The running outcome counts of tools or sources (``key``: traj_tools/traj_sources)."""
        if not names:
            return []
        return [_counts(raw) for raw in self.client.hmget(key, list(names))]

    def dirty_insights(self) -> list[str]:
        """Insight subjects (``tool:x``, ``source:y``) whose fact is not yet rewritten."""
        return sorted(m.decode() for m in self.client.smembers(self.keys.insight_dirty))

    def insight_counts(
        self, tools: Sequence[str], sources: Sequence[str]
    ) -> tuple[list[Counter[str]], list[Counter[str]]]:
        """The running counts of ``tools`` and ``sources`` in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(self.keys.traj_tools, list(tools) or ["-"])
        pipe.hmget(self.keys.traj_sources, list(sources) or ["-"])
        tool_raw, source_raw = pipe.execute()
        return [_counts(r) for r in tool_raw[: len(tools)]], [
            _counts(r) for r in source_raw[: len(sources)]
        ]

    def profile_digests(self, model_ids: Sequence[str]) -> list[str | None]:
        """The digest of the profile last turned into a fact, per model id."""
        return [text(d) for d in self.client.hmget(self.keys.profile_digests, list(model_ids))]


def _counts(raw: bytes | None) -> Counter[str]:
    return Counter(json.loads(raw)) if raw else Counter()
