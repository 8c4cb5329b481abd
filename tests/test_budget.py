"""The memory budget on a real Redis: access tracking, the forgetting score, the forget
step (journaled, restorable), off unless set."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from car_dream.check import check_store
from car_dream.config import load_config
from car_dream.consolidate import run_pass
from car_dream.journal import entries
from car_dream.node import FORGET_HALF_LIFE_SECS
from car_dream.store import MemoryStore

H = FORGET_HALF_LIFE_SECS


def at(t: float) -> Any:
    return lambda: t


def facts(s: MemoryStore, n: int) -> None:
    for i in range(n):
        s.ingest_fact(f"f{i}", "topic", f"fact number {i}")
        time.sleep(0.002)  # distinct written_at: the oldest scores lowest


def test_a_read_records_its_access_at_most_once_per_resolution(real_store: MemoryStore) -> None:
    s = real_store
    s.ingest_fact("f", "topic", "a fact")
    written = float(s.client.hget(s.keys.node("f"), "written_at") or 0)
    assert s.client.zscore(s.keys.forgettable, "f") == written  # never accessed: its write
    assert s.get("f") is not None
    first = s.client.hmget(s.keys.node("f"), ["last_accessed", "access_count"])
    assert first[1] == b"1"
    assert s.get("f") is not None and s.touch(["f"]) == 0  # within the resolution
    assert s.client.hmget(s.keys.node("f"), ["last_accessed", "access_count"]) == first
    eager = MemoryStore(s.client, s.namespace, access_resolution=0)
    assert eager.touch(["f", "missing"]) == 1
    count = int(s.client.hget(s.keys.node("f"), "access_count") or 0)
    last = float(s.client.hget(s.keys.node("f"), "last_accessed") or 0)
    assert count == 2
    assert s.client.zscore(s.keys.forgettable, "f") == last + H * math.log2(1 + count)
    assert s.get("missing") is None and not s.client.exists(s.keys.node("missing"))
    s.ingest_fact("p", "topic", "pinned", pinned=True)
    eager.touch(["p"])
    assert s.client.zscore(s.keys.forgettable, "p") is None  # pinned: never scored
    assert check_store(s).ok


def test_the_budget_forgets_the_lowest_scores_journaled_and_restorable(
    real_store: MemoryStore, tmp_path: Path
) -> None:
    s = real_store
    s.ingest_fact("p", "topic", "pinned", pinned=True)
    facts(s, 10)
    s.ingest_conclusion("c", "from f3", premises=["f3"])
    s.touch(["f0", "f1"])  # used: a half-life's worth more
    config = load_config(interval_secs=60, max_nodes=8, batch_size=2, data_dir=tmp_path)
    dry = run_pass(s, config, force=True, dry_run=True)
    report = run_pass(s, config, force=True)
    forgotten = ["f2", "f3", "f4", "f5"]  # 12 nodes over 8; c goes with f3
    assert report.forgotten == 4 and dry.forgotten == 4 and dry.planned["forget"] == forgotten
    assert report.conclusions_invalidated == 1 and report.superseded_gc == 1
    assert [
        e.node for e in entries(s.client, s.keys, pass_id=report.pass_id) if e.step == "forget"
    ][::-1] == forgotten
    assert all(s.get(f) is None for f in forgotten) and s.get("p") is not None
    assert s.get("f0") is not None and s.get("f6") is not None
    (e, *_) = [e for e in entries(s.client, s.keys, node="f2")]
    assert e.reason.startswith("over the budget of 8 nodes (score ")
    assert s.restore("f2").ok and s.client.zscore(s.keys.forgettable, "f2") is not None
    assert check_store(s).ok


def test_facts_unused_for_too_long_are_forgotten(real_store: MemoryStore, tmp_path: Path) -> None:
    s = real_store
    facts(s, 3)
    s.touch(["f1"])  # its score is a half-life later
    config = load_config(interval_secs=60, forget_unused_after_secs=3600, data_dir=tmp_path)
    report = run_pass(s, config, force=True, clock=at(time.time() + 7200))
    assert report.forgotten == 2 and s.get("f1") is not None
    assert {e.reason.split(":")[0] for e in entries(s.client, s.keys)} == {"unused"}


def test_no_budget_no_forgetting(real_store: MemoryStore, tmp_path: Path) -> None:
    s = real_store
    facts(s, 5)
    report = run_pass(s, load_config(interval_secs=60, data_dir=tmp_path), force=True)
    assert report.forgotten == 0 and "forget" not in report.step_ms and s.count() == 5


def test_check_finds_and_repairs_a_missing_or_stale_score(real_store: MemoryStore) -> None:
    s = real_store
    facts(s, 2)
    s.client.zrem(s.keys.forgettable, "f0")  # a store from before the budget
    s.client.zadd(s.keys.forgettable, {"ghost": 1.0})
    found = check_store(s)
    assert found.problem_counts == {"forget_missing": 1, "forget_stale": 1}
    assert check_store(s, repair=True).ok and check_store(s).ok
    assert s.client.zscore(s.keys.forgettable, "ghost") is None
