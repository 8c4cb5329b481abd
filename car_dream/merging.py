"""What the merge step decides, from what it reads: the nodes embedded in this pass, their
exact duplicates (the digest index, on any Redis) and their near duplicates
(one unfiltered ``VSIM`` of the vector index per new node, on a Redis with vector sets;
kind and subject checked on the candidates read back), grouped by
:func:`car_dream.dedup.complete_linkage` and given a canonical by
:func:`car_dream.dedup.canonical`. Nothing here writes; ``merge.lua`` applies.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .dedup import MergeCandidate, canonical, complete_linkage, guard_blocks, normalise
from .search import vector_sets_available
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


def may_merge(a: Member, b: Member, threshold: float, across_subjects: bool) -> bool:
    """Whether candidate pair ``a``, ``b`` may merge on its own: the pair rule of
    :func:`similarities`, applied to the candidate edges before the parts are formed, so
    texts of one template that the guard tells apart (a number, a date, a name) never make
    one dense part whose every pair would be judged (quadratic in the part's size)."""
    if a.digest == b.digest:
        return True  # kind and subject are in the digest
    if a.kind != b.kind or not (across_subjects or a.subject == b.subject):
        return False
    if a.vector is None or b.vector is None or a.vector.shape != b.vector.shape:
        return False
    va, vb = np.asarray(a.vector, np.float64), np.asarray(b.vector, np.float64)
    norms = float(np.linalg.norm(va) * np.linalg.norm(vb))
    if norms == 0.0 or float(va @ vb) / norms < threshold:
        return False
    return not guard_blocks(a.content, b.content)


def parts(n: int, edges: Iterable[tuple[int, int]]) -> list[list[int]]:
    """The connected parts (two or more, each sorted) of a graph on ``range(n)``."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in edges:
        parent[root(int(i))] = root(int(j))
    found: dict[int, list[int]] = {}
    for i in range(n):
        found.setdefault(root(i), []).append(i)
    return [p for p in found.values() if len(p) > 1]


def components(sims: np.ndarray, threshold: float) -> list[list[int]]:
    """The connected parts of the graph of pairs at or above the threshold: complete
    linkage never joins two of them, so each is grouped on its own."""
    return parts(len(sims), np.argwhere(np.triu(sims >= threshold, 1)))


# VSIM scores a Q8-quantised index: a candidate this far below the threshold is still
# read, and judged on its exact cosine.
QUANTISATION_SLACK = 0.02


def near_candidates(
    store: MemoryStore, new: Sequence[Member], threshold: float, k: int
) -> list[tuple[str, str]]:
    """Pairs of a new node and a node the vector index puts among its ``k`` nearest: one
    VSIM per node, ``VSIM_PIPELINE`` to a round trip. Unfiltered: a FILTER on the subject
    (1 node in 100, say) makes HNSW walk far (34 ms against 4 ms measured here), so kind
    and subject are checked on the candidates read back. The index holds only live nodes
    (the scripts that supersede or remove a node take it out); what was rewritten
    meanwhile is caught when the candidates are read."""
    asked = [m for m in new if m.vector is not None]
    found: list[tuple[str, str]] = []
    for c in range(0, len(asked), VSIM_PIPELINE):
        chunk = asked[c : c + VSIM_PIPELINE]
        pipe = store.client.pipeline(transaction=False)
        for m in chunk:
            vec = np.asarray(m.vector, np.float32).tobytes()
            pipe.execute_command("VSIM", store.keys.vectors, "FP32", vec, "WITHSCORES", "COUNT", k)
        for m, reply in zip(chunk, pipe.execute(raise_on_error=False), strict=True):
            if isinstance(reply, Exception) or not reply:
                continue  # no index yet (data from a Redis 7), or a vector of another size
            # redis-py parses VSIM ... WITHSCORES into a dict; a bare client: a flat list.
            scored = (
                reply.items()
                if isinstance(reply, dict)
                else zip(reply[::2], reply[1::2], strict=True)
            )
            floor = threshold - QUANTISATION_SLACK  # VSIM's score is (1 + cosine) / 2
            found.extend((m.id, _text(e) or "") for e, s in scored if 2 * float(s) - 1 >= floor)
    return found


VSIM_PIPELINE = 100


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
    # Candidate pairs. Exact duplicates: one HMGET of the digest index (any Redis, any
    # model) and the new nodes' own digests; near ones: the vector index (Redis 8).
    pairs: list[tuple[str, str]] = []
    first_of: dict[str, str] = {}  # digest -> the first new node with it
    hits = store.client.hmget(store.keys.digests, [m.digest for m in new])
    for m, hit in zip(new, hits, strict=True):
        if hit is not None:
            pairs.append((m.id, hit.decode()))
        pairs.append((m.id, first_of.setdefault(m.digest, m.id)))
    if vector_sets_available(store.client, store.keys):
        pairs += near_candidates(store, new, threshold, search_k)
    found = sorted({b for _, b in pairs} - set(revs))
    members = new + read_members(store, found, {}, model, new=False, now=now)
    at = {m.id: i for i, m in enumerate(members)}
    edges = [
        (at[a], at[b])
        for a, b in pairs
        if a != b
        and a in at
        and b in at
        and may_merge(members[at[a]], members[at[b]], threshold, across_subjects)
    ]
    linked: list[list[int]] = []
    # Each connected part of the graph of candidate pairs that may merge is judged on its
    # own: exact cosines of its members, the guard, complete linkage. A part beyond
    # MAX_PART members (a dense cluster) is judged MAX_PART at a time, in id order: fewer
    # merges, never a wrong one.
    for part in parts(len(members), edges):
        part.sort(key=lambda i: members[i].id)
        for c in range(0, len(part), MAX_PART):
            chunk = part[c : c + MAX_PART]
            sims = similarities([members[i] for i in chunk], threshold, across_subjects)
            for sub in components(sims, threshold):
                ids = [members[chunk[i]].id for i in sub]
                for g in complete_linkage(ids, sims[np.ix_(sub, sub)], threshold):
                    linked.append([chunk[sub[i]] for i in g])
    groups: list[list[Member]] = []
    merged: set[str] = set()
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


MAX_PART = 500
