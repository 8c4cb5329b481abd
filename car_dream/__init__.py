"""car-dream: background consolidation ("dreaming") of an agent's memory on Celery and Redis.

``celery -A car_dream worker`` / ``celery -A car_dream beat`` find :data:`app` here;
``consolidate.delay()`` triggers one pass; :func:`run_pass` runs one in-process.
:func:`install` puts the tasks on your own Celery app, :func:`beat_entry` schedules them.
"""

from __future__ import annotations

from .app import app, consolidate, create_app
from .celery_config import dream_config, get_redis
from .check import CheckReport, check_store
from .config import DreamConfig, load_config, mask_url
from .consolidate import run_pass
from .embedder import Embedder, HashingEmbedder
from .errors import (
    CarDreamError,
    ConfigError,
    InvalidInputError,
    LockLostError,
    PassCancelledError,
    PassFailedError,
    SearchUnavailableError,
    SupersededNodeError,
    UnknownNodeError,
)
from .installer import install
from .keys import Keys
from .loop import DreamHandle, spawn_dream_loop
from .report import ConsolidationReport
from .schedule import beat_entry, ensure_dream_task
from .search import SearchHit
from .store import MemoryStore, Node, WriteBatch

__all__ = [
    "CarDreamError",
    "CheckReport",
    "ConfigError",
    "ConsolidationReport",
    "DreamConfig",
    "DreamHandle",
    "Embedder",
    "HashingEmbedder",
    "InvalidInputError",
    "Keys",
    "LockLostError",
    "MemoryStore",
    "Node",
    "PassCancelledError",
    "PassFailedError",
    "SearchHit",
    "SearchUnavailableError",
    "SupersededNodeError",
    "UnknownNodeError",
    "WriteBatch",
    "app",
    "beat_entry",
    "check_store",
    "consolidate",
    "create_app",
    "dream_config",
    "ensure_dream_task",
    "get_redis",
    "install",
    "load_config",
    "mask_url",
    "run_pass",
    "spawn_dream_loop",
]
