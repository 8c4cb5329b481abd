"""Embed every node without a current embedding, reading ahead and writing behind.

One SSCAN cycle over the unembedded index, so the step is bounded by what is missing when
it starts (what agents add meanwhile is the trailing pass's). Each batch is one read (ids,
contents and revisions from one script) and one fenced write. While batch ``i`` is
embedded, a reader thread fetches batch ``i + 1`` and a writer thread stores batch
``i - 1``, so Redis I/O hides behind the embedder. Ids in flight are left out of a read,
and the write stores only ids still listed, so none is stored twice.

A model that fails or answers garbage (:class:`EmbedderError`) stops the step, not the
pass: what was embedded stays, the rest stays listed for the next pass, and the report
says why.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from ..embedder import Embedder, embed_checked
from ..errors import EmbedderError
from ..pipeline import PassContext

Page = tuple[str, list[list[Any]]]


class Embed:
    name = "embed"

    def due(self, ctx: PassContext) -> bool:
        s, r = ctx.sizes, ctx.report
        # Insights written by this pass are new nodes, listed as unembedded.
        new = r.trajectory_insights or r.model_insights
        return bool(s.unembedded or new or s.embedding_model != ctx.embedder.model_id)

    def run(self, ctx: PassContext) -> None:
        model = ctx.embedder.model_id
        ctx.fenced(ctx.store.scripts.switch_model, model)

        def fetch(cursor: str) -> Page:
            return ctx.store.unembedded_page(cursor, ctx.batch_size)

        def store(args: list[Any]) -> int:
            return int(ctx.fenced(ctx.store.scripts.store_vectors, *args)[1])

        inflight: set[str] = set()
        pending: Future[int] | None = None
        failure: EmbedderError | None = None
        dims: int | None = getattr(ctx.embedder, "dims", None)
        with (
            ThreadPoolExecutor(1, thread_name_prefix="car-dream-read") as reader,
            ThreadPoolExecutor(1, thread_name_prefix="car-dream-write") as writer,
        ):
            ahead: Future[Page] | None = reader.submit(fetch, "0")
            try:
                while ahead is not None:
                    cursor, page = ahead.result()
                    ctx.checkpoint()
                    ahead = reader.submit(fetch, cursor) if cursor != "0" else None
                    rows = fresh_rows(page, inflight)
                    if not rows:
                        continue
                    try:
                        args = vector_args(ctx.embedder, rows, ctx.config.embed_batch, dims)
                    except EmbedderError as exc:
                        failure = exc
                        break
                    dims = args[1] // 4 or dims
                    if pending is not None:
                        ctx.report.nodes_embedded += pending.result()
                    pending = writer.submit(store, args)
                    inflight = {row[0] for row in rows}
            finally:
                if ahead is not None:
                    ahead.cancel()
                if pending is not None:
                    ctx.report.nodes_embedded += pending.result()
        if failure is not None:
            left = ctx.refresh_sizes().unembedded  # the report's coverage says so too
            ctx.report.warn(f"embed stopped, {left} nodes wait for the next pass: {failure}")


def fresh_rows(page: list[list[Any]], inflight: set[str]) -> list[list[Any]]:
    """The page's rows minus ids being stored by the previous batch and repeats
    (SSCAN may return an id twice)."""
    seen: set[str] = set()
    rows = []
    for row in page:
        if row[0] not in inflight and row[0] not in seen:
            seen.add(row[0])
            rows.append(row)
    return rows


def vector_args(
    embedder: Embedder, rows: list[list[Any]], batch: int, dims: int | None = None
) -> list[Any]:
    """The STORE_VECTORS arguments for rows of ``[id, content|false, rev|false]``, the
    contents embedded ``batch`` at a time (:class:`EmbedderError` if the model fails)."""
    live = [(i, c, r) for i, c, r in rows if isinstance(c, str) and isinstance(r, str)]
    gone = [i for i, c, r in rows if not (isinstance(c, str) and isinstance(r, str))]
    if live:
        vectors = embed_checked(embedder, [c for _, c, _ in live], batch, dims)
        size, blob = vectors.shape[1] * 4, vectors.tobytes()
    else:
        size, blob = 0, b""
    return [
        embedder.model_id,
        size,
        "\n".join(i for i, _, _ in live),
        "\n".join(r for _, _, r in live),
        blob,
        "\n".join(gone),
    ]
