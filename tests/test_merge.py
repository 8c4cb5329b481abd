"""The merge step on a store: exact duplicates on any Redis and with any embedder, the
canonical rule, pinned nodes, conclusions moved (not invalidated), the journal, the fence,
an idle pass, CAR_DREAM_MERGE=false."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from car_dream.check import check_store
from car_dream.config import DreamConfig, load_config
from car_dream.consolidate import run_pass
from car_dream.journal import entries
from car_dream.merging import Member, components, digest_key, may_merge, similarities
from car_dream.store import MemoryStore

NOW = 1_800_000_000.0


def clock() -> float:
    return NOW


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest) -> MemoryStore:
    return request.getfixturevalue("fake_store" if request.param == "fake" else "real_store")


def force_pass(store: MemoryStore, config: DreamConfig, **kw: Any) -> Any:
    report = run_pass(store, config, force=True, clock=kw.pop("clock", clock), **kw)
    assert report.status == "completed", report.reason
    return report


def live(store: MemoryStore, node_id: str) -> bool:
    node = store.get(node_id)
    return node is not None and not node.superseded


def test_exact_duplicates_merge_into_the_newest(store: MemoryStore, config: DreamConfig) -> None:
    store.ingest_fact("a", "prefs", "The user prefers dark mode.", timestamp=100.0)
    store.ingest_fact("b", "prefs", "the user  PREFERS dark mode.", timestamp=200.0)
    store.ingest_fact("c", "other", "The user prefers dark mode.", timestamp=300.0)
    report = force_pass(store, config)
    assert report.duplicates_merged == 1 and report.did_work
    assert live(store, "b") and live(store, "c")  # c: another subject
    node = store.get("a")
    assert node is not None and node.superseded_by == "b"
    journaled = list(entries(store.client, store.keys, node="a"))
    assert [(e.step, e.reason) for e in journaled] == [("merge", "duplicate")]
    # GC collects the duplicate as any superseded node, on the next pass.
    again = force_pass(store, config)
    assert again.superseded_gc == 1 and store.get("a") is None
    assert check_store(store).ok


def test_a_later_exact_duplicate_is_found_through_the_digest_index(
    store: MemoryStore, config: DreamConfig
) -> None:
    store.ingest_fact("a", "s", "Backups are encrypted.", timestamp=100.0)
    assert force_pass(store, config).duplicates_merged == 0
    store.ingest_fact("b", "s", "Backups  are encrypted.", timestamp=50.0)
    assert force_pass(store, config).duplicates_merged == 1
    assert live(store, "a")  # the newer timestamp survives, not the newer write
    assert store.get("b").superseded_by == "a"  # type: ignore[union-attr]


def test_a_pinned_node_is_never_merged_away(store: MemoryStore, config: DreamConfig) -> None:
    store.ingest_fact("old", "s", "The API key rotates monthly.", timestamp=1.0, pinned=True)
    store.ingest_fact("new", "s", "The API key rotates monthly.", timestamp=9.0)
    force_pass(store, config)
    assert live(store, "old")
    assert store.get("new").superseded_by == "old"  # type: ignore[union-attr]


def test_two_pinned_duplicates_both_stay(store: MemoryStore, config: DreamConfig) -> None:
    store.ingest_fact("p1", "s", "Same text.", pinned=True)
    store.ingest_fact("p2", "s", "same text.", pinned=True)
    assert force_pass(store, config).duplicates_merged == 0
    assert live(store, "p1") and live(store, "p2")


def test_conclusions_move_to_the_canonical_not_invalidated(
    store: MemoryStore, config: DreamConfig
) -> None:
    store.ingest_fact("f_old", "weather", "It rains in Bergen.", timestamp=1.0)
    store.ingest_fact("f_new", "weather", "it rains in bergen.", timestamp=2.0)
    store.ingest_fact("g", "plans", "A walk at noon.")
    store.ingest_conclusion("c1", "Take an umbrella.", premises=["f_old", "g"])
    store.ingest_conclusion("c2", "Wear boots.", premises=["f_old", "f_new"])
    report = force_pass(store, config)
    assert report.duplicates_merged == 1 and report.conclusions_invalidated == 0
    assert store.get("c1").premises == ["f_new", "g"]  # type: ignore[union-attr]
    assert store.get("c2").premises == ["f_new"]  # type: ignore[union-attr]
    deps = store.client.smembers(store.keys.dependents("f_new"))
    assert deps == {b"c1", b"c2"}
    assert not store.client.exists(store.keys.dependents("f_old"))
    again = force_pass(store, config)
    assert again.conclusions_invalidated == 0 and again.superseded_gc == 1
    assert live(store, "c1") and live(store, "c2")
    assert check_store(store).ok


def test_merging_off(store: MemoryStore, tmp_path: Any) -> None:
    config = load_config(data_dir=tmp_path, merge=False)
    store.ingest_fact("a", "s", "Twice.")
    store.ingest_fact("b", "s", "twice.")
    report = force_pass(store, config)
    assert report.duplicates_merged == 0 and "merge" not in report.step_ms
    assert live(store, "a") and live(store, "b")


def test_an_idle_pass_does_not_run_the_step(store: MemoryStore, config: DreamConfig) -> None:
    store.ingest_fact("a", "s", "Once.")
    assert "merge" in force_pass(store, config).step_ms
    assert "merge" not in force_pass(store, config).step_ms


def test_a_node_removed_or_rewritten_leaves_the_digest_index(
    store: MemoryStore, config: DreamConfig
) -> None:
    store.ingest_fact("a", "s", "Kept.")
    store.ingest_fact("b", "s", "Rewritten.")
    force_pass(store, config)
    assert store.client.hlen(store.keys.digests) == 2
    store.ingest_fact("b", "s", "Rewritten, with other words.")
    assert store.client.hlen(store.keys.digests) == 1
    store.ingest_fact("a2", "s", "Other.", supersedes="a")
    force_pass(store, config)  # a collected; a2 and b recorded
    assert set(store.client.hvals(store.keys.digests)) == {b"a2", b"b"}


def member(i: str, content: str, vec: list[float], **kw: Any) -> Member:
    kind, subject = kw.pop("kind", "fact"), kw.pop("subject", "s")
    return Member(
        id=i,
        kind=kind,
        subject=subject,
        pinned=kw.pop("pinned", False),
        timestamp=None,
        rev="1",
        content=content,
        digest=digest_key(kind, subject, content),
        vector=np.asarray(vec, np.float32),
        new=True,
    )


def test_similarities_block_what_may_not_merge() -> None:
    ms = [
        member("a", "The meeting is at 3pm.", [1, 0]),
        member("b", "The meeting is at 4pm.", [1, 0.01]),  # guard: another number
        member("c", "The meeting will start at 3pm.", [1, 0.02], subject="t"),  # other subject
        member("d", "THE MEETING IS AT 3PM.", [0, 1]),  # exact duplicate of a
        member("e", "Pinned one.", [1, 0], pinned=True),
        member("f", "pinned one.", [1, 0], pinned=True),
    ]
    sims = similarities(ms, 0.9, across_subjects=False)
    assert sims[0, 1] == -np.inf and sims[0, 2] == -np.inf
    assert sims[0, 3] == 1.0 and sims[4, 5] == -np.inf
    across = similarities(ms, 0.9, across_subjects=True)
    assert across[0, 2] > 0.99
    parts = components(sims, 0.9)
    assert [0, 3] in [sorted(p) for p in parts]


def test_a_candidate_pair_may_merge_by_the_same_rule_as_similarities() -> None:
    a = member("a", "The meeting is at 3pm.", [1, 0])
    assert may_merge(a, member("d", "THE MEETING IS AT 3PM.", [0, 1]), 0.9, False)  # exact
    assert may_merge(a, member("p", "The meeting takes place at 3pm.", [1, 0.1]), 0.9, False)
    assert not may_merge(a, member("b", "The meeting is at 4pm.", [1, 0.01]), 0.9, False)
    assert not may_merge(a, member("c", "The meeting at 3pm.", [1, 0.02], subject="t"), 0.9, False)
    assert may_merge(a, member("c", "The meeting at 3pm.", [1, 0.02], subject="t"), 0.9, True)
    assert not may_merge(a, member("f", "The meeting is at 3 pm.", [0, 1]), 0.9, False)  # far
    assert not may_merge(
        a, member("k", "The meeting is at 3pm.", [1, 0], kind="environment"), 0.9, False
    )


def test_texts_of_one_template_make_no_dense_part(monkeypatch: pytest.MonkeyPatch) -> None:
    """Observations that differ only in a number are one dense cluster by cosine; the guard
    tells every pair apart, so each is judged once as a candidate pair and no part forms
    (before: every pair of a 500-node part went through the guard)."""
    import car_dream.merging as merging

    calls: list[int] = []
    real = merging.guard_blocks

    def counted(a: str, b: str) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(merging, "guard_blocks", counted)
    n = 60
    members = [member(f"o{i}", f"Observation {i} about the door.", [1, i * 1e-4]) for i in range(n)]
    chain = [(members[i].id, members[i + 1].id) for i in range(n - 1)]
    at = {m.id: i for i, m in enumerate(members)}
    edges = [
        (at[a], at[b]) for a, b in chain if may_merge(members[at[a]], members[at[b]], 0.9, False)
    ]
    assert edges == [] and len(calls) == n - 1
    assert merging.parts(n, edges) == []


def test_the_merge_script_is_fenced(store: MemoryStore) -> None:
    store.ingest_fact("a", "s", "Twice.")
    store.ingest_fact("b", "s", "twice.")
    revs = {i: store.client.hget(store.keys.node(i), "rev").decode() for i in "ab"}  # type: ignore[union-attr]
    group = f"b {revs['b']} a {revs['a']}"
    reply = store.scripts.merge(
        keys=[store.keys.lock], args=[store.keys.prefix, "not-the-token", "1", "p", "60", group, ""]
    )
    assert reply == [b"lost"]
    assert live(store, "a") and live(store, "b")
    assert store.client.xlen(store.keys.journal) == 0
