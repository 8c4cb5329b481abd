"""JSONL to ingest calls, for ``car-dream ingest``: one JSON object a line, its ``kind``
(fact, environment or conclusion) plus the arguments of that ``ingest_*`` call.

Lines are read as bytes and decoded one by one, so a bad line costs that line only; the
good ones go to Redis in batches, and whatever stops the reading, what was queued before
it is still sent.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from .batch import WriteBatch
from .errors import CarDreamError, RedisFullError, shown
from .writes import KINDS, Writes

__all__ = ["Ingest", "ingest_line"]

TIME_FIELDS = ("timestamp", "observed_at", "expires_at")
# The arguments each kind's ingest call takes, to name an unknown field ourselves.
FIELDS = {
    kind: frozenset(inspect.signature(getattr(Writes, f"ingest_{kind}")).parameters) - {"self"}
    for kind in KINDS
}


def _decode(raw: bytes | str, first: bool) -> str:
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("not valid UTF-8") from None
    if first:  # a byte-order mark (some Windows editors write one) is no data
        raw = raw.removeprefix("\ufeff")
    return raw.rstrip("\r\n")


def _times(obj: dict[str, Any]) -> None:
    for name in TIME_FIELDS:
        value = obj.get(name)
        if isinstance(value, str):
            try:
                obj[name] = datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(f"{name}: not an RFC 3339 time: {shown(value)}") from None


def ingest_line(store: Any, raw: bytes | str, *, first: bool = False) -> None:
    """One JSONL line to its ``ingest_*`` call on ``store`` (a store or a
    :class:`~car_dream.writes.WriteBatch`); ValueError or CarDreamError if refused.
    ``first``: the file's first line, which may start with a byte-order mark."""
    text = _decode(raw, first)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        # exc.pos, not exc.colno: the column within this line whatever it holds.
        raise ValueError(f"not JSON ({exc.msg} at column {exc.pos + 1})") from None
    except RecursionError:
        raise ValueError("not JSON we can read (nested too deeply)") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    kind = obj.pop("kind", None)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {shown(kind)}")
    for name in obj:
        if name not in FIELDS[kind]:
            raise ValueError(f"unknown field {shown(name)} for a {kind}")
    _times(obj)
    try:
        getattr(store, f"ingest_{kind}")(**obj)
    except TypeError as exc:  # a missing argument: "Writes.ingest_fact() missing 1 ..."
        raise ValueError(str(exc).split(".", 1)[-1]) from None


class Ingest:
    """Lines to a store in batches of ``batch_size`` writes, one round trip each.

    ``good``, ``bad`` and ``read`` (the last line number read) hold however :meth:`run`
    ends; ``on_error(line, message)`` hears of each refused line, in line order.
    """

    def __init__(
        self,
        store: Any,
        batch_size: int,
        on_error: Callable[[int, str], None] = lambda line, message: None,
    ) -> None:
        self.batch: WriteBatch = store.batch()
        self.batch_size = batch_size
        self.on_error = on_error
        self.good = self.bad = self.read = 0
        self._queued: list[int] = []  # the line number of each queued write
        self._errors: list[tuple[int, str]] = []

    def run(self, lines: Iterable[bytes | str]) -> None:
        try:
            for number, raw in enumerate(lines, start=1):
                self.read = number
                if not raw.strip():
                    continue
                try:
                    ingest_line(self.batch, raw, first=number == 1)
                    self._queued.append(number)
                except (ValueError, CarDreamError) as exc:
                    self._errors.append((number, str(exc)))
                except Exception as exc:  # still this line's problem, not the file's
                    why = f"{exc.__class__.__name__}: {shown(str(exc))}"
                    self._errors.append((number, f"refused ({why})"))
                if len(self._queued) >= self.batch_size:
                    self.flush()
        finally:
            # A failed read (or Ctrl-C) must not cost the lines accepted before it.
            self.flush()

    def flush(self) -> None:
        numbers, self._queued = self._queued, []
        full: list[int] = []  # good lines Redis had no room for: not the line's fault
        try:
            for number, result in zip(numbers, self.batch.execute(), strict=True):
                if isinstance(result, RedisFullError):
                    full.append(number)
                elif isinstance(result, CarDreamError):
                    self._errors.append((number, str(result)))
                else:
                    self.good += 1
            if full:  # the lines after them would be refused too: stop here
                more = f" and {len(full) - 1} more of its batch" if len(full) > 1 else ""
                raise RedisFullError(f"not written: line {full[0]}{more}")
        finally:  # lines refused before a Redis error are still told
            errors, self._errors = sorted(self._errors), []
            self.bad += len(errors)
            for number, message in errors:
                self.on_error(number, message)
