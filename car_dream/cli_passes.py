"""``car-dream run-once|trigger|reports|status|cancel|check``: passes and their reports."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .cli_env import Env, format_report, next_run_text, pass_env
from .config import mask_url
from .report import ConsolidationReport

__all__ = ["cancel", "check", "reports", "run_once", "status", "trigger"]


@click.command("run-once")
@click.option("--force", is_flag=True, help="Ignore the 'consolidated recently' window.")
@click.option("--dry-run", is_flag=True, help="Say what the pass would do; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_env
def run_once(env: Env, force: bool, dry_run: bool, as_json: bool) -> None:
    """Run one pass here, in this process (it honours the same lock as the worker)."""
    from .consolidate import run_pass

    report = run_pass(env.store, env.config, force=force, dry_run=dry_run)
    click.echo(report.model_dump_json(indent=2) if as_json else format_report(report))
    if not as_json:
        for step, ids in report.planned.items():
            click.echo(f"  would {step}: {' '.join(ids)}")
    if report.status in ("failed", "lost_lock"):
        sys.exit(1)


@click.command()
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


@click.command()
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


@click.command()
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


@click.command()
@pass_env
def cancel(env: Env) -> None:
    """Stop the running pass between two batches (status 'cancelled')."""
    from .lock import request_cancel

    token = request_cancel(env.client, env.store.keys, max(env.config.lock_ttl, 60))
    if token:
        click.echo(f"cancel requested for the pass {token[:8]}…")
    else:
        click.echo("no pass is running")


@click.command()
@click.option("--repair", is_flag=True, help="Fix index drift (never deletes a node).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_env
def check(env: Env, repair: bool, as_json: bool) -> None:
    """Verify the namespace's indexes and links; exit 1 while problems remain."""
    from .check import check_store
    from .eviction import NOEVICTION, UNKNOWN, eviction_policy

    report = check_store(env.store, repair=repair)
    # The Redis too: one that may evict loses memory however consistent it is now.
    policy = eviction_policy(env.client)
    evicts = policy not in (NOEVICTION, UNKNOWN) and not env.config.allow_eviction
    if as_json:
        click.echo(
            json.dumps({**report.model_dump(mode="json"), "maxmemory_policy": policy}, indent=2)
        )
    else:
        click.echo(report.summary())
        click.echo(
            f"  maxmemory-policy: {policy}" + (" (evicts: see the warning)" if evicts else "")
        )
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
    if not report.ok or evicts:
        sys.exit(1)
