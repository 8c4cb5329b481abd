"""Bad input, tried systematically: a hand-made corpus plus hypothesis, per category.

For every input: the pass completes (or the call fails with a clear error), nothing
already stored is lost or half-written (check_store, and the baseline nodes read back
unchanged), and skipped records are counted. The number of inputs tried per category
is printed at the end of the run.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from car_dream.check import check_store
from car_dream.config import load_config
from car_dream.consolidate import run_pass
from car_dream.errors import CarDreamError, ConfigError
from car_dream.keys import NAMESPACES_KEY
from car_dream.store import MemoryStore
from car_dream.trajectory import parse_line

from .inputs_tried import TRIED

NOW = 1_800_000_000.0
FAST = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def clock() -> float:
    return NOW


def good_record(tool: str = "search", outcome: str = "success") -> bytes:
    return json.dumps(
        {
            "proposal_id": "p",
            "source": "planner",
            "action_count": 1,
            "events": [
                {
                    "kind": "action_succeeded",
                    "action_id": "a",
                    "tool": tool,
                    "data": {},
                    "duration_ms": 3,
                }
            ],
            "outcome": outcome,
            "timestamp": "2026-11-26T08:00:00Z",
            "duration_ms": 12.5,
            "replan_attempts": 0,
        }
    ).encode()


def fresh_store() -> MemoryStore:
    store = MemoryStore(fakeredis.FakeRedis(), "bad-input")
    store.ingest_fact("base.f", "s", "a baseline fact", timestamp=NOW)
    store.ingest_fact("base.pin", "s", "a pinned fact", pinned=True, timestamp=NOW)
    store.ingest_environment("base.env", "live", observed_at=NOW, expires_at=NOW + 3600)
    store.ingest_conclusion("base.c", "derived", premises=["base.f", "base.env"])
    return store


BASELINE = ("base.f", "base.pin", "base.env", "base.c")


def contents(store: MemoryStore) -> dict[str, str | None]:
    return {i: (n.content if (n := store.get(i)) else None) for i in BASELINE}


def assert_intact(store: MemoryStore, before: dict[str, str | None]) -> None:
    assert contents(store) == before  # nothing already stored was lost
    report = check_store(store)
    assert report.ok, report.messages  # nor half-written


def trajectory_pass(tmp_path: Path, files: dict[str, bytes], store: MemoryStore | None = None):
    traj = tmp_path / "traj"
    traj.mkdir(exist_ok=True)
    for name, data in files.items():
        (traj / name).write_bytes(data)
    store = store or fresh_store()
    before = contents(store)
    config = load_config(interval_secs=60, trajectory_dir=traj, data_dir=tmp_path, batch_size=3)
    report = run_pass(store, config, force=True, clock=clock)
    assert report.status == "completed", report.reason
    assert_intact(store, before)
    return store, report


# -- trajectory files --------------------------------------------------------------

BAD_LINES: dict[str, bytes] = {
    "truncated JSON": good_record()[:40],
    "not an object": b"[1, 2, 3]",
    "number": b"42",
    "wrong type: action_count": good_record().replace(b'"action_count": 1', b'"action_count": "x"'),
    "wrong type: events": good_record().replace(b'"events": [', b'"events": 7, "x": ['),
    "wrong type: source": good_record().replace(b'"source": "planner"', b'"source": {"a": 1}'),
    "unknown outcome": good_record(outcome="maybe"),
    "timestamp without zone": good_record().replace(b"08:00:00Z", b"08:00:00"),
    "timestamp garbage": good_record().replace(b"2026-11-26T08:00:00Z", b"yesterday"),
    "NaN": good_record().replace(b'"duration_ms": 12.5', b'"duration_ms": NaN'),
    "Infinity": good_record().replace(b'"duration_ms": 12.5', b'"duration_ms": Infinity'),
    "-Infinity": good_record().replace(b'"duration_ms": 3', b'"duration_ms": -Infinity'),
    "overflow to inf": good_record().replace(b'"duration_ms": 12.5', b'"duration_ms": 1e999'),
    "10 MB line": b"x" * (10 * 1024 * 1024),
    "invalid UTF-8": good_record().replace(b"planner", b"plan\xff\xfener"),
    "lone surrogate": good_record().replace(b"planner", b"plan\\ud800ner"),
    "binary garbage": bytes(range(256)).replace(b"\n", b""),
    "NUL bytes": b"\x00" * 100,
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "missing fields": b'{"proposal_id": "p"}',
    "null record": b"null",
}


@pytest.mark.parametrize("name", sorted(BAD_LINES))
def test_bad_trajectory_line_is_skipped_and_counted(tmp_path: Path, name: str) -> None:
    TRIED["trajectory files"] += 1
    data = good_record("a") + b"\n" + BAD_LINES[name] + b"\n" + good_record("b") + b"\n"
    _, report = trajectory_pass(tmp_path, {"t.jsonl": data})
    assert report.skipped_records == 1, report.warnings
    assert report.trajectory_insights == 3  # tools a and b, source planner
    assert any("t.jsonl at byte" in w for w in report.warnings)


def test_ten_megabyte_valid_line_is_counted(tmp_path: Path) -> None:
    TRIED["trajectory files"] += 1
    rec = json.loads(good_record())
    rec["events"][0]["data"] = {"blob": "y" * (10 * 1024 * 1024)}
    _, report = trajectory_pass(tmp_path, {"big.jsonl": json.dumps(rec).encode() + b"\n"})
    assert report.skipped_records == 0 and report.trajectory_insights == 2


@pytest.mark.parametrize(
    "files",
    [{"empty.jsonl": b""}, {"blank.jsonl": b"\n\n  \n"}, {"partial.jsonl": good_record()[:30]}],
    ids=["empty", "blank lines", "partial last line"],
)
def test_empty_and_partial_files(tmp_path: Path, files: dict[str, bytes]) -> None:
    TRIED["trajectory files"] += 1
    _, report = trajectory_pass(tmp_path, files)
    assert report.skipped_records == 0 and report.trajectory_insights == 0


def test_vanishing_file_and_file_rewritten_shorter(tmp_path: Path) -> None:
    TRIED["trajectory files"] += 2
    lines = b"".join(good_record(f"t{i}") + b"\n" for i in range(5))
    store, first = trajectory_pass(tmp_path, {"a.jsonl": lines, "b.jsonl": lines})
    assert first.trajectory_insights == 6
    (tmp_path / "traj" / "a.jsonl").unlink()  # vanished between passes
    (tmp_path / "traj" / "b.jsonl").write_bytes(good_record("z") + b"\n")  # rewritten shorter
    _, second = trajectory_pass(tmp_path, {}, store)
    assert any("shorter than its watermark" in w for w in second.warnings)
    assert second.trajectory_insights == 2  # tool z and the source, read again from 0


def test_unreadable_directory_entry(tmp_path: Path) -> None:
    TRIED["trajectory files"] += 1
    (tmp_path / "traj").mkdir()
    (tmp_path / "traj" / "dir.jsonl").mkdir()  # a directory named like a file
    _, report = trajectory_pass(tmp_path, {"ok.jsonl": good_record() + b"\n"})
    assert report.trajectory_insights == 2


line_bytes = st.binary(max_size=200).map(lambda b: b.replace(b"\n", b""))
json_lines = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4)
    ),
    max_leaves=10,
).map(lambda v: json.dumps(v).encode())
mutated = st.builds(
    lambda rec, key, value: json.dumps({**rec, key: value}).encode(),
    st.just(json.loads(good_record())),
    st.sampled_from(
        [
            "proposal_id",
            "source",
            "action_count",
            "events",
            "outcome",
            "timestamp",
            "duration_ms",
            "replan_attempts",
        ]
    ),
    st.none() | st.integers() | st.floats() | st.text(max_size=10) | st.lists(st.integers()),
)


@FAST
@given(lines=st.lists(line_bytes | json_lines | mutated | st.just(good_record()), max_size=8))
def test_any_trajectory_file_completes_and_counts_skips(tmp_path: Path, lines: list[bytes]) -> None:
    TRIED["trajectory files"] += 1
    store = fresh_store()
    here = tmp_path / f"example{TRIED['trajectory files']}"  # tmp_path is shared by examples
    here.mkdir()
    expected = 0
    for raw in lines:
        if raw.strip():
            try:
                parse_line(raw + b"\n")
            except ValueError:
                expected += 1
    _, report = trajectory_pass(here, {"h.jsonl": b"".join(r + b"\n" for r in lines)}, store)
    assert report.skipped_records == expected


# -- profile files -----------------------------------------------------------------


def profiles_pass(tmp_path: Path, data: bytes) -> Any:
    path = tmp_path / "profiles.json"
    path.write_bytes(data)
    store = fresh_store()
    before = contents(store)
    config = load_config(interval_secs=60, outcome_profiles_path=path, data_dir=tmp_path)
    report = run_pass(store, config, force=True, clock=clock)
    assert report.status == "completed", report.reason
    assert_intact(store, before)
    return report


PROFILE_CORPUS: dict[str, tuple[bytes, int, int]] = {
    # name: (file, skipped, model facts written)
    "object, not a list": (b'{"model_id": "m"}', 1, 0),
    "string": (b'"models"', 1, 0),
    "null": (b"null", 1, 0),
    "truncated": (b'[{"model_id": "m"', 1, 0),
    "invalid UTF-8": (b'[{"model_id": "m\xff"}]', 1, 0),
    "NaN": (b'[{"model_id": "m", "x": NaN}]', 1, 0),
    "missing model_id": (b'[{"name": "m"}, {"model_id": "ok"}]', 1, 1),
    "model_id not a string": (b'[{"model_id": 7}, {"model_id": null}, {"model_id": "ok"}]', 2, 1),
    "empty model_id": (b'[{"model_id": "  "}]', 1, 0),
    "entry not an object": (b'[1, "two", null, {"model_id": "ok"}]', 3, 1),
    "duplicate ids": (b'[{"model_id": "m", "v": 1}, {"model_id": "m", "v": 2}]', 1, 1),
    "model_id too long": (json.dumps([{"model_id": "m" * 201}]).encode(), 1, 0),
    "lone surrogate": (b'[{"model_id": "m", "x": "\\udc00"}]', 1, 0),
    "empty file": (b"", 1, 0),
    "deep nesting": (b"[" * 100_000 + b"]" * 100_000, 1, 0),
}


@pytest.mark.parametrize("name", sorted(PROFILE_CORPUS))
def test_bad_profiles_file(tmp_path: Path, name: str) -> None:
    TRIED["profile files"] += 1
    data, skipped, written = PROFILE_CORPUS[name]
    report = profiles_pass(tmp_path, data)
    assert report.skipped_records == skipped, report.warnings
    assert report.model_insights == written


def test_huge_profiles_file(tmp_path: Path) -> None:
    TRIED["profile files"] += 1
    big = [{"model_id": f"m{i}", "notes": "n" * 5000, "score": i / 7} for i in range(400)]
    report = profiles_pass(tmp_path, json.dumps(big).encode())  # 2 MB
    assert report.model_insights == 400 and report.skipped_records == 0


@FAST
@given(
    data=json_lines
    | st.lists(
        st.dictionaries(
            st.sampled_from(["model_id", "score", "x"]),
            st.none() | st.integers() | st.text(max_size=30) | st.floats(allow_nan=False),
        ),
        max_size=6,
    ).map(lambda v: json.dumps(v).encode())
)
def test_any_profiles_file_completes(tmp_path: Path, data: bytes) -> None:
    TRIED["profile files"] += 1
    report = profiles_pass(tmp_path, data)
    assert report.skipped_records >= 0 and report.model_insights >= 0


# -- ingest calls ------------------------------------------------------------------


def node_keys(store: MemoryStore) -> dict[bytes, Any]:
    c = store.client
    return {k: c.dump(k) for k in c.scan_iter(match=store.keys.prefix + "*")}


INGEST_CORPUS: list[tuple[str, str, dict[str, Any]]] = [
    ("missing content", "fact", {"id": "x", "subject": "s"}),
    ("missing id", "fact", {"subject": "s", "content": "c"}),
    ("id not a string", "fact", {"id": 7, "subject": "s", "content": "c"}),
    ("id with a brace", "fact", {"id": "a}b", "subject": "s", "content": "c"}),
    ("id with a space", "fact", {"id": "a b", "subject": "s", "content": "c"}),
    ("id too long", "fact", {"id": "x" * 201, "subject": "s", "content": "c"}),
    ("empty content", "fact", {"id": "x", "subject": "s", "content": ""}),
    ("content not a string", "fact", {"id": "x", "subject": "s", "content": 3.5}),
    ("content too long", "fact", {"id": "x", "subject": "s", "content": "c" * 1_000_001}),
    ("tags a string", "fact", {"id": "x", "subject": "s", "content": "c", "tags": "ab"}),
    ("tags of numbers", "fact", {"id": "x", "subject": "s", "content": "c", "tags": [1]}),
    ("pinned not a bool", "fact", {"id": "x", "subject": "s", "content": "c", "pinned": "maybe"}),
    (
        "naive datetime",
        "fact",
        {"id": "x", "subject": "s", "content": "c", "timestamp": datetime(2026, 1, 1)},
    ),
    ("NaN timestamp", "fact", {"id": "x", "subject": "s", "content": "c", "timestamp": math.nan}),
    (
        "infinite timestamp",
        "fact",
        {"id": "x", "subject": "s", "content": "c", "timestamp": math.inf},
    ),
    ("huge timestamp", "fact", {"id": "x", "subject": "s", "content": "c", "timestamp": 10**400}),
    ("bool timestamp", "fact", {"id": "x", "subject": "s", "content": "c", "timestamp": True}),
    ("string timestamp", "fact", {"id": "x", "subject": "s", "content": "c", "timestamp": "now"}),
    ("unknown keyword", "fact", {"id": "x", "subject": "s", "content": "c", "colour": "red"}),
    ("self-supersession", "fact", {"id": "x", "subject": "s", "content": "c", "supersedes": "x"}),
    (
        "supersedes unknown",
        "fact",
        {"id": "x", "subject": "s", "content": "c", "supersedes": "nope"},
    ),
    (
        "supersedes a superseded node",
        "fact",
        {"id": "y", "subject": "s", "content": "c", "supersedes": "old"},
    ),
    ("rewrite a superseded node", "fact", {"id": "old", "subject": "s", "content": "again"}),
    (
        "cycle of supersession",
        "fact",
        {"id": "old", "subject": "s", "content": "c", "supersedes": "new"},
    ),
    ("kind change", "environment", {"id": "base.f", "content": "now an observation"}),
    ("expires_at NaN", "environment", {"id": "e", "content": "c", "expires_at": math.nan}),
    (
        "observed_at naive",
        "environment",
        {"id": "e", "content": "c", "observed_at": datetime(2026, 1, 1)},
    ),
    ("premises empty", "conclusion", {"id": "c", "content": "c", "premises": []}),
    ("premises a string", "conclusion", {"id": "c", "content": "c", "premises": "base.f"}),
    ("premise unknown", "conclusion", {"id": "c", "content": "c", "premises": ["base.f", "nope"]}),
    ("premise is itself", "conclusion", {"id": "c", "content": "c", "premises": ["c"]}),
    ("premise id invalid", "conclusion", {"id": "c", "content": "c", "premises": ["{x}"]}),
]


@pytest.mark.parametrize(
    ("name", "kind", "kwargs"), INGEST_CORPUS, ids=[c[0] for c in INGEST_CORPUS]
)
def test_bad_ingest_call_fails_clearly_and_writes_nothing(
    name: str, kind: str, kwargs: dict[str, Any]
) -> None:
    TRIED["ingest calls"] += 1
    store = fresh_store()
    store.ingest_fact("old", "s", "to be replaced", timestamp=NOW)
    store.ingest_fact("new", "s", "replacement", supersedes="old", timestamp=NOW)
    before, snap = contents(store), node_keys(store)
    with pytest.raises((CarDreamError, TypeError)) as info:
        getattr(store, f"ingest_{kind}")(**kwargs)
    message = str(info.value)
    assert message and len(message) < 500  # clear, and no megabyte echo of the input
    assert node_keys(store) == snap  # nothing written, not even half
    assert_intact(store, before)


ids = st.text(max_size=30) | st.from_regex(r"[A-Za-z0-9_.:@/+=-]{1,20}", fullmatch=True)


@FAST
@given(
    kind=st.sampled_from(["fact", "environment", "conclusion"]),
    node_id=ids,
    content=st.text(max_size=50),
    other=ids,
    when=st.none() | st.floats() | st.integers(min_value=-(10**20), max_value=10**20),
)
def test_any_ingest_call_succeeds_or_fails_cleanly(
    kind: str, node_id: str, content: str, other: str, when: Any
) -> None:
    TRIED["ingest calls"] += 1
    store = fresh_store()
    before, snap = contents(store), node_keys(store)
    args: dict[str, Any] = {"id": node_id, "content": content}
    if kind == "fact":
        args.update(subject="s", timestamp=when, supersedes=other or None)
    elif kind == "environment":
        args.update(observed_at=NOW, expires_at=when)
    else:
        args.update(premises=[other, "base.f"])
    try:
        getattr(store, f"ingest_{kind}")(**args)
    except CarDreamError as exc:
        assert str(exc)
        assert node_keys(store) == snap
    # Whatever happened: every key is inside the namespace, and the store is consistent.
    for key in store.client.scan_iter():
        assert key.startswith(store.keys.prefix.encode()) or key == NAMESPACES_KEY.encode()
    if node_id not in BASELINE:
        assert contents(store) == before
    assert check_store(store).ok


# -- settings ----------------------------------------------------------------------

BAD_SETTINGS: list[tuple[str, Any]] = [
    ("interval_secs", 1),
    ("interval_secs", 0),
    ("interval_secs", -60),
    ("interval_secs", "hourly"),
    ("interval_secs", "1e9999"),
    ("interval_secs", 2.5),
    ("redis_url", "http://localhost:6379"),
    ("redis_url", "redis-server"),
    ("redis_url", "ftp://user:hunter2@host/"),
    ("broker_url", "sqs://x"),
    ("broker_url", "localhost"),
    ("namespace", ""),
    ("namespace", "a b"),
    ("namespace", "a}b"),
    ("namespace", "x" * 65),
    ("namespace", "../etc"),
    ("namespace", "ns\n"),
    ("namespace", "a:b"),
    ("namespace", "*"),
    ("max_trailing", -1),
    ("max_trailing", 101),
    ("max_trailing", "many"),
    ("batch_size", 0),
    ("batch_size", -5),
    ("batch_size", 100_001),
    ("batch_size", "big"),
]


@pytest.mark.parametrize(
    ("field", "value"), BAD_SETTINGS, ids=[f"{f}={v!r}"[:40] for f, v in BAD_SETTINGS]
)
def test_bad_setting_fails_at_start_up_naming_the_variable(
    field: str, value: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    TRIED["settings"] += 1
    var = f"CAR_DREAM_{field.upper()}"
    monkeypatch.setenv(var, str(value))
    with pytest.raises(ConfigError) as info:
        load_config()
    assert var in str(info.value)
    assert "hunter2" not in str(info.value)  # a password in a bad URL is masked


@FAST
@given(
    field=st.sampled_from(["interval_secs", "max_trailing", "batch_size"]),
    value=st.integers(min_value=-(10**7), max_value=10**7) | st.text(max_size=8),
)
def test_any_numeric_setting_is_accepted_in_range_or_refused_by_name(
    field: str, value: Any
) -> None:
    TRIED["settings"] += 1
    bounds = {"interval_secs": (2, None), "max_trailing": (0, 100), "batch_size": (1, 100_000)}
    lo, hi = bounds[field]
    try:
        config = load_config(**{field: value})
    except ConfigError as exc:
        assert f"CAR_DREAM_{field.upper()}" in str(exc)
        return
    got = getattr(config, field)
    assert got >= lo and (hi is None or got <= hi)
