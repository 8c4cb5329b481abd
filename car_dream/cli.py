"""``car-dream``: run the main job, trigger and watch passes, manage the memory.

Every command reads the same ``CAR_DREAM_*`` settings as the worker. A settings
error prints the message naming the variable and exits with status 2.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click
import redis

from .cli_calibrate import calibrate
from .cli_dev import dev
from .cli_embedded import embedded
from .cli_env import Env, pass_env
from .cli_journal import journal, restore, undo
from .cli_passes import cancel, check, reports, run_once, status, trigger
from .cli_schedule import schedule
from .cli_search import search
from .config import mask_url
from .errors import CarDreamError, ConfigError
from .keys import validate_namespace

__all__ = ["cli", "main"]


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


for command in (
    dev,
    run_once,
    trigger,
    reports,
    status,
    cancel,
    check,
    schedule,
    embedded,
    journal,
    restore,
    undo,
    calibrate,
    search,
):
    cli.add_command(command)


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
@click.option("--port", default=9808, show_default=True, type=click.IntRange(0, 65535))
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to bind.")
@pass_env
def exporter(env: Env, port: int, address: str) -> None:
    """Serve /metrics for Prometheus: every namespace's passes, items, nodes and lock."""
    from .connection import memory_client
    from .exporter import serve

    # Not env.client, which insists on a Redis now: an exporter started before Redis
    # serves car_dream_redis_up 0 until it is there. A refused password stops it here.
    client = memory_client(env.config.memory_url or env.url, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.AuthenticationError:
        raise
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        click.echo(f"car-dream: warning: Redis not reachable yet ({exc})", err=True)

    def ready(bound: int) -> None:
        click.echo(
            f"car-dream exporter: http://{address}:{bound}/metrics, Redis {mask_url(env.url)}, "
            f"up to {env.config.metrics_max_namespaces} namespaces shown"
        )

    serve(client, env.config, address, port, ready)


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


def main(argv: list[str] | None = None) -> None:
    from .startup import warn_unknown_settings

    warn_unknown_settings()
    cli.main(args=argv, prog_name="car-dream")
