"""``car-dream schedule show|set``: the beat entry, kept in Redis by RedBeat."""

from __future__ import annotations

import json

import click

from .cli_env import Env, next_run_text, pass_env

__all__ = ["schedule"]


@click.group()
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
