"""Trajectory records (car-memgine's JSONL): parsing and counting.

Pure functions; the files are read by :mod:`car_dream.trajectory_reader`.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

__all__ = [
    "OUTCOMES",
    "Tally",
    "TrajectoryRecord",
    "fast_counts",
    "parse_counts",
    "parse_line",
    "reject_constant",
]

OUTCOMES = ("success", "failed", "replan_success", "replan_exhausted")
COUNTED_EVENTS = {"action_succeeded": "success", "action_failed": "failure"}


class TrajectoryEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    kind: str
    action_id: str | None = None
    tool: str | None = None
    data: Any = None
    duration_ms: float | None = None

    @field_validator("duration_ms")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("must be finite")
        return v


class TrajectoryRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    proposal_id: str
    source: str
    action_count: int
    events: list[TrajectoryEvent]
    outcome: Literal["success", "failed", "replan_success", "replan_exhausted"]
    timestamp: datetime
    duration_ms: float
    replan_attempts: int

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("timestamp has no time zone (RFC 3339 requires one)")
        return v


def ensure_encodable(obj: Any) -> None:
    """JSON escapes can smuggle lone surrogates that no UTF-8 writer accepts."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains a lone surrogate (\\udXXX escape)") from None


def reject_constant(name: str) -> float:
    """``parse_constant`` for json: NaN and Infinity are not JSON."""
    raise ValueError(f"{name} is not valid JSON")


# One decoder: json.loads with a keyword argument would build a new one per line.
_DECODER = json.JSONDecoder(parse_constant=reject_constant)
_SCAN = _DECODER.scan_once  # type: ignore[attr-defined]
_JSON_WS = " \t\n\r"


def parse_line(raw: bytes) -> TrajectoryRecord:
    """One JSONL line to a record; ValueError with a short reason when malformed."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("not valid UTF-8") from None
    try:
        obj = _DECODER.decode(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"not JSON ({exc.__class__.__name__})") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    if b"\\u" in raw:
        ensure_encodable(obj)
    try:
        record = TrajectoryRecord.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        raise ValueError(f"{where}: {first['msg']}") from None
    if not math.isfinite(record.duration_ms):
        raise ValueError("duration_ms: must be finite")
    return record


_OUTCOME_SET = frozenset(OUTCOMES)
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)\Z")
_INT64 = 1 << 63

Counts = tuple[str, str, list[tuple[str, str]]]  # source, outcome, (tool, success|failure)


def parse_counts(raw: bytes) -> Counts:
    """What a line adds to a :class:`Tally`, accepting exactly what :func:`parse_line` does.

    Records of the plain, common shape are checked by hand (no model built); anything
    else, and every error message, goes through :func:`parse_line`.
    """
    fast = fast_counts(raw)
    if fast is not None:
        return fast
    record = parse_line(raw)
    counted = [
        (e.tool, COUNTED_EVENTS[e.kind])
        for e in record.events
        if e.tool and e.kind in COUNTED_EVENTS
    ]
    return record.source, record.outcome, counted


def fast_counts(raw: bytes) -> Counts | None:
    """The counts of a plain record, or None for anything :func:`parse_line` must judge."""
    if b"\\u" in raw:
        return None  # escapes may smuggle lone surrogates: the full check
    try:
        # The decoder's scanner itself: what JSONDecoder.decode does, less its wrapping.
        # Leading whitespace fails the scan; trailing must be JSON whitespace only.
        text = raw.decode("utf-8")
        obj, end = _SCAN(text, 0)
        if type(obj) is not dict or (end != len(text) and text[end:].strip(_JSON_WS)):
            return None
        source, outcome, ts = obj["source"], obj["outcome"], obj["timestamp"]
        events, took = obj["events"], obj["duration_ms"]
        count, replans = obj["action_count"], obj["replan_attempts"]
        if (
            type(source) is not str
            or type(outcome) is not str
            or outcome not in _OUTCOME_SET
            or type(events) is not list
            or type(obj["proposal_id"]) is not str
            or type(count) is not int
            or not -_INT64 <= count < _INT64
            or type(replans) is not int
            or not -_INT64 <= replans < _INT64
            or type(ts) is not str
            or not _RFC3339.match(ts)
        ):
            return None
        if type(took) is float:
            if took - took != 0.0:  # inf or nan
                return None
        elif type(took) is not int or not -_INT64 <= took < _INT64:
            return None
        datetime.fromisoformat(ts.replace("Z", "+00:00"))
        counted: list[tuple[str, str]] = []
        for e in events:
            kind, tool, took = e["kind"], e.get("tool"), e.get("duration_ms")
            if type(kind) is not str or (tool is not None and type(tool) is not str):
                return None
            action = e.get("action_id")
            if action is not None and type(action) is not str:
                return None
            if took is not None:
                if type(took) is float:
                    if took - took != 0.0:
                        return None
                elif type(took) is not int or not -_INT64 <= took < _INT64:
                    return None
            result = COUNTED_EVENTS.get(kind)
            if result and tool:
                counted.append((tool, result))
        return source, outcome, counted
    except Exception:  # not JSON, not an object, a missing field, a bad date: the full check
        return None


@dataclass
class Tally:
    """Per-tool success/failure and per-source outcome counts of some records."""

    tools: dict[str, Counter[str]] = field(default_factory=dict)
    sources: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, record: TrajectoryRecord) -> None:
        for event in record.events:
            result = COUNTED_EVENTS.get(event.kind)
            if result and event.tool:
                self.tools.setdefault(event.tool, Counter())[result] += 1
        self.sources.setdefault(record.source, Counter())[record.outcome] += 1

    def __bool__(self) -> bool:
        return bool(self.tools or self.sources)
