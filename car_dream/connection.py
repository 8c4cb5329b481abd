"""Redis connections: what kind of client this is."""

from __future__ import annotations

from typing import Any, TypeAlias

import redis
from redis.cluster import RedisCluster

__all__ = ["RedisClient", "connection_kwargs", "database_of", "is_cluster"]

# The memory's client: bytes-returning, a single server or a Redis Cluster.
RedisClient: TypeAlias = "redis.Redis | RedisCluster"


def is_cluster(client: object) -> bool:
    """True for a Redis Cluster client, whose pipelines refuse scripts and PUBLISH."""
    return isinstance(client, RedisCluster)


def connection_kwargs(client: Any) -> dict[str, Any]:
    """The client's connection settings (empty for a cluster client: it has no one pool)."""
    return getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})


def database_of(client: Any) -> int:
    """The database number the client talks to (0 on a cluster)."""
    return int(connection_kwargs(client).get("db") or 0)
