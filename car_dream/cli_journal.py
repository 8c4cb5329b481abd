"""``car-dream journal|restore|undo``: what passes removed or superseded, and bringing
it back."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from itertools import islice

import click

from .cli_env import Env, fail, pass_env
from .journal import JournalEntry, Restored, entries

__all__ = ["journal", "restore", "undo"]

WORDS = 8  # of the content, on an entry's line


def entry_line(e: JournalEntry) -> str:
    """One line: time, pass, step, node, reason, the first words of the content."""
    when = datetime.fromtimestamp(e.at).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    words = e.fields.get("content", "").split()
    content = " ".join(words[:WORDS]) + (" …" if len(words) > WORDS else "")
    return f"{when} {e.pass_id} {e.step:<10} {e.node}: {e.reason} — {content!r}"


@click.command("journal")
@click.option("--pass", "pass_id", metavar="ID", help="Only the entries of this pass.")
@click.option("--node", metavar="ID", help="Only the entries of this node.")
@click.option("--since", metavar="AGE", help="Only entries newer than this: 90s, 30m, 2h, 1d.")
@click.option(
    "-n", "count", type=click.IntRange(min=0), default=50, show_default=True, help="At most N."
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_env
def journal(
    env: Env, pass_id: str | None, node: str | None, since: str | None, count: int, as_json: bool
) -> None:
    """Show what passes removed or superseded (and restores), newest first."""
    from .schedule import parse_every

    start = None
    if since is not None:
        try:
            start = time.time() - parse_every(since)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--since") from None
    found = list(
        islice(entries(env.client, env.store.keys, pass_id=pass_id, node=node, since=start), count)
    )
    if as_json:
        click.echo(json.dumps([e.as_dict() for e in found], indent=2))
        return
    if not found and count:
        click.echo("no journal entries")
    for e in found:
        click.echo(entry_line(e))


def restored_line(r: Restored, done: str = "restored") -> str:
    return f"{done} {r.node} ({r.why})" if r.ok else f"refused {r.node}: {r.why}"


PIN = click.option("--pin", is_flag=True, help="Pin what comes back, so no pass removes it.")


@click.command("restore")
@click.argument("nodes", nargs=-1, required=True, metavar="NODE...")
@PIN
@pass_env
def restore(env: Env, nodes: tuple[str, ...], pin: bool) -> None:
    """Bring back nodes a pass removed, each from its newest journal entry."""
    results = [env.store.restore(node, pin=pin) for node in nodes]
    for r in results:
        click.echo(restored_line(r))
    if not all(r.ok for r in results):
        sys.exit(1)


@click.command("undo")
@click.argument("pass_id", metavar="PASS_ID")
@click.option("--dry-run", is_flag=True, help="Say what would be restored; change nothing.")
@PIN
@pass_env
def undo(env: Env, pass_id: str, dry_run: bool, pin: bool) -> None:
    """Restore everything one pass removed or invalidated (premises before conclusions)."""
    from .journal import undo as undo_pass

    results = undo_pass(env.client, env.store.keys, pass_id, dry_run=dry_run, pin=pin)
    if not results:
        fail(f"no journal entries of pass {pass_id!r}")
    for r in results:
        click.echo(restored_line(r, "would restore" if dry_run else "restored"))
    ok = sum(r.ok for r in results)
    verb = "would restore" if dry_run else "restored"
    click.echo(f"{verb} {ok}, refused {len(results) - ok}")
