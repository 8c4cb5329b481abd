"""``car-dream ingest`` on careless files: every good line is kept, every bad one named.

Against the real Redis, through the CLI.
"""

from __future__ import annotations

import pytest

from car_dream.errors import InvalidInputError
from car_dream.store import MemoryStore


def test_store_calls_cut_long_values_too(real_store: MemoryStore) -> None:
    with pytest.raises(InvalidInputError) as info:
        real_store.ingest_fact("é" * 5000, "s", "c")
    assert "…" in str(info.value) and len(str(info.value)) < 300
    with pytest.raises(InvalidInputError) as info:
        MemoryStore(real_store.client, "n" * 5000)
    assert "…" in str(info.value) and len(str(info.value)) < 300
