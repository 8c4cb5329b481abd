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
from ..errors import EmbedderError, shown
from ..merging import Embedded
from ..pipeline import PassContext
from ..search import vector_sets_available

Page = tuple[str, list[list[Any]]]
# Vectors per STORE_VECTORS call on a Redis with vector sets: each VADD holds Redis about
# 0.3-2.6 ms (row 11 of make bench), so a call holds it tens of ms, not a whole batch's worth.
STORE_CHUNK = 64


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

        script = ctx.store.scripts.store_vectors
        # On Redis 8 each stored vector is also added to the vector index, in the script
        # (VADD runs synchronously there): a few dozen a call keep Redis answering others.
        indexed = vector_sets_available(ctx.store.client, ctx.store.keys)

        def store(args: list[Any]) -> int:
            parts = store_parts(args, STORE_CHUNK) if indexed else [args]
            return sum(int(ctx.fenced(script, *part)[1]) for part in parts)

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
                    live, gone, malformed = split_rows(rows)
                    for node_id in malformed:
                        ctx.report.warn(
                            f"node {shown(node_id)}: not valid UTF-8, not embedded", skipped=1
                        )
                    try:
                        args = vector_args(ctx.embedder, live, gone, ctx.config.embed_batch, dims)
                    except EmbedderError as exc:
                        failure = exc
                        break
                    dims = args[1] // 4 or dims
                    if ctx.config.merge:
                        ctx.embedded.extend(Embedded(i, r) for i, _, r in live)
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


Row = tuple[str, str, str]  # id, content, revision


def split_rows(rows: list[list[Any]]) -> tuple[list[Row], list[str], list[str]]:
    """Rows of ``[id, content|false, rev|false]`` as live rows, ids of vanished nodes and
    ids of nodes whose id or content is not UTF-8 (written by hand: they stay listed as
    unembedded, and ``car-dream check`` reports them as malformed)."""
    live: list[Row] = []
    gone: list[str] = []
    malformed: list[str] = []
    for i, c, r in rows:
        if not _is_utf8(i) or (isinstance(c, str) and not _is_utf8(c)):
            malformed.append(i)
        elif isinstance(c, str) and isinstance(r, str):
            live.append((i, c, r))
        else:
            gone.append(i)
    return live, gone, malformed


def _is_utf8(text: str) -> bool:
    """False for text that came from bytes that were not UTF-8 (as surrogates)."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def store_parts(args: list[Any], n: int) -> list[list[Any]]:
    """STORE_VECTORS arguments (see :func:`vector_args`) cut into calls of ``n`` vectors;
    the vanished ids go with the first."""
    model, size, ids, revs, blob, gone = args
    id_list, rev_list = ids.split("\n") if ids else [], revs.split("\n") if revs else []
    parts = [
        [
            model,
            size,
            "\n".join(id_list[c : c + n]),
            "\n".join(rev_list[c : c + n]),
            blob[c * size : (c + n) * size],
            gone if c == 0 else "",
        ]
        for c in range(0, len(id_list), n)
    ]
    return parts or [args]


def vector_args(
    embedder: Embedder, live: list[Row], gone: list[str], batch: int, dims: int | None = None
) -> list[Any]:
    """The STORE_VECTORS arguments: the live rows' contents embedded ``batch`` at a time
    (:class:`EmbedderError` if the model fails), the vanished ids dropped."""
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
