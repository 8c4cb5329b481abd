"""The report every pass returns, stores and logs."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from .config import mask_url
from .errors import redis_full

__all__ = ["ConsolidationReport", "PassStatus", "failure_reason", "new_pass_id"]

PassStatus = Literal["completed", "skipped", "cancelled", "lost_lock", "failed"]


def new_pass_id() -> str:
    """The id a report and the journal entries of its pass share."""
    return secrets.token_hex(6)


class ConsolidationReport(BaseModel):
    """What one pass did. The first seven fields are the seed's."""

    expired_pruned: int = 0
    superseded_gc: int = 0
    nodes_embedded: int = 0
    trajectory_insights: int = 0
    model_insights: int = 0
    # None unless the pass got as far as counting: a skipped, cancelled or failed pass
    # measured nothing, and 0 / 1.0 would read as an empty, fully embedded store.
    total_nodes: int | None = None
    embedding_coverage: float | None = None
    conclusions_invalidated: int = 0
    forgotten: int = 0  # facts the memory budget removed
    duplicates_merged: int = 0  # nodes superseded as duplicates of a canonical node
    skipped_records: int = 0
    warnings: list[str] = Field(default_factory=list)
    namespace: str = "default"
    status: PassStatus = "completed"
    reason: str | None = None
    trailing: bool = False
    lock_ttl_remaining: float | None = None
    started_at: datetime
    finished_at: datetime | None = None
    duration_ms: float = 0.0
    step_ms: dict[str, float] = Field(default_factory=dict)  # each step that ran, in order
    # Every journal entry of this pass carries it (``car-dream journal --pass``).
    pass_id: str = Field(default_factory=new_pass_id)
    # A dry run wrote nothing: its counts are what a pass would do, ``planned`` names the
    # node ids per step (the first PLANNED_IDS of each).
    dry_run: bool = False
    planned: dict[str, list[str]] = Field(default_factory=dict)

    @property
    def did_work(self) -> bool:
        """The seed's trailing-run rule."""
        return (
            self.expired_pruned > 0
            or self.superseded_gc > 0
            or self.nodes_embedded > 0
            or self.trajectory_insights > 0
            or self.forgotten > 0
            or self.duplicates_merged > 0
        )

    def warn(self, message: str, *, skipped: int = 0) -> None:
        # Cap the list: a file of a million bad lines must not make a megabyte report.
        self.skipped_records += skipped
        if len(self.warnings) < 50:
            self.warnings.append(message)
        elif len(self.warnings) == 50:
            self.warnings.append("further warnings omitted")


def failure_reason(exc: BaseException) -> str:
    """``exc`` as a one-line reason for a report or a log, any URL's password masked
    (connection errors can quote the URL)."""
    exc = redis_full(exc) or exc  # "out of memory: Redis is full ..." rather than Redis's words
    text = f"{exc.__class__.__name__}: {exc}"
    return " ".join(mask_url(w) or w if "://" in w else w for w in text.split(" "))
