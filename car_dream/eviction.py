"""The memory's Redis must never evict: ``maxmemory-policy noeviction``.

Under any other policy a Redis that reaches ``maxmemory`` deletes keys of its own choice:
a node without its index entries, an index without its node, a pass's lock. Nothing
fails, memory is simply gone. So the worker refuses to start on such a Redis unless
``CAR_DREAM_ALLOW_EVICTION=true`` (then it warns), and beat, the CLI and
``car-dream check`` say so. A Redis that refuses ``CONFIG GET`` (managed Redis often
does) cannot be checked: one warning, no failure.
"""

from __future__ import annotations

from typing import Any

import redis

from .config import mask_url
from .connection import is_cluster, memory_client
from .errors import ConfigError

__all__ = ["NOEVICTION", "check_eviction", "check_eviction_at", "eviction_policy"]

NOEVICTION = "noeviction"
UNKNOWN = "unknown"  # the server refused CONFIG GET


def eviction_policy(client: Any) -> str:
    """The server's ``maxmemory-policy`` (on a cluster, the first node's that is not
    ``noeviction``), or ``"unknown"`` if the server refuses ``CONFIG GET``."""
    try:
        if is_cluster(client):
            replies = client.config_get("maxmemory-policy", target_nodes=client.ALL_NODES)
            policies = [_policy(r) for r in replies.values()]
        else:
            policies = [_policy(client.config_get("maxmemory-policy"))]
    except redis.ResponseError:  # unknown or renamed command, or NOPERM
        return UNKNOWN
    evicting = [p for p in policies if p != NOEVICTION]
    return evicting[0] if evicting else NOEVICTION


def _policy(reply: dict[Any, Any]) -> str:
    for name, value in reply.items():
        if _text(name) == "maxmemory-policy":
            return _text(value)
    return UNKNOWN


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def check_eviction(
    client: Any, var: str, url: str, *, allow: bool, refuse: bool = True
) -> str | None:
    """``None`` if the Redis behind ``var`` (its ``url``) never evicts; else the warning
    to show. A policy that evicts raises :class:`ConfigError` (naming the setting and
    the fix) if ``refuse`` and not ``allow``."""
    policy = eviction_policy(client)
    where = f"{var}: Redis at {mask_url(url)}"
    if policy == NOEVICTION:
        return None
    if policy == UNKNOWN:
        return (
            f"{where} refused CONFIG GET maxmemory-policy, so car-dream cannot check it; "
            "make sure it is noeviction, or Redis may delete memory when it is full"
        )
    if allow:
        return (
            f"{where} has maxmemory-policy {policy}: when full it deletes keys (nodes, "
            "indexes, locks) without a word; allowed by CAR_DREAM_ALLOW_EVICTION=true"
        )
    message = (
        f"{where} has maxmemory-policy {policy}: when it reaches maxmemory it deletes keys "
        "of its own choice (a node without its index entries, a pass's lock) and memory is "
        "lost without an error. Set maxmemory-policy noeviction (redis.conf, or "
        "CONFIG SET maxmemory-policy noeviction), or CAR_DREAM_ALLOW_EVICTION=true to run anyway"
    )
    if refuse:
        raise ConfigError(message)
    return message


def check_eviction_at(var: str, url: str, *, allow: bool, refuse: bool = True) -> str | None:
    """:func:`check_eviction` on a client of its own. A Redis that is not there yet goes
    unchecked: worker and beat start anyway and wait for it (and say so already)."""
    client = memory_client(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        return check_eviction(client, var, url, allow=allow, refuse=refuse)
    except (redis.ConnectionError, redis.TimeoutError):
        return None
    finally:
        client.close()
