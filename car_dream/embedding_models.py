"""Which embedder ``CAR_DREAM_EMBEDDER`` names, built once per process.

``hashing`` (the default), ``sentence-transformers:<model name or local path>``,
``openai:<model>`` (any OpenAI-compatible ``/v1/embeddings`` server) or
``module:factory`` (a callable of no arguments returning an :class:`Embedder`). The
names ``openai`` and ``sentence-transformers`` are reserved: ``openai:x`` is always the
protocol, never a module ``openai``. Loading a model takes seconds and hundreds of MB,
so :func:`configured_embedder` keeps one per process, keyed by the settings it came from.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from .config import DreamConfig
from .embedder import Embedder, HashingEmbedder
from .embedder_spec import VAR, EmbedderSpec, parse_embedder
from .errors import ConfigError

__all__ = [
    "EmbedderSpec",
    "SentenceTransformerEmbedder",
    "configured_embedder",
    "parse_embedder",
]


class SentenceTransformerEmbedder:
    """A sentence-transformers model (a hub name or a local directory); rows L2-normalised."""

    def __init__(self, name: str) -> None:
        from sentence_transformers import SentenceTransformer

        self.model_id = f"sentence-transformers:{name}"
        self.model = SentenceTransformer(name)
        # get_sentence_embedding_dimension before sentence-transformers renamed it
        get_dims = getattr(self.model, "get_embedding_dimension", None)
        if get_dims is None:
            get_dims = self.model.get_sentence_embedding_dimension
        self.dims: int | None = get_dims()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dims or 0), dtype=np.float32)
        # One forward pass per call: the caller already cut CAR_DREAM_EMBED_BATCH texts.
        out = self.model.encode(
            list(texts),
            batch_size=max(1, len(texts)),
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32)


def build_embedder(config: DreamConfig) -> Embedder:
    """A new embedder for ``config``: loads the model. :class:`ConfigError` if it cannot."""
    spec = parse_embedder(config.embedder)
    try:
        if spec.kind == "hashing":
            return HashingEmbedder()
        if spec.kind == "sentence-transformers":
            return SentenceTransformerEmbedder(spec.name)
        if spec.kind == "openai":
            from .openai_embedder import OpenAIEmbedder

            return OpenAIEmbedder.from_config(spec.name, config)
        return _from_factory(spec.name)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"{VAR}: cannot load {config.embedder!r}: {type(exc).__name__}: {exc}"
        ) from exc


def _from_factory(target: str) -> Embedder:
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    made = obj()
    if not isinstance(made, Embedder):
        raise ConfigError(
            f"{VAR}: {target}() returned {type(made).__name__}, not an embedder "
            "(a model_id attribute and an embed(texts) method)"
        )
    return made


_cache: dict[tuple[Any, ...], Embedder] = {}
_cache_lock = threading.Lock()


def configured_embedder(config: DreamConfig) -> Embedder:
    """The embedder ``config`` names, built on first use and kept for this process."""
    key = (
        config.embedder,
        config.embedder_url,
        config.embedder_api_key,
        config.embedder_timeout_secs,
        config.embedder_retries,
    )
    with _cache_lock:  # one load even when two passes start at once
        embedder = _cache.get(key)
        if embedder is None:
            embedder = _cache[key] = build_embedder(config)
        return embedder
