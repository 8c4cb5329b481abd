"""Model outcome profiles: loading, digests, the insight text, and the pass's profiles step."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from car_dream.config import load_config
from car_dream.consolidate import run_pass
from car_dream.profiles import load_profiles, profile_digest, profile_insight
from car_dream.store import MemoryStore


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "profiles.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_missing_file_is_no_profiles_and_no_problem(tmp_path: Path) -> None:
    assert load_profiles(tmp_path / "absent.json") == ({}, [], "missing")


def test_valid_profiles_by_model_id(tmp_path: Path) -> None:
    a = {"model_id": "gpt-x", "success_rate": 0.9, "runs": 12}
    b = {"model_id": "llama/3", "success_rate": 0.5}
    profiles, problems, _ = load_profiles(write(tmp_path, [a, b]))
    assert problems == []
    assert profiles == {"gpt-x": a, "llama/3": b}


def test_empty_array(tmp_path: Path) -> None:
    assert load_profiles(write(tmp_path, []))[:2] == ({}, [])


@pytest.mark.parametrize("data", [{"model_id": "m"}, "just text", 3, None])
def test_not_an_array_is_one_problem(tmp_path: Path, data: Any) -> None:
    path = tmp_path / "profiles.json"
    path.write_text(json.dumps(data))
    profiles, problems, _ = load_profiles(path)
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
    profiles, problems, _ = load_profiles(write(tmp_path, text))
    assert profiles == {}
    assert len(problems) == 1 and "not valid JSON" in problems[0]
    assert "profiles.json" in problems[0]


def test_invalid_utf8_is_one_problem(tmp_path: Path) -> None:
    path = tmp_path / "profiles.json"
    path.write_bytes(b'[{"model_id": "\xff\xfe"}]')
    profiles, problems, _ = load_profiles(path)
    assert profiles == {} and len(problems) == 1


def test_unreadable_path_is_one_problem(tmp_path: Path) -> None:
    (tmp_path / "dir.json").mkdir()
    profiles, problems, _ = load_profiles(tmp_path / "dir.json")
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
    profiles, problems, _ = load_profiles(write(tmp_path, [good, bad, {"model_id": "also"}]))
    assert list(profiles) == ["good", "also"]
    assert problems == ["profiles[1]: no usable model_id"]


def test_duplicate_ids_keep_the_first(tmp_path: Path) -> None:
    first = {"model_id": "m", "rate": 0.1}
    profiles, problems, _ = load_profiles(write(tmp_path, [first, {"model_id": "m", "rate": 0.9}]))
    assert profiles == {"m": first}
    assert len(problems) == 1
    assert "profiles[1]" in problems[0] and "duplicate" in problems[0] and "'m'" in problems[0]


def test_profiles_that_cannot_be_encoded_are_skipped(tmp_path: Path) -> None:
    profiles, _, _ = load_profiles(write(tmp_path, '[{"model_id": "m\\ud800", "rate": 1}]'))
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


# -- nonsense figures ----------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"success_rate": "high"},
        {"success_rate": 1.5},
        {"success_rate": -0.1},
        {"success_rate": True},
        {"success_rate": None},
        {"avg_latency_ms": -5},
        {"avg_latency_ms": "fast"},
        {"samples": 2.5},
        {"samples": -1},
        {"samples": "many"},
    ],
    ids=repr,
)
def test_nonsense_figures_are_skipped_naming_the_model(tmp_path: Path, bad: Any) -> None:
    good = {"model_id": "good", "success_rate": 1, "avg_latency_ms": 0.5, "samples": 0}
    profiles, problems, _ = load_profiles(write(tmp_path, [good, {"model_id": "odd", **bad}]))
    assert list(profiles) == ["good"]
    (field,) = bad
    assert len(problems) == 1
    assert problems[0].startswith(f"profiles[1] 'odd': {field} must be "), problems


# -- the pass's profiles step ----------------------------------------------------------


def profiles_pass(store: MemoryStore, path: Path) -> Any:
    config = load_config(interval_secs=60, outcome_profiles_path=path, data_dir=path.parent)
    report = run_pass(store, config, force=True)
    assert report.status == "completed", report.reason
    return report


def test_a_missing_file_is_warned_once_per_change(real_store: MemoryStore, tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    first = profiles_pass(real_store, path)
    assert first.warnings == [f"profiles {path}: no such file (CAR_DREAM_OUTCOME_PROFILES_PATH)"]
    assert first.skipped_records == 0
    assert profiles_pass(real_store, path).warnings == []
    path.write_text(json.dumps([{"model_id": "m", "success_rate": 0.5}]))
    written = profiles_pass(real_store, path)
    assert written.model_insights == 1 and written.warnings == []
    path.unlink()
    assert "no such file" in profiles_pass(real_store, path).warnings[0]


def test_a_bad_file_is_warned_once_per_change(real_store: MemoryStore, tmp_path: Path) -> None:
    path = tmp_path / "profiles.json"
    broken, other = "not json", json.dumps([{"model_id": "m", "success_rate": "high"}])
    seen = []
    for text in (broken, broken, broken, other, other, broken):
        path.write_text(text)
        report = profiles_pass(real_store, path)
        seen.append((report.skipped_records, len(report.warnings)))
    assert seen == [(1, 1), (0, 0), (0, 0), (1, 1), (0, 0), (1, 1)]
    assert real_store.count() == 0  # "high" never became a fact


def test_a_nonsense_profile_is_no_fact(real_store: MemoryStore, tmp_path: Path) -> None:
    path = tmp_path / "profiles.json"
    path.write_text(
        json.dumps([{"model_id": "m", "success_rate": "high"}, {"model_id": "n", "samples": 3}])
    )
    report = profiles_pass(real_store, path)
    assert report.model_insights == 1 and report.skipped_records == 1
    assert "'m'" in report.warnings[0] and "success_rate" in report.warnings[0]
    assert [n.subject for n in real_store.iter_nodes("fact")] == ["model:n"]
