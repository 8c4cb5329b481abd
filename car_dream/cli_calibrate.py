"""``car-dream calibrate``: precision and recall of the merge decision on the shipped
labelled pairs, per threshold, for the configured embedder (or ``--embedder``)."""

from __future__ import annotations

import json

import click

from .cli_env import Env, pass_env

__all__ = ["calibrate"]

DEFAULT_SWEEP = (0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


@click.command()
@click.option("--embedder", "spec", help="An embedder as CAR_DREAM_EMBEDDER names one.")
@click.option(
    "--threshold",
    "thresholds",
    type=click.FloatRange(0, 1),
    multiple=True,
    help="A threshold to score (repeatable); default: a sweep and the configured one.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per threshold.")
@pass_env
def calibrate(env: Env, spec: str | None, thresholds: tuple[float, ...], as_json: bool) -> None:
    """Print precision and recall of duplicate merging on the shipped labelled pairs.

    Never touches Redis: the pairs are in the package, the model is CAR_DREAM_EMBEDDER's.
    """
    from .calibrate import load_pairs, pair_similarities, score
    from .config import load_config
    from .dedup import default_threshold
    from .embedding_models import build_embedder

    config = env.config
    if spec is not None:
        config = load_config(embedder=spec)
    embedder = build_embedder(config)
    chosen = config.merge_threshold or default_threshold(embedder.model_id)
    pairs = load_pairs()
    sims = pair_similarities(embedder, pairs)
    if not as_json:
        click.echo(
            f"{embedder.model_id}: {len(pairs)} pairs, {sum(p.same for p in pairs)} to merge"
        )
        click.echo("threshold  precision  recall  merged  false  missed")
    for t in sorted(set(thresholds) or {*DEFAULT_SWEEP, chosen}):
        s = score(pairs, sims, t)
        if as_json:
            click.echo(json.dumps({"model": embedder.model_id, **s.__dict__}))
            continue
        mark = "  <- default" if t == chosen else ""
        click.echo(
            f"{t:9.3f}  {s.precision:9.3f}  {s.recall:6.3f}  {s.true_merges + s.false_merges:6d}"
            f"  {s.false_merges:5d}  {s.missed:6d}{mark}"
        )
