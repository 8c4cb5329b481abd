"""The car-dream Celery app plus the benchmark's no-op task (the trigger-latency floor).

``celery -A benchmarks.celery_app worker`` runs car-dream's tasks exactly as
``celery -A car_dream worker`` does, with one extra task to compare against.
"""

from __future__ import annotations

from typing import Any

from car_dream import app
from car_dream.app import consolidate, dispatch

__all__ = ["app", "consolidate", "dispatch", "noop"]


@app.task(name="benchmarks.noop")
def noop() -> dict[str, Any]:
    """Does nothing, returns a small dict: Celery's own round trip through the same worker."""
    return {"status": "noop"}
