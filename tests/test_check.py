"""check_store: drift induced by hand with raw Redis commands is found, then repaired.

Every test runs on fakeredis and on the real server (the scripts are Lua).
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from car_dream import CheckReport, check_store
from car_dream.cli import cli
from car_dream.config import load_config
from car_dream.consolidate import run_pass
from car_dream.errors import RepairRefusedError
from car_dream.keys import NAMESPACES_KEY
from car_dream.lock import PassLock, lock_state, pause
from car_dream.store import MemoryStore


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest) -> MemoryStore:
    return request.getfixturevalue(f"{request.param}_store")


def populate(store: MemoryStore) -> None:
    now = time.time()
    store.ingest_fact("f1", "s", "first fact")
    store.ingest_fact("f2", "s", "second fact", supersedes="f1")
    store.ingest_fact("pin", "s", "pinned fact", pinned=True)
    store.ingest_fact("pin2", "s", "replaces the pinned fact", supersedes="pin")
    store.ingest_environment("e1", "weather", observed_at=now, expires_at=now + 3600)
    store.ingest_environment("e2", "stale weather", observed_at=now - 10, expires_at=now - 1)
    store.ingest_environment("e3", "forever", observed_at=now)
    store.ingest_conclusion("c1", "because f2", premises=["f2", "e1"])
    store.ingest_conclusion("c2", "because f1", premises=["f1"])


def node_keys(store: MemoryStore) -> set[bytes]:
    return set(store.client.scan_iter(match=store.keys.prefix + "node:*", count=1000))


def test_a_fresh_store_and_a_consolidated_one_are_clean(store: MemoryStore, config: Any) -> None:
    empty = check_store(store)
    assert empty.ok and empty.nodes == 0 and empty.problems == 0
    populate(store)
    report = check_store(store)
    assert report.ok, report.messages
    assert report.nodes == 9 and report.nodes_by_kind == {
        "fact": 4,
        "environment": 3,
        "conclusion": 2,
    }
    assert report.embedded == 0 and report.unembedded_index == 9
    run_pass(store, config)
    after = check_store(store)
    assert after.ok, after.messages
    # f1 was collected: f2's supersedes link now dangles (normal after GC); c2 went with it.
    assert after.dangling_supersedes == 1
    assert after.embedded == after.nodes and after.unembedded_index == 0
    assert after.vector_bytes == [256 * 4]
    assert isinstance(after, CheckReport) and after.embedding_counts_match


def induce_drift(store: MemoryStore) -> None:
    """One of each kind of index drift, written with raw commands."""
    c, k = store.client, store.keys
    c.srem(k.kind("fact"), "f2")  # node missing from its kind set
    c.sadd(k.kind("fact"), "ghost")  # kind entry without a node
    c.sadd(k.kind("conclusion"), "e3")  # entry in the wrong kind set
    c.zrem(k.expiry, "e1")  # unexpired environment node not scheduled
    c.zadd(k.expiry, {"f2": 1.0})  # a fact scheduled for expiry
    c.zadd(k.expiry, {"e2": 12345.0})  # wrong score
    c.zrem(k.collectable, "f1")  # superseded node not queued for GC
    c.zadd(k.collectable, {"pin2": 1.0})  # live node queued for GC
    c.zadd(k.collectable, {"gone": 1.0})
    c.srem(k.unembedded, "e3")  # unembedded node missing from the index
    c.sadd(k.unembedded, "nobody")
    c.sadd(k.invalidate, "f2")  # a fact queued as a conclusion
    c.srem(k.dependents("f2"), "c1")  # dependents edge missing
    c.sadd(k.dependents("e1"), "f2")  # dependents edge that is no premise
    c.sadd(k.dependents("vanished"), "c1")  # dependents of a node that does not exist


def test_drift_is_found_and_repaired_without_deleting_a_node(store: MemoryStore) -> None:
    populate(store)
    before_nodes = node_keys(store)
    before = {key: store.client.hgetall(key) for key in before_nodes}
    induce_drift(store)
    report = check_store(store)
    assert not report.ok
    assert report.problem_counts == {
        "deps_missing": 1,
        "deps_stale": 2,
        "expiry_missing": 1,
        "expiry_score": 1,
        "expiry_stale": 1,
        "gc_missing": 1,
        "gc_stale": 2,
        "invalidate_stale": 1,
        "kind_missing": 1,
        "kind_stale": 2,
        "unembedded_missing": 1,
        "unembedded_stale": 1,
    }, report.messages
    assert "ghost: kind_stale:fact" in report.messages
    assert "e1: expiry_missing" in report.messages

    fixed = check_store(store, repair=True)
    assert fixed.ok, fixed.messages
    assert fixed.repair and fixed.problems_found == report.problems and fixed.repaired_ids > 0
    assert node_keys(store) == before_nodes  # nothing deleted
    assert {key: store.client.hgetall(key) for key in before_nodes} == before
    k = store.keys
    assert store.client.zscore(k.expiry, "e1") == pytest.approx(store.get("e1").expires_at)
    assert store.client.zscore(k.expiry, "e2") == pytest.approx(store.get("e2").expires_at)
    assert store.client.sismember(k.dependents("f2"), "c1")
    assert not store.client.exists(k.dependents("vanished"))
    assert store.client.get(k.lock) is None  # the repair released its lock


def test_after_repair_a_pass_does_what_the_fields_say(store: MemoryStore, config: Any) -> None:
    populate(store)
    induce_drift(store)
    check_store(store, repair=True)
    report = run_pass(store, config)
    assert report.status == "completed"
    assert report.expired_pruned == 1  # e2 only; e1 is still in the future
    assert store.get("e1") is not None and store.get("pin") is not None
    assert store.get("f1") is None and store.get("f2") is not None
    assert check_store(store).ok


def test_malformed_node_is_reported_and_never_deleted(store: MemoryStore) -> None:
    populate(store)
    store.client.hset(store.keys.node("half"), "rev", "1")  # a half-written node
    store.client.sadd(store.keys.kind("fact"), "half")
    report = check_store(store)
    assert report.malformed_nodes == 1 and not report.ok
    fixed = check_store(store, repair=True)
    assert store.client.exists(store.keys.node("half"))
    assert fixed.problem_counts == {"malformed": 1}  # left for a human


def test_vector_of_the_wrong_size_is_dropped_and_queued_again(
    store: MemoryStore, config: Any
) -> None:
    populate(store)
    run_pass(store, config)
    store.client.hset(store.keys.node("e1"), "emb", np.zeros(3, dtype=np.float32).tobytes())
    report = check_store(store)
    assert report.problem_counts == {"vector_size": 1}
    assert report.vector_bytes == [12, 1024]
    fixed = check_store(store, repair=True)
    assert fixed.ok and store.get("e1") is not None
    assert store.client.sismember(store.keys.unembedded, "e1")
    assert run_pass(store, config, force=True).nodes_embedded == 1
    assert check_store(store).embedded == check_store(store).nodes


def test_unregistered_namespace_is_registered_again(store: MemoryStore) -> None:
    populate(store)
    store.client.srem(NAMESPACES_KEY, store.namespace)
    assert check_store(store).problem_counts == {"namespace_unregistered": 1}
    assert check_store(store, repair=True).ok
    assert store.client.sismember(NAMESPACES_KEY, store.namespace)


def test_repair_refused_while_a_pass_runs(store: MemoryStore) -> None:
    populate(store)
    induce_drift(store)
    running = PassLock(store.client, store.keys, 30)
    assert running.acquire().ok
    with pytest.raises(RepairRefusedError, match="a pass is running"):
        check_store(store, repair=True)
    assert store.client.get(store.keys.lock) == f"running:{running.token}".encode()
    assert not check_store(store).ok  # nothing was touched


def test_repair_takes_a_finished_window_and_works_while_paused(store: MemoryStore) -> None:
    populate(store)
    induce_drift(store)
    done = PassLock(store.client, store.keys, 30)
    assert done.acquire().ok and done.finish()
    pause(store.client, store.keys)
    assert check_store(store, repair=True).ok
    assert store.client.get(store.keys.lock) is None
    induce_drift(store)  # and over a free lock, still paused
    assert check_store(store, repair=True).ok
    assert store.client.get(store.keys.lock) is None
    assert lock_state(store.client, store.keys).paused  # the pause is the operator's


def test_repair_refused_while_a_pass_runs_even_when_paused(store: MemoryStore) -> None:
    populate(store)
    induce_drift(store)
    running = PassLock(store.client, store.keys, 30)
    assert running.acquire().ok
    pause(store.client, store.keys)
    with pytest.raises(RepairRefusedError, match="a pass is running"):
        check_store(store, repair=True)
    assert store.client.get(store.keys.lock) == f"running:{running.token}".encode()


def test_check_while_writers_write_sees_no_false_drift(store: MemoryStore) -> None:
    # Each verdict is one atomic script: interleaved writes never look like drift.
    populate(store)
    for i in range(50):
        store.ingest_fact(f"w{i}", "s", f"fact {i}")
        if i % 5 == 0:
            assert check_store(store).ok


def test_cli_check_and_repair(real_store: MemoryStore, redis_url: str, monkeypatch: Any) -> None:
    populate(real_store)
    monkeypatch.setenv("CAR_DREAM_REDIS_URL", redis_url)
    monkeypatch.setenv("CAR_DREAM_NAMESPACE", real_store.namespace)
    runner = CliRunner()
    ok = runner.invoke(cli, ["check"])
    assert ok.exit_code == 0, ok.output
    assert "ok: 9 nodes" in ok.output
    induce_drift(real_store)
    bad = runner.invoke(cli, ["check", "--json"])
    assert bad.exit_code == 1
    data = json.loads(bad.output)
    assert data["ok"] is False and data["problems"] == 15
    fixed = runner.invoke(cli, ["check", "--repair"])
    assert fixed.exit_code == 0, fixed.output
    assert "repaired" in fixed.output
    assert runner.invoke(cli, ["check"]).exit_code == 0
    load_config()  # the environment is still valid
