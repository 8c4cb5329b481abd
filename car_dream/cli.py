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
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any, NoReturn

import click
import redis

from .config import DreamConfig, load_config, mask_url
from .errors import CarDreamError, ConfigError
from .report import ConsolidationReport

__all__ = ["cli", "format_report", "main"]

INGEST_KINDS = ("fact", "environment", "conclusion")
TIME_FIELDS = ("timestamp", "observed_at", "expires_at")


class Env:
    """What a command needs, built on first use so ``--help`` touches nothing."""

    @cached_property
    def config(self) -> DreamConfig:
        return load_config()

    @cached_property
    def url(self) -> str:
        from .app import resolve_redis_url

        return resolve_redis_url(self.config)

    @cached_property
    def client(self) -> Any:
        from .app import memory_client

        return memory_client(self.config.memory_url or self.url, socket_connect_timeout=5)

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
        except redis.ConnectionError as exc:
            click.echo(f"car-dream: cannot reach Redis: {exc}", err=True)
            ctx.exit(1)
        except CarDreamError as exc:
            click.echo(f"car-dream: {exc}", err=True)
            ctx.exit(1)


pass_env = click.make_pass_decorator(Env, ensure=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-N", "--namespace", metavar="NAME", help="Memory namespace (default: CAR_DREAM_NAMESPACE)."
)
@click.pass_context
def cli(ctx: click.Context, namespace: str | None) -> None:
    """Consolidate ("dream") an agent's memory in Redis with Celery beat."""
    if namespace is not None:
        # Through the environment, so the Celery app and the worker we start agree.
        os.environ["CAR_DREAM_NAMESPACE"] = namespace
    ctx.obj = Env()


# -- formatting -------------------------------------------------------------------


def _clock(value: datetime | None) -> str:
    return value.astimezone().strftime("%H:%M:%S") if value else "--:--:--"


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
        f"nodes={r.total_nodes} coverage={r.embedding_coverage * 100:.1f}% "
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
    _sync_schedule(config)

    pubsub = env.client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(store.keys.reports_channel)  # before the worker, to miss nothing
    log_path = Path(config.data_dir).expanduser() / "worker.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    click.echo(
        f"car-dream dev: Redis {mask_url(url)}{' (embedded)' if own_redis else ''}, "
        f"namespace {config.namespace!r}, a pass every {config.interval_secs}s; "
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


def _sync_schedule(config: DreamConfig) -> None:
    # dev runs with the interval it was given, even if an older run stored another.
    from .app import app
    from .schedule import ensure_dream_task, get_schedule, set_schedule

    if not ensure_dream_task(app):
        current = get_schedule(app)
        if current and current["every_secs"] != config.interval_secs:
            set_schedule(config.interval_secs, app)
            click.echo(f"schedule: every {config.interval_secs}s (was {current['every_secs']}s)")


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
    from celery.exceptions import TimeoutError as CeleryTimeout

    from .tasks import consolidate

    env.config  # settings errors first, before Celery wraps them  # noqa: B018
    result = consolidate.delay(namespace=env.config.namespace, force=force)
    click.echo(f"queued car_dream.consolidate {result.id}")
    if not wait:
        return
    try:
        data = result.get(timeout=timeout)
    except CeleryTimeout:
        _fail(f"no result after {timeout:.0f}s: is a worker running?")
    except CarDreamError as exc:
        _fail(f"the pass failed: {exc}")
    click.echo(format_report(ConsolidationReport.model_validate(data)))


@cli.command()
@click.option("-n", "count", default=10, show_default=True, help="How many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_env
def reports(env: Env, count: int, as_json: bool) -> None:
    """Show the last reports of the namespace."""
    items = env.store.reports(max(1, count))
    if as_json:
        click.echo(json.dumps([r.model_dump(mode="json") for r in items], indent=2))
        return
    if not items:
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
        "memory": env.store.stats(),
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
            f"every {sched['every_secs']}s, next run {sched['next_run_at'] or 'disabled'}, "
            f"last run {sched['last_run_at'] or 'never'}"
            if sched
            else "none (a beat creates it on start)"
        ),
        f"nodes:     {mem['total_nodes']} ({nodes})",
        f"coverage:  {mem['embedding_coverage'] * 100:.1f}% ({mem['unembedded']} unembedded)",
        f"pending:   {mem['expiry_scheduled']} expiring, {mem['superseded_pending']} superseded, "
        f"{mem['conclusions_to_check']} conclusions to check",
        f"last:      {format_report(last[0]) if last else 'no pass yet'}",
    ]
    click.echo("\n".join(lines))


@cli.command()
@pass_env
def pause(env: Env) -> None:
    """Skip passes (reason 'paused') until resume."""
    from .lock import pause as pause_passes

    pause_passes(env.client, env.store.keys)
    click.echo(f"paused namespace {env.config.namespace!r}")


@cli.command()
@pass_env
def resume(env: Env) -> None:
    """Let passes run again."""
    from .lock import resume as resume_passes

    was = resume_passes(env.client, env.store.keys)
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
        if not report.ok and not repair:
            click.echo("run `car-dream check --repair` to fix index drift", err=True)
    if not report.ok:
        sys.exit(1)


# -- ingest -----------------------------------------------------------------------


def _times(obj: dict[str, Any]) -> None:
    for name in TIME_FIELDS:
        value = obj.get(name)
        if isinstance(value, str):
            try:
                obj[name] = datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(f"{name}: not an RFC 3339 time: {value!r}") from None


def ingest_line(store: Any, raw: str) -> None:
    """One JSON object with ``kind`` and the ingest call's arguments (to a store or a
    :class:`~car_dream.store.WriteBatch`)."""
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    kind = obj.pop("kind", None)
    if kind not in INGEST_KINDS:
        raise ValueError(f"kind must be one of {', '.join(INGEST_KINDS)}, got {kind!r}")
    _times(obj)
    method = getattr(store, f"ingest_{kind}")
    try:
        method(**obj)
    except TypeError as exc:  # unknown or missing arguments: "_Writes.ingest_fact() got ..."
        raise ValueError(str(exc).split(".", 1)[-1]) from None


@cli.command()
@click.argument("file", type=click.File("r", encoding="utf-8"))
@pass_env
def ingest(env: Env, file: Any) -> None:
    """Bulk-write facts, observations and conclusions from a JSONL FILE ('-' for stdin).

    One object a line: {"kind": "fact"|"environment"|"conclusion", ...arguments}.
    Bad lines are reported by number; good ones are kept. Lines go to Redis in batches
    of CAR_DREAM_BATCH_SIZE, one round trip each, in file order.
    """
    batch = env.store.batch()
    size = env.config.batch_size
    queued: list[int] = []  # the line number of each queued write
    errors: list[tuple[int, str]] = []
    good = bad = 0

    def flush() -> None:
        nonlocal good, bad
        for number, result in zip(queued, batch.execute(), strict=True):
            if isinstance(result, CarDreamError):
                errors.append((number, str(result)))
            else:
                good += 1
        queued.clear()
        for number, message in sorted(errors):
            click.echo(f"line {number}: {message}", err=True)
        bad += len(errors)
        errors.clear()

    for number, raw in enumerate(file, start=1):
        if not raw.strip():
            continue
        try:
            ingest_line(batch, raw)
            queued.append(number)
        except (ValueError, CarDreamError) as exc:
            errors.append((number, str(exc)))
        if len(queued) >= size:
            flush()
    flush()
    click.echo(f"ingested {good} line(s), rejected {bad}")
    if bad:
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
            f"next run {entry['next_run_at'] or 'disabled'}, "
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
    click.echo(f"{entry['name']}: every {entry['every_secs']}s, next run {entry['next_run_at']}")
    if secs < env.config.lock_ttl:
        click.echo(
            f"note: passes coalesce within CAR_DREAM_INTERVAL_SECS/2 = {env.config.lock_ttl}s, "
            "so some scheduled runs will be skipped",
            err=True,
        )


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="car-dream")
