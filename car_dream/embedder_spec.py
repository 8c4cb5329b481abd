"""What ``CAR_DREAM_EMBEDDER`` may say, checked when the settings are read (loading the
model is :mod:`car_dream.embedding_models`' job)."""

from __future__ import annotations

import importlib.util
import re
from typing import NamedTuple

__all__ = ["VAR", "EmbedderSpec", "parse_embedder"]

VAR = "CAR_DREAM_EMBEDDER"
_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_FACTORY = re.compile(rf"^({_DOTTED}):({_DOTTED})\Z")


class EmbedderSpec(NamedTuple):
    kind: str  # hashing | sentence-transformers | openai | factory
    name: str  # the model, or "module:factory"


def parse_embedder(value: str) -> EmbedderSpec:
    """The spec ``value`` names, or ``ValueError`` saying what is accepted."""
    value = value.strip()
    if value == "hashing":
        return EmbedderSpec("hashing", "")
    kind, sep, name = value.partition(":")
    if sep and kind in ("sentence-transformers", "openai"):
        if not name.strip():
            raise ValueError(f"{kind}: needs a model name, e.g. {kind}:<model>")
        if kind == "sentence-transformers" and not importlib.util.find_spec(
            "sentence_transformers"
        ):
            raise ValueError(
                "sentence-transformers is not installed: car-dream[sentence-transformers]"
            )
        return EmbedderSpec(kind, name.strip())
    if _FACTORY.match(value):
        return EmbedderSpec("factory", value)
    raise ValueError(
        "use hashing, sentence-transformers:<model or path>, openai:<model> or module:factory"
    )
