"""``car-dream``: run the main job, trigger and watch passes, manage the memory.

Every command reads the same ``CAR_DREAM_*`` settings as the worker. A settings
error prints the message naming the variable and exits with status 2.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any, NoReturn

import click
import redis

from .cli_embedded import embedded
from .config import DreamConfig, load_config, mask_url
from .errors import CarDreamError, ConfigError
from .keys import validate_namespace
from .report import ConsolidationReport

__all__ = ["cli", "format_report", "main"]


class Env:
    """What a command needs, built on first use so ``--help`` touches nothing."""

    @cached_property
    def config(self) -> DreamConfig:
        return load_config()

    @cached_property
    def url(self) -> str:
        from .celery_config import resolve_redis_url

        return resolve_redis_url(self.config)

    @cached_property
    def client(self) -> Any:
        from .connection import memory_client

        client = memory_client(self.config.memory_url or self.url, socket_connect_timeout=5)
        # One round trip, so that a Redis that is away or refuses the password gets the
        # same one-line error from every command, the pass of run-once included.
        client.ping()
        return client

    @cached_property
    def store(self) -> Any:
        from .store import MemoryStore

        return MemoryStore(self.client, self.config.namespace)


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            click.echo(f"car-dream: {exc}", err=True)
            ctx.exit(2)
        except redis.AuthenticationError as exc:
            click.echo(
                f"car-dream: Redis refused the credentials ({exc}): put the user and password "
                "in CAR_DREAM_REDIS_URL, e.g. redis://user:password@host:6379/0",
                err=True,
            )
            ctx.exit(1)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            click.echo(f"car-dream: cannot reach Redis: {exc}", err=True)
            ctx.exit(1)
        except redis.RedisError as exc:
            click.echo(f"car-dream: Redis answered with an error: {exc}", err=True)
            ctx.exit(1)
        except CarDreamError as exc:
            click.echo(f"car-dream: {exc}", err=True)
            ctx.exit(1)


pass_env = click.make_pass_decorator(Env, ensure=True)


def _namespace_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    # Checked here, so a bad -N is a usage error of -N, not of CAR_DREAM_NAMESPACE.
    if value is None:
        return None
    try:
        return validate_namespace(value)
    except CarDreamError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-N",
    "--namespace",
    metavar="NAME",
    callback=_namespace_option,
    help="Memory namespace (default: CAR_DREAM_NAMESPACE).",
)
@click.pass_context
def cli(ctx: click.Context, namespace: str | None) -> None:
    """Consolidate ("dream") an agent's memory in Redis with Celery beat."""
    if namespace is not None:
        # Through the environment, so the Celery app and the worker we start agree.
        os.environ["CAR_DREAM_NAMESPACE"] = namespace
    ctx.obj = Env()


cli.add_command(embedded)


# -- formatting -------------------------------------------------------------------


def _clock(value: datetime | None) -> str:
    return value.astimezone().strftime("%H:%M:%S") if value else "--:--:--"


def _unknown(value: object) -> str:
    return "?" if value is None else str(value)  # not measured by this pass


def _percent(share: float | None) -> str:
    return "?" if share is None else f"{share * 100:.1f}%"


def format_report(r: ConsolidationReport) -> str:
    """One readable line per report."""
    head = f"{_clock(r.started_at)} [{r.namespace}] {r.status}"
    if r.trailing:
        head += " (trailing)"
    if r.status == "skipped":
        held = r.lock_ttl_remaining and r.reason in ("coalesced", "running")
        left = f", lock {r.lock_ttl_remaining:.1f}s left" if held else ""
        return f"{head}: {r.reason}{left}"
    figures = (
        f"pruned={r.expired_pruned} gc={r.superseded_gc} "
        f"invalidated={r.conclusions_invalidated} embedded={r.nodes_embedded} "
        f"traj_insights={r.trajectory_insights} model_insights={r.model_insights} "
        f"nodes={_unknown(r.total_nodes)} coverage={_percent(r.embedding_coverage)} "
        f"in {r.duration_ms:.0f}ms"
    )
    line = f"{head}: {figures}"
    if r.skipped_records:
        line += f" skipped_records={r.skipped_records}"
    if r.warnings:
        line += f" warnings={len(r.warnings)}"
    if r.reason:
        line += f" — {r.reason}"
    return line


def next_run_text(entry: dict[str, Any]) -> str:
    """The schedule entry's next run as ``status`` and ``schedule`` print it."""
    if entry["next_run_at"] is None:
        return "disabled"
    if entry["last_run_at"] is None:
        return "now (never run)"
    if entry["due_since"]:
        return f"now (due since {entry['due_since']})"
    return str(entry["next_run_at"])


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"car-dream: {message}", err=True)
    sys.exit(code)


# -- the main job -----------------------------------------------------------------


@cli.command()
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
                _fail(f"the worker exited with status {worker.returncode}:\n{tail}")
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
        sys.executable, "-m", "celery", "-A", "car_dream", "worker", "--beat",
        "--loglevel", "INFO", "--concurrency", str(max(1, concurrency)),
        "--without-mingle", "--without-gossip", "--hostname", f"car-dream-dev-{os.getpid()}@%h",
    ]  # fmt: skip
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


# -- passes -----------------------------------------------------------------------


@cli.command("run-once")
@click.option("--force", is_flag=True, help="Ignore the 'consolidated recently' window.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_env
def run_once(env: Env, force: bool, as_json: bool) -> None:
    """Run one pass here, in this process (it honours the same lock as the worker)."""
    from .consolidate import run_pass

    report = run_pass(env.store, env.config, force=force)
    click.echo(report.model_dump_json(indent=2) if as_json else format_report(report))
    if report.status in ("failed", "lost_lock"):
        sys.exit(1)


@cli.command()
@click.option("--force", is_flag=True, help="Ignore the 'consolidated recently' window.")
@click.option("--wait", is_flag=True, help="Wait for the worker's report and print it.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to --wait.")
@pass_env
def trigger(env: Env, force: bool, wait: bool, timeout: float) -> None:
    """Ask a worker for a pass now (consolidate.delay())."""
    from .app import consolidate
    from .trigger import queue_pass, wait_for_report

    # The settings first: read by Celery, a bad one would be logged and ignored.
    namespace = env.config.namespace
    result = queue_pass(consolidate, namespace=namespace, force=force)
    click.echo(f"queued car_dream.consolidate {result.id}")
    if wait:
        report = ConsolidationReport.model_validate(wait_for_report(result, timeout))
        click.echo(format_report(report))


@cli.command()
@click.option(
    "-n",
    "count",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="How many, newest first.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_env
def reports(env: Env, count: int, as_json: bool) -> None:
    """Show the last reports of the namespace."""
    items = env.store.reports(count)
    if as_json:
        click.echo(json.dumps([r.model_dump(mode="json") for r in items], indent=2))
        return
    if not items and count:  # -n 0 asked for none
        click.echo("no reports yet")
    for r in items:
        click.echo(format_report(r))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@pass_env
def status(env: Env, as_json: bool) -> None:
    """Lock, pause, schedule, node counts, coverage and the last report."""
    from .app import app
    from .lock import lock_state
    from .schedule import get_schedule

    state = lock_state(env.client, env.store.keys)
    last = env.store.reports(1)
    data: dict[str, Any] = {
        "redis": mask_url(env.url),
        "embedded": env.config.redis_url is None,
        "namespace": env.config.namespace,
        "lock": {
            "state": state.state,
            "holder": state.token[:8] if state.token else None,
            "ttl_secs": state.ttl,
        },
        "paused": state.paused,
        "schedule": get_schedule(app),
        "memory": env.store.index_sizes().as_dict(),
        "last_report": last[0].model_dump(mode="json") if last else None,
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    lock = data["lock"]
    held = f" by {lock['holder']}…, {lock['ttl_secs']:.1f}s left" if lock["holder"] else ""
    sched = data["schedule"]
    mem = data["memory"]
    nodes = ", ".join(f"{k} {v}" for k, v in mem["nodes"].items())
    lines = [
        f"redis:     {data['redis']}{' (embedded)' if data['embedded'] else ''}",
        f"namespace: {data['namespace']}",
        f"lock:      {lock['state']}{held}",
        f"paused:    {'yes' if state.paused else 'no'}",
        "schedule:  "
        + (
            f"every {sched['every_secs']}s, next run {next_run_text(sched)}, "
            f"last run {sched['last_run_at'] or 'never'}"
            if sched
            else "none (a beat creates it on start)"
        ),
        f"nodes:     {mem['total_nodes']} ({nodes})",
        f"coverage:  {mem['embedding_coverage'] * 100:.1f}% ({mem['unembedded']} unembedded)",
        f"pending:   {mem['expiry_scheduled']} expiring, {mem['collectable']} superseded, "
        f"{mem['conclusions_to_check']} conclusions to check",
        f"last:      {format_report(last[0]) if last else 'no pass yet'}",
    ]
    click.echo("\n".join(lines))


@cli.command()
@pass_env
def pause(env: Env) -> None:
    """Skip passes (reason 'paused') until resume."""
    env.client.set(env.store.keys.paused, str(time.time()))
    click.echo(f"paused namespace {env.config.namespace!r}")


@cli.command()
@pass_env
def resume(env: Env) -> None:
    """Let passes run again."""
    was = env.client.delete(env.store.keys.paused)
    click.echo(f"resumed namespace {env.config.namespace!r}" + ("" if was else " (was not paused)"))


@cli.command()
@pass_env
def cancel(env: Env) -> None:
    """Stop the running pass between two batches (status 'cancelled')."""
    from .lock import request_cancel

    token = request_cancel(env.client, env.store.keys, max(env.config.lock_ttl, 60))
    if token:
        click.echo(f"cancel requested for the pass {token[:8]}…")
    else:
        click.echo("no pass is running")


@cli.command()
@click.option("--repair", is_flag=True, help="Fix index drift (never deletes a node).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_env
def check(env: Env, repair: bool, as_json: bool) -> None:
    """Verify the namespace's indexes and links; exit 1 while problems remain."""
    from .check import check_store

    report = check_store(env.store, repair=repair)
    if as_json:
        click.echo(report.model_dump_json(indent=2))
    else:
        click.echo(report.summary())
        for name, count in report.problem_counts.items():
            click.echo(f"  {name}: {count}")
        for message in report.messages[:20]:
            click.echo(f"  - {message}")
        if report.repairable and not repair:
            click.echo("run `car-dream check --repair` to fix index drift", err=True)
        if report.malformed_nodes:
            click.echo(
                "malformed nodes are left for you (repair never touches them): "
                "rewrite them with an ingest call or delete them",
                err=True,
            )
    if not report.ok:
        sys.exit(1)


# -- ingest -----------------------------------------------------------------------


@cli.command()
@click.argument("file", type=click.File("rb"))
@pass_env
def ingest(env: Env, file: Any) -> None:
    """Bulk-write facts, observations and conclusions from a JSONL FILE ('-' for stdin).

    One object a line: {"kind": "fact"|"environment"|"conclusion", ...arguments}.
    Bad lines are reported by number; good ones are kept. Lines go to Redis in batches
    of CAR_DREAM_BATCH_SIZE, one round trip each, in file order.
    """
    from .ingest import Ingest

    def refused(number: int, message: str) -> None:
        click.echo(f"line {number}: {message}", err=True)

    job = Ingest(env.store, env.config.batch_size, refused)
    done = False
    try:
        job.run(file)
        done = True
    finally:
        # Also when Redis goes away mid-file: say how far it got before the error.
        stopped = "" if done else f", stopped at line {job.read}"
        click.echo(f"ingested {job.good} line(s), rejected {job.bad}{stopped}")
    if job.bad:
        sys.exit(1)


# -- schedule ---------------------------------------------------------------------


@cli.group()
def schedule() -> None:
    """Show or change the beat schedule (kept in Redis by RedBeat)."""


@schedule.command("show")
@click.option("--json", "as_json", is_flag=True)
@pass_env
def schedule_show(env: Env, as_json: bool) -> None:
    from .app import app
    from .schedule import get_schedule

    env.config  # noqa: B018
    entry = get_schedule(app)
    if as_json:
        click.echo(json.dumps(entry, indent=2))
    elif entry is None:
        click.echo("no schedule entry yet: a beat creates it when it starts")
    else:
        click.echo(
            f"{entry['name']}: {entry['task']} every {entry['every_secs']}s, "
            f"next run {next_run_text(entry)}, "
            f"last run {entry['last_run_at'] or 'never'}, runs {entry['total_run_count']}"
        )


@schedule.command("set")
@click.option("--every", "every", required=True, help="Interval: 90s, 30m, 1h, 1h30m, 2d.")
@pass_env
def schedule_set(env: Env, every: str) -> None:
    from .app import app
    from .schedule import parse_every, set_schedule

    try:
        secs = parse_every(every)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--every") from None
    entry = set_schedule(secs, app)
    click.echo(f"{entry['name']}: every {entry['every_secs']}s, next run {next_run_text(entry)}")
    if secs < env.config.lock_ttl:
        click.echo(
            f"note: passes coalesce within CAR_DREAM_INTERVAL_SECS/2 = {env.config.lock_ttl}s, "
            "so some scheduled runs will be skipped",
            err=True,
        )


def main(argv: list[str] | None = None) -> None:
    from .startup import warn_unknown_settings

    warn_unknown_settings()
    cli.main(args=argv, prog_name="car-dream")
