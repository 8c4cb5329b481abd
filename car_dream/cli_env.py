"""What every ``car-dream`` command shares: the settings, the Redis client and the store
(built on first use, so ``--help`` touches nothing), and how a report is printed."""

from __future__ import annotations

import sys
from datetime import datetime
from functools import cached_property
from typing import Any, NoReturn

import click

from .config import DreamConfig, load_config
from .report import ConsolidationReport

__all__ = ["Env", "fail", "format_report", "next_run_text", "pass_env"]


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
        warning = self.eviction_warning(client)
        if warning:
            click.echo(f"car-dream: warning: {warning}", err=True)
        return client

    def eviction_warning(self, client: Any) -> str | None:
        """What to say if the memory's Redis may evict keys (the worker refuses it)."""
        from .eviction import check_eviction

        var = "CAR_DREAM_MEMORY_URL" if self.config.memory_url else "CAR_DREAM_REDIS_URL"
        url = self.config.memory_url or self.url
        return check_eviction(client, var, url, allow=self.config.allow_eviction, refuse=False)

    @cached_property
    def store(self) -> Any:
        from .store import MemoryStore

        return MemoryStore(
            self.client,
            self.config.namespace,
            access_resolution=self.config.access_resolution_secs,
            search_scan_limit=self.config.search_scan_limit,
        )


pass_env = click.make_pass_decorator(Env, ensure=True)


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
    if r.dry_run:
        head += " (dry run: nothing written)"
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


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"car-dream: {message}", err=True)
    sys.exit(code)
