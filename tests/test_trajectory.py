"""Trajectory records: parsing, tallies, the streaming reader, insight texts."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from car_dream.insights import slot_id, source_insight, tool_insight
from car_dream.keys import validate_node_id
from car_dream.trajectory import (
    OUTCOMES,
    Tally,
    TrajectoryRecord,
    parse_line,
)
from car_dream.trajectory_reader import Batch, read_batches


def record(**overrides: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "proposal_id": "p-1",
        "source": "planner",
        "action_count": 2,
        "events": [
            {
                "kind": "action_succeeded",
                "action_id": "a1",
                "tool": "shell",
                "data": {"cmd": "ls"},
                "duration_ms": 12.5,
            },
            {
                "kind": "action_failed",
                "action_id": "a2",
                "tool": "http",
                "data": None,
                "duration_ms": 3,
            },
        ],
        "outcome": "success",
        "timestamp": "2024-05-01T12:30:00Z",
        "duration_ms": 15.5,
        "replan_attempts": 0,
    }
    rec.update(overrides)
    return rec


def line(rec: Any = None, **overrides: Any) -> bytes:
    return json.dumps(record(**overrides) if rec is None else rec).encode() + b"\n"


# -- parse_line -------------------------------------------------------------------


def test_parse_valid_record() -> None:
    r = parse_line(line())
    assert isinstance(r, TrajectoryRecord)
    assert (r.proposal_id, r.source, r.action_count, r.outcome) == ("p-1", "planner", 2, "success")
    assert r.timestamp.tzinfo is not None and r.timestamp.hour == 12
    assert r.duration_ms == 15.5 and r.replan_attempts == 0
    assert [(e.kind, e.action_id, e.tool) for e in r.events] == [
        ("action_succeeded", "a1", "shell"),
        ("action_failed", "a2", "http"),
    ]
    assert r.events[0].data == {"cmd": "ls"} and r.events[0].duration_ms == 12.5


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_every_outcome_accepted(outcome: str) -> None:
    assert parse_line(line(outcome=outcome)).outcome == outcome


@pytest.mark.parametrize(
    "ts", ["2024-05-01T12:30:00+02:00", "2024-05-01T12:30:00.123456-05:30", "2024-05-01T12:30:00Z"]
)
def test_rfc3339_timestamps_with_zone_accepted(ts: str) -> None:
    assert parse_line(line(timestamp=ts)).timestamp.utcoffset() is not None


def test_extra_fields_and_events_without_tool_accepted() -> None:
    r = parse_line(line(events=[{"kind": "replanned"}], extra={"x": 1}))
    assert r.events[0].tool is None


def test_line_without_newline_and_crlf_parse() -> None:
    assert parse_line(line().rstrip(b"\n")).proposal_id == "p-1"
    assert parse_line(line().rstrip(b"\n") + b"\r\n").proposal_id == "p-1"


def _without(field: str) -> bytes:
    rec = record()
    del rec[field]
    return line(rec)


REJECTED = {
    "truncated": line()[:-20],
    "empty": b"",
    "array": b"[1, 2]\n",
    "string": b'"text"\n',
    "number": b"42\n",
    "null": b"null\n",
    "two objects": line().rstrip() + line(),
    "proposal_id int": line(proposal_id=5),
    "source null": line(source=None),
    "events not list": line(events="none"),
    "event not object": line(events=[1]),
    "event without kind": line(events=[{"tool": "x"}]),
    "action_count word": line(action_count="two"),
    "action_count float": line(action_count=1.5),
    "replan_attempts list": line(replan_attempts=[]),
    "duration_ms word": line(duration_ms="slow"),
    "outcome unknown": line(outcome="maybe"),
    "outcome case": line(outcome="SUCCESS"),
    "outcome int": line(outcome=1),
    "timestamp without zone": line(timestamp="2024-05-01T12:30:00"),
    "timestamp date only": line(timestamp="2024-05-01"),
    "timestamp garbage": line(timestamp="yesterday"),
    "NaN": line().replace(b'"duration_ms": 15.5', b'"duration_ms": NaN'),
    "Infinity": line().replace(b'"duration_ms": 15.5', b'"duration_ms": Infinity'),
    "-Infinity": line().replace(b'"duration_ms": 15.5', b'"duration_ms": -Infinity'),
    "overflow to inf": line().replace(b'"duration_ms": 15.5', b'"duration_ms": 1e400'),
    "NaN in event": line().replace(b'"duration_ms": 12.5', b'"duration_ms": NaN'),
    "invalid utf-8": line(source="plXnner").replace(b"X", b"\xe4"),
    "binary": bytes(range(256)),
    "nul bytes": b"\x00\x00\x00\n",
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    **{f"missing {f}": _without(f) for f in record()},
}


@pytest.mark.parametrize("raw", REJECTED.values(), ids=list(REJECTED))
def test_malformed_lines_rejected_with_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError) as info:
        parse_line(raw)
    assert 0 < len(str(info.value)) < 300  # a short reason, not the whole line


def test_reason_names_the_bad_field() -> None:
    with pytest.raises(ValueError, match="outcome"):
        parse_line(line(outcome="maybe"))
    with pytest.raises(ValueError, match="timestamp"):
        parse_line(line(timestamp="2024-05-01T12:30:00"))
    with pytest.raises(ValueError, match="UTF-8"):
        parse_line(b"\xff\xfe\n")


@pytest.mark.parametrize("field", ["source", "tool"])
def test_lone_surrogates_rejected(field: str) -> None:
    raw = line(source="SRC", events=[{"kind": "action_succeeded", "tool": "TOOL"}])
    placeholder = {"source": b"SRC", "tool": b"TOOL"}[field]
    assert placeholder in raw
    raw = raw.replace(placeholder, b"x\\ud800")
    with pytest.raises(ValueError):
        parse_line(raw)


def test_event_duration_overflowing_to_inf_rejected() -> None:
    with pytest.raises(ValueError):
        parse_line(line().replace(b'"duration_ms": 12.5', b'"duration_ms": 1e400'))


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_ever_raise_value_error(raw: bytes) -> None:
    with contextlib.suppress(ValueError):
        parse_line(raw)


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=8,
)


@settings(max_examples=80, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(record())), json_values), st.booleans())
def test_arbitrary_json_records_only_ever_raise_value_error(
    patch: dict[str, Any], drop: bool
) -> None:
    rec = record(**patch)
    if drop and patch:
        del rec[next(iter(patch))]
    try:
        r = parse_line(json.dumps(rec).encode())
    except ValueError:
        return
    assert r.outcome in OUTCOMES
    assert r.timestamp.utcoffset() is not None


# -- Tally ------------------------------------------------------------------------


def test_tally_counts_tools_and_sources() -> None:
    ev = [
        {"kind": "action_succeeded", "tool": "shell"},
        {"kind": "action_succeeded", "tool": "shell"},
        {"kind": "action_failed", "tool": "shell"},
        {"kind": "action_failed", "tool": "http"},
        {"kind": "action_started", "tool": "shell"},  # not counted
        {"kind": "action_succeeded"},  # no tool: not counted
        {"kind": "action_succeeded", "tool": ""},  # empty tool: not counted
    ]
    records = [
        parse_line(line(events=ev, source="planner", outcome="success")),
        parse_line(line(events=[], source="planner", outcome="failed")),
        parse_line(line(events=[], source="planner", outcome="success")),
        parse_line(line(events=ev[:1], source="cron", outcome="replan_exhausted")),
    ]
    t = Tally()
    for r in records:
        t.add(r)
    assert dict(t.tools["shell"]) == {"success": 3, "failure": 1}
    assert dict(t.tools["http"]) == {"failure": 1}
    assert set(t.tools) == {"shell", "http"}
    assert dict(t.sources["planner"]) == {"success": 2, "failed": 1}
    assert dict(t.sources["cron"]) == {"replan_exhausted": 1}
    assert t


def test_empty_tally_is_falsy() -> None:
    assert not Tally()


# -- read_batches -----------------------------------------------------------------


def read_all(directory: Path, offsets: dict[str, int] | None = None, size: int = 100) -> list:
    return list(read_batches(directory, offsets or {}, size))


def batches(items: list) -> list[Batch]:
    assert all(isinstance(i, Batch) for i in items), items
    return items


def test_empty_and_missing_directory(tmp_path: Path) -> None:
    assert read_all(tmp_path) == []
    [warning] = read_all(tmp_path / "absent")
    assert "not a directory" in warning


def test_only_jsonl_files_are_read(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_bytes(line())
    (tmp_path / "b.txt").write_bytes(line())
    (tmp_path / "dir.jsonl").mkdir()
    (tmp_path / "c.jsonl").write_bytes(line())
    got = batches(read_all(tmp_path))
    assert [(b.file, b.records) for b in got] == [("c.jsonl", 1)]


def test_reads_every_complete_line_once_with_offsets(tmp_path: Path) -> None:
    lines = [line(proposal_id=f"p{i}", source=f"s{i}") for i in range(3)]
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"".join(lines))
    (b,) = batches(read_all(tmp_path))
    assert (b.file, b.records, b.end_offset, b.skipped) == ("t.jsonl", 3, path.stat().st_size, [])
    assert set(b.tally.sources) == {"s0", "s1", "s2"}
    # From the first line's end, only the other two.
    (b,) = batches(read_all(tmp_path, {"t.jsonl": len(lines[0])}))
    assert b.records == 2 and set(b.tally.sources) == {"s1", "s2"}
    # At the end: nothing at all.
    assert read_all(tmp_path, {"t.jsonl": path.stat().st_size}) == []


def test_batches_of_batch_size(tmp_path: Path) -> None:
    lines = [line(proposal_id=f"p{i}") for i in range(5)]
    (tmp_path / "t.jsonl").write_bytes(b"".join(lines))
    got = batches(read_all(tmp_path, size=2))
    assert [b.records for b in got] == [2, 2, 1]
    ends, total = [], 0
    for i, raw in enumerate(lines):
        total += len(raw)
        if i % 2 == 1 or i == 4:
            ends.append(total)
    assert [b.end_offset for b in got] == ends
    assert [sum(b.tally.tools["shell"].values()) for b in got] == [2, 2, 1]


def test_final_line_without_newline_is_left_for_later(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    full = line(proposal_id="p0") + line(proposal_id="p1")
    partial = line(proposal_id="p2", source="late")
    path.write_bytes(full + partial[:30])
    (b,) = batches(read_all(tmp_path))
    assert b.records == 2 and b.end_offset == len(full) and b.skipped == []
    # The writer finishes the line: the next read picks it up from the watermark.
    with path.open("ab") as fh:
        fh.write(partial[30:])
    (b,) = batches(read_all(tmp_path, {"t.jsonl": len(full)}))
    assert b.records == 1 and set(b.tally.sources) == {"late"}
    assert b.end_offset == len(full) + len(partial)


def test_only_a_partial_line_yields_nothing(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_bytes(line()[:-1])
    assert read_all(tmp_path) == []


def test_file_shorter_than_its_watermark_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(line(source="new"))
    got = read_all(tmp_path, {"t.jsonl": 10_000})
    assert isinstance(got[0], str)
    assert "t.jsonl" in got[0] and "shorter" in got[0]
    (b,) = batches(got[1:])
    assert b.records == 1 and set(b.tally.sources) == {"new"}
    assert b.end_offset == path.stat().st_size


def test_blank_lines_are_skipped_silently(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\n" + line() + b"   \n\r\n\t\n" + line() + b"\n")
    (b,) = batches(read_all(tmp_path))
    assert b.records == 2 and b.skipped == []
    assert b.end_offset == path.stat().st_size


def test_only_blank_lines_still_advance_the_watermark(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_bytes(b"\n\n\n")
    (b,) = batches(read_all(tmp_path))
    assert (b.records, b.end_offset, b.skipped) == (0, 3, [])


def test_malformed_lines_are_skipped_and_named_with_their_byte_offset(tmp_path: Path) -> None:
    first, bad, last = line(), b'{"proposal_id": "oops"\n', line(outcome="failed")
    (tmp_path / "t.jsonl").write_bytes(first + bad + last + b"\xff\xfe\n")
    (b,) = batches(read_all(tmp_path))
    assert b.records == 2
    assert len(b.skipped) == 2
    assert b.skipped[0].startswith(f"t.jsonl at byte {len(first)}: ")
    assert b.skipped[1].startswith(f"t.jsonl at byte {len(first + bad + last)}: ")
    assert "UTF-8" in b.skipped[1]
    assert dict(b.tally.sources["planner"]) == {"success": 1, "failed": 1}


def test_byte_offsets_are_absolute_when_starting_mid_file(tmp_path: Path) -> None:
    first, bad = line(), b"garbage\n"
    (tmp_path / "t.jsonl").write_bytes(first + bad)
    (b,) = batches(read_all(tmp_path, {"t.jsonl": len(first)}))
    assert b.records == 0 and b.skipped[0].startswith(f"t.jsonl at byte {len(first)}: ")


def test_files_are_read_in_name_order_each_with_its_own_offset(tmp_path: Path) -> None:
    (tmp_path / "b.jsonl").write_bytes(line(source="b") * 2)
    (tmp_path / "a.jsonl").write_bytes(line(source="a") * 3)
    got = batches(read_all(tmp_path, {"a.jsonl": len(line(source="a"))}))
    assert [(b.file, b.records) for b in got] == [("a.jsonl", 2), ("b.jsonl", 2)]
    assert set(got[0].tally.sources) == {"a"} and set(got[1].tally.sources) == {"b"}


def test_feeding_offsets_back_reads_each_record_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    offsets: dict[str, int] = {}
    seen = 0
    for round_ in range(4):
        with path.open("ab") as fh:
            fh.write(b"".join(line(proposal_id=f"{round_}-{i}") for i in range(3)))
            fh.write(b"\n")
        for item in read_batches(tmp_path, offsets, 2):
            assert isinstance(item, Batch)
            seen += item.records
            offsets[item.file] = item.end_offset
    assert seen == 12
    assert offsets["t.jsonl"] == path.stat().st_size
    assert read_all(tmp_path, offsets) == []


# -- insight texts and slots ------------------------------------------------------


def test_tool_insight_contains_the_figures() -> None:
    text = tool_insight("shell", {"success": 3, "failure": 1})
    assert "'shell'" in text
    assert "3 of 4" in text
    assert "75.0%" in text
    assert "1 failed" in text


def test_tool_insight_without_actions() -> None:
    text = tool_insight("idle", {})
    assert "0 of 0" in text and "0.0%" in text


def test_source_insight_contains_the_figures() -> None:
    counts = {"success": 5, "failed": 2, "replan_success": 1, "replan_exhausted": 2}
    text = source_insight("planner", counts)
    assert "'planner'" in text
    for outcome, n in counts.items():
        assert f"{outcome} {n}" in text
    assert "10 in all" in text
    assert "60.0%" in text  # (success + replan_success) / total


def test_source_insight_lists_missing_outcomes_as_zero() -> None:
    text = source_insight("s", {"failed": 4})
    assert "success 0" in text and "failed 4" in text and "0.0%" in text


def test_insight_texts_change_with_the_figures() -> None:
    assert tool_insight("t", {"success": 1}) != tool_insight("t", {"success": 2})
    assert source_insight("s", {"failed": 1}) != source_insight("s", {"failed": 2})


@pytest.mark.parametrize("name", ["shell", "has space", "{brace}", "ünïcødé", "", "x" * 1000])
def test_slot_id_is_stable_and_key_safe(name: str) -> None:
    sid = slot_id("tool", name)
    assert sid == slot_id("tool", name)
    assert validate_node_id(sid) == sid
    assert sid.startswith("dream.tool.")


def test_slot_id_differs_by_kind_and_name() -> None:
    ids = {slot_id(k, n) for k in ("tool", "source", "model") for n in ("a", "b", "A")}
    assert len(ids) == 9


def test_slot_id_is_pinned() -> None:
    # Stored insight ids depend on it: it must not change between releases.
    assert slot_id("tool", "shell") == "dream.tool.ec122f54cf16a175"  # sha1("shell")[:16]


@given(st.text())
def test_slot_id_is_always_a_valid_node_id(name: str) -> None:
    assert validate_node_id(slot_id("source", name))
