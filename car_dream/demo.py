"""A small demo memory, so the first ``car-dream dev`` has something to consolidate.

Written once, into an empty namespace: expired observations (pruned), a fact that
a newer one supersedes (collected), a conclusion resting on it (invalidated), one
pinned fact (kept), a trajectory file (tool and source insights) and an outcome
profiles file (model insights).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .store import MemoryStore

__all__ = ["DemoFiles", "demo_files", "is_fresh", "seed_demo"]


@dataclass(frozen=True)
class DemoFiles:
    trajectory_dir: Path
    outcome_profiles_path: Path
    embeddings_path: Path

    def env(self) -> dict[str, str]:
        """The settings that point a worker at these files."""
        return {
            "CAR_DREAM_TRAJECTORY_DIR": str(self.trajectory_dir),
            "CAR_DREAM_OUTCOME_PROFILES_PATH": str(self.outcome_profiles_path),
            "CAR_DREAM_EMBEDDINGS_PATH": str(self.embeddings_path),
        }


def demo_files(data_dir: Path) -> DemoFiles:
    base = Path(data_dir).expanduser() / "demo"
    return DemoFiles(base / "trajectories", base / "outcome_profiles.json", base / "embeddings.npz")


def is_fresh(store: MemoryStore) -> bool:
    """Nothing written and no pass ever run: a first start."""
    return store.count() == 0 and not store.client.exists(store.keys.reports)


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _trajectory(
    n: int, now: float, source: str, outcome: str, tools: list[tuple[str, bool]]
) -> dict[str, Any]:
    events: list[dict[str, Any]] = [
        {"kind": "proposal_started", "action_id": None, "tool": None, "data": {}, "duration_ms": 0}
    ]
    for i, (tool, ok) in enumerate(tools):
        events.append(
            {
                "kind": "action_succeeded" if ok else "action_failed",
                "action_id": f"a{n}-{i}",
                "tool": tool,
                "data": {} if ok else {"error": "timeout"},
                "duration_ms": 120 + 37 * i,
            }
        )
    return {
        "proposal_id": f"demo-proposal-{n}",
        "source": source,
        "action_count": len(tools),
        "events": events,
        "outcome": outcome,
        "timestamp": _rfc3339(now - 600 + 60 * n),
        "duration_ms": 400 + 150 * n,
        "replan_attempts": 1 if outcome.startswith("replan") else 0,
    }


def write_files(files: DemoFiles, now: float) -> None:
    files.trajectory_dir.mkdir(parents=True, exist_ok=True)
    records = [
        _trajectory(1, now, "planner", "success", [("web_search", True), ("read_file", True)]),
        _trajectory(2, now, "planner", "replan_success", [("web_search", False), ("shell", True)]),
        _trajectory(3, now, "chat", "failed", [("shell", False)]),
        _trajectory(4, now, "chat", "success", [("read_file", True)]),
    ]
    path = files.trajectory_dir / "demo.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    profiles = [
        {"model_id": "demo-small", "success_rate": 0.82, "avg_latency_ms": 310, "samples": 120},
        {"model_id": "demo-large", "success_rate": 0.93, "avg_latency_ms": 1240, "samples": 45},
    ]
    files.outcome_profiles_path.write_text(json.dumps(profiles, indent=2) + "\n")


def seed_demo(store: MemoryStore, data_dir: Path, now: float | None = None) -> DemoFiles:
    """Write the demo memory into ``store`` and its files under ``data_dir/demo``."""
    now = time.time() if now is None else now
    files = demo_files(data_dir)
    write_files(files, now)
    hour = 3600.0
    store.ingest_environment(
        "env.weather.lisbon",
        "It is raining in Lisbon.",
        observed_at=now - 3 * hour,
        expires_at=now - 2 * hour,
    )
    store.ingest_environment(
        "env.office.door",
        "The office door is open.",
        observed_at=now - hour,
        expires_at=now - 60,
    )
    store.ingest_environment(
        "env.battery", "The laptop battery is at 80%.", observed_at=now, expires_at=now + 6 * hour
    )
    # Observations that go stale over the next minute, so later passes have work too.
    for secs in (15, 35, 55):
        store.ingest_environment(
            f"env.kettle.{secs}s",
            f"The kettle was heard {secs} seconds before it cooled.",
            observed_at=now,
            expires_at=now + secs,
        )
    store.ingest_fact(
        "fact.user.city.v1",
        "user.city",
        "The user lives in Lisbon.",
        source="user",
        provenance="peer",
        timestamp=now - 30 * 86400,
    )
    store.ingest_conclusion(
        "concl.commute",
        "The user's commute to the Lisbon office takes 20 minutes.",
        premises=["fact.user.city.v1"],
    )
    store.ingest_fact(
        "fact.user.city.v2",
        "user.city",
        "The user moved to Porto.",
        source="user",
        provenance="peer",
        timestamp=now - 86400,
        supersedes="fact.user.city.v1",
    )
    store.ingest_fact(
        "fact.user.coffee",
        "user.preferences",
        "The user drinks espresso, no sugar.",
        source="user",
        provenance="peer",
        timestamp=now - 7 * 86400,
        pinned=True,
        tags=("preference",),
    )
    return files
