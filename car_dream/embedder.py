"""Embedders: ``embed(texts) -> float32 matrix`` plus a ``model_id``."""

from __future__ import annotations

import itertools
import re
import zlib
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Embedder", "HashingEmbedder"]

_TOKEN = re.compile(r"\w+")


@runtime_checkable
class Embedder(Protocol):
    """Anything with a model id and a batch ``embed``; changing ``model_id`` re-embeds all."""

    model_id: str

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


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
