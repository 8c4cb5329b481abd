"""Helpers for the metrics tests: the exporter as a real process, scrapes, promtool."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import fakeredis
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from car_dream.config import load_config
from car_dream.consolidate import run_pass
from car_dream.exporter import registry
from car_dream.store import MemoryStore

from .celery_env import Processes
from .conftest import free_port, wait_for

CLI = [sys.executable, "-c", "from car_dream.cli import main; main()"]


def tool(name: str) -> str:
    """The path of a tool of Debian's ``prometheus`` package. Missing: skipped here, but a
    failure under CI (.ci/run installs the package; a skip there would hide its absence)."""
    found = shutil.which(name) or (
        f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None
    )
    if found:
        return found
    message = f"{name} not found: apt-get install prometheus"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def promtool(*args: str, stdin: bytes | None = None, cwd: Path | None = None) -> str:
    """Run ``promtool`` and return its output; a non-zero exit fails the test with it."""
    out = subprocess.run(
        [tool("promtool"), *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )
    text = (out.stdout + out.stderr).decode(errors="replace")
    assert out.returncode == 0, text
    return text


@dataclass
class Exporter:
    url: str
    name: str

    def scrape(self) -> str:
        with urllib.request.urlopen(self.url, timeout=10) as resp:
            assert resp.status == 200
            return str(resp.read().decode())


def start_exporter(procs: Processes, env: dict[str, str], name: str = "exporter") -> Exporter:
    """``car-dream exporter`` on a free port, answering once this returns."""
    port = free_port()
    procs.start(name, [*CLI, "exporter", "--port", str(port)], env)
    exporter = Exporter(f"http://127.0.0.1:{port}/metrics", name)

    def up() -> bool:
        procs.check_alive()
        with contextlib.suppress(OSError, urllib.error.URLError):
            return bool(exporter.scrape())
        return False

    wait_for(up, timeout=30, interval=0.1)
    return exporter


def stop(procs: Processes, name: str) -> None:
    """Stop one of ``procs`` (by its log name) and forget it."""
    from .conftest import stop_process

    for proc, log in list(procs.procs):
        if log.stem == name:
            stop_process(proc)
            procs.procs.remove((proc, log))


def samples(text: str) -> Iterator[Sample]:
    for family in text_string_to_metric_families(text):
        yield from family.samples


def values(text: str, name: str, **labels: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples called ``name`` whose labels include ``labels``: label items -> value."""
    return {
        tuple(sorted(s.labels.items())): s.value
        for s in samples(text)
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    }


def value(text: str, name: str, **labels: str) -> float:
    found = values(text, name, **labels)
    assert len(found) == 1, (name, labels, found)
    return next(iter(found.values()))


def counters(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every counter and histogram sample (what must never go back): (name, labels) -> value."""
    kinds = {f.name: f.type for f in text_string_to_metric_families(text)}
    out = {}
    for family in text_string_to_metric_families(text):
        if kinds[family.name] in ("counter", "histogram"):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def served() -> set[str]:
    """Every sample name a real scrape holds of a store with a pass and a skipped one."""
    fake = fakeredis.FakeRedis()
    store = MemoryStore(fake, "ns")
    store.ingest_environment("e", "old", expires_at=time.time() - 1)
    config = load_config(interval_secs=60)
    run_pass(store, config)
    run_pass(store, config)  # coalesced
    text = generate_latest(registry(fake, load_config())).decode()
    return {m.split("{")[0].split(" ")[0] for m in text.splitlines() if not m.startswith("#")}
