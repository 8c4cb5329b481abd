"""``car-dream dev``: the main job here, a worker with beat, live reports (``make run``)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from .cli_env import Env, fail, format_report, pass_env
from .config import DreamConfig, mask_url
from .report import ConsolidationReport

__all__ = ["dev"]


@click.command()
@click.option("--concurrency", "-c", default=2, show_default=True, help="Worker processes.")
@click.option("--demo/--no-demo", default=None, help="Seed the demo memory on first start.")
@click.option("--max-reports", type=int, default=None, hidden=True)
@pass_env
def dev(env: Env, concurrency: int, demo: bool | None, max_reports: int | None) -> None:
    """Run everything here: Redis (embedded if unset), a worker with beat, live reports."""
    from . import embedded
    from .demo import demo_files, is_fresh, seed_demo

    config = env.config
    own_redis = config.redis_url is None
    url = env.url
    store = env.store
    worker_env = {**os.environ, "CAR_DREAM_REDIS_URL": url}
    if demo is None:
        demo = own_redis  # never write demo data into someone's own Redis unasked
    files = demo_files(config.data_dir)
    if demo and is_fresh(store):
        seed_demo(store, config.data_dir)
        click.echo(
            f"seeded the demo memory: {store.count()} nodes, trajectories in "
            f"{files.trajectory_dir}, profiles in {files.outcome_profiles_path}"
        )
    if demo and files.trajectory_dir.is_dir():
        for name, value in files.env().items():
            worker_env.setdefault(name, value)
    every = _sync_schedule(config, own_redis)

    pubsub = env.client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(store.reports_channel)  # before the worker, to miss nothing
    log_path = Path(config.data_dir).expanduser() / "worker.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    click.echo(
        f"car-dream dev: Redis {mask_url(url)}{' (embedded)' if own_redis else ''}, "
        f"namespace {config.namespace!r}, a pass every {every}s; "
        f"worker log {log_path}. Ctrl-C to stop."
    )
    # Both explicitly: a shell starting us in the background leaves SIGINT ignored.
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    worker = _start_worker(worker_env, concurrency, log_path)
    seen = 0
    try:
        while max_reports is None or seen < max_reports:
            message = pubsub.get_message(timeout=1.0)
            if message and message.get("type") == "message":
                report = ConsolidationReport.model_validate_json(message["data"])
                click.echo(format_report(report))
                seen += 1
            elif worker.poll() is not None:
                tail = _tail(log_path)
                fail(f"the worker exited with status {worker.returncode}:\n{tail}")
    except KeyboardInterrupt:
        click.echo("\nstopping…")
    finally:
        _stop(worker)
        pubsub.close()
        env.client.close()
        if own_redis:
            embedded.stop(config.data_dir)


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # same clean shutdown as Ctrl-C


def _sync_schedule(config: DreamConfig, own_redis: bool) -> int:
    """Create the schedule entry if missing; the interval it runs at.

    On the embedded Redis (car-dream's own) dev runs with the interval it was given, even
    if an older run stored another. Someone's own Redis holds a schedule other beats
    follow: an existing entry there is left as it is.
    """
    from .app import app
    from .schedule import ensure_dream_task, get_schedule, set_schedule

    if ensure_dream_task(app, warn=False):  # dev says it itself, below
        return config.interval_secs
    current = get_schedule(app)
    if not current or not current["every_secs"] or current["every_secs"] == config.interval_secs:
        return config.interval_secs
    was = int(current["every_secs"])
    if own_redis:
        set_schedule(config.interval_secs, app)
        click.echo(f"schedule: every {config.interval_secs}s (was {was}s)")
        return config.interval_secs
    click.echo(
        f"schedule: the entry {current['name']!r} runs every {was}s, not "
        f"CAR_DREAM_INTERVAL_SECS={config.interval_secs}; left as it is (change it with "
        f"`car-dream schedule set --every {config.interval_secs}s`)",
        err=True,
    )
    return was


def _start_worker(env: dict[str, str], concurrency: int, log_path: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "car_dream",
        "worker",
        "--beat",
        "--loglevel",
        "INFO",
        "--concurrency",
        str(max(1, concurrency)),
        "--without-mingle",
        "--without-gossip",
        "--hostname",
        f"car-dream-dev-{os.getpid()}@%h",
    ]
    with open(log_path, "ab") as log:
        # Its own session: Ctrl-C reaches us only, and we stop the worker in order.
        return subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Warm shutdown: TERM to the worker alone lets it finish the running pass; its
    pool children get TERM from it. Whatever is left after ``timeout`` is killed."""
    if proc.poll() is None:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group, if any
    if proc.poll() is None:
        proc.wait(5)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no worker log)"
