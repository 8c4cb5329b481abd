"""What the merge step decides, from what it reads: the nodes embedded in this pass, their
exact duplicates (the digest index, on any Redis) and their near duplicates
(the vector index that ``store.search`` reads, on a Redis with vector sets), grouped by
:func:`car_dream.dedup.complete_linkage` and given a canonical by
:func:`car_dream.dedup.canonical`. Nothing here writes; ``merge.lua`` applies.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .dedup import MergeCandidate, canonical, complete_linkage, guard_blocks, normalise
from .search import vector_sets_available, vsim_filter
from .store import MemoryStore

__all__ = ["Embedded", "Member", "MergePlan", "digest_key", "plan_merges"]

FIELDS = ("kind", "subject", "pinned", "timestamp", "rev", "superseded_by", "content", "expires_at")


@dataclass(frozen=True)
class Embedded:
    """A node the embed step stored a vector for in this pass, at revision ``rev``."""

    id: str
    rev: str


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


def _number(raw: bytes, default: float | None) -> float | None:
    try:
        return float(raw)
    except ValueError:
        return default


def read_members(
    store: MemoryStore,
    ids: Sequence[str],
    revs: dict[str, str],
    model: str,
    new: bool,
    now: float | None = None,
) -> list[Member]:
    """The live nodes among ``ids`` with their vectors of ``model`` (one round trip); an
    id in ``revs`` only at that revision (a node rewritten since it was embedded is the
    next pass's). Environment nodes expired by ``now`` are left out."""
    pipe = store.client.pipeline(transaction=False)
    for i in ids:
        pipe.hmget(store.keys.node(i), *FIELDS, "emb", "emb_model")
    out = []
    for i, raw in zip(ids, pipe.execute(), strict=True):
        kind, subject, pinned, ts, rev, sup, content, expires, emb, emb_model = raw
        if kind is None or content is None or rev is None or sup is not None:
            continue
        if expires is not None and now is not None and (_number(expires, None) or now + 1) <= now:
            continue  # expired: the prune step's, not a canonical
        if i in revs and revs[i] != rev.decode():
            continue
        vec = np.frombuffer(emb, np.float32) if emb and _text(emb_model) == model else None
        k, s, c = kind.decode(), _text(subject) or "", _text(content) or ""
        stamp = _number(ts, None) if ts is not None else None
        out.append(
            Member(i, k, s, pinned == b"1", stamp, rev.decode(), c, digest_key(k, s, c), vec, new)
        )
    return out


def _codes(values: Sequence[str]) -> np.ndarray:
    index: dict[str, int] = {}
    return np.array([index.setdefault(v, len(index)) for v in values])


def similarities(members: Sequence[Member], threshold: float, across_subjects: bool) -> np.ndarray:
    """Cosine of every pair; 1 for exact duplicates; ``-inf`` for a pair that may not
    merge (another kind or subject, two pinned nodes, no vector, or, at or above the
    threshold only, where it matters, blocked by the guard)."""
    n = len(members)
    sims = np.full((n, n), -np.inf)
    have = [i for i, m in enumerate(members) if m.vector is not None]
    if have and len({members[i].vector.shape for i in have}) == 1:  # type: ignore[union-attr]
        mat = np.stack([members[i].vector for i in have]).astype(np.float64)  # type: ignore[misc]
        norms = np.linalg.norm(mat, axis=1)
        mat /= np.where(norms > 0, norms, 1.0)[:, None]
        sims[np.ix_(have, have)] = mat @ mat.T
    kinds = _codes([m.kind for m in members])
    allowed = kinds[:, None] == kinds[None, :]
    if not across_subjects:
        subjects = _codes([m.subject for m in members])
        allowed &= subjects[:, None] == subjects[None, :]
    digests = _codes([m.digest for m in members])
    exact = digests[:, None] == digests[None, :]
    sims = np.where(exact, 1.0, np.where(allowed, sims, -np.inf))
    pinned = np.array([m.pinned for m in members])
    sims[np.outer(pinned, pinned)] = -np.inf  # one of them would be merged away
    np.fill_diagonal(sims, 1.0)
    for i, j in np.argwhere(np.triu(sims >= threshold, 1) & ~exact):
        if guard_blocks(members[i].content, members[j].content):
            sims[i, j] = sims[j, i] = -np.inf
    return sims


def components(sims: np.ndarray, threshold: float) -> list[list[int]]:
    """The connected parts (two or more) of the graph of pairs at or above the threshold:
    complete linkage never joins two of them, so each is grouped on its own."""
    n = len(sims)
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in np.argwhere(np.triu(sims >= threshold, 1)):
        parent[root(int(i))] = root(int(j))
    parts: dict[int, list[int]] = {}
    for i in range(n):
        parts.setdefault(root(i), []).append(i)
    return [p for p in parts.values() if len(p) > 1]


# VSIM scores a Q8-quantised index: a candidate this far below the threshold is still
# read, and judged on its exact cosine.
QUANTISATION_SLACK = 0.02


def near_candidates(
    store: MemoryStore, new: Sequence[Member], threshold: float, across_subjects: bool, k: int
) -> set[str]:
    """The ids the vector index puts near each new node (its kind, and its subject unless
    ``across_subjects``): one VSIM per node, all in one round trip. The index holds only
    live nodes (the scripts that supersede or remove a node take it out); what was
    rewritten meanwhile is caught when the candidates are read."""
    pipe = store.client.pipeline(transaction=False)
    for m in new:
        if m.vector is None:
            continue
        subject = None if across_subjects or not m.subject else m.subject
        filt = vsim_filter(m.kind, subject)
        vec = np.asarray(m.vector, np.float32).tobytes()
        pipe.execute_command(
            "VSIM", store.keys.vectors, "FP32", vec, "WITHSCORES", "COUNT", k, "FILTER", filt
        )
    found: set[str] = set()
    for reply in pipe.execute(raise_on_error=False):
        if isinstance(reply, Exception) or not reply:
            continue  # no index yet (data from a Redis 7), or a vector of another size
        # redis-py parses VSIM ... WITHSCORES into a dict; a bare client gives a flat list.
        pairs = (
            reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2], strict=True)
        )
        # VSIM's score is (1 + cosine) / 2.
        found.update(
            e.decode() for e, s in pairs if 2 * float(s) - 1 >= threshold - QUANTISATION_SLACK
        )
    return found


def plan_merges(
    store: MemoryStore,
    embedded: Sequence[Embedded],
    model: str,
    threshold: float,
    across_subjects: bool,
    now: float,
    search_k: int = 10,
) -> MergePlan:
    """Groups of duplicates among the nodes embedded in this pass and the live nodes like
    them: exact duplicates through the digest index, near ones through the vector index."""
    revs = {e.id: e.rev for e in embedded}
    new = read_members(store, list(revs), revs, model, new=True)
    if not new:
        return MergePlan([], [], 0)
    # Exact duplicates: one HMGET of the digest index, whatever the Redis or the model.
    hits = store.client.hmget(store.keys.digests, [m.digest for m in new])
    found = {h.decode() for h in hits if h is not None} - set(revs)
    if vector_sets_available(store.client, store.keys):
        found |= near_candidates(store, new, threshold, across_subjects, search_k) - set(revs)
    members = new + read_members(store, sorted(found), {}, model, new=False, now=now)
    sims = similarities(members, threshold, across_subjects)
    groups: list[list[Member]] = []
    merged: set[str] = set()
    linked = [
        [part[i] for i in g]
        for part in components(sims, threshold)
        for g in complete_linkage(
            [members[i].id for i in part], sims[np.ix_(part, part)], threshold
        )
    ]
    for g in linked:
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
