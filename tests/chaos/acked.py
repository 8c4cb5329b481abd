"""Writers that remember what Redis acknowledged: scenarios 9, 11 and 12 count what of it
is missing afterwards, and when it was acknowledged."""

from __future__ import annotations

import threading
import time
from collections import Counter

import redis

from car_dream.connection import memory_client
from car_dream.errors import RedisFullError
from car_dream.store import MemoryStore


class AckedWriters:
    """``threads`` threads writing facts ``{tag}.{i}.{n}`` (``size`` bytes of content) as
    fast as Redis takes them, each with a client of its own (any URL car-dream takes).

    ``acked``: (id, time) of every write Redis acknowledged; ``refused``: how many were
    refused, by reason (``full``: :class:`RedisFullError`; ``unreachable``: a connection
    error; ``unreplicated``: see ``wait``); ``unexpected``: anything else, which a
    scenario treats as a failure. With ``wait``, a write counts as acknowledged only once
    ``WAIT wait 500`` says that many replicas have it, as an agent that must not lose it
    would do.
    """

    def __init__(
        self,
        url: str,
        namespace: str = "default",
        *,
        threads: int = 2,
        tag: str = "w",
        size: int = 100,
        pause: float = 0.005,
        wait: int = 0,
    ) -> None:
        self.url, self.namespace, self.tag, self.size, self.pause = url, namespace, tag, size, pause
        self.wait = wait
        self.acked: list[tuple[str, float]] = []
        self.refused: Counter[str] = Counter()
        self.unexpected: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)
        ]

    def start(self) -> AckedWriters:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _run(self, i: int) -> None:
        store = MemoryStore(memory_client(self.url, socket_timeout=5), self.namespace)
        n = 0
        while not self._stop.is_set():
            node_id = f"{self.tag}.{i}.{n}"
            n += 1
            try:
                store.ingest_fact(node_id, "chaos", f"{node_id} " + "x" * self.size)
                # One thread per client: the pool hands back the connection that wrote.
                if self.wait and store.client.wait(self.wait, 500) < self.wait:
                    self.refused["unreplicated"] += 1
                    continue
                with self._lock:
                    self.acked.append((node_id, time.time()))
            except RedisFullError:
                self.refused["full"] += 1
                time.sleep(0.01)
            except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError):
                self.refused["unreachable"] += 1
                time.sleep(0.05)
            except Exception as exc:  # reported: it fails the scenario
                self.unexpected.append(f"{node_id}: {exc.__class__.__name__}: {exc}")
            time.sleep(self.pause)

    def missing(self, client: redis.Redis) -> list[tuple[str, float]]:
        """The acknowledged writes whose node ``client``'s Redis does not hold."""
        store = MemoryStore(client, self.namespace)
        acked = list(self.acked)
        pipe = client.pipeline(transaction=False)
        for node_id, _ in acked:
            pipe.exists(store.keys.node(node_id))
        return [w for w, there in zip(acked, pipe.execute(), strict=True) if not there]
