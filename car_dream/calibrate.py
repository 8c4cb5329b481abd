"""Calibration of the merge decision on the shipped labelled pairs
(``car_dream/data/merge_pairs.jsonl``): paraphrases and normalisation-only variants that
should merge; near-misses (two capitals of two countries), the same words with another
number, date or negation, and unrelated pairs that must not.

The decision measured is the merge step's, pair by pair: the same normalised content, or
a cosine at or above the threshold that the guard (:func:`car_dream.dedup.guard_blocks`)
does not block.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files

import numpy as np

from .dedup import guard_blocks, normalise
from .embedder import Embedder

__all__ = ["LabelledPair", "Score", "load_pairs", "pair_similarities", "score"]


@dataclass(frozen=True)
class LabelledPair:
    a: str
    b: str
    same: bool
    category: str


@dataclass(frozen=True)
class Score:
    """The merge decision's quality at one threshold."""

    threshold: float
    precision: float
    recall: float
    true_merges: int
    false_merges: int
    missed: int
    false_by_category: dict[str, int]


def load_pairs() -> list[LabelledPair]:
    """The shipped labelled set."""
    text = (files("car_dream") / "data" / "merge_pairs.jsonl").read_text(encoding="utf-8")
    return [LabelledPair(**json.loads(line)) for line in text.splitlines() if line.strip()]


def pair_similarities(embedder: Embedder, pairs: Sequence[LabelledPair]) -> np.ndarray:
    """The cosine of each pair's two texts under ``embedder``."""
    vectors = np.asarray(embedder.embed([t for p in pairs for t in (p.a, p.b)]), np.float64)
    norms = np.linalg.norm(vectors, axis=1)
    norms[norms == 0] = 1.0
    unit = vectors / norms[:, None]
    return np.einsum("ij,ij->i", unit[0::2], unit[1::2])


def score(pairs: Sequence[LabelledPair], sims: np.ndarray, threshold: float) -> Score:
    """Precision and recall of the merge decision at ``threshold``."""
    tp = fp = fn = 0
    false: dict[str, int] = {}
    for pair, sim in zip(pairs, sims, strict=True):
        exact = normalise(pair.a) == normalise(pair.b)
        merged = exact or (sim >= threshold and not guard_blocks(pair.a, pair.b))
        if merged and pair.same:
            tp += 1
        elif merged:
            fp += 1
            false[pair.category] = false.get(pair.category, 0) + 1
        elif pair.same:
            fn += 1
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return Score(threshold, precision, recall, tp, fp, fn, false)
