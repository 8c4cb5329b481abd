"""redis-py's reply parser, pure Python against hiredis, in one process: the same calls
alternate between two clients that differ only in ``parser_class``, so load on the
machine weighs on both alike (a whole ``make bench`` run apart moves more than this).

    python -m benchmarks.hiredis_ab [reps]
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from redis._parsers import _HiredisParser, _RESP2Parser

from benchmarks.bench import bulk_ingest, facts, trajectory_record
from tests.servers import RedisServer


def main(reps: int = 600) -> dict[str, dict[str, float]]:
    from car_dream.config import load_config
    from car_dream.consolidate import run_pass
    from car_dream.keys import Keys
    from car_dream.lock import PassLock
    from car_dream.store import MemoryStore

    tmp = Path(tempfile.mkdtemp(prefix="car-dream-hiredis-"))
    server = RedisServer(tmp / "redis", persist=False)
    server.start()
    try:
        traj = tmp / "traj"
        traj.mkdir()
        (traj / "a.jsonl").write_text(json.dumps(trajectory_record(0)) + "\n")
        profiles = tmp / "profiles.json"
        profiles.write_text(json.dumps([{"model_id": "m", "success_rate": 0.5}]))
        cfg = load_config(
            interval_secs=3600,
            redis_url=server.url,
            max_trailing=0,
            trajectory_dir=traj,
            outcome_profiles_path=profiles,
            embeddings_path=tmp / "e.npz",
        )
        parsers = {"python": _RESP2Parser, "hiredis": _HiredisParser}
        clients = {
            name: redis.Redis(
                connection_pool=redis.ConnectionPool(port=server.port, parser_class=p)
            )
            for name, p in parsers.items()
        }
        stores = {name: MemoryStore(c, f"ns-{name}") for name, c in clients.items()}
        for store in stores.values():
            bulk_ingest(store, facts("f", 1000))
            run_pass(store, cfg, force=True)
        time.sleep(2.5)  # past file_versions.RACY_SECS: the files' versions are cached

        def lock(name: str) -> None:
            held = PassLock(clients[name], Keys(f"lock-{name}"), 1800)
            held.acquire()
            held.release()

        calls: dict[str, Callable[[str], Any]] = {
            "idle pass": lambda n: run_pass(stores[n], cfg, force=True),
            "coalesced trigger": lambda n: run_pass(stores[n], cfg),
            "lock acquire+release": lock,
            "node get": lambda n: stores[n].get("f-1"),
        }
        seen: dict[str, dict[str, list[float]]] = {n: {k: [] for k in calls} for n in clients}
        for rep in range(reps):
            for name in ("python", "hiredis") if rep % 2 else ("hiredis", "python"):
                for what, call in calls.items():
                    t0 = time.perf_counter()
                    call(name)
                    seen[name][what].append(time.perf_counter() - t0)
        out = {}
        for what in calls:
            py = statistics.median(seen["python"][what]) * 1e6
            hi = statistics.median(seen["hiredis"][what]) * 1e6
            out[what] = {"python_us": py, "hiredis_us": hi, "ratio": hi / py}
            print(f"{what:22s} python {py:8.1f} us  hiredis {hi:8.1f} us  {hi / py:.2f}x")
        return out
    finally:
        server.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 600)
