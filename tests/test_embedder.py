"""HashingEmbedder: deterministic, float32, L2-normalised feature hashing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from car_dream.embedder import Embedder, HashingEmbedder

TEXTS = [
    "the deploy tool failed to reach the staging cluster",
    "Redis memory consolidation pass",
    "",
    "  ... !!! ",
]


def test_shape_and_dtype() -> None:
    out = HashingEmbedder().embed(TEXTS)
    assert out.shape == (4, 256)
    assert out.dtype == np.float32


def test_empty_batch() -> None:
    out = HashingEmbedder().embed([])
    assert out.shape == (0, 256) and out.dtype == np.float32


def test_rows_are_unit_length_or_zero_for_texts_without_words() -> None:
    out = HashingEmbedder().embed(TEXTS)
    norms = np.linalg.norm(out, axis=1)
    np.testing.assert_allclose(norms[:2], 1.0, rtol=1e-5)
    assert not out[2].any() and not out[3].any()


def test_deterministic_across_instances_and_batches() -> None:
    a = HashingEmbedder().embed(TEXTS)
    b = HashingEmbedder().embed(TEXTS)
    assert np.array_equal(a, b)
    # A row does not depend on the other texts of its batch.
    alone = HashingEmbedder().embed([TEXTS[1]])
    assert np.array_equal(alone[0], a[1])


def test_known_vector_is_stable() -> None:
    # Pins the hashing scheme: a change would silently invalidate stored embeddings
    # without a model id change.
    v = HashingEmbedder().embed(["hello world"])[0]
    nonzero = np.flatnonzero(v)
    assert len(nonzero) == 3  # "hello", "world", "hello world"
    np.testing.assert_allclose(np.abs(v[nonzero]), 1 / np.sqrt(3), rtol=1e-6)


def test_case_and_punctuation_insensitive() -> None:
    e = HashingEmbedder()
    a, b = e.embed(["Deploy FAILED, again!", "deploy failed again"])
    assert np.array_equal(a, b)


def test_similar_texts_are_closer_than_unrelated_ones() -> None:
    e = HashingEmbedder()
    base, near, far = e.embed(
        [
            "the deploy tool failed to reach the staging cluster",
            "the deploy tool failed to reach the production cluster",
            "grandma baked an apple pie on sunday afternoon",
        ]
    )
    assert float(base @ near) > 0.5
    assert float(base @ near) > float(base @ far) + 0.3


def test_model_id_changes_with_dims() -> None:
    assert HashingEmbedder().model_id == "hashing-v1-256"
    assert HashingEmbedder(512).model_id == "hashing-v1-512"
    assert HashingEmbedder(64).model_id != HashingEmbedder(128).model_id
    assert HashingEmbedder(1024).embed(["x"]).shape == (1, 1024)


@pytest.mark.parametrize("dims", [0, -8, 4, 7, 100, 255, 257])
def test_invalid_dims_rejected(dims: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        HashingEmbedder(dims)


def test_satisfies_the_embedder_protocol() -> None:
    assert isinstance(HashingEmbedder(), Embedder)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(max_size=200), max_size=8))
def test_any_text_gives_a_unit_or_zero_row(texts: list[str]) -> None:
    out = HashingEmbedder(64).embed(texts)
    assert out.shape == (len(texts), 64) and out.dtype == np.float32
    assert np.isfinite(out).all()
    for row in np.linalg.norm(out, axis=1):
        assert row == 0.0 or abs(row - 1.0) < 1e-5
