"""Many writes to one namespace, validated at once and sent together in one round trip."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis.exceptions import OutOfMemoryError

from .connection import is_cluster
from .errors import CarDreamError, RedisFullError, redis_full
from .keys import Keys
from .scripts import Scripts
from .writes import WriteCall, Writes, check_reply

__all__ = ["WriteBatch"]


class WriteBatch(Writes[None]):
    """Writes to one namespace queued here and sent by :meth:`execute`, in order (a
    conclusion may cite a fact queued before it): one pipeline, so one round trip.

    Each ``ingest_*`` call validates at once and raises as the store's does; what Redis
    refuses (an unknown premise, a superseded target) comes back from :meth:`execute`.
    Every write is still its own atomic script: a refused one leaves the others done.
    On Redis Cluster (whose pipelines refuse scripts) the writes go one by one.
    """

    def __init__(self, client: Any, keys: Keys, on_written: Callable[[], None]) -> None:
        self.client = client
        self.keys = keys
        self._on_written = on_written  # the store registers its namespace
        self._queued: list[WriteCall] = []

    def __len__(self) -> int:
        return len(self._queued)

    def _write(self, call: WriteCall) -> None:
        self._queued.append(call)

    def execute(self) -> list[bool | CarDreamError]:
        """Send what is queued; per write, in order: True if new, False if rewritten, or
        the error it was refused with (:class:`RedisFullError` when Redis is full). The
        batch is empty afterwards."""
        queued, self._queued = self._queued, []
        if not queued:
            return []
        client, ingest = self.client, Scripts.of(self.client).ingest
        if is_cluster(client):
            replies = [_refused_if_full(ingest, keys, args) for _, keys, args in queued]
        else:
            pipe = client.pipeline(transaction=False)
            for _, keys, args in queued:
                ingest(keys=keys, args=args, client=pipe)
            replies = pipe.execute(raise_on_error=False)
        out: list[bool | CarDreamError] = []
        for (node_id, _, _), reply in zip(queued, replies, strict=True):
            if isinstance(reply, Exception):  # each write is refused whole, or applied
                out.append(_full_or_raise(reply))
                continue
            try:
                out.append(check_reply(node_id, reply))
            except CarDreamError as exc:
                out.append(exc)
        if any(isinstance(r, bool) for r in out):  # something was written
            self._on_written()
        return out


def _full_or_raise(exc: Exception) -> RedisFullError:
    """A write Redis refused as full is that write's result; any other error is raised."""
    full = redis_full(exc)
    if full is None:
        raise exc
    return full


def _refused_if_full(ingest: Any, keys: list[str], args: list[Any]) -> Any:
    try:
        return ingest(keys=keys, args=args)
    except OutOfMemoryError as exc:
        return exc
