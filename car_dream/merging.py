"""What the merge step decides, from what it reads: the nodes embedded in this pass, their
exact duplicates (the digest index, on any Redis) and their near duplicates
(``store.search`` on a Redis with vector sets), grouped by
:func:`car_dream.dedup.complete_linkage` and given a canonical by
:func:`car_dream.dedup.canonical`. Nothing here writes; ``merge.lua`` applies.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .dedup import MergeCandidate, canonical, complete_linkage, guard_blocks, normalise
from .search import vector_sets_available
from .store import MemoryStore

__all__ = ["Embedded", "Member", "MergePlan", "digest_key", "plan_merges"]

FIELDS = ("kind", "subject", "pinned", "timestamp", "rev", "superseded_by", "content")


@dataclass(frozen=True)
class Embedded:
    """A node the embed step stored a vector for in this pass."""

    id: str
    rev: str  # the revision whose content the vector is of
    vector: np.ndarray


@dataclass
class Member:
    """A node taking part in a merge decision, as read."""

    id: str
    kind: str
    subject: str
    pinned: bool
    timestamp: float | None
    rev: str
    content: str
    digest: str
    vector: np.ndarray | None
    new: bool


@dataclass
class MergePlan:
    groups: list[list[Member]]  # canonical first
    digests: list[Member]  # whose exact-duplicate key the index records
    candidates: int  # nodes read besides the new ones


def digest_key(kind: str, subject: str, content: str) -> str:
    """The exact-duplicate key: kind, subject and normalised content, hashed."""
    text = f"{kind}\n{subject}\n{normalise(content)}"
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def _text(v: bytes | None) -> str | None:
    return None if v is None else v.decode("utf-8", "surrogateescape")


def read_members(
    store: MemoryStore,
    ids: Sequence[str],
    vectors: dict[str, Embedded],
    model: str,
    new: bool,
) -> list[Member]:
    """The live nodes among ``ids`` (one round trip), with their vectors: given (and then
    only at the revision they were computed from), or read (those of ``model`` only)."""
    pipe = store.client.pipeline(transaction=False)
    for i in ids:
        pipe.hmget(store.keys.node(i), *FIELDS, "emb", "emb_model")
    out = []
    for i, raw in zip(ids, pipe.execute(), strict=True):
        kind, subject, pinned, ts, rev, sup, content, emb, emb_model = raw
        if kind is None or content is None or rev is None or sup is not None:
            continue
        given = vectors.get(i)
        if given is not None and given.rev != rev.decode():
            continue  # rewritten since it was embedded: the next pass embeds it again
        vec = given.vector if given is not None else None
        if vec is None and emb and _text(emb_model) == model:
            vec = np.frombuffer(emb, dtype=np.float32)
        k, s, c = kind.decode(), _text(subject) or "", _text(content) or ""
        try:
            stamp = float(ts) if ts is not None else None
        except ValueError:
            stamp = None
        out.append(
            Member(i, k, s, pinned == b"1", stamp, rev.decode(), c, digest_key(k, s, c), vec, new)
        )
    return out


def similarities(members: Sequence[Member], across_subjects: bool) -> np.ndarray:
    """Cosine of every pair; 1 for exact duplicates; ``-inf`` for a pair that may not
    merge (another kind or subject, two pinned nodes, blocked by the guard, no vector)."""
    n = len(members)
    dims = {m.vector.shape[0] for m in members if m.vector is not None}
    sims = np.full((n, n), -np.inf)
    if len(dims) == 1:
        have = [i for i, m in enumerate(members) if m.vector is not None]
        mat = np.stack([members[i].vector for i in have]).astype(np.float64)  # type: ignore[misc]
        norms = np.linalg.norm(mat, axis=1)
        norms[norms == 0] = 1.0
        mat /= norms[:, None]
        sims[np.ix_(have, have)] = mat @ mat.T
    for i, a in enumerate(members):
        for j in range(i + 1, n):
            b = members[j]
            if a.digest == b.digest:
                s = 1.0
            elif (
                a.kind != b.kind
                or (a.subject != b.subject and not across_subjects)
                or guard_blocks(a.content, b.content)
            ):
                s = -np.inf
            else:
                s = sims[i, j]
            if a.pinned and b.pinned:
                s = -np.inf  # one of them would be merged away
            sims[i, j] = sims[j, i] = s
    return sims


def plan_merges(
    store: MemoryStore,
    embedded: Sequence[Embedded],
    model: str,
    threshold: float,
    across_subjects: bool,
    search_k: int = 10,
) -> MergePlan:
    """Groups of duplicates among the nodes embedded in this pass and the live nodes like
    them: exact duplicates through the digest index, near ones through ``store.search``."""
    vectors = {e.id: e for e in embedded}
    new = read_members(store, list(vectors), vectors, model, new=True)
    if not new:
        return MergePlan([], [], 0)
    # Exact duplicates: one HMGET of the digest index, whatever the Redis or the model.
    hits = store.client.hmget(store.keys.digests, [m.digest for m in new])
    found = {h.decode() for h in hits if h is not None} - set(vectors)
    # Near duplicates: one VSIM per new node, on a Redis with vector sets only (a Redis 7
    # would scan every node per query: there, exact duplicates only).
    if vector_sets_available(store.client, store.keys):
        for m in new:
            if m.vector is None:
                continue
            hits = store.search(
                [float(x) for x in m.vector],
                search_k,
                kind=m.kind,  # type: ignore[arg-type]  # read from a live node: a kind
                subject=None if across_subjects else (m.subject or None),
                min_score=threshold,
            )
            found.update(h.node.id for h in hits if h.node.id not in vectors)
    members = new + read_members(store, sorted(found), {}, model, new=False)
    sims = similarities(members, across_subjects)
    groups: list[list[Member]] = []
    merged: set[str] = set()
    for g in complete_linkage([m.id for m in members], sims, threshold):
        group = [members[i] for i in g]
        if not any(m.new for m in group):
            continue  # old nodes only: not this pass's work
        keep = canonical(MergeCandidate(m.id, m.pinned, m.timestamp) for m in group)
        first = next(m for m in group if m.id == keep.id)
        rest = [m for m in group if m.id != keep.id and not m.pinned]
        if rest:
            groups.append([first, *rest])
            merged.update(m.id for m in rest)
    # Every member that stays, so an old node found by search is found by digest next time.
    digests = [m for m in members if m.id not in merged]
    return MergePlan(groups, digests, len(found))
