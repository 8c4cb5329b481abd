"""The Lua scripts: registered once per client, and never keeping a client alive."""

from __future__ import annotations

import gc
import weakref

import fakeredis

from car_dream.lock import PassLock
from car_dream.scripts import Scripts
from car_dream.store import MemoryStore


def test_scripts_are_registered_once_per_client_and_go_with_it() -> None:
    client = fakeredis.FakeRedis()
    assert Scripts.of(client) is Scripts.of(client)
    assert PassLock(client, MemoryStore(client, "x").keys, 5).scripts is not None
    gone = weakref.ref(client)
    del client
    gc.collect()
    assert gone() is None  # the cache kept no client (and no connection pool) alive
