"""The fault suite's machinery: private redis-servers, seeding, the summary table.

Not collected by ``make test`` (``norecursedirs``); ``make chaos`` runs it.
"""

from __future__ import annotations

import itertools
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from car_dream.check import CheckReport, check_store
from car_dream.connection import database_of
from car_dream.keys import Keys
from car_dream.report import ConsolidationReport
from car_dream.store import MemoryStore

from ..celery_env import Processes
from ..conftest import wait_for
from ..servers import RedisServer, redis8_binary


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    # A scenario asks for a Redis 8 (vector sets: the search index kept too) with
    # @pytest.mark.parametrize("server", ["redis8"], indirect=True).
    redis8 = getattr(request, "param", None) == "redis8"
    s = RedisServer(tmp_path / "redis", binary=redis8_binary() if redis8 else None)
    s.start()
    yield s
    s.stop()


class ChaosProcesses(Processes):
    """Processes that may be killed on purpose: ``forget`` one and it may die quietly."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.forgotten: set[int] = set()

    def forget(self, proc: subprocess.Popen[Any]) -> None:
        self.forgotten.add(proc.pid)

    def check_alive(self) -> None:
        for proc, log in self.procs:
            if proc.pid not in self.forgotten and proc.poll() is not None:
                raise AssertionError(
                    f"{log.stem} exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
                )


@pytest.fixture(name="procs")
def chaos_procs(tmp_path: Path) -> Iterator[ChaosProcesses]:
    p = ChaosProcesses(tmp_path)
    yield p
    p.stop()
    p.dump()


# -- seeding ---------------------------------------------------------------------


def seed(
    store: MemoryStore,
    *,
    expired: int = 0,
    facts: int = 0,
    keepers: int = 0,
    chunk: int = 1000,
    tag: str = "",
) -> None:
    """A backlog written fast (pipelined ingest scripts): ``expired`` environment nodes
    already past their expiry, ``facts`` unembedded facts, and ``keepers`` environment
    nodes that expire in an hour (a pass must never remove them)."""
    now = time.time()
    pipe = store.client.pipeline(transaction=False)
    k, ingest = store.keys, store.scripts.ingest
    rows: Iterator[tuple[str, str, str, list[str]]] = itertools.chain(
        (
            (
                f"{tag}exp.{i}",
                "environment",
                repr(now - 1),
                ["content", f"old observation {i}", "observed_at", repr(now - 60)],
            )
            for i in range(expired)
        ),
        (
            (
                f"{tag}fact.{i}",
                "fact",
                "",
                ["content", f"fact number {i} about the world", "subject", "chaos"],
            )
            for i in range(facts)
        ),
        (
            (
                f"keep.{i}",
                "environment",
                repr(now + 3600),
                ["content", f"fresh observation {i}", "observed_at", repr(now)],
            )
            for i in range(keepers)
        ),
    )
    for n, (node_id, kind, exp, fields) in enumerate(rows, start=1):
        ingest(
            keys=[k.node(node_id)],
            args=[k.prefix, node_id, kind, repr(now), "", "[]", "0", exp, *fields],
            client=pipe,
        )
        if n % chunk == 0:
            pipe.execute()
    pipe.execute()
    store.client.sadd("car-dream:namespaces", store.namespace)


def missing_keepers(store: MemoryStore, keepers: int) -> int:
    pipe = store.client.pipeline(transaction=False)
    for i in range(keepers):
        pipe.exists(store.keys.node(f"keep.{i}"))
    return sum(1 for e in pipe.execute() if not e)


def all_reports(client: redis.Redis, namespace: str = "default") -> list[ConsolidationReport]:
    """Every stored report (the list keeps 100), oldest first."""
    return list(reversed(MemoryStore(client, namespace).reports(100)))


def overlapping(reports: list[ConsolidationReport]) -> int:
    """Completed passes of one namespace whose [started_at, finished_at] overlap."""
    spans = sorted(
        (r.started_at, r.finished_at) for r in reports if r.status == "completed" and r.finished_at
    )
    return sum(1 for a, b in itertools.pairwise(spans) if a[1] is not None and b[0] < a[1])


def lock_value(client: redis.Redis, namespace: str = "default") -> str | None:
    v = client.get(f"car-dream:{{{namespace}}}:lock")
    return v.decode() if v else None


def assert_invariants(store: MemoryStore) -> CheckReport:
    report = check_store(store)
    assert report.ok, report.messages
    return report


# -- the table -------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    faults: str
    passes: int
    lost: int
    duplicates: int
    recover: str
    note: str = ""

    def line(self) -> str:
        return (
            f"chaos {self.scenario}: faults={self.faults} passes={self.passes} "
            f"lost={self.lost} duplicates={self.duplicates} recover={self.recover}"
            + (f" ({self.note})" if self.note else "")
        )


ROWS: list[Row] = []


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Any:
    def add(row: Row) -> None:
        ROWS.append(row)
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        capman = request.config.pluginmanager.get_plugin("capturemanager")
        if reporter is not None and capman is not None:
            with capman.global_and_fixture_disabled():  # shown live, whatever the -s
                reporter.write_line("")
                reporter.write_line(row.line())

    return add


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not ROWS:
        return
    head = (
        "scenario",
        "faults injected",
        "passes completed",
        "nodes wrongly lost",
        "duplicate concurrent passes",
        "time to recover",
    )
    rows = [
        (r.scenario, r.faults, str(r.passes), str(r.lost), str(r.duplicates), r.recover)
        for r in ROWS
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]

    def fmt(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    terminalreporter.section("car-dream chaos")
    terminalreporter.write_line(fmt(head))
    terminalreporter.write_line("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        terminalreporter.write_line(fmt(row))
    for r in ROWS:
        if r.note:
            terminalreporter.write_line(f"  {r.scenario}: {r.note}")


__all__ = ["RedisServer", "Row", "all_reports", "seed", "wait_for"]


class ReportTap:
    """Every report published on the namespace's live channel while the tap runs
    (the stored list keeps only the last 100); reconnects when Redis goes away."""

    def __init__(self, url: str, namespace: str = "default") -> None:
        import threading

        db = database_of(redis.Redis.from_url(url))
        self.url, self.channel = url, Keys(namespace).reports_channel(db)
        self.reports: list[ConsolidationReport] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                client = redis.Redis.from_url(self.url, socket_timeout=5)
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                self._ready.set()
                while not self._stop.is_set():
                    msg = pubsub.get_message(timeout=0.5)
                    if msg and msg.get("type") == "message":
                        self.reports.append(ConsolidationReport.model_validate_json(msg["data"]))
            except redis.RedisError:
                time.sleep(0.3)

    def completed(self, *, trailing: bool | None = None) -> list[ConsolidationReport]:
        return [
            r
            for r in list(self.reports)
            if r.status == "completed" and (trailing is None or r.trailing == trailing)
        ]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def tap(server: RedisServer) -> Iterator[ReportTap]:
    t = ReportTap(server.url)
    yield t
    t.close()
