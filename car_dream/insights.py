"""Insight facts: their stable ids and their texts, from outcome counts.

Pure functions; the trajectories and profiles steps write the facts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from .trajectory import OUTCOMES

__all__ = ["slot_id", "source_insight", "tool_insight"]


def slot_id(kind: str, name: str) -> str:
    """Stable, key-safe id stem for the insight about ``name``."""
    return f"dream.{kind}.{hashlib.sha1(name.encode()).hexdigest()[:16]}"


def tool_insight(tool: str, counts: Mapping[str, int]) -> str:
    ok, bad = int(counts.get("success", 0)), int(counts.get("failure", 0))
    total = ok + bad
    rate = 100.0 * ok / total if total else 0.0
    return (
        f"Tool '{tool}' succeeded in {ok} of {total} recorded actions "
        f"({rate:.1f}% success, {bad} failed)."
    )


def source_insight(source: str, counts: Mapping[str, int]) -> str:
    total = sum(int(v) for v in counts.values())
    parts = ", ".join(f"{o} {int(counts.get(o, 0))}" for o in OUTCOMES)
    ok = int(counts.get("success", 0)) + int(counts.get("replan_success", 0))
    rate = 100.0 * ok / total if total else 0.0
    return (
        f"Proposals from '{source}' ended: {parts} "
        f"({total} in all, {rate:.1f}% reached their goal)."
    )
