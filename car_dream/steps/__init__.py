"""The steps of a pass, in the order they run. Adding a step: one module, one line here."""

from __future__ import annotations

from ..pipeline import Step
from .collect import Collect
from .embed import Embed
from .export import Export
from .forget import Forget
from .invalidate import Invalidate
from .merge import Merge
from .profiles import Profiles
from .prune import Prune
from .stats import Stats
from .trajectories import Trajectories

__all__ = ["STEPS"]

STEPS: tuple[Step, ...] = (
    Trajectories(),  # trajectories -> tool and source insights
    Profiles(),  # outcome profiles -> model insights
    Prune(),  # expired environment observations
    Forget(),  # facts over the memory budget or unused (off unless set)
    Invalidate(),  # conclusions whose premises went
    Collect(),  # superseded nodes
    Embed(),  # nodes without a current embedding
    Merge(),  # duplicates of the nodes just embedded (off with CAR_DREAM_MERGE=false)
    Stats(),  # node count and coverage for the report
    Export(),  # the .npz embeddings file
)
