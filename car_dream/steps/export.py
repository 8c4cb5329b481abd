"""Write the embeddings file (``CAR_DREAM_EMBEDDINGS_PATH``) when an embedding changed."""

from __future__ import annotations

from collections.abc import Iterator

from ..export import persisted_version, write_npz
from ..file_versions import stat_cached
from ..node import KINDS
from ..pipeline import PassContext
from ..report import failure_reason

# Steps that may change or remove an embedding when they run (insight facts supersede
# earlier ones; the embed step may switch the model).
EMBEDDINGS_CHANGED = frozenset(
    {"trajectories", "profiles", "prune", "forget", "invalidate", "collect", "embed"}
)


class Export:
    name = "export"

    def due(self, ctx: PassContext) -> bool:
        """Due when a step of this pass may have changed an embedding, or the file's
        version (a ``stat`` while the file is unchanged) is not the one read at the start."""
        path = ctx.config.embeddings_path
        if path is None:
            return False
        if EMBEDDINGS_CHANGED.intersection(ctx.report.step_ms):
            return True
        version = ctx.bookkeeping("emb_version") or "0"
        return stat_cached(path, persisted_version) != version

    def run(self, ctx: PassContext) -> None:
        path = ctx.config.embeddings_path
        assert path is not None
        try:
            version = ctx.store.embedding_version()
            if stat_cached(path, persisted_version) == version:
                return
            model = ctx.embedder.model_id
            write_npz(path, current_vectors(ctx, model), model, version, ctx.batch_size)
        except Exception as exc:
            ctx.report.warn(f"embeddings not persisted to {path}: {failure_reason(exc)}")


def current_vectors(ctx: PassContext, model: str) -> Iterator[tuple[str, bytes]]:
    """Every node's vector of ``model``, read in pipelined batches."""
    for kind in KINDS:
        chunk: list[str] = []
        for node_id in ctx.store.ids(kind, ctx.batch_size):
            chunk.append(node_id)
            if len(chunk) >= ctx.batch_size:
                yield from ctx.store.vectors(chunk, model)
                chunk = []
        yield from ctx.store.vectors(chunk, model)
