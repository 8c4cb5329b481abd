"""The decisions of duplicate merging, pure (no Redis): what counts as the same content,
which nodes form a group, which one of a group survives.

- :func:`normalise` / :func:`content_digest`: Unicode NFC, case folded, whitespace
  collapsed; two nodes of one kind and subject with the same digest are exact duplicates.
- :func:`guard_blocks`: a deterministic guard a cosine threshold alone lacks. Two texts
  whose numbers (``3pm`` / ``4pm``, dates, number words) or negations (``not``, ``never``,
  ``n't``...) differ are never merged, however close their vectors: all-MiniLM-L6-v2 puts
  "The standup meeting is at 3pm" and "... at 4pm" at 0.95, above most paraphrases. Nor
  are two texts of which one names someone or something (a capitalised word past the
  first) the other does not: "The user lives in Berlin" / "... in Munich"; nor two texts
  one word apart ("... prefers dark mode" / "... light mode").
- :func:`complete_linkage`: groups in which every pair is at or above the threshold; a
  chain A~B, B~C with A not ~ C never puts A and C together (no snowballing).
- :func:`canonical`: pinned first, then the newest ``timestamp``, ties by the greatest id.
- :func:`default_threshold`: the calibrated threshold of an embedder (``car-dream calibrate``).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MergeCandidate",
    "canonical",
    "complete_linkage",
    "content_digest",
    "default_threshold",
    "guard_blocks",
    "guard_tokens",
    "names",
    "normalise",
]

_SPACE = re.compile(r"\s+")


def normalise(content: str) -> str:
    """Unicode NFC, case folded, runs of whitespace as one space, no outer whitespace."""
    return _SPACE.sub(" ", unicodedata.normalize("NFC", content).casefold()).strip()


def content_digest(content: str) -> str:
    """The hex SHA-1 of the normalised content (the exact-duplicate key's content part)."""
    return hashlib.sha1(normalise(content).encode("utf-8", "surrogatepass")).hexdigest()


_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
# Digit runs, without their unit: "3pm", "3 pm" and "3 p.m." all carry "3".
_DIGITS = re.compile(r"\d+(?:[.,:]\d+)*")
_NUMBER_WORDS = frozenset(
    re.findall(
        r"\S+",
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy "
        "eighty ninety hundred thousand million billion first second third fourth fifth sixth "
        "seventh eighth ninth tenth once twice half double triple dozen noon midnight "
        "january february march april june july august september october november december "
        "jan feb mar apr jun jul aug sep sept oct nov dec monday tuesday wednesday thursday "
        "friday saturday sunday yesterday today tomorrow",
    )
)
_NEGATIONS = frozenset(
    re.findall(
        r"\S+",
        "not no never none nothing nobody nowhere neither nor cannot without "
        "isn't aren't wasn't weren't don't doesn't didn't won't wouldn't can't couldn't "
        "shouldn't mustn't hasn't haven't hadn't",
    )
)


def guard_tokens(content: str) -> tuple[frozenset[str], bool]:
    """The number-like tokens of a text (digit runs, number, month and day words; not
    "may", a verb as often as a month) and whether it is negated (an odd number of
    negation words)."""
    text = normalise(content).replace("\u2019", "'")
    words = _WORD.findall(text)
    numbers = set(_DIGITS.findall(text)) | {w for w in words if w in _NUMBER_WORDS}
    negated = sum(w in _NEGATIONS or w.endswith("n't") for w in words) % 2 == 1
    return frozenset(numbers), negated


_CASED_WORD = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)?")


def names(content: str) -> frozenset[str]:
    """The words written capitalised past a text's first word (casefolded): the names of
    people, places and products ("Berlin", "PostgreSQL", "Alice's")."""
    words = _CASED_WORD.findall(unicodedata.normalize("NFC", content))
    return frozenset(w.casefold() for w in words[1:] if w[0].isupper())


def _one_word_changed(a: str, b: str) -> bool:
    # Two texts one word apart (same length, one position): that word is what they say,
    # and a vector cannot tell a synonym from a changed value (dark/light, cat/dog).
    wa, wb = _WORD.findall(normalise(a)), _WORD.findall(normalise(b))
    return len(wa) == len(wb) and sum(x != y for x, y in zip(wa, wb, strict=True)) == 1


def guard_blocks(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` must not be merged whatever their similarity: their
    numbers, dates or negation differ, a name one of them uses is not in the other, or
    they are one word apart."""
    if guard_tokens(a) != guard_tokens(b) or _one_word_changed(a, b):
        return True
    words_a = set(_CASED_WORD.findall(normalise(a)))
    words_b = set(_CASED_WORD.findall(normalise(b)))
    return not (names(a) | names(b)) <= (words_a & words_b)


def complete_linkage(
    ids: Sequence[Hashable], sims: np.ndarray, threshold: float
) -> list[list[int]]:
    """Groups (of two or more indexes into ``ids``) in which every pair has ``sims`` at or
    above ``threshold``. Agglomerative, complete linkage: the two groups whose least
    similar pair is the most similar join first, ties broken by the members' ids, so the
    result depends on neither the input order nor the platform. ``sims`` is symmetric; a
    pair that must never merge carries ``-inf``.
    """
    n = len(ids)
    if n < 2:
        return []
    order = sorted(range(n), key=lambda i: repr(ids[i]))
    link = np.asarray(sims, dtype=np.float64)[np.ix_(order, order)].copy()
    np.fill_diagonal(link, -np.inf)
    members: list[list[int] | None] = [[i] for i in order]
    while True:
        # The highest link; argmax takes the first in row-major order: the smallest ids.
        flat = int(np.argmax(link))
        a, b = divmod(flat, n)
        if not link[a, b] >= threshold:
            break
        a, b = min(a, b), max(a, b)
        group_a, group_b = members[a], members[b]
        assert group_a is not None and group_b is not None
        group_a.extend(group_b)
        members[b] = None
        # Complete linkage: a group's link to another is its least similar pair.
        link[a, :] = np.minimum(link[a, :], link[b, :])
        link[:, a] = link[a, :]
        link[a, a] = -np.inf
        link[b, :] = -np.inf
        link[:, b] = -np.inf
    groups = [sorted(g) for g in members if g is not None and len(g) > 1]
    return sorted(groups, key=lambda g: repr(ids[g[0]]))


@dataclass(frozen=True)
class MergeCandidate:
    """What the canonical rule reads of a node."""

    id: str
    pinned: bool = False
    timestamp: float | None = None


def canonical(group: Iterable[MergeCandidate]) -> MergeCandidate:
    """The node of a group that survives: a pinned one first, then the newest
    ``timestamp`` (none counts as oldest), then the greatest id."""

    def rank(c: MergeCandidate) -> tuple[bool, float, str]:
        return (c.pinned, c.timestamp if c.timestamp is not None else float("-inf"), c.id)

    return max(group, key=rank)


# Calibrated on the shipped labelled set (car_dream/data/merge_pairs.jsonl) by
# `car-dream calibrate`; the README's "Merging duplicates" has the measured numbers.
# Keyed by a part of the embedder's model id; an unknown model gets the strictest.
THRESHOLDS: tuple[tuple[Callable[[str], bool], float], ...] = (
    (lambda m: m.startswith("hashing-"), 0.9),  # precision 1.0, recall 0.17 (near-verbatim)
    (lambda m: "minilm-l6-v2" in m.lower().replace("_", "-"), 0.8),  # precision 0.97, recall 0.88
)
UNKNOWN_MODEL_THRESHOLD = 0.95


def default_threshold(model_id: str) -> float:
    """The merge threshold of an embedder, by its model id."""
    for matches, threshold in THRESHOLDS:
        if matches(model_id):
            return threshold
    return UNKNOWN_MODEL_THRESHOLD
