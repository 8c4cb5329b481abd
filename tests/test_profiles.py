"""Model outcome profiles: loading, digests and the insight text."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from car_dream.profiles import load_profiles, profile_digest, profile_insight


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "profiles.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_missing_file_is_no_profiles_and_no_problem(tmp_path: Path) -> None:
    assert load_profiles(tmp_path / "absent.json") == ({}, [])


def test_valid_profiles_by_model_id(tmp_path: Path) -> None:
    a = {"model_id": "gpt-x", "success_rate": 0.9, "runs": 12}
    b = {"model_id": "llama/3", "success_rate": 0.5}
    profiles, problems = load_profiles(write(tmp_path, [a, b]))
    assert problems == []
    assert profiles == {"gpt-x": a, "llama/3": b}


def test_empty_array(tmp_path: Path) -> None:
    assert load_profiles(write(tmp_path, [])) == ({}, [])


@pytest.mark.parametrize("data", [{"model_id": "m"}, "just text", 3, None])
def test_not_an_array_is_one_problem(tmp_path: Path, data: Any) -> None:
    path = tmp_path / "profiles.json"
    path.write_text(json.dumps(data))
    profiles, problems = load_profiles(path)
    assert profiles == {}
    assert len(problems) == 1 and "JSON array" in problems[0]


@pytest.mark.parametrize(
    "text",
    [
        '[{"model_id": "m"',
        "not json",
        '[{"model_id": "m", "rate": NaN}]',
        '[{"model_id": "m", "rate": Infinity}]',
        '[{"model_id": "m", "rate": -Infinity}]',
    ],
)
def test_invalid_json_is_one_problem(tmp_path: Path, text: str) -> None:
    profiles, problems = load_profiles(write(tmp_path, text))
    assert profiles == {}
    assert len(problems) == 1 and "not valid JSON" in problems[0]
    assert "profiles.json" in problems[0]


def test_invalid_utf8_is_one_problem(tmp_path: Path) -> None:
    path = tmp_path / "profiles.json"
    path.write_bytes(b'[{"model_id": "\xff\xfe"}]')
    profiles, problems = load_profiles(path)
    assert profiles == {} and len(problems) == 1


def test_unreadable_path_is_one_problem(tmp_path: Path) -> None:
    (tmp_path / "dir.json").mkdir()
    profiles, problems = load_profiles(tmp_path / "dir.json")
    assert profiles == {} and len(problems) == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"rate": 1},
        {"model_id": ""},
        {"model_id": "   "},
        {"model_id": 5},
        {"model_id": None},
        {"model_id": "x" * 201},
        "model-a",
        7,
        None,
        ["model_id", "m"],
    ],
)
def test_entry_without_usable_model_id_is_skipped_others_kept(tmp_path: Path, bad: Any) -> None:
    good = {"model_id": "good", "rate": 0.5}
    profiles, problems = load_profiles(write(tmp_path, [good, bad, {"model_id": "also"}]))
    assert list(profiles) == ["good", "also"]
    assert problems == ["profiles[1]: no usable model_id"]


def test_duplicate_ids_keep_the_first(tmp_path: Path) -> None:
    first = {"model_id": "m", "rate": 0.1}
    profiles, problems = load_profiles(write(tmp_path, [first, {"model_id": "m", "rate": 0.9}]))
    assert profiles == {"m": first}
    assert len(problems) == 1
    assert "profiles[1]" in problems[0] and "duplicate" in problems[0] and "'m'" in problems[0]


def test_profiles_that_cannot_be_encoded_are_skipped(tmp_path: Path) -> None:
    profiles, _ = load_profiles(write(tmp_path, '[{"model_id": "m\\ud800", "rate": 1}]'))
    for model_id, profile in profiles.items():
        model_id.encode()
        profile_digest(profile)


def test_digest_is_insensitive_to_key_order_at_every_depth() -> None:
    a = {"model_id": "m", "rate": 0.5, "by_tool": {"x": 1, "y": 2}}
    b = {"by_tool": {"y": 2, "x": 1}, "rate": 0.5, "model_id": "m"}
    assert profile_digest(a) == profile_digest(b)
    assert len(profile_digest(a)) == 64
    int(profile_digest(a), 16)


@pytest.mark.parametrize(
    "changed",
    [
        {"model_id": "m", "rate": 0.51, "by_tool": {"x": 1, "y": 2}},
        {"model_id": "m", "rate": 0.5, "by_tool": {"x": 1, "y": 3}},
        {"model_id": "m", "rate": 0.5, "by_tool": {"x": 1, "y": 2}, "new": None},
        {"model_id": "n", "rate": 0.5, "by_tool": {"x": 1, "y": 2}},
    ],
)
def test_digest_changes_when_the_profile_changes(changed: dict[str, Any]) -> None:
    base = {"model_id": "m", "rate": 0.5, "by_tool": {"x": 1, "y": 2}}
    assert profile_digest(changed) != profile_digest(base)


def test_digest_keeps_list_order() -> None:
    assert profile_digest({"l": [1, 2]}) != profile_digest({"l": [2, 1]})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=60)
@given(st.dictionaries(st.text(), json_values, max_size=6), st.randoms())
def test_digest_order_insensitive_property(profile: dict[str, Any], rnd: random.Random) -> None:
    items = list(profile.items())
    rnd.shuffle(items)
    assert profile_digest(dict(items)) == profile_digest(profile)


def test_insight_mentions_model_and_fields() -> None:
    text = profile_insight(
        "gpt-x",
        {
            "model_id": "gpt-x",
            "success_rate": 0.812345,
            "runs": 12,
            "ok": True,
            "notes": "fast",
            "by_tool": {"b": 1, "a": 2},
            "missing": None,
        },
    )
    assert "'gpt-x'" in text
    assert "success_rate=0.8123" in text
    assert "runs=12" in text
    assert "ok=True" in text
    assert "notes=fast" in text
    assert 'by_tool={"a":2,"b":1}' in text
    assert "missing=None" in text
    assert "model_id=" not in text


def test_insight_fields_sorted_and_deterministic() -> None:
    one = profile_insight("m", {"z": 1, "a": 2})
    assert one == profile_insight("m", {"a": 2, "z": 1})
    assert one.index("a=2") < one.index("z=1")


def test_insight_without_figures() -> None:
    assert "no figures" in profile_insight("m", {"model_id": "m"})


def test_insight_is_bounded() -> None:
    text = profile_insight("m", {f"k{i}": "v" * 50 for i in range(200)})
    assert len(text) < 2200
    assert text.endswith("….")
