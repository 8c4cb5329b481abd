"""Redis memory per embedded fact under other layouts than the one in use (row 13 measures
that one): the node hash kept a listpack (``hash-max-listpack-value`` above the vector's
size), its vector as float16, and, on a Redis 8, the vector out of the node hash into a
vector set (Q8, the default, and NOQUANT).

    python -m benchmarks.memory_layouts [nodes] [redis-8-server-binary]

Each layout is seeded through car-dream's own ingest and a pass (the default model,
``hashing``, 256-d float32), then changed in place where a layout is not car-dream's:
``used_memory`` before and after, per node. The float16 and vector-set layouts are what
the data would take, not code car-dream has.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import redis

from benchmarks.bench import bulk_ingest, content
from tests.servers import RedisServer


def _text(i: int) -> str:
    return (content(i) + " and then " + content(i + 1))[:100]


def _used(client: redis.Redis) -> int:
    time.sleep(0.3)  # lazy frees done
    return int(client.info("memory")["used_memory"])


def _seed(client: redis.Redis, ns: str, n: int) -> tuple[Any, list[str], int]:
    from car_dream.config import load_config
    from car_dream.consolidate import run_pass
    from car_dream.store import MemoryStore

    store = MemoryStore(client, ns)
    before = _used(client)
    bulk_ingest(store, (("fact", f"m{i}", _text(i), None, [], None) for i in range(n)))
    report = run_pass(store, load_config(interval_secs=3600), force=True)
    assert report.nodes_embedded == n, report
    return store, [store.keys.node(f"m{i}") for i in range(n)], before


def _each(client: redis.Redis, keys: list[str], fn: Any) -> None:
    for i in range(0, len(keys), 1000):
        pipe = client.pipeline(transaction=False)
        for key in keys[i : i + 1000]:
            fn(pipe, key)
        pipe.execute()


def measure(binary: str | None, n: int, listpack: int | None) -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="car-dream-mem-") as tmp:
        server = RedisServer(Path(tmp), persist=False)
        if binary:
            import tests.servers as servers

            servers.redis_binary = lambda: binary  # type: ignore[assignment]
        server.start()
        try:
            client = redis.Redis(port=server.port)
            if listpack:
                client.config_set("hash-max-listpack-value", listpack)
            version = client.info("server")["redis_version"]
            store, keys, before = _seed(client, "mem", n)
            payload = sum(len(_text(i).encode()) for i in range(n)) / n + 1024
            out["payload"] = payload
            out["in_use"] = (_used(client) - before) / n
            out["encoding_listpack"] = float(client.object("encoding", keys[0]) == b"listpack")
            blobs: dict[str, bytes] = {}
            for i in range(0, n, 1000):
                pipe = client.pipeline(transaction=False)
                for key in keys[i : i + 1000]:
                    pipe.hget(key, "emb")
                for key, blob in zip(keys[i : i + 1000], pipe.execute(), strict=True):
                    blobs[key] = blob
            half = {
                k: np.frombuffer(b, np.float32).astype(np.float16).tobytes()
                for k, b in blobs.items()
            }
            _each(client, keys, lambda p, k: p.hset(k, "emb", half[k]))
            out["float16_in_hash"] = (_used(client) - before) / n
            _each(client, keys, lambda p, k: p.hdel(k, "emb"))
            out["no_vector"] = (_used(client) - before) / n
            if version.startswith("8"):
                vset = store.keys.prefix + "idx:vectors"
                for quant in ("Q8", "NOQUANT"):
                    _each(
                        client,
                        keys,
                        lambda p, k, q=quant: p.execute_command(
                            "VADD", vset, "FP32", blobs[k], k.rsplit(":", 1)[1], q
                        ),
                    )
                    out[f"vector_set_{quant}"] = (_used(client) - before) / n
                    client.delete(vset)
            out["redis"] = float(version.split(".")[0])
        finally:
            server.stop()
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    binary = sys.argv[2] if len(sys.argv) > 2 else None
    for listpack in (None, 2048):
        got = measure(binary, n, listpack)
        label = f"hash-max-listpack-value {listpack or 'default (64)'}"
        print(f"{label}, {n:,} nodes: " + ", ".join(f"{k} {v:.0f}" for k, v in got.items()))


if __name__ == "__main__":
    main()
