"""Restore and undo on a real Redis: a removed node comes back as it was, with its
indexes and links, unless it was written since."""

from __future__ import annotations

from typing import Any

from car_dream.check import check_store
from car_dream.config import DreamConfig
from car_dream.consolidate import run_pass
from car_dream.journal import entries, undo
from car_dream.store import MemoryStore

NOW = 1_800_000_000.0


def at(t: float) -> Any:
    return lambda: t


def nodes(store: MemoryStore) -> dict[str, dict[bytes, bytes]]:
    """Every node's hash without its vector (nor the merge step's digest, recorded with
    it), by id."""
    out = {}
    for key in store.client.scan_iter(match=store.keys.node("*"), count=1000):
        raw = store.client.hgetall(key)
        out[key.decode().rsplit(":", 1)[1]] = {
            k: v for k, v in raw.items() if k not in (b"emb", b"emb_model", b"digest")
        }
    return out


def scenario(s: MemoryStore) -> None:
    """A premise that expires, a conclusion on it, a fact superseded by another."""
    s.ingest_environment("door", "the door is open", observed_at=NOW, expires_at=NOW + 10)
    s.ingest_fact("old", "car", "the car is red")
    s.ingest_conclusion("c", "the door lets the cat out", premises=["door"])
    s.ingest_conclusion("c2", "the cat may be lost", premises=["c"])
    s.ingest_fact("new", "car", "the car is blue", supersedes="old")


def test_a_pruned_environment_node_comes_back_with_its_indexes(
    real_store: MemoryStore, config: DreamConfig
) -> None:
    s = real_store
    s.ingest_environment("door", "the door is open", expires_at=NOW - 1)
    run_pass(s, config, force=True, clock=at(NOW))
    before = s.client.xlen(s.keys.journal)
    r = s.restore("door")
    assert r.ok and r.why.startswith("prune of pass ") and "expired at" in r.why
    node = s.get("door")
    assert node is not None and node.content == "the door is open" and node.expires_at == NOW - 1
    assert s.client.zscore(s.keys.expiry, "door") == NOW - 1  # still expired: as it was
    assert s.client.sismember(s.keys.unembedded, "door")  # its vector comes with the next pass
    assert check_store(s).ok
    (entry, *_) = entries(s.client, s.keys)
    assert (entry.step, entry.node) == ("restore", "door") and s.client.xlen(
        s.keys.journal
    ) == before + 1
    assert s.restore("door").why.startswith("already restored")  # type: ignore[union-attr]


def test_a_pinned_restore_survives_the_next_pass_and_is_embedded(
    real_store: MemoryStore, config: DreamConfig
) -> None:
    s = real_store
    s.ingest_environment("door", "the door is open", expires_at=NOW - 1)
    run_pass(s, config, force=True, clock=at(NOW))
    assert s.restore("door", pin=True).ok
    report = run_pass(s, config, force=True, clock=at(NOW + 1))
    assert report.expired_pruned == 0 and report.nodes_embedded == 1
    assert s.embedding("door") is not None and s.get("door").pinned  # type: ignore[union-attr]


def test_a_collected_superseded_fact_comes_back_superseded(
    real_store: MemoryStore, config: DreamConfig
) -> None:
    s = real_store
    s.ingest_fact("old", "car", "the car is red")
    s.ingest_fact("new", "car", "the car is blue", supersedes="old")
    assert run_pass(s, config, force=True, clock=at(NOW)).superseded_gc == 1
    assert s.restore("old").ok
    old = s.get("old")
    assert old is not None and old.superseded_by == "new" and old.content == "the car is red"
    assert s.client.zscore(s.keys.collectable, "old") is not None
    assert s.get("new").supersedes == "old"  # type: ignore[union-attr]
    assert check_store(s).ok


def test_an_invalidated_conclusion_comes_back_live_after_its_premise(
    real_store: MemoryStore, config: DreamConfig
) -> None:
    s = real_store
    scenario(s)
    report = run_pass(s, config, force=True, clock=at(NOW + 20))
    assert report.conclusions_invalidated == 2 and s.get("c") is None and s.get("c2") is None
    for node in ("door", "c", "c2"):  # premises first
        assert s.restore(node, pin=node == "door").ok, node
    c = s.get("c")
    assert c is not None and not c.superseded and c.invalidated is None
    assert s.client.smembers(s.keys.dependents("door")) == {b"c"}
    assert s.client.smembers(s.keys.dependents("c")) == {b"c2"}
    assert check_store(s).ok
    again = run_pass(s, config, force=True, clock=at(NOW + 21))
    assert again.conclusions_invalidated == 0 and s.get("c2") is not None


def test_restore_is_refused_after_a_rewrite(real_store: MemoryStore, config: DreamConfig) -> None:
    s = real_store
    s.ingest_environment("door", "the door is open", expires_at=NOW - 1)
    run_pass(s, config, force=True, clock=at(NOW))
    s.ingest_environment("door", "the door is shut")  # an agent writes it again
    r = s.restore("door")
    assert not r.ok and "written since" in r.why
    assert s.get("door").content == "the door is shut"  # type: ignore[union-attr]
    assert not s.restore("never-there").ok


def test_undo_puts_back_everything_a_pass_removed(
    real_store: MemoryStore, config: DreamConfig
) -> None:
    s = real_store
    scenario(s)
    before = nodes(s)
    report = run_pass(s, config, force=True, clock=at(NOW + 20))
    assert report.expired_pruned == 1 and report.superseded_gc == 3
    dry = undo(s.client, s.keys, report.pass_id, dry_run=True)
    assert all(r.ok for r in dry) and set(nodes(s)) == {"new"}  # nothing written
    done = undo(s.client, s.keys, report.pass_id)
    order = [r.node for r in done]
    assert all(r.ok for r in done) and sorted(order) == ["c", "c2", "door", "old"]
    assert order.index("door") < order.index("c") < order.index("c2")
    assert nodes(s) == before  # every field as it was, rev included
    assert check_store(s).ok
    restores = [e for e in entries(s.client, s.keys) if e.step == "restore"]
    assert len(restores) == 4 and len({e.pass_id for e in restores}) == 1
    again = undo(s.client, s.keys, report.pass_id)  # a second undo changes nothing
    assert not any(r.ok for r in again) and nodes(s) == before
