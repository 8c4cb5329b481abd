"""Dry runs: the report says what a pass would do, and nothing is written."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from car_dream.config import DreamConfig
from car_dream.consolidate import run_pass
from car_dream.journal import entries
from car_dream.lock import lock_state
from car_dream.store import MemoryStore

from .test_app import _eager_app

NOW = 1_800_000_000.0
REMOVING = ("prune", "invalidate", "collect")


def at(t: float) -> Any:
    return lambda: t


def digest(store: MemoryStore) -> str:
    """Every key of the namespace but its reports and totals, as one hash."""
    skip = (store.keys.reports.encode(), store.keys.totals.encode())
    h = hashlib.sha256()
    for key in sorted(store.client.scan_iter(match=store.keys.prefix + "*", count=1000)):
        if key not in skip:
            h.update(key + b"\0" + (store.client.dump(key) or b""))
    return h.hexdigest()


def busy(s: MemoryStore) -> None:
    """Expired observations, cascading conclusions, superseded facts (one pinned)."""
    for i in range(12):
        s.ingest_environment(f"e{i}", f"obs {i}", expires_at=NOW + (i - 6))
    s.ingest_fact("f", "car", "the car is red")
    s.ingest_conclusion("c1", "from e0", premises=["e0", "f"])
    s.ingest_conclusion("c2", "from c1", premises=["c1"])
    s.ingest_conclusion("c3", "from c2", premises=["c2"])
    s.ingest_conclusion("c4", "from e11, which stays", premises=["e11"])
    for i in range(5):
        s.ingest_fact(f"g{i}", "topic", f"fact {i}")
    s.ingest_conclusion("c5", "from g0", premises=["g0"])
    for i in range(3):
        s.ingest_fact(f"h{i}", "topic", f"fact {i} revised", supersedes=f"g{i}")
    s.ingest_fact("p", "topic", "kept", pinned=True)
    s.ingest_fact("p2", "topic", "kept, revised", supersedes="p")


def test_a_dry_run_writes_nothing_and_the_next_pass_does_what_it_said(
    real_store: MemoryStore, tmp_path: Path
) -> None:
    from car_dream.config import load_config

    s = real_store
    config = load_config(interval_secs=60, batch_size=3, data_dir=tmp_path)
    busy(s)
    before = digest(s)
    dry = run_pass(s, config, clock=at(NOW), dry_run=True)
    assert dry.status == "completed" and dry.dry_run
    assert digest(s) == before  # nothing written, no lock taken
    assert lock_state(s.client, s.keys).state == "free"
    assert dry.expired_pruned == 7 and dry.conclusions_invalidated == 4  # e0..e6
    assert sorted(dry.planned["invalidate"]) == ["c1", "c2", "c3", "c5"]
    real = run_pass(s, config, clock=at(NOW))  # not coalesced: the window is still open
    assert real.status == "completed" and not real.dry_run
    for field in ("expired_pruned", "conclusions_invalidated", "superseded_gc", "total_nodes"):
        assert getattr(real, field) == getattr(dry, field), field
    assert real.nodes_embedded == dry.nodes_embedded
    done = {step: set() for step in REMOVING}  # type: dict[str, set[str]]
    for e in entries(s.client, s.keys, pass_id=real.pass_id):
        done[e.step].add(e.node)
    assert done == {step: set(dry.planned.get(step, [])) for step in REMOVING}
    listed = s.reports(2)
    assert [r.dry_run for r in listed] == [False, True]


def test_a_dry_run_counts_nothing_in_the_totals(
    real_store: MemoryStore, config: DreamConfig
) -> None:
    s = real_store
    s.ingest_environment("e", "obs", expires_at=NOW - 1)
    run_pass(s, config, clock=at(NOW), dry_run=True)
    assert s.client.hgetall(s.keys.totals) == {}
    assert s.get("e") is not None


def test_consolidate_delay_dry_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    app, task = _eager_app(monkeypatch, tmp_path)
    s = MemoryStore(app._car_dream_redis, "default")
    s.ingest_environment("e", "obs", expires_at=1.0)
    result = task.delay(dry_run=True).get()
    assert result["dry_run"] and result["expired_pruned"] == 1
    assert result["planned"] == {"prune": ["e"]}
    assert s.get("e") is not None
