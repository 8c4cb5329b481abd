"""Merging near duplicates with a real model (all-MiniLM-L6-v2) on a real Redis 8 (vector
sets: the merge step's similarity query is one VSIM per new node)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from car_dream.check import check_store
from car_dream.config import DreamConfig, load_config
from car_dream.consolidate import run_pass
from car_dream.embedding_models import SentenceTransformerEmbedder
from car_dream.store import MemoryStore

from .embedder_factories import shared_minilm


@pytest.fixture
def store(redis8_store: MemoryStore) -> MemoryStore:
    assert redis8_store.client.info("server")["redis_version"].startswith("8.")
    return redis8_store


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEmbedder:
    return shared_minilm()


def force_pass(store: MemoryStore, config: DreamConfig, embedder: Any) -> Any:
    report = run_pass(store, config, force=True, embedder=embedder)
    assert report.status == "completed", report.reason
    return report


def live(store: MemoryStore, node_id: str) -> bool:
    node = store.get(node_id)
    return node is not None and not node.superseded


def test_paraphrases_merge_near_misses_do_not(
    store: MemoryStore, config: DreamConfig, minilm: SentenceTransformerEmbedder
) -> None:
    store.ingest_fact("p1", "health", "The user is allergic to peanuts.", timestamp=1.0)
    store.ingest_fact("p2", "health", "The user has a peanut allergy.", timestamp=2.0)
    store.ingest_fact("m3", "work", "The standup meeting is at 3pm.", timestamp=1.0)
    store.ingest_fact("m4", "work", "The standup meeting is at 4pm.", timestamp=2.0)
    store.ingest_fact("d1", "ui", "The user prefers dark mode in the editor.", timestamp=1.0)
    store.ingest_fact("d2", "ui", "The user prefers light mode in the editor.", timestamp=2.0)
    store.ingest_fact("x", "other", "The user has a peanut allergy.", timestamp=3.0)
    store.ingest_conclusion("c", "Avoid satay.", premises=["p1"])
    report = force_pass(store, config, minilm)
    assert report.duplicates_merged == 1, report
    assert store.get("p1").superseded_by == "p2"  # type: ignore[union-attr]
    assert all(live(store, i) for i in ("p2", "m3", "m4", "d1", "d2", "x", "c"))
    assert store.get("c").premises == ["p2"]  # type: ignore[union-attr]
    # The hits of a search: the duplicate is gone from the index at once.
    hits = store.search("peanut allergy", k=5, embedder=minilm)
    assert "p1" not in {h.node.id for h in hits}
    again = force_pass(store, config, minilm)
    assert again.conclusions_invalidated == 0 and again.superseded_gc == 1
    assert check_store(store).ok


def test_a_paraphrase_written_later_finds_the_older_node(
    store: MemoryStore, config: DreamConfig, minilm: SentenceTransformerEmbedder
) -> None:
    store.ingest_fact("old", "team", "Bob manages the payments team.", timestamp=1.0)
    assert force_pass(store, config, minilm).duplicates_merged == 0
    store.ingest_fact("new", "team", "Bob is the manager of the payments team.", timestamp=2.0)
    assert force_pass(store, config, minilm).duplicates_merged == 1
    assert store.get("old").superseded_by == "new"  # type: ignore[union-attr]


def test_subjects_apart_unless_asked(
    store: MemoryStore, tmp_path: Path, minilm: SentenceTransformerEmbedder
) -> None:
    store.ingest_fact("a", "s1", "The user lives in Berlin.", timestamp=1.0)
    store.ingest_fact("b", "s2", "The user is based in Berlin.", timestamp=2.0)
    config = load_config(data_dir=tmp_path)
    assert force_pass(store, config, minilm).duplicates_merged == 0
    store.ingest_fact("c", "s3", "The user resides in Berlin.", timestamp=3.0)
    across = load_config(data_dir=tmp_path, merge_across_subjects=True)
    report = force_pass(store, across, minilm)
    # a~b and b~c, but a and c are one word apart (lives / resides), which the guard
    # blocks: complete linkage merges b into c and leaves a, never chains a to c.
    assert report.duplicates_merged == 1, report
    assert live(store, "a") and live(store, "c")
    assert store.get("b").superseded_by == "c"  # type: ignore[union-attr]
