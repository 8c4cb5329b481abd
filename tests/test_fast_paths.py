"""The fast paths the benchmark asked for agree with the slow ones they replace.

- ``parse_counts`` (hand-checked plain records) accepts and counts exactly what
  ``parse_line`` (pydantic) does, and rejects what it rejects, with its message: on
  hand-picked cases and on any input hypothesis makes;
- an idle pass costs a handful of round trips whatever the store holds.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import fakeredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from car_dream.config import load_config
from car_dream.consolidate import run_pass
from car_dream.store import MemoryStore
from car_dream.trajectory import COUNTED_EVENTS, OUTCOMES, parse_counts, parse_line

BASE: dict[str, Any] = {
    "proposal_id": "p-1",
    "source": "agent-a",
    "action_count": 2,
    "events": [
        {
            "kind": "action_succeeded",
            "action_id": "a1",
            "tool": "search",
            "data": None,
            "duration_ms": 12.5,
        },
        {
            "kind": "action_failed",
            "action_id": "a2",
            "tool": "shell",
            "data": {"x": 1},
            "duration_ms": 3,
        },
        {"kind": "replanned"},
    ],
    "outcome": "replan_success",
    "timestamp": "2025-03-01T10:00:00.123Z",
    "duration_ms": 250.0,
    "replan_attempts": 1,
}


def variant(**changes: Any) -> bytes:
    obj = json.loads(json.dumps(BASE))
    for key, value in changes.items():
        if value is KeyError:
            obj.pop(key)
        else:
            obj[key] = value
    return (json.dumps(obj) + "\n").encode()


def event_variant(**changes: Any) -> bytes:
    events = [dict(BASE["events"][0], **changes)]
    return variant(events=events)


CASES = [
    variant(),
    variant(outcome="success"),
    variant(outcome="bogus"),
    variant(outcome=1),
    variant(source=7),
    variant(proposal_id=None),
    variant(action_count="2"),
    variant(action_count=2.0),
    variant(action_count=True),
    variant(action_count=2**70),
    variant(replan_attempts=-1),
    variant(duration_ms=1),
    variant(duration_ms="1.5"),
    variant(duration_ms=False),
    variant(duration_ms=10**400 // 10**399),
    variant(timestamp="2025-03-01T10:00:00"),
    variant(timestamp="2025-03-01 10:00:00Z"),
    variant(timestamp="2025-13-01T10:00:00Z"),
    variant(timestamp="2025-03-01T10:00:00+05:30"),
    variant(timestamp="2025-03-01T10:00:00.1234567Z"),
    variant(timestamp=1700000000),
    variant(events=[]),
    variant(events={}),
    variant(events=["x"]),
    variant(source=KeyError),
    variant(events=KeyError),
    event_variant(kind=None),
    event_variant(tool=None),
    event_variant(tool=3),
    event_variant(tool=""),
    event_variant(action_id=5),
    event_variant(duration_ms="x"),
    event_variant(duration_ms=True),
    b'{"proposal_id": "p", "source": "s", "action_count": 1, "events": [], "outcome": '
    b'"success", "timestamp": "2025-03-01T10:00:00Z", "duration_ms": NaN, '
    b'"replan_attempts": 0}\n',
    b'{"proposal_id": "p\\u00e9", "source": "s", "action_count": 1, "events": [], "outcome": '
    b'"success", "timestamp": "2025-03-01T10:00:00Z", "duration_ms": 1, "replan_attempts": 0}\n',
    b"[1, 2]\n",
    b"not json\n",
    # The scanner is called directly: the whitespace around the object must be judged
    # as JSONDecoder.decode judges it (only space, tab, CR, LF; nothing after it).
    b" " + variant(),
    b"\t" + variant(),
    variant().rstrip(b"\n") + b" \t\r\n",
    variant().rstrip(b"\n") + b"\x0c\n",
    variant().rstrip(b"\n") + b"\xc2\xa0\n",
    variant().rstrip(b"\n") + b" {}\n",
    variant().rstrip(b"\n") + b"x\n",
    variant().rstrip(b"\n"),
    b'"a string"\n',
    b"{}\n",
    b"\xff\xfe\n",
]


def slow(raw: bytes) -> tuple[str, str, list[tuple[str, str]]] | str:
    try:
        r = parse_line(raw)
    except ValueError as exc:
        return str(exc)
    counted = [
        (e.tool, COUNTED_EVENTS[e.kind]) for e in r.events if e.tool and e.kind in COUNTED_EVENTS
    ]
    return r.source, r.outcome, counted


def fast(raw: bytes) -> tuple[str, str, list[tuple[str, str]]] | str:
    try:
        return parse_counts(raw)
    except ValueError as exc:
        return str(exc)


@pytest.mark.parametrize("raw", CASES, ids=range(len(CASES)))
def test_parse_counts_agrees_with_parse_line(raw: bytes) -> None:
    assert fast(raw) == slow(raw)


# -- any input: plain records with a field or two changed, then any JSON, any bytes --------

# Every type JSON has, at the edges the fast path checks by hand (int64, finite floats;
# json.dumps writes NaN and Infinity, an overflow such as 1e999 is among the CASES).
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**65), 2**65)
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from([[], {}, ["x"], {"kind": 1}])
)
any_json = st.recursive(
    scalars,
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3)
    ),
    max_leaves=8,
)
numbers = st.floats() | st.integers(-(2**64), 2**64)
texts = st.text(max_size=6) | st.sampled_from(["", "\u00e9t\u00e9", "\ud800", "\U0001f600"])
odd_timestamps = st.sampled_from(
    [
        "2025-03-01T10:00:00Z",
        "2025-03-01T10:00:00.5+01:00",
        "2025-03-01T10:00:00",
        "2025-02-30T10:00:00Z",
        "2025-03-01t10:00:00z",
        "2025-03-01T10:00:00.1234567Z",
        "2025-03-01 10:00:00Z",
        "2025-03-01T10:00:00+24:00",
        "\uff12025-03-01T10:00:00Z",
    ]
)
zones = st.sampled_from(["Z", "-00:30", ""])
timestamps = odd_timestamps | st.builds(lambda d, z: d.isoformat() + z, st.datetimes(), zones)
# Values of the right type for each field (valid or nearly), besides any scalar at all.
RIGHT_TYPE = {
    "proposal_id": texts,
    "source": texts,
    "action_id": texts,
    "tool": texts,
    "kind": st.sampled_from([*COUNTED_EVENTS, "replanned", ""]) | texts,
    "outcome": st.sampled_from([*OUTCOMES, "Success", ""]),
    "timestamp": timestamps,
    "action_count": numbers,
    "replan_attempts": numbers,
    "duration_ms": numbers,
    "data": any_json,
    # Copies: a later change to an event must not change BASE for the next example.
    "events": st.lists(st.sampled_from(BASE["events"]).map(copy.deepcopy), max_size=3),
}
EVENT_KEYS = (*BASE["events"][0], "extra")
PATHS = [(key,) for key in BASE] + [
    ("events", i, key) for i in range(len(BASE["events"])) for key in EVENT_KEYS
]


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    """BASE with one path changed (sometimes two): dropped, or given a value of the
    right type, or any scalar; so each of the fast path's checks meets a record whose
    every other field is right."""
    obj = json.loads(json.dumps(BASE))
    for path in draw(st.lists(st.sampled_from(PATHS), min_size=1, max_size=2)):
        *parents, key = path
        into: Any = obj
        for step in parents:  # a change before may have replaced or dropped a parent
            if isinstance(into, dict):
                into = into.get(step)
            elif isinstance(into, list) and step < len(into):
                into = into[step]
            else:
                into = None
        if not isinstance(into, dict):
            continue
        if draw(st.integers(0, 5)) == 0:
            into.pop(key, None)
        else:
            into[key] = draw(RIGHT_TYPE.get(key, st.nothing()) | scalars)
    return obj


@st.composite
def lines(draw: st.DrawFn) -> bytes:
    obj = draw(records() | records() | records() | any_json)
    text = json.dumps(
        obj,
        ensure_ascii=draw(st.booleans()),
        indent=draw(st.none() | st.sampled_from([0, 2, "\t"])),
        separators=draw(st.none() | st.sampled_from([(",", ":"), (" ,", " : ")])),
    )
    ws = st.sampled_from(["", " ", "\t", " \r\n", "\x0b", "\x0c", "\xa0", "\u2028"])
    if draw(st.integers(0, 3)) == 0:  # whitespace around it, JSON's own or not
        text = draw(ws) + text + draw(ws)
    raw = text.encode("utf-8", "surrogatepass")  # a lone surrogate stays: not UTF-8
    if draw(st.integers(0, 3)) == 0:  # broken JSON: cut short, or a byte put in
        cut = draw(st.integers(0, len(raw)))
        insert = draw(st.sampled_from([b"", b",", b"}", b'"', b"\xff", b"\\u", b"NaN"]))
        raw = raw[:cut] + insert + raw[cut + draw(st.integers(0, 2)) :]
    return raw + draw(st.sampled_from([b"\n", b"\r\n", b""]))


@settings(max_examples=2000, deadline=None)
@given(raw=lines() | st.binary(max_size=80))
def test_parse_counts_agrees_with_parse_line_on_any_input(raw: bytes) -> None:
    assert fast(raw) == slow(raw)


def test_idle_pass_round_trips_do_not_grow_with_the_store(tmp_path: Any) -> None:
    """The same number of commands for an idle pass over 10 and over 2,000 nodes."""
    sent: list[int] = []
    for size in (10, 2000):
        client = fakeredis.FakeRedis()
        store = MemoryStore(client, "idle")
        for i in range(size):
            store.ingest_fact(f"f{i}", "s", f"fact {i}", timestamp=datetime(2025, 1, 1, tzinfo=UTC))
        config = load_config(interval_secs=60, data_dir=tmp_path)
        assert run_pass(store, config).nodes_embedded == size
        calls = [0]

        def counting(
            *args: Any, _send: Any = client.execute_command, _n: list[int] = calls, **kwargs: Any
        ) -> Any:
            _n[0] += 1
            return _send(*args, **kwargs)

        client.execute_command = counting  # type: ignore[method-assign]
        report = run_pass(store, config, force=True)
        assert report.status == "completed" and not report.did_work
        sent.append(calls[0])
    assert sent[0] == sent[1] and sent[0] <= 6, sent
