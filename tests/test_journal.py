"""The journal on a real Redis: every node a pass removes or supersedes has one entry,
written in the same script as the change, with the node as it was."""

from __future__ import annotations

from typing import Any

import pytest

from car_dream.config import DreamConfig, load_config
from car_dream.consolidate import run_pass
from car_dream.journal import JournalEntry, entries
from car_dream.lock import request_cancel
from car_dream.pipeline import PassContext
from car_dream.steps.prune import Prune
from car_dream.store import MemoryStore

NOW = 1_800_000_000.0


def at(t: float) -> Any:
    return lambda: t


def journal_of(store: MemoryStore, **kw: Any) -> list[JournalEntry]:
    return list(entries(store.client, store.keys, **kw))


def test_every_removal_and_invalidation_is_journaled_with_the_node_as_it_was(
    real_store: MemoryStore, config: DreamConfig
) -> None:
    s = real_store
    s.ingest_environment("door", "the door is open", observed_at=NOW, expires_at=NOW + 10)
    s.ingest_fact("old", "car", "the car is red", tags=["colour"])
    s.ingest_conclusion("c", "the door lets the cat out", premises=["door"])
    first = run_pass(s, config, force=True, clock=at(NOW))  # embeds all three
    assert first.nodes_embedded == 3 and journal_of(s) == []
    s.ingest_fact("new", "car", "the car is blue", supersedes="old")
    report = run_pass(s, config, force=True, clock=at(NOW + 20))
    assert (report.expired_pruned, report.conclusions_invalidated, report.superseded_gc) == (
        1,
        1,
        2,
    )
    got = journal_of(s)
    assert {e.pass_id for e in got} == {report.pass_id}
    # Newest first: the collect step's entries after the invalidation after the prune.
    assert [e.step for e in got][::-1][:2] == ["prune", "invalidate"]
    by = {(e.step, e.node): e for e in got}
    assert set(by) == {("prune", "door"), ("invalidate", "c"), ("collect", "c"), ("collect", "old")}
    door = by["prune", "door"]
    assert door.reason == f"expired at {NOW + 10:.0f}"
    assert door.fields["content"] == "the door is open" and door.fields["kind"] == "environment"
    assert float(door.fields["expires_at"]) == NOW + 10 and "written_at" in door.fields
    assert "emb" not in door.fields and "emb_model" not in door.fields  # not the vector
    assert door.deps == ["c"]  # the conclusion that cited it
    inval = by["invalidate", "c"]
    assert inval.reason == "premise door removed" and "superseded_by" not in inval.fields
    assert by["collect", "c"].reason == "invalidated: premise door removed"
    assert by["collect", "c"].fields["premises"] == '["door"]'
    old = by["collect", "old"]
    assert old.reason == "superseded by new" and old.fields["tags"] == '["colour"]'
    assert old.fields["superseded_by"] == "new"
    # Filters: by node, by pass.
    assert [e.step for e in journal_of(s, node="c")] == ["collect", "invalidate"]
    assert journal_of(s, pass_id="nope") == []


def test_a_pass_stopped_between_batches_journals_exactly_what_it_removed(
    real_store: MemoryStore, tmp_path: Any
) -> None:
    s = real_store
    config = load_config(interval_secs=60, batch_size=5, data_dir=tmp_path)
    for i in range(30):
        s.ingest_environment(f"e{i}", f"obs {i}", expires_at=NOW - 100 + i)

    class OneBatchThenCancel:
        name = "prune"

        def due(self, ctx: PassContext) -> bool:
            return True

        def run(self, ctx: PassContext) -> None:
            retention = ctx.config.journal_retention_secs
            ctx.fenced(s.scripts.prune, repr(NOW), 5, ctx.report.pass_id, retention)
            request_cancel(s.client, s.keys, 60)
            Prune().run(ctx)  # refused by the fence of its first batch

    report = run_pass(s, config, force=True, clock=at(NOW), steps=(OneBatchThenCancel(),))
    assert report.status == "cancelled"
    gone = {f"e{i}" for i in range(30) if s.get(f"e{i}") is None}
    journaled = [e.node for e in journal_of(s)]
    assert len(gone) == 5 and sorted(journaled) == sorted(gone)


def test_old_entries_are_trimmed_by_the_next_pass_that_journals(
    real_store: MemoryStore, tmp_path: Any
) -> None:
    s = real_store
    config = load_config(interval_secs=60, journal_retention_secs=3600, data_dir=tmp_path)
    s.client.xadd(s.keys.journal, {"pass": "ancient", "step": "prune", "node": "x"}, id="1000-0")
    s.ingest_environment("e", "obs", expires_at=NOW - 1)
    report = run_pass(s, config, force=True, clock=at(NOW))
    assert [e.pass_id for e in journal_of(s)] == [report.pass_id]


@pytest.mark.parametrize("bad", ["{}", "[]"])
def test_an_empty_lua_table_reads_as_empty(bad: str) -> None:
    e = JournalEntry.from_stream(b"5-0", {b"fields": bad.encode(), b"deps": bad.encode()})
    assert e.fields == {} and e.deps == [] and e.at == 0.005
