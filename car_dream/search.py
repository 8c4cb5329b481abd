"""Search by meaning: the live nodes nearest a text or a vector (``MemoryStore.search``).

On Redis 8 the namespace's vector set (``Keys.vectors``, kept in step with the nodes by
the Lua scripts: ``vector`` in lib.lua's ``node_indexes``) answers with ``VSIM``; each hit
is read back in the same script (search.lua), so no hit is a node removed, superseded,
invalidated or expired. On a Redis without vector sets (before 8.0), or when the index is
empty, search reads the live embedded nodes and ranks them exactly, up to
``CAR_DREAM_SEARCH_SCAN_LIMIT`` nodes of the kinds searched; beyond that it raises
:class:`SearchUnavailableError`, which names Redis 8.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError
from redis.exceptions import RedisError, ResponseError

from .config import load_config
from .embedder import Embedder, embed_checked
from .embedding_models import configured_embedder
from .errors import CarDreamError, InvalidInputError, SearchUnavailableError, shown
from .keys import Keys
from .node import KINDS, Node
from .registry import PerClient
from .scripts import Scripts

__all__ = [
    "DEFAULT_SCAN_LIMIT",
    "SearchHit",
    "search",
    "subject_tag",
    "vector_sets_available",
    "vector_sets_warning",
]

DEFAULT_SCAN_LIMIT = 10_000
MAX_K = 1000


class SearchHit(BaseModel):
    """A node and its cosine similarity to the query (1.0: same direction)."""

    node: Node
    score: float


def subject_tag(subject: str) -> str:
    """The subject as the vector index holds it (lib.lua ``vector_attrs``): the start of
    its SHA-1, since a FILTER string has no escapes and a subject may be long."""
    return hashlib.sha1(subject.encode()).hexdigest()[:16]


def vsim_filter(kind: str | None, subject: str | None) -> str:
    parts = []
    if kind is not None:
        parts.append(f'.kind == "{kind}"')
    if subject is not None:
        parts.append(f'.s == "{subject_tag(subject)}"')
    return " and ".join(parts)


class _VectorSets(PerClient):
    """Whether a client's server has vector sets: None until known."""

    def __init__(self, client: Any) -> None:
        self.available: bool | None = None


def vector_sets_available(client: Any, keys: Keys) -> bool:
    """Whether the server has vector sets (Redis 8): asked once per client."""
    known = _VectorSets.of(client)
    if known.available is None:
        try:
            client.execute_command("VCARD", keys.vectors)
            known.available = True
        except ResponseError as exc:
            known.available = "unknown command" not in str(exc).lower()
        except RedisError as exc:
            # A cluster client refuses, before sending, a command its servers' COMMAND
            # table lacks; anything else (a lost connection) is not an answer.
            if "doesn't exist in redis commands" not in str(exc).lower():
                raise
            known.available = False
    return known.available


def vector_sets_warning(client: Any) -> str | None:
    """What a worker says once at start-up on a Redis without vector sets; else None."""
    if vector_sets_available(client, Keys("default")):
        return None
    return (
        "this Redis has no vector sets (they come with Redis 8): search by meaning "
        "(store.search, car-dream search) scans the nodes, up to CAR_DREAM_SEARCH_SCAN_LIMIT "
        "of them, and fails beyond; every pass step works as usual"
    )


def query_vector(
    client: Any, keys: Keys, query: str | Sequence[float], embedder: Embedder | None
) -> np.ndarray:
    """The query as one float32 vector: a text embedded with the namespace's model."""
    if isinstance(query, str):
        if embedder is None:  # the worker's model (CAR_DREAM_EMBEDDER), loaded once
            embedder = configured_embedder(load_config())
        model = client.hget(keys.meta, "embed_model")
        if model is not None and model.decode() != embedder.model_id:
            raise CarDreamError(
                f"this memory is embedded with {model.decode()!r}, not {embedder.model_id!r}: "
                "search with the model the worker uses (CAR_DREAM_EMBEDDER)"
            )
        return embed_checked(embedder, [query], 1)[0]
    vec = np.asarray(query, dtype=np.float32)
    if vec.ndim != 1 or vec.size == 0 or not np.isfinite(vec).all() or not vec.any():
        raise InvalidInputError(f"query vector {shown(query)}: give finite numbers, not all 0")
    return vec


def search(
    client: Any,
    keys: Keys,
    query: str | Sequence[float],
    k: int = 10,
    *,
    kind: str | None = None,
    subject: str | None = None,
    min_score: float | None = None,
    embedder: Embedder | None = None,
    scan_limit: int = DEFAULT_SCAN_LIMIT,
) -> list[SearchHit]:
    """The ``k`` live nodes nearest ``query``, closest first (see the module docstring)."""
    if not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise InvalidInputError(f"k must be 1 to {MAX_K}, not {shown(k)}")
    if kind is not None and kind not in KINDS:
        raise InvalidInputError(f"unknown kind {shown(kind)}: one of {', '.join(KINDS)}")
    if min_score is not None and not math.isfinite(min_score):
        raise InvalidInputError(f"min_score must be a number, not {shown(min_score)}")
    vec = query_vector(client, keys, query, embedder)
    known = _VectorSets.of(client)
    if known.available is not False:
        hits = _vsim(client, keys, vec, k, kind, subject, min_score)
        if hits is not None:
            return hits
    return _scan(client, keys, vec, k, kind, subject, min_score, scan_limit)


def _node(node_id: str, raw: dict[bytes, bytes]) -> Node | None:
    try:
        return Node.from_hash(node_id, raw)
    except (KeyError, ValueError, ValidationError):  # written by hand: not a hit
        return None


def _vsim(
    client: Any,
    keys: Keys,
    vec: np.ndarray,
    k: int,
    kind: str | None,
    subject: str | None,
    min_score: float | None,
) -> list[SearchHit] | None:
    """The hits from the vector index; None when there is none to ask."""
    script = Scripts.of(client).search
    filt = vsim_filter(kind, subject)
    count = k
    while True:
        try:
            reply = script(
                keys=[keys.vectors], args=[keys.prefix, vec.tobytes(), count, filt, subject or ""]
            )
        except ResponseError as exc:
            if "dimension mismatch" in str(exc):
                raise InvalidInputError(f"query vector: {exc}") from exc
            raise
        if reply[0] == b"novsets":
            _VectorSets.of(client).available = False
            return None
        _VectorSets.of(client).available = True
        if reply[0] == b"empty":
            return None  # nothing embedded, or data from a Redis 7: the scan decides
        returned, rows = int(reply[1]), reply[2:]
        hits: list[SearchHit] = []
        lowest = 1.0
        for i in range(0, len(rows), 3):
            # VSIM's score is (1 + cosine) / 2 on the normalised vectors.
            score = 2.0 * float(rows[i + 1]) - 1.0
            lowest = min(lowest, score)
            flat = rows[i + 2]
            node = _node(rows[i].decode(), dict(zip(flat[::2], flat[1::2], strict=True)))
            if node is not None and (min_score is None or score >= min_score):
                hits.append(SearchHit(node=node, score=score))
        # Dead hits were dropped: ask for more, unless there are no more to ask for.
        done = len(hits) >= k or returned < count or count >= 64 * k
        if done or (min_score is not None and lowest < min_score):
            return hits[:k]
        count *= 4


def _scan(
    client: Any,
    keys: Keys,
    vec: np.ndarray,
    k: int,
    kind: str | None,
    subject: str | None,
    min_score: float | None,
    scan_limit: int,
) -> list[SearchHit]:
    """Exact search over the live embedded nodes, their vectors read by one script
    (scan_vectors.lua), ranked here."""
    kinds = KINDS if kind is None else (kind,)
    pipe = client.pipeline(transaction=False)
    for kd in kinds:
        pipe.scard(keys.kind(kd))
    pipe.scard(keys.unembedded)
    pipe.hget(keys.meta, "embed_model")
    *sizes, unembedded, model = pipe.execute()
    # Every node of those kinds; with all kinds, those waiting for a vector are not read.
    scanned = sum(sizes) - (unembedded if kind is None else 0)
    if scanned <= 0 or model is None:
        return []
    if scanned > scan_limit:
        raise SearchUnavailableError(
            f"search would scan {scanned} nodes, above CAR_DREAM_SEARCH_SCAN_LIMIT="
            f"{scan_limit}: search by meaning at this size needs Redis 8 (vector sets); "
            "on Redis 8 with data from an older Redis, `car-dream check --repair` builds "
            "the index"
        )
    reply = Scripts.of(client).scan_vectors(
        keys=[keys.meta],
        args=[keys.prefix, 4 * vec.size, "0" if subject is None else "1" + subject, *kinds],
    )
    found = reply[0].decode().split("\n") if reply[0] else []
    if not found:
        if int(reply[2]):  # as VSIM refuses a query of another dimension
            raise InvalidInputError(
                f"query vector: {vec.size} dimensions, the memory's {int(reply[2]) // 4}"
            )
        return []
    matrix = np.frombuffer(reply[1], dtype=np.float32).reshape(len(found), vec.size)
    norms = np.linalg.norm(matrix, axis=1) * float(np.linalg.norm(vec))
    scores = (matrix @ vec) / np.where(norms > 0, norms, 1.0)
    order = np.argsort(-scores, kind="stable")[: 2 * k]
    # An id in two kind sets (drift the check repairs) is read twice: ranked once.
    top = list({found[i]: float(scores[i]) for i in reversed(order)}.items())
    top = sorted(top, key=lambda hit: -hit[1])[:k]
    if min_score is not None:
        top = [(node_id, s) for node_id, s in top if s >= min_score]
    pipe = client.pipeline(transaction=False)
    for node_id, _ in top:
        pipe.hgetall(keys.node(node_id))
    hits = []
    for (node_id, score), raw in zip(top, pipe.execute(), strict=True):
        node = _node(node_id, raw) if raw else None
        if node is not None and not node.superseded:  # changed since it was read
            hits.append(SearchHit(node=node, score=score))
    return hits
