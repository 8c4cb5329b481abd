"""Writing nodes: the ``ingest_*`` calls, validated here, sent one by one by the store or
queued on a :class:`WriteBatch` and sent together.

Each write is one INGEST script: checked against the graph (known premises and targets, no
cycle, no rewrite of a superseded node) and applied atomically, or not at all.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import InvalidInputError, SupersededNodeError, UnknownNodeError, shown
from .keys import Keys, validate_node_id
from .node import KINDS, NodeKind, text

__all__ = [
    "KINDS",
    "NodeKind",
    "Timestamp",
    "WriteCall",
    "Writes",
    "check_reply",
    "to_epoch",
]

MAX_CONTENT = 1_000_000

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
            raise ValueError(f"node {shown(self.id)} cannot supersede itself")
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


def _validated(model: type[BaseModel], **data: Any) -> Any:
    try:
        return model(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "input"
        raise InvalidInputError(f"{where}: {first['msg']}") from None


_R = TypeVar("_R")
WriteCall = tuple[str, list[str], list[Any]]  # node id, INGEST keys, INGEST args


class Writes(Generic[_R]):
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
        """Write a fact; ``supersedes`` marks an older node superseded. True if new (on a
        batch, :meth:`WriteBatch.execute` tells)."""
        if isinstance(tags, str):
            raise InvalidInputError("tags: must be a list of strings, not a string")
        try:
            tags = tuple(tags)
        except TypeError:
            raise InvalidInputError("tags: must be a list of strings") from None
        ts = self._epoch("timestamp", timestamp)
        fact = _validated(
            FactIn,
            id=id,
            subject=subject,
            content=content,
            source=source,
            provenance=provenance,
            timestamp=ts,
            scope=scope,
            supersedes=supersedes,
            tags=tags,
            pinned=pinned,
        )
        fields = [
            "content",
            fact.content,
            "subject",
            fact.subject,
            "source",
            fact.source,
            "provenance",
            fact.provenance,
            "scope",
            fact.scope,
            "timestamp",
            repr(fact.timestamp),
            "tags",
            json.dumps(list(fact.tags)),
        ]
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
        try:
            premises = tuple(premises)
        except TypeError:
            raise InvalidInputError("premises: must be a list of node ids") from None
        c = _validated(ConclusionIn, id=id, content=content, premises=premises)
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

    def _write(self, call: WriteCall) -> _R:
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
    ) -> WriteCall:
        """One write as the node id and the INGEST script's keys and args."""
        now = datetime.now(UTC).timestamp()
        args = [
            self.keys.prefix,
            node_id,
            kind,
            repr(now),
            supersedes or "",
            json.dumps(list(premises)),
            "1" if pinned else "0",
            "" if expires_at is None else repr(expires_at),
            *fields,
        ]
        return node_id, [self.keys.node(node_id)], args


def check_reply(node_id: str, reply: list[Any]) -> bool:
    """True if the INGEST reply says the node is new, False if rewritten; else raises."""
    code = text(reply[0])
    if code == "ok":
        return bool(int(reply[1]))
    detail = text(reply[1])
    if code == "unknown":
        raise UnknownNodeError(f"node {shown(detail)} does not exist")
    if code == "superseded":
        raise SupersededNodeError(f"node {shown(detail)} is already superseded")
    if code == "kind":
        raise InvalidInputError(f"node {shown(node_id)} already exists as a {detail}")
    if code == "cycle":
        raise InvalidInputError(
            f"writing {shown(node_id)} would make a cycle through {shown(detail)}"
        )
    raise InvalidInputError(f"write of {shown(node_id)} refused: {code} {shown(detail)}")
