"""Embedders: ``embed(texts) -> float32 matrix`` plus a ``model_id``."""

from __future__ import annotations

import itertools
import re
import zlib
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from .errors import EmbedderError

__all__ = ["Embedder", "HashingEmbedder", "embed_checked"]

_TOKEN = re.compile(r"\w+")


@runtime_checkable
class Embedder(Protocol):
    """Anything with a model id and a batch ``embed``; changing ``model_id`` re-embeds all."""

    model_id: str

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def embed_checked(
    embedder: Embedder, texts: Sequence[str], batch: int, dims: int | None = None
) -> np.ndarray:
    """``texts`` embedded ``batch`` at a time, as one float32 matrix, or :class:`EmbedderError`.

    Whatever the model does wrong (raises, times out, answers another number of rows or
    another width than ``dims`` or the first batch, NaN or infinity) is an
    ``EmbedderError``, so no garbage is stored and the caller can stop cleanly.
    """
    parts = []
    for start in range(0, len(texts), batch):
        chunk = texts[start : start + batch]
        try:
            out = np.asarray(embedder.embed(chunk), dtype=np.float32)
        except EmbedderError:
            raise
        except Exception as exc:  # a model's own failure, whatever its type
            raise EmbedderError(f"{embedder.model_id}: {type(exc).__name__}: {exc}") from exc
        if out.ndim != 2 or out.shape[0] != len(chunk) or out.shape[1] < 1:
            raise EmbedderError(
                f"{embedder.model_id}: {len(chunk)} texts gave an array of shape {out.shape}"
            )
        if dims is not None and out.shape[1] != dims:
            raise EmbedderError(f"{embedder.model_id}: {out.shape[1]} dimensions, not {dims}")
        if not np.isfinite(out).all():
            raise EmbedderError(f"{embedder.model_id}: NaN or infinity in the vectors")
        dims = out.shape[1]
        parts.append(out)
    if not parts:
        return np.zeros((0, dims or 0), dtype=np.float32)
    return np.ascontiguousarray(np.concatenate(parts) if len(parts) > 1 else parts[0])


class HashingEmbedder:
    """Feature hashing of word unigrams and bigrams: deterministic, no download.

    Each token lands in one of ``dims`` buckets (CRC32) with a sign from another
    bit of the hash, so collisions cancel out on average; rows are L2-normalised.
    """

    def __init__(self, dims: int = 256) -> None:
        if dims < 8 or dims & (dims - 1):
            raise ValueError("dims must be a power of two, at least 8")
        self.dims = dims
        self.model_id = f"hashing-v1-{dims}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        mask = self.dims - 1
        rows: list[int] = []
        hashes: list[int] = []
        for row, text in enumerate(texts):
            words = _TOKEN.findall(text.lower())
            grams = words + [a + " " + b for a, b in itertools.pairwise(words)]
            for g in grams:
                hashes.append(zlib.crc32(g.encode()))
            rows.extend([row] * len(grams))
        if hashes:
            h = np.asarray(hashes, dtype=np.uint32)
            signs = np.where(h & 0x80000000, -1.0, 1.0).astype(np.float32)
            np.add.at(out, (np.asarray(rows), (h & mask).astype(np.intp)), signs)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out
