"""``car-dream`` as a user runs it: a real process against the test Redis."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from car_dream.store import MemoryStore

from .celery_env import Processes, process_env, procs_fixture, wipe_schedule  # noqa: F401


class Cli:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __call__(
        self, *args: str, stdin: str | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", "from car_dream.cli import main; main()", *args],
            env={**self.env, **env},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=90,
        )


@pytest.fixture
def cli(redis_url: str, namespace: str, tmp_path: Path) -> Iterator[Cli]:
    yield Cli(process_env(redis_url, tmp_path / "data", namespace=namespace))
    wipe_schedule(redis_url)


def test_settings_error_names_the_variable_and_exits_2(cli: Cli) -> None:
    out = cli("status", CAR_DREAM_INTERVAL_SECS="1")
    assert out.returncode == 2
    assert "CAR_DREAM_INTERVAL_SECS" in out.stderr
    out = cli("reports", CAR_DREAM_REDIS_URL="http://user:hunter2@example.com/0")
    assert out.returncode == 2
    assert "CAR_DREAM_REDIS_URL" in out.stderr and "hunter2" not in out.stderr


def test_an_at_in_the_password_says_to_percent_encode_it(cli: Cli) -> None:
    out = cli("status", CAR_DREAM_REDIS_URL="redis://:hunter@2@127.0.0.1:6379/0")
    assert out.returncode == 2, out.stderr
    assert len(out.stderr.splitlines()) == 1 and "Traceback" not in out.stderr
    assert "CAR_DREAM_REDIS_URL" in out.stderr and "percent-encode it as %40" in out.stderr
    assert "hunter" not in out.stderr and "2@127" not in out.stderr


def test_a_bad_namespace_option_is_a_usage_error_of_the_option(cli: Cli) -> None:
    out = cli("-N", "a b", "status")
    assert out.returncode == 2
    assert "'-N' / '--namespace'" in out.stderr and "invalid namespace 'a b'" in out.stderr
    assert "CAR_DREAM_NAMESPACE" not in out.stderr


def test_reports_n_zero_prints_none_and_negative_is_refused(
    cli: Cli, real_store: MemoryStore
) -> None:
    assert cli("run-once").returncode == 0
    assert len(cli("reports", "-n", "1").stdout.splitlines()) == 1
    out = cli("reports", "-n", "0")
    assert out.returncode == 0 and out.stdout == "", out.stdout
    assert json.loads(cli("reports", "-n", "0", "--json").stdout) == []
    out = cli("reports", "-n", "-1")
    assert out.returncode == 2 and "'-n'" in out.stderr and out.stdout == ""


def test_ingest_keeps_good_lines_and_numbers_bad_ones(
    cli: Cli, real_store: MemoryStore, tmp_path: Path
) -> None:
    lines = [
        {"kind": "fact", "id": "f1", "subject": "user.city", "content": "Lisbon"},
        "not json",
        {
            "kind": "environment",
            "id": "e1",
            "content": "rain",
            "expires_at": "2020-01-01T00:00:00Z",
        },
        {"kind": "conclusion", "id": "c1", "content": "wet", "premises": ["missing"]},
        {"kind": "fact", "id": "f2", "subject": "s", "content": "x", "colour": "red"},
        {"kind": "dream"},
        {"kind": "conclusion", "id": "c2", "content": "Lisbon is wet", "premises": ["f1", "e1"]},
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(li if isinstance(li, str) else json.dumps(li) for li in lines))
    out = cli("ingest", str(path))
    assert out.returncode == 1
    assert "ingested 3 line(s), rejected 4" in out.stdout
    for n in (2, 4, 5, 6):
        assert f"line {n}:" in out.stderr
    assert "missing" in out.stderr and "colour" in out.stderr
    assert real_store.count() == 3
    assert real_store.get("c2") is not None
    out = cli("ingest", "-", stdin=json.dumps(lines[0]) + "\n")
    assert out.returncode == 0 and "ingested 1 line(s), rejected 0" in out.stdout
    # Batches of two: a batch boundary between c2 and its premises changes nothing, and
    # the errors still come out in line order.
    small = MemoryStore(real_store.client, real_store.namespace + "-small")
    out = cli("ingest", str(path), CAR_DREAM_BATCH_SIZE="2", CAR_DREAM_NAMESPACE=small.namespace)
    assert "ingested 3 line(s), rejected 4" in out.stdout
    numbers = [int(line.split(":")[0][5:]) for line in out.stderr.splitlines()]
    assert numbers == [2, 4, 5, 6], out.stderr
    assert small.count() == 3 and small.get("c2") is not None


def test_run_once_reports_pause_resume_cancel(cli: Cli, real_store: MemoryStore) -> None:
    now = time.time()
    real_store.ingest_environment("old", "stale", observed_at=now - 10, expires_at=now - 1)
    out = cli("run-once")
    assert out.returncode == 0, out.stderr
    assert "completed: pruned=1" in out.stdout
    assert "skipped: coalesced" in cli("run-once").stdout
    assert "completed" in cli("run-once", "--force").stdout
    assert "paused" in cli("pause").stdout
    assert "skipped: paused" in cli("run-once", "--force").stdout
    assert "resumed" in cli("resume").stdout
    assert "no pass is running" in cli("cancel").stdout
    data = json.loads(cli("reports", "-n", "10", "--json").stdout)
    assert [r["status"] for r in data] == ["skipped", "completed", "skipped", "completed"]
    assert data[-1]["expired_pruned"] == 1
    assert len(cli("reports", "-n", "2").stdout.splitlines()) == 2


def test_status_and_schedule(cli: Cli, real_store: MemoryStore) -> None:
    real_store.ingest_fact("f1", "s", "content")
    status = json.loads(cli("status", "--json").stdout)
    assert status["namespace"] == real_store.namespace
    assert status["lock"]["state"] == "free" and status["paused"] is False
    assert status["schedule"] is None and status["last_report"] is None
    assert status["memory"]["total_nodes"] == 1
    assert "no schedule entry yet" in cli("schedule", "show").stdout
    out = cli("schedule", "set", "--every", "30m")
    assert out.returncode == 0 and "every 1800s" in out.stdout
    entry = json.loads(cli("schedule", "show", "--json").stdout)
    assert entry["every_secs"] == 1800 and entry["kwargs"] == {"namespace": real_store.namespace}
    assert cli("schedule", "set", "--every", "soon").returncode == 2
    cli("run-once")
    text = cli("status").stdout
    assert "lock:      done by" in text and "every 1800s" in text and "nodes:     1" in text


@pytest.mark.integration
def test_trigger_waits_for_the_workers_report(
    cli: Cli, real_store: MemoryStore, procs: Processes
) -> None:
    procs.worker(cli.env)
    out = cli("trigger", "--wait", "--timeout", "60")
    assert out.returncode == 0, out.stderr
    assert "queued car_dream.consolidate" in out.stdout
    assert f"[{real_store.namespace}] completed" in out.stdout
    out = cli("trigger", "--wait")
    assert "skipped: coalesced" in out.stdout
