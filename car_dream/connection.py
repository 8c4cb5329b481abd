"""Redis connections: what kind of client this is."""

from __future__ import annotations

from typing import TypeAlias

import redis
from redis.cluster import RedisCluster

__all__ = ["RedisClient", "is_cluster"]

# The memory's client: bytes-returning, a single server or a Redis Cluster.
RedisClient: TypeAlias = "redis.Redis | RedisCluster"


def is_cluster(client: object) -> bool:
    """True for a Redis Cluster client, whose pipelines refuse scripts and PUBLISH."""
    return isinstance(client, RedisCluster)
