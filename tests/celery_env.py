"""Helpers for tests that run the Celery side: fresh apps and real celery processes."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from car_dream.app import create_app
from car_dream.connection import memory_client
from car_dream.keys import REDBEAT_PREFIX

from .conftest import celery_bin, stop_process, wait_for

FAST_WORKER = ["--without-mingle", "--without-gossip", "--loglevel", "INFO"]


def _settings_env(settings: dict[str, Any]) -> dict[str, str]:
    return {f"CAR_DREAM_{k.upper()}": str(v) for k, v in settings.items()}


def wipe_schedule(redis_url: str) -> None:
    client = memory_client(redis_url)  # any URL car-dream takes, Sentinel's too
    keys = list(client.scan_iter(match=f"{REDBEAT_PREFIX}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def fresh_app(monkeypatch: pytest.MonkeyPatch, redis_url: str, **settings: Any) -> Celery:
    """A new car-dream app (task registered) on ``redis_url`` with no beat entry yet."""
    monkeypatch.setenv("CAR_DREAM_REDIS_URL", redis_url)
    for name, value in _settings_env(settings).items():
        monkeypatch.setenv(name, value)
    wipe_schedule(redis_url)
    celery_app = create_app()
    return celery_app


def process_env(redis_url: str | None, data_dir: Path, **settings: Any) -> dict[str, str]:
    """The environment of a child process: ours without CAR_DREAM_*, plus these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAR_DREAM_")}
    env["CAR_DREAM_DATA_DIR"] = str(data_dir)
    if redis_url:
        env["CAR_DREAM_REDIS_URL"] = redis_url
    env.update(_settings_env(settings))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Processes:
    """Child processes of one test, each in its own group, logs kept for failures."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> Path:
        log = self.tmp_path / f"{name}.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                cmd,
                env=env,
                cwd=self.tmp_path,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append((proc, log))
        return log

    def celery(
        self, name: str, args: list[str], env: dict[str, str], app: str = "car_dream"
    ) -> Path:
        return self.start(name, [*celery_bin(), "-A", app, *args], env)

    def worker(
        self,
        env: dict[str, str],
        name: str = "worker",
        concurrency: int = 2,
        app: str = "car_dream",
    ) -> Path:
        log = self.celery(
            name,
            [
                "worker",
                *FAST_WORKER,
                "--concurrency",
                str(concurrency),
                "--hostname",
                f"{name}-{os.getpid()}@%h",
            ],
            env,
            app,
        )
        self.wait_log(log, " ready.", timeout=60)
        return log

    def beat(
        self,
        env: dict[str, str],
        name: str = "beat",
        app: str = "car_dream",
        extra: tuple[str, ...] = (),
    ) -> Path:
        return self.celery(name, ["beat", "--loglevel", "INFO", *extra], env, app)

    def wait_log(self, log: Path, text: str, timeout: float = 60) -> None:
        def seen() -> bool:
            self.check_alive()
            return text in log.read_text(errors="replace")

        wait_for(seen, timeout=timeout, interval=0.1)

    def check_alive(self) -> None:
        for proc, log in self.procs:
            if proc.poll() is not None:
                raise AssertionError(
                    f"{log.stem} exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
                )

    def stop(self) -> None:
        for proc, _ in reversed(self.procs):
            stop_process(proc)

    def dump(self) -> None:
        for _, log in self.procs:
            sys.stderr.write(f"\n----- {log.name} -----\n{log.read_text(errors='replace')[-4000:]}")


def start_up_failure(
    role: str, redis_url: str | None, cwd: Path, timeout: float = 90, **settings: Any
) -> str:
    """Run ``celery -A car_dream <role>`` in ``cwd``; it must exit non-zero. Its output."""
    env = process_env(redis_url, cwd / "data", **settings)
    cmd = [*celery_bin(), "-A", "car_dream", role, "--loglevel", "INFO"]
    done = subprocess.run(
        cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    text = done.stdout + done.stderr
    assert done.returncode != 0, text
    return text


@pytest.fixture(name="procs")
def procs_fixture(tmp_path: Path) -> Iterator[Processes]:
    p = Processes(tmp_path)
    yield p
    p.stop()
    p.dump()  # captured: pytest shows it only when the test failed


# -- RabbitMQ as the broker ------------------------------------------------------------

RABBIT = os.environ.get("CAR_DREAM_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def _rabbit_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(name="rabbit_queue")
def rabbit_queue_fixture() -> Iterator[str]:
    """A queue name of the test's own on the RabbitMQ at RABBIT; deleted afterwards, with
    the exchange of its name (Celery declares one for its default queue)."""
    if not _rabbit_answers():
        pytest.skip("RabbitMQ does not answer on 127.0.0.1:5672")
    from kombu import Connection

    queue = f"car-dream-test-{uuid.uuid4().hex[:10]}"
    yield queue
    with Connection(RABBIT) as conn:
        channel = conn.channel()
        with contextlib.suppress(Exception):
            channel.queue_delete(queue)
        with contextlib.suppress(Exception):
            channel.exchange_delete(queue)
