"""Every ``car-dream`` command, run as a user runs it, with what goes wrong first:
a bad setting, a Redis nobody listens on, a Redis that refuses the password.

Each must print one line naming the problem (no traceback) and exit with the
documented status: 2 for settings, 1 for Redis. The commands run in parallel, each
with a deadline well above what it needs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
import pytest

from car_dream.cli import cli

from .celery_env import process_env
from .conftest import free_port
from .servers import RedisServer

pytestmark = pytest.mark.timeout(180)

LINE = {"kind": "fact", "id": "f1", "subject": "s", "content": "c"}

# Every command and the arguments it needs; test_every_command_is_here keeps it whole.
COMMANDS: dict[str, list[str]] = {
    "dev": [],
    "run-once": [],
    "trigger": [],
    "reports": [],
    "status": [],
    "pause": [],
    "resume": [],
    "cancel": [],
    "check": [],
    "ingest": ["{file}"],
    "schedule show": [],
    "schedule set": ["--every", "30m"],
    "embedded status": [],
    "embedded stop": [],
    "exporter": ["--port", "0"],
    "journal": [],
    "restore": ["n1"],
    "undo": ["0123abcd"],
    "calibrate": ["--threshold", "0.9"],
    "search": ["capital of France"],
}
# These manage the embedded server under CAR_DREAM_DATA_DIR and never talk to
# CAR_DREAM_REDIS_URL: an unreachable one is no error of theirs.
LOCAL = ("embedded status", "embedded stop")
# These never talk to Redis at all (the labelled pairs ship in the package): a Redis
# that is away or refuses the password is no error of theirs; a bad setting is.
OFFLINE = ("calibrate",)
# The exporter waits for an unreachable Redis, serving car_dream_redis_up 0
# (tests/test_exporter.py); a bad setting or a refused password stop it like the rest.
WAITS = ("exporter",)


def command_names(group: click.Group = cli, prefix: str = "") -> Iterator[str]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from command_names(command, f"{prefix}{name} ")
        else:
            yield prefix + name


def test_every_command_is_here() -> None:
    assert sorted(command_names()) == sorted(COMMANDS)


@pytest.fixture(scope="module")
def refusing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis with a password nobody here knows."""
    server = RedisServer(
        tmp_path_factory.mktemp("refusing"), ["--requirepass", "the-right-one"], "the-right-one"
    )
    server.start()
    yield server
    server.stop()


def run_all(
    tmp_path: Path, skip: tuple[str, ...] = (), **settings: str
) -> dict[str, subprocess.CompletedProcess[str]]:
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps(LINE) + "\n")
    env = process_env(None, tmp_path / "data")
    env.update(settings)

    def run(name: str) -> subprocess.CompletedProcess[str]:
        args = [a.format(file=data) for a in COMMANDS[name]]
        cmd = [sys.executable, "-c", "from car_dream.cli import main; main()", *name.split()]
        # The deadline is far above the second or two a command needs; before the fix
        # `trigger` took twenty.
        return subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=20)

    names = [name for name in COMMANDS if name not in skip]
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(names, pool.map(run, names), strict=True))


def assert_one_line(
    done: dict[str, subprocess.CompletedProcess[str]], status: int, *words: str
) -> None:
    for name, out in done.items():
        what = f"car-dream {name}: exit {out.returncode}\n{out.stderr}"
        assert out.returncode == status, what
        assert "Traceback" not in out.stderr + out.stdout, what
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("car-dream: "), what
        assert all(w in lines[0] for w in words), what


def assert_offline_ran(done: dict[str, subprocess.CompletedProcess[str]]) -> None:
    for name, out in done.items():
        assert out.returncode == 0 and "precision" in out.stdout, (name, out)
        assert "Traceback" not in out.stderr + out.stdout, (name, out)


def test_every_command_names_a_bad_setting_and_exits_2(tmp_path: Path) -> None:
    done = run_all(
        tmp_path,
        CAR_DREAM_INTERVAL_SECS="abc",
        CAR_DREAM_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
    )
    assert_one_line(done, 2, "CAR_DREAM_INTERVAL_SECS")


def test_every_command_says_redis_is_unreachable_and_exits_1(tmp_path: Path) -> None:
    done = run_all(tmp_path, WAITS, CAR_DREAM_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    local = {name: done.pop(name) for name in LOCAL}
    assert_offline_ran({name: done.pop(name) for name in OFFLINE})
    assert_one_line(done, 1)
    for name, out in local.items():
        assert out.returncode == 0 and "running under" in out.stdout, (name, out)
        assert "Traceback" not in out.stderr + out.stdout, (name, out)
    assert all("cannot reach Redis" in o.stderr for o in done.values())


def test_every_command_says_redis_refused_the_password_and_exits_1(
    tmp_path: Path, refusing: RedisServer
) -> None:
    done = run_all(tmp_path, CAR_DREAM_REDIS_URL=f"redis://:wrong@127.0.0.1:{refusing.port}/0")
    for name in LOCAL:
        done.pop(name)
    assert_offline_ran({name: done.pop(name) for name in OFFLINE})
    assert_one_line(done, 1)
    assert "wrong" not in "".join(o.stderr for o in done.values())  # the password, never shown
    assert all("refused the credentials" in o.stderr for o in done.values())
