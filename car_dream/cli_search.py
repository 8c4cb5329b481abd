"""``car-dream search``: the live nodes nearest a text, by meaning."""

from __future__ import annotations

import json

import click

from .cli_env import Env, pass_env
from .node import KINDS
from .search import MAX_K

__all__ = ["search"]

SHOWN = 100  # characters of the content on a hit's line


@click.command("search")
@click.argument("text")
@click.option("-k", "k", type=click.IntRange(1, MAX_K), default=10, show_default=True)
@click.option("--kind", type=click.Choice(KINDS), help="Only nodes of this kind.")
@click.option("--subject", metavar="S", help="Only nodes about this subject.")
@click.option("--min-score", type=float, help="Only hits with at least this cosine similarity.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of {node, score}.")
@pass_env
def search(
    env: Env,
    text: str,
    k: int,
    kind: str | None,
    subject: str | None,
    min_score: float | None,
    as_json: bool,
) -> None:
    """The K live nodes closest in meaning to TEXT (embedded with CAR_DREAM_EMBEDDER),
    closest first; never superseded, invalidated, expired or removed ones."""
    from .embedding_models import configured_embedder

    hits = env.store.search(
        text,
        k,
        kind=kind,  # type: ignore[arg-type]  # click.Choice(KINDS)
        subject=subject,
        min_score=min_score,
        embedder=configured_embedder(env.config),
    )
    if as_json:
        click.echo(json.dumps([h.model_dump(mode="json") for h in hits], indent=2))
        return
    if not hits:
        click.echo("no match")
    for h in hits:
        n = h.node
        about = f" [{n.subject}]" if n.subject else ""
        content = n.content if len(n.content) <= SHOWN else n.content[: SHOWN - 1] + "…"
        click.echo(f"{h.score:.3f} {n.kind:<11} {n.id}{about}: {content}")
