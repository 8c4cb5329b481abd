"""The memory store: a graph of facts, observations and conclusions in Redis.

Agents write it through the ``ingest_*`` methods (each one atomic script); passes
consolidate it. Indexes (sorted sets and sets) let a pass find expired, superseded
and unembedded nodes without scanning the store.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import (
    CarDreamError,
    ConfigError,
    InvalidInputError,
    SupersededNodeError,
    UnknownNodeError,
)
from .keys import NAMESPACES_KEY, Keys, validate_node_id
from .report import ConsolidationReport
from .scripts import Scripts

__all__ = ["KINDS", "MemoryStore", "Node", "NodeKind", "WriteBatch", "to_epoch"]

NodeKind = Literal["fact", "environment", "conclusion"]
KINDS: tuple[NodeKind, ...] = ("fact", "environment", "conclusion")
MAX_CONTENT = 1_000_000
REPORTS_KEPT = 100

Timestamp = datetime | float | int


def to_epoch(value: Timestamp) -> float:
    """Epoch seconds from an aware datetime or a number; naive datetimes are refused."""
    if isinstance(value, bool):
        raise ValueError("a timestamp must be a datetime or epoch seconds, not a bool")
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("datetime must carry a time zone (use datetime.now(timezone.utc))")
        return value.timestamp()
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("timestamp must be finite")
        return float(value)
    raise ValueError(f"a timestamp must be a datetime or epoch seconds, got {type(value).__name__}")


class _NodeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, arbitrary_types_allowed=True)

    id: str
    content: str = Field(min_length=1, max_length=MAX_CONTENT)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        return validate_node_id(v)


class FactIn(_NodeIn):
    subject: str = Field(max_length=10_000)
    source: str = Field("agent", max_length=1000)
    provenance: str = Field("self", max_length=1000)
    timestamp: float
    scope: str = Field("global", max_length=1000)
    supersedes: str | None = None
    tags: tuple[str, ...] = ()
    pinned: bool = False

    @field_validator("supersedes")
    @classmethod
    def _sup(cls, v: str | None) -> str | None:
        return None if v is None else validate_node_id(v)

    @model_validator(mode="after")
    def _not_self(self) -> FactIn:
        if self.supersedes == self.id:
            raise ValueError(f"node {self.id!r} cannot supersede itself")
        return self


class EnvironmentIn(_NodeIn):
    observed_at: float
    expires_at: float | None = None


class ConclusionIn(_NodeIn):
    premises: tuple[str, ...] = Field(min_length=1, max_length=10_000)

    @field_validator("premises")
    @classmethod
    def _premises(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for p in v:
            validate_node_id(p)
        return tuple(dict.fromkeys(v))


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


def _validated(model: type[BaseModel], **data: Any) -> Any:
    try:
        return model(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "input"
        raise InvalidInputError(f"{where}: {first['msg']}") from None


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


_R = TypeVar("_R")
_Call = tuple[str, list[str], list[Any]]  # node id, INGEST keys, INGEST args


class _Writes(Generic[_R]):
    """The ``ingest_*`` methods: validation here, the write itself in ``_write``."""

    keys: Keys

    def ingest_fact(
        self,
        id: str,
        subject: str,
        content: str,
        *,
        source: str = "agent",
        provenance: str = "self",
        timestamp: Timestamp | None = None,
        scope: str = "global",
        supersedes: str | None = None,
        tags: Iterable[str] = (),
        pinned: bool = False,
    ) -> _R:
        """Write a fact; ``supersedes`` marks an older node superseded. True if new."""
        if isinstance(tags, str):
            raise InvalidInputError("tags: must be a list of strings, not a string")
        ts = self._epoch("timestamp", timestamp)
        fact = _validated(
            FactIn, id=id, subject=subject, content=content, source=source,
            provenance=provenance, timestamp=ts, scope=scope, supersedes=supersedes,
            tags=tuple(tags), pinned=pinned,
        )  # fmt: skip
        fields = [
            "content", fact.content, "subject", fact.subject, "source", fact.source,
            "provenance", fact.provenance, "scope", fact.scope, "timestamp", repr(fact.timestamp),
            "tags", json.dumps(list(fact.tags)),
        ]  # fmt: skip
        return self._write(
            self._call(fact.id, "fact", fact.supersedes, (), fact.pinned, None, fields)
        )

    def ingest_environment(
        self,
        id: str,
        content: str,
        *,
        observed_at: Timestamp | None = None,
        expires_at: Timestamp | None = None,
    ) -> _R:
        """Write (or refresh) an observation of the world that expires at ``expires_at``."""
        obs = self._epoch("observed_at", observed_at)
        exp = None if expires_at is None else self._epoch("expires_at", expires_at)
        env = _validated(EnvironmentIn, id=id, content=content, observed_at=obs, expires_at=exp)
        fields = ["content", env.content, "observed_at", repr(env.observed_at)]
        return self._write(
            self._call(env.id, "environment", None, (), False, env.expires_at, fields)
        )

    def ingest_conclusion(self, id: str, content: str, *, premises: Sequence[str]) -> _R:
        """Write derived knowledge citing ``premises``; it is invalidated when one goes."""
        if isinstance(premises, str):
            raise InvalidInputError("premises: must be a list of node ids, not a string")
        c = _validated(ConclusionIn, id=id, content=content, premises=tuple(premises))
        now = datetime.now(UTC).timestamp()
        fields = ["content", c.content, "timestamp", repr(now)]
        return self._write(self._call(c.id, "conclusion", None, c.premises, False, None, fields))

    def _epoch(self, name: str, value: Timestamp | None) -> float:
        if value is None:
            return datetime.now(UTC).timestamp()
        try:
            return to_epoch(value)
        except (ValueError, OverflowError) as exc:
            raise InvalidInputError(f"{name}: {exc}") from None

    def _write(self, call: _Call) -> _R:
        raise NotImplementedError

    def _call(
        self,
        node_id: str,
        kind: NodeKind,
        supersedes: str | None,
        premises: Sequence[str],
        pinned: bool,
        expires_at: float | None,
        fields: list[str],
    ) -> _Call:
        """One write as the node id and the INGEST script's keys and args."""
        now = datetime.now(UTC).timestamp()
        args = [
            self.keys.prefix, node_id, kind, repr(now), supersedes or "",
            json.dumps(list(premises)), "1" if pinned else "0",
            "" if expires_at is None else repr(expires_at), *fields,
        ]  # fmt: skip
        return node_id, [self.keys.node(node_id)], args


class MemoryStore(_Writes[bool]):
    """One namespace of agent memory in Redis. The client must return bytes.

    Each ``ingest_*`` call is one atomic script and returns True if the node is new;
    :meth:`batch` queues many writes for one round trip.
    """

    def __init__(self, client: Any, namespace: str = "default") -> None:
        kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
        if kwargs.get("decode_responses"):
            raise ConfigError("MemoryStore needs a Redis client with decode_responses=False")
        self.client = client
        self.namespace = namespace
        self.keys = Keys(namespace)
        self.scripts = Scripts.of(client)
        self._registered = False

    def batch(self) -> WriteBatch:
        """A :class:`WriteBatch` on this store: validate now, send all at once."""
        return WriteBatch(self)

    def _write(self, call: _Call) -> bool:
        node_id, keys, args = call
        created = self._check_reply(node_id, self.scripts.ingest(keys=keys, args=args))
        self._register()
        return created

    def _register(self) -> None:
        if not self._registered:  # once per store object: a namespace registers on first write
            self.client.sadd(NAMESPACES_KEY, self.namespace)
            self._registered = True

    @staticmethod
    def _check_reply(node_id: str, reply: list[Any]) -> bool:
        code = _text(reply[0])
        if code == "ok":
            return bool(int(reply[1]))
        detail = _text(reply[1])
        if code == "unknown":
            raise UnknownNodeError(f"node {detail!r} does not exist")
        if code == "superseded":
            raise SupersededNodeError(f"node {detail!r} is already superseded")
        if code == "kind":
            raise InvalidInputError(f"node {node_id!r} already exists as a {detail}")
        if code == "cycle":
            raise InvalidInputError(f"writing {node_id!r} would make a cycle through {detail!r}")
        raise InvalidInputError(f"write of {node_id!r} refused: {code} {detail}")

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
            pipe.publish(self.keys.reports_channel, data)
        pipe.execute()
        if cluster:
            self.client.publish(self.keys.reports_channel, data)

    def reports(self, n: int = 10) -> list[ConsolidationReport]:
        """The last ``n`` reports, newest first."""
        if n <= 0:
            return []
        raw = self.client.lrange(self.keys.reports, 0, n - 1)
        return [ConsolidationReport.model_validate_json(r) for r in raw]


def coverage(total: int, unembedded: int) -> float:
    """Share of nodes with a current embedding; 1.0 for an empty store."""
    if total <= 0:
        return 1.0
    return max(0.0, min(1.0, (total - unembedded) / total))


class WriteBatch(_Writes[None]):
    """Writes to one namespace queued here and sent by :meth:`execute`, in order (a
    conclusion may cite a fact queued before it): one pipeline, so one round trip.

    Each ``ingest_*`` call validates at once and raises as the store's does; what Redis
    refuses (an unknown premise, a superseded target) comes back from :meth:`execute`.
    Every write is still its own atomic script: a refused one leaves the others done.
    On Redis Cluster (whose pipelines refuse scripts) the writes go one by one.
    """

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.keys = store.keys
        self._queued: list[_Call] = []

    def __len__(self) -> int:
        return len(self._queued)

    def _write(self, call: _Call) -> None:
        self._queued.append(call)

    def execute(self) -> list[bool | CarDreamError]:
        """Send what is queued; per write, in order: True if new, False if rewritten, or
        the error it was refused with. The batch is empty afterwards."""
        queued, self._queued = self._queued, []
        if not queued:
            return []
        client, ingest = self.store.client, self.store.scripts.ingest
        if hasattr(client, "get_node_from_key"):  # redis-py's RedisCluster
            replies = [ingest(keys=keys, args=args) for _, keys, args in queued]
        else:
            pipe = client.pipeline(transaction=False)
            for _, keys, args in queued:
                ingest(keys=keys, args=args, client=pipe)
            replies = pipe.execute()
        out: list[bool | CarDreamError] = []
        for (node_id, _, _), reply in zip(queued, replies, strict=True):
            try:
                out.append(MemoryStore._check_reply(node_id, reply))
            except CarDreamError as exc:
                out.append(exc)
        if any(r is True or r is False for r in out):
            self.store._register()
        return out
