"""The memory store: a graph of facts, observations and conclusions in Redis.

Agents write it through the ``ingest_*`` methods (each one atomic script, see
:mod:`car_dream.writes`); passes consolidate it. Indexes (sorted sets and sets) let a
pass find expired, superseded and unembedded nodes without scanning the store.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from .errors import ConfigError
from .keys import NAMESPACES_KEY, Keys, validate_node_id
from .report import ConsolidationReport
from .scripts import Scripts
from .writes import KINDS, NodeKind, WriteBatch, _Call, _Writes, check_reply, to_epoch

__all__ = ["KINDS", "MemoryStore", "Node", "NodeKind", "WriteBatch", "database_of", "to_epoch"]

REPORTS_KEPT = 100


class Node(BaseModel):
    """A node as read back from Redis."""

    id: str
    kind: NodeKind
    content: str
    subject: str | None = None
    source: str | None = None
    provenance: str | None = None
    scope: str | None = None
    timestamp: float | None = None
    tags: list[str] = Field(default_factory=list)
    pinned: bool = False
    observed_at: float | None = None
    expires_at: float | None = None
    premises: list[str] = Field(default_factory=list)
    supersedes: str | None = None
    superseded: bool = False
    superseded_by: str | None = None
    invalidated: str | None = None
    embedding_model: str | None = None
    rev: int = 0


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


class MemoryStore(_Writes[bool]):
    """One namespace of agent memory in Redis. The client must return bytes.

    Each ``ingest_*`` call is one atomic script and returns True if the node is new;
    :meth:`batch` queues many writes for one round trip.
    """

    def __init__(self, client: Any, namespace: str = "default") -> None:
        if _connection_kwargs(client).get("decode_responses"):
            raise ConfigError("MemoryStore needs a Redis client with decode_responses=False")
        self.client = client
        self.namespace = namespace
        self.keys = Keys(namespace)
        self.scripts = Scripts.of(client)
        self._registered = False

    @property
    def reports_channel(self) -> str:
        """The live report channel of this namespace in this client's database."""
        return self.keys.reports_channel(database_of(self.client))

    def batch(self) -> WriteBatch:
        """A :class:`WriteBatch` on this store: validate now, send all at once."""
        return WriteBatch(self)

    def _write(self, call: _Call) -> bool:
        node_id, keys, args = call
        created = check_reply(node_id, self.scripts.ingest(keys=keys, args=args))
        self._register()
        return created

    def _register(self) -> None:
        if not self._registered:  # once per store object: a namespace registers on first write
            self.client.sadd(NAMESPACES_KEY, self.namespace)
            self._registered = True

    # -- reading -----------------------------------------------------------------

    @staticmethod
    def namespaces(client: Any) -> list[str]:
        """Every namespace that has been written to (registered on first write)."""
        return sorted(m.decode() for m in client.smembers(NAMESPACES_KEY))

    def get(self, node_id: str) -> Node | None:
        validate_node_id(node_id)
        raw = self.client.hgetall(self.keys.node(node_id))
        return self._node(node_id, raw) if raw else None

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
                yield self._node(node_id, raw)

    @staticmethod
    def _node(node_id: str, raw: dict[bytes, bytes]) -> Node:
        f = {k.decode(): v for k, v in raw.items() if k != b"emb"}

        def num(name: str) -> float | None:
            return float(f[name]) if name in f else None

        return Node(
            id=node_id,
            kind=f["kind"].decode(),  # type: ignore[arg-type]
            content=f["content"].decode(),
            subject=_text(f.get("subject")),
            source=_text(f.get("source")),
            provenance=_text(f.get("provenance")),
            scope=_text(f.get("scope")),
            timestamp=num("timestamp"),
            tags=json.loads(f["tags"]) if "tags" in f else [],
            pinned=f.get("pinned") == b"1",
            observed_at=num("observed_at"),
            expires_at=num("expires_at"),
            premises=json.loads(f["premises"]) if "premises" in f else [],
            supersedes=_text(f.get("supersedes")),
            superseded="superseded_by" in f,
            superseded_by=_text(f.get("superseded_by")) or None,
            invalidated=_text(f.get("invalidated")),
            embedding_model=_text(f.get("emb_model")),
            rev=int(f.get("rev", b"0")),
        )

    def stats(self, due: float | None = None) -> dict[str, Any]:
        """Node counts and the size of each work index (one round trip).

        With ``due`` (epoch seconds) it also counts ``expiry_due``: nodes expired by then.
        """
        k = self.keys
        pipe = self.client.pipeline(transaction=False)
        for kind in KINDS:
            pipe.scard(k.kind(kind))
        pipe.zcard(k.expiry)
        pipe.zcard(k.collectable)
        pipe.scard(k.invalidate)
        pipe.scard(k.unembedded)
        pipe.hget(k.meta, "embed_model")
        if due is not None:
            pipe.zcount(k.expiry, "-inf", repr(due))
        replies = pipe.execute()
        *counts, expiry, gc, inval, unemb, model = replies[: len(KINDS) + 5]
        extra = {} if due is None else {"expiry_due": int(replies[-1])}
        total = int(sum(counts))
        return {
            **extra,
            "nodes": dict(zip(KINDS, map(int, counts), strict=True)),
            "total_nodes": total,
            "expiry_scheduled": int(expiry),
            "superseded_pending": int(gc),
            "conclusions_to_check": int(inval),
            "unembedded": int(unemb),
            "embedding_model": _text(model),
            "embedding_coverage": coverage(total, int(unemb)),
        }

    # -- reports -----------------------------------------------------------------

    def record_report(self, report: ConsolidationReport) -> None:
        """Keep the report in the capped list and publish it to live watchers."""
        data = report.model_dump_json()
        cluster = hasattr(self.client, "get_node_from_key")  # redis-py's RedisCluster
        pipe = self.client.pipeline(transaction=True)
        pipe.lpush(self.keys.reports, data)
        pipe.ltrim(self.keys.reports, 0, REPORTS_KEPT - 1)
        if not cluster:  # one round trip; a cluster pipeline refuses PUBLISH (no key)
            pipe.publish(self.reports_channel, data)
        pipe.execute()
        if cluster:
            self.client.publish(self.reports_channel, data)

    def reports(self, n: int = 10) -> list[ConsolidationReport]:
        """The last ``n`` reports, newest first."""
        if n <= 0:
            return []
        raw = self.client.lrange(self.keys.reports, 0, n - 1)
        return [ConsolidationReport.model_validate_json(r) for r in raw]


def database_of(client: Any) -> int:
    """The database number ``client`` talks to (0 on a cluster, which has only that)."""
    return int(_connection_kwargs(client).get("db") or 0)


def _connection_kwargs(client: Any) -> dict[str, Any]:
    # A cluster client has no single pool; these are then empty.
    return getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})


def coverage(total: int, unembedded: int) -> float:
    """Share of nodes with a current embedding; 1.0 for an empty store."""
    if total <= 0:
        return 1.0
    return max(0.0, min(1.0, (total - unembedded) / total))
