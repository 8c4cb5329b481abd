"""Objects built once per Redis client and kept with it: ``SomeScripts.of(client)``.

For the sets of Lua scripts (:class:`car_dream.scripts.Scripts`, the lock's): each is
registered once per client, not on every call. The set is kept on the client itself, so
it goes when the client goes: a module-level mapping would keep every client (and its
connection pool) alive, since the scripts refer back to their client.
"""

from __future__ import annotations

import threading
from typing import Any, Self

__all__ = ["PerClient"]

_ATTR = "_car_dream_per_client"
_building = threading.Lock()


class PerClient:
    """Base of a class built from a client; :meth:`of` builds one per client and class."""

    def __init__(self, client: Any) -> None:
        raise NotImplementedError

    @classmethod
    def of(cls, client: Any) -> Self:
        """The instance of this class for ``client``, built on first use."""
        with _building:
            built: dict[type, Any] | None = getattr(client, _ATTR, None)
            if built is None:
                built = {}
                setattr(client, _ATTR, built)
            obj = built.get(cls)
            if obj is None:
                obj = built[cls] = cls(client)
            return obj  # type: ignore[no-any-return]
