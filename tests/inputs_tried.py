"""How many malformed inputs each category of tests/test_malformed.py tried (printed at
the end of the run by tests/conftest.py)."""

from __future__ import annotations

from collections import Counter

TRIED: Counter[str] = Counter()
