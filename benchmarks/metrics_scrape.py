"""How long one scrape of ``car-dream exporter`` takes over 100 namespaces (issue 13: < 50 ms).

    python -m benchmarks.metrics_scrape [--namespaces 150] [--shown 100] [--scrapes 30]

On a private ``redis-server`` it records ``--reports`` reports in each of ``--namespaces``
namespaces through ``MemoryStore.record_report`` (every step timed, so each namespace has
all its step histograms) and writes a few nodes in each, starts ``car-dream exporter`` as
its own process with ``CAR_DREAM_METRICS_MAX_NAMESPACES=--shown``, and times ``GET
/metrics`` from here (the whole HTTP request). It prints the median, the 90th percentile
and the worst scrape, the size of the answer, and the round trips one collection makes
(counted on the client, as in bench.py). Not part of the test suite: a number, not a test.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.bench import RoundTrips, Server, counting_client, stop_group
from car_dream.embedded import free_port
from car_dream.metrics import read_snapshot
from car_dream.report import ConsolidationReport
from car_dream.steps import STEPS
from car_dream.store import MemoryStore

STATUSES = ("completed", "completed", "completed", "skipped", "failed")
COLLECT_RE = re.compile(rb"^car_dream_scrape_duration_seconds (\S+)$", re.M)


def seed(server: Server, namespaces: int, reports: int) -> None:
    client = counting_client(server.port)
    for i in range(namespaces):
        store = MemoryStore(client, f"ns-{i:04d}")
        batch = store.batch()
        for j in range(10):
            batch.ingest_fact(f"f{j}", "subject", f"fact {j} of namespace {i}")
        batch.execute()
        for j in range(reports):
            status = STATUSES[j % len(STATUSES)]
            ran = status != "skipped"
            report = ConsolidationReport(
                namespace=store.namespace,
                status=status,  # type: ignore[arg-type]
                reason="coalesced" if not ran else None,
                trailing=j % 7 == 6,
                started_at=datetime.now(UTC),
                finished_at=datetime.now(UTC),
                duration_ms=0.5 * 3 ** (j % 9) if ran else 0.4,
                expired_pruned=j % 3,
                nodes_embedded=j % 5,
                step_ms={s.name: 0.1 * 4 ** (j % 8) for s in STEPS} if ran else {},
            )
            store.record_report(report)
    client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", type=int, default=150)
    parser.add_argument("--shown", type=int, default=100)
    parser.add_argument("--reports", type=int, default=20)
    parser.add_argument("--scrapes", type=int, default=30)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="car-dream-scrape-") as tmp:
        server = Server(Path(tmp) / "redis")
        exporter = None
        try:
            seed(server, args.namespaces, args.reports)
            client = counting_client(server.port)
            client.ping()  # the connection's own handshake is not the scrape's
            RoundTrips.n = 0
            snap = read_snapshot(client, args.shown, time.time())
            trips = RoundTrips.n
            port = free_port()
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("CAR_DREAM_")},
                "CAR_DREAM_REDIS_URL": server.url,
                "CAR_DREAM_METRICS_MAX_NAMESPACES": str(args.shown),
            }
            exporter = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from car_dream.cli import main; main()",
                    "exporter",
                    "--port",
                    str(port),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
            url = f"http://127.0.0.1:{port}/metrics"
            body = _first(url)
            times, collect = [], []
            for _ in range(args.scrapes):
                started = time.perf_counter()
                with urllib.request.urlopen(url, timeout=10) as resp:
                    body = resp.read()
                times.append((time.perf_counter() - started) * 1000)
                collect.append(1000 * float(COLLECT_RE.search(body).group(1)))  # type: ignore[union-attr]
            samples = sum(1 for line in body.splitlines() if not line.startswith(b"#"))
            times.sort()
            print(
                f"scrape of {len(snap.shown)} namespaces shown (of {args.namespaces}, "
                f"{args.reports} reports each): median {statistics.median(times):.1f} ms, "
                f"p90 {times[int(0.9 * (len(times) - 1))]:.1f} ms, max {times[-1]:.1f} ms; "
                f"{samples} samples, {len(body) / 1024:.0f} KiB; "
                f"{trips} Redis round trips per collection, reading Redis and building the "
                f"metrics {statistics.median(collect):.1f} ms of it (median; target: < 50 ms)"
            )
        finally:
            if exporter is not None:
                stop_group(exporter)
            server.stop()
    return 0


def _first(url: str) -> bytes:
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return bytes(resp.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
