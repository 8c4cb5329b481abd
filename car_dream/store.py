"""The memory store: a graph of facts, observations and conclusions in Redis.

Agents write it through the ``ingest_*`` methods (each one atomic script, see
:mod:`car_dream.writes`); passes consolidate it. Indexes (sorted sets and sets) let a
pass find expired, superseded and unembedded nodes without scanning the store.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from redis.exceptions import OutOfMemoryError

from .batch import WriteBatch
from .connection import connection_kwargs, database_of, is_cluster
from .embedder import Embedder
from .errors import ConfigError, RedisFullError
from .insight_reads import InsightReads
from .journal import Restored, restore
from .keys import NAMESPACES_KEY, Keys, validate_node_id
from .node import KINDS, IndexSizes, Node, NodeKind, coverage, text
from .record import store_report
from .report import ConsolidationReport
from .scripts import Scripts
from .search import DEFAULT_SCAN_LIMIT, SearchHit, search
from .writes import WriteCall, Writes, check_reply, to_epoch

__all__ = [
    "KINDS",
    "IndexSizes",
    "MemoryStore",
    "Node",
    "NodeKind",
    "SearchHit",
    "WriteBatch",
    "coverage",
    "to_epoch",
]


class MemoryStore(InsightReads, Writes[bool]):
    """One namespace of agent memory in Redis. The client must return bytes.

    Each ``ingest_*`` call is one atomic script and returns True if the node is new;
    :meth:`batch` queues many writes for one round trip.
    """

    def __init__(
        self,
        client: Any,
        namespace: str = "default",
        *,
        access_resolution: float = 900,
        search_scan_limit: int = DEFAULT_SCAN_LIMIT,
    ) -> None:
        if connection_kwargs(client).get("decode_responses"):
            raise ConfigError("MemoryStore needs a Redis client with decode_responses=False")
        self.client = client
        self.namespace = namespace
        self.keys = Keys(namespace)
        self.scripts = Scripts.of(client)
        self._registered = False
        self.access_resolution = access_resolution  # CAR_DREAM_ACCESS_RESOLUTION_SECS
        self.search_scan_limit = search_scan_limit  # CAR_DREAM_SEARCH_SCAN_LIMIT

    @property
    def reports_channel(self) -> str:
        """The live report channel of this namespace in this client's database."""
        return self.keys.reports_channel(database_of(self.client))

    def batch(self) -> WriteBatch:
        """A :class:`WriteBatch` on this store: validate now, send all at once."""
        return WriteBatch(self.client, self.keys, self.register)

    def _write(self, call: WriteCall) -> bool:
        node_id, keys, args = call
        try:
            reply = self.scripts.ingest(keys=keys, args=args)
        except OutOfMemoryError as exc:
            raise RedisFullError() from exc
        created = check_reply(node_id, reply)
        self.register()
        return created

    def register(self) -> None:
        """Add the namespace to the set the dispatcher reads (once per store object)."""
        if not self._registered:
            self.client.sadd(NAMESPACES_KEY, self.namespace)
            self._registered = True

    # -- reading -----------------------------------------------------------------

    @staticmethod
    def namespaces(client: Any) -> list[str]:
        """Every namespace that has been written to (registered on first write)."""
        return sorted(m.decode() for m in client.smembers(NAMESPACES_KEY))

    def get(self, node_id: str) -> Node | None:
        """The node, its access recorded in the same round trip (see :meth:`touch`)."""
        validate_node_id(node_id)
        # A cluster pipeline refuses scripts: there the access is a second call.
        pipe = self.client if is_cluster(self.client) else self.client.pipeline(False)
        raw = pipe.hgetall(self.keys.node(node_id))
        self._touch([node_id], pipe)
        raw = raw if pipe is self.client else pipe.execute()[0]
        return Node.from_hash(node_id, raw) if raw else None

    def touch(self, ids: Sequence[str]) -> int:
        """Record that the agent used these nodes (``last_accessed``, ``access_count``,
        forgetting score), at most once per node per ``access_resolution`` seconds; one
        script call. Returns how many were written."""
        list(map(validate_node_id, ids))
        return int(self._touch(list(ids), self.client)) if ids else 0

    def _touch(self, ids: list[str], client: Any) -> Any:
        return self.scripts.touch(
            keys=[self.keys.meta],
            args=[self.keys.prefix, repr(time.time()), repr(self.access_resolution), *ids],
            client=client,
        )

    def search(
        self,
        query: str | Sequence[float],
        k: int = 10,
        *,
        kind: NodeKind | None = None,
        subject: str | None = None,
        min_score: float | None = None,
        embedder: Embedder | None = None,
    ) -> list[SearchHit]:
        """The ``k`` live nodes nearest ``query`` (a text, embedded with ``embedder`` or
        the configured model, or a vector), closest first, by cosine similarity; only
        ``kind`` / ``subject`` ones, scoring at least ``min_score``. See
        :mod:`car_dream.search` (Redis 8 vector sets; an exact scan before Redis 8)."""
        return search(
            self.client,
            self.keys,
            query,
            k,
            kind=kind,
            subject=subject,
            min_score=min_score,
            embedder=embedder,
            scan_limit=self.search_scan_limit,
        )

    def embedding(self, node_id: str) -> tuple[str, np.ndarray] | None:
        """The stored vector and its model id, or None."""
        validate_node_id(node_id)
        model, blob = self.client.hmget(self.keys.node(node_id), ["emb_model", "emb"])
        if model is None or blob is None:
            return None
        return model.decode(), np.frombuffer(blob, dtype=np.float32)

    def count(self, kind: NodeKind | None = None) -> int:
        kinds = KINDS if kind is None else (kind,)
        pipe = self.client.pipeline(transaction=False)
        for k in kinds:
            pipe.scard(self.keys.kind(k))
        return int(sum(pipe.execute()))

    def ids(self, kind: NodeKind, batch: int = 500) -> Iterator[str]:
        for member in self.client.sscan_iter(self.keys.kind(kind), count=batch):
            yield member.decode()

    def iter_nodes(self, kind: NodeKind | None = None, batch: int = 500) -> Iterator[Node]:
        """Every node (of one kind), read in pipelined batches."""
        for k in KINDS if kind is None else (kind,):
            chunk: list[str] = []
            for node_id in self.ids(k, batch):
                chunk.append(node_id)
                if len(chunk) >= batch:
                    yield from self._read_many(chunk)
                    chunk = []
            yield from self._read_many(chunk)

    def _read_many(self, ids: list[str]) -> Iterator[Node]:
        if not ids:
            return
        pipe = self.client.pipeline(transaction=False)
        for node_id in ids:
            pipe.hgetall(self.keys.node(node_id))
        for node_id, raw in zip(ids, pipe.execute(), strict=True):
            if raw:
                yield Node.from_hash(node_id, raw)

    def index_sizes(self, due: float | None = None) -> IndexSizes:
        """Node counts and the size of each work index (one round trip).

        With ``due`` (epoch seconds) it also counts ``expiry_due``: nodes expired by then.
        """
        pipe = self.client.pipeline(transaction=False)
        read = self.queue_index_sizes(pipe, due)
        return read(pipe.execute())

    def queue_index_sizes(
        self, pipe: Any, due: float | None = None
    ) -> Callable[[list[Any]], IndexSizes]:
        """Queue the reads of :meth:`index_sizes` on ``pipe`` (to share its round trip);
        returns what turns their replies, in order, into the sizes."""
        k = self.keys
        for kind in KINDS:
            pipe.scard(k.kind(kind))
        pipe.zcard(k.expiry)
        pipe.zcard(k.collectable)
        pipe.scard(k.invalidate)
        pipe.scard(k.unembedded)
        pipe.hget(k.meta, "embed_model")
        pipe.zcard(k.forgettable)
        if due is not None:
            pipe.zcount(k.expiry, "-inf", repr(due))

        def read(replies: list[Any]) -> IndexSizes:
            *counts, expiry, collectable, inval, unemb, model, forget = replies[: len(KINDS) + 6]
            return IndexSizes(
                nodes=dict(zip(KINDS, map(int, counts), strict=True)),
                expiry_scheduled=int(expiry),
                collectable=int(collectable),
                conclusions_to_check=int(inval),
                unembedded=int(unemb),
                embedding_model=text(model),
                expiry_due=0 if due is None else int(replies[-1]),
                forgettable=int(forget),
            )

        return read

    def restore(self, node_id: str, *, pin: bool = False) -> Restored:
        """Bring back a node a pass removed or invalidated from its newest journal entry
        (see :func:`car_dream.journal.restore_entry`); ``pin`` keeps it from passes."""
        return restore(self.client, self.keys, node_id, pin=pin)

    # -- what a pass reads (the insight steps' reads: InsightReads) ---------------

    def unembedded_page(self, cursor: str, count: int) -> tuple[str, list[list[Any]]]:
        """One SSCAN page of the unembedded index: ``(next cursor, [[id, content, rev]])``
        (content and rev false for a vanished node)."""
        reply = self.scripts.fetch_unembedded(
            keys=[self.keys.unembedded], args=[self.keys.prefix, cursor, count]
        )
        if isinstance(reply, bytes):
            # A node edited by hand may hold bytes that are not UTF-8: they come through as
            # surrogates, for the embed step to skip that node, not fail the page.
            reply = reply.decode("utf-8", "surrogateescape")
        nxt, page = json.loads(reply)
        return str(nxt), page

    def embedding_version(self) -> str:
        """Bumped whenever any stored embedding changes or goes."""
        return (self.client.hget(self.keys.meta, "emb_version") or b"0").decode()

    def vectors(self, ids: Sequence[str], model: str) -> Iterator[tuple[str, bytes]]:
        """``(id, vector bytes)`` of those ``ids`` embedded with ``model`` (one round trip)."""
        if not ids:
            return
        pipe = self.client.pipeline(transaction=False)
        for node_id in ids:
            pipe.hmget(self.keys.node(node_id), ["emb_model", "emb"])
        for node_id, (m, blob) in zip(ids, pipe.execute(), strict=True):
            if m is not None and blob is not None and m.decode() == model:
                yield node_id, blob

    def record_report(self, report: ConsolidationReport) -> None:
        """Keep the report in the capped list, add it to the running totals the exporter
        reads and publish it to live watchers, in one script (:mod:`car_dream.record`)."""
        store_report(self.client, self.keys, report)

    def reports(self, n: int = 10) -> list[ConsolidationReport]:
        """The last ``n`` reports, newest first."""
        if n <= 0:
            return []
        raw = self.client.lrange(self.keys.reports, 0, n - 1)
        return [ConsolidationReport.model_validate_json(r) for r in raw]
