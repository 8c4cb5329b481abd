"""The one exception hierarchy of car-dream."""

from __future__ import annotations

from redis.exceptions import OutOfMemoryError

__all__ = [
    "CarDreamError",
    "ConfigError",
    "EmbedderError",
    "InvalidInputError",
    "LockLostError",
    "PassCancelledError",
    "PassFailedError",
    "RedisFullError",
    "RepairRefusedError",
    "SearchUnavailableError",
    "SupersededNodeError",
    "UnknownNodeError",
    "redis_full",
    "shown",
]

SHOWN_CHARS = 60


def shown(value: object) -> str:
    """``repr(value)`` cut to a bounded length: what a message may echo of an input, so a
    megabyte id or field name does not come back in full."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


class CarDreamError(Exception):
    """Base class of every error car-dream raises on purpose."""


class ConfigError(CarDreamError):
    """A setting is invalid; the message names the environment variable."""


class EmbedderError(CarDreamError):
    """The embedding model failed or answered garbage; the embed step stops, nodes wait."""


class InvalidInputError(CarDreamError, ValueError):
    """An ingest call or record failed validation; nothing was written."""


class UnknownNodeError(CarDreamError, KeyError):
    """A node named as premise or supersession target does not exist."""

    def __str__(self) -> str:  # KeyError quotes its argument; a sentence reads better
        return str(self.args[0]) if self.args else ""


class SearchUnavailableError(CarDreamError):
    """Search by meaning at this size needs Redis 8 (vector sets); the message says why."""


class SupersededNodeError(CarDreamError):
    """The node is already superseded and cannot be written again."""


class LockLostError(CarDreamError):
    """The pass no longer holds its namespace lock; it must stop writing."""


class PassCancelledError(CarDreamError):
    """The pass was cancelled by an operator; it stops between batches."""


class PassFailedError(CarDreamError):
    """A consolidation pass failed; the message carries the report's reason."""


class RedisFullError(CarDreamError):
    """Redis is out of memory (``maxmemory`` reached, policy ``noeviction``) and refused
    a write; nothing of that write (or batch) was written."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(
            "out of memory: Redis is full (used memory above maxmemory) and refused the "
            "write, so nothing of it was written; free memory or raise maxmemory"
            + (f" ({detail})" if detail else "")
        )


def redis_full(exc: BaseException) -> RedisFullError | None:
    """The :class:`RedisFullError` to raise for ``exc``, if Redis refused it as full
    (redis-py's ``OutOfMemoryError``, by the ``OOM`` error code of the reply)."""
    return RedisFullError() if isinstance(exc, OutOfMemoryError) else None


class RepairRefusedError(CarDreamError):
    """A repair was asked for while a pass holds the namespace lock."""
