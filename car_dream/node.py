"""A node as read back from Redis, and the index sizes a pass plans from."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = ["KINDS", "IndexSizes", "Node", "NodeKind", "coverage", "text"]

NodeKind = Literal["fact", "environment", "conclusion"]
KINDS: tuple[NodeKind, ...] = ("fact", "environment", "conclusion")
# The half-life of a fact's relevance in the forgetting score (README "The memory
# budget"). Fixed: the stored scores are valid for one value only.
FORGET_HALF_LIFE_SECS = 7 * 86400
# How the vector index (Redis 8 vector sets) stores each vector: "Q8" (8-bit, the vector
# sets' default) or "NOQUANT" (float32). Chosen by recall measured in benchmarks/
# search_rows.py; changing it takes effect as vectors are added (check --repair rebuilds).
VECTOR_QUANT = "Q8"


def text(value: bytes | None) -> str | None:
    """A Redis reply as text (None stays None)."""
    return None if value is None else value.decode()


class Node(BaseModel):
    """A node as read back from Redis."""

    id: str
    kind: NodeKind
    content: str
    subject: str | None = None
    source: str | None = None
    provenance: str | None = None
    scope: str | None = None
    timestamp: float | None = None
    tags: list[str] = Field(default_factory=list)
    pinned: bool = False
    observed_at: float | None = None
    expires_at: float | None = None
    premises: list[str] = Field(default_factory=list)
    supersedes: str | None = None
    superseded: bool = False
    superseded_by: str | None = None
    invalidated: str | None = None
    embedding_model: str | None = None
    rev: int = 0

    @classmethod
    def from_hash(cls, node_id: str, raw: dict[bytes, bytes]) -> Node:
        f = {k.decode(): v for k, v in raw.items() if k != b"emb"}

        def num(name: str) -> float | None:
            return float(f[name]) if name in f else None

        return cls(
            id=node_id,
            kind=f["kind"].decode(),  # type: ignore[arg-type]
            content=f["content"].decode(),
            subject=text(f.get("subject")),
            source=text(f.get("source")),
            provenance=text(f.get("provenance")),
            scope=text(f.get("scope")),
            timestamp=num("timestamp"),
            tags=json.loads(f["tags"]) if "tags" in f else [],
            pinned=f.get("pinned") == b"1",
            observed_at=num("observed_at"),
            expires_at=num("expires_at"),
            premises=json.loads(f["premises"]) if "premises" in f else [],
            supersedes=text(f.get("supersedes")),
            superseded="superseded_by" in f,
            superseded_by=text(f.get("superseded_by")) or None,
            invalidated=text(f.get("invalidated")),
            embedding_model=text(f.get("emb_model")),
            rev=int(f.get("rev", b"0")),
        )


def coverage(total: int, unembedded: int) -> float:
    """Share of nodes with a current embedding; 1.0 for an empty store."""
    if total <= 0:
        return 1.0
    return max(0.0, min(1.0, (total - unembedded) / total))


@dataclass(frozen=True)
class IndexSizes:
    """Node counts and the size of each work index, read in one round trip."""

    nodes: dict[str, int]
    expiry_scheduled: int
    collectable: int
    conclusions_to_check: int
    unembedded: int
    embedding_model: str | None
    expiry_due: int = 0  # expired by the time the sizes were read for (0 if not asked)
    forgettable: int = 0  # live, unpinned facts scored for the memory budget

    @property
    def total_nodes(self) -> int:
        return sum(self.nodes.values())

    @property
    def embedding_coverage(self) -> float:
        return coverage(self.total_nodes, self.unembedded)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON (``car-dream status --json``)."""
        return {
            **asdict(self),
            "total_nodes": self.total_nodes,
            "embedding_coverage": self.embedding_coverage,
        }
