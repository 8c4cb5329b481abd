"""One pass, step by step, on fakeredis and on a real Redis server."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from car_dream.config import DreamConfig, load_config
from car_dream.consolidate import run_pass
from car_dream.embedder import HashingEmbedder
from car_dream.store import MemoryStore

NOW = 1_800_000_000.0


def clock() -> float:
    return NOW


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest) -> MemoryStore:
    return request.getfixturevalue("fake_store" if request.param == "fake" else "real_store")


def force_pass(store: MemoryStore, config: DreamConfig, **kw: Any) -> Any:
    report = run_pass(store, config, force=True, clock=kw.pop("clock", clock), **kw)
    assert report.status == "completed", report.reason
    return report


def keys_of(store: MemoryStore) -> set[bytes]:
    return set(store.client.scan_iter(match=f"{store.keys.prefix}*"))


def record(
    tool_results: list[tuple[str, bool]], outcome: str = "success", source: str = "planner"
) -> str:
    events = [
        {
            "kind": "action_succeeded" if ok else "action_failed",
            "action_id": f"a{i}",
            "tool": tool,
            "data": {},
            "duration_ms": 3,
        }
        for i, (tool, ok) in enumerate(tool_results)
    ]
    return json.dumps(
        {
            "proposal_id": "p1",
            "source": source,
            "action_count": len(events),
            "events": events,
            "outcome": outcome,
            "timestamp": "2026-11-26T08:00:00Z",
            "duration_ms": 12.5,
            "replan_attempts": 0,
        }
    )


# -- expiry ----------------------------------------------------------------------


def test_prunes_only_expired_environment_nodes(store: MemoryStore, config: DreamConfig) -> None:
    store.ingest_environment("old", "door open", observed_at=NOW - 100, expires_at=NOW - 1)
    store.ingest_environment("fresh", "door shut", observed_at=NOW, expires_at=NOW + 60)
    store.ingest_environment("forever", "sky blue", observed_at=NOW)
    report = force_pass(store, config)
    assert report.expired_pruned == 1
    assert store.get("old") is None
    assert store.get("fresh") is not None and store.get("forever") is not None
    assert report.total_nodes == 2


def test_refreshed_observation_survives(store: MemoryStore, config: DreamConfig) -> None:
    store.ingest_environment("temp", "21C", expires_at=NOW - 1)
    store.ingest_environment("temp", "22C", expires_at=NOW + 30)  # refreshed before the pass
    assert force_pass(store, config).expired_pruned == 0
    assert store.get("temp").content == "22C"  # type: ignore[union-attr]


def test_prune_works_in_batches(store: MemoryStore, tmp_path: Path) -> None:
    config = load_config(interval_secs=60, batch_size=7, data_dir=tmp_path)
    for i in range(50):
        store.ingest_environment(f"e{i}", f"obs {i}", expires_at=NOW - i - 1)
    report = force_pass(store, config)
    assert report.expired_pruned == 50
    assert store.count() == 0
    assert keys_of(store) <= {
        store.keys.lock.encode(),
        store.keys.meta.encode(),
        store.keys.reports.encode(),
        store.keys.totals.encode(),
        store.keys.journal.encode(),  # what was pruned, one entry each
    }
    assert store.client.xlen(store.keys.journal) == 50


# -- supersession, GC, cascade ---------------------------------------------------


def test_superseded_nodes_are_collected(store: MemoryStore, config: DreamConfig) -> None:
    store.ingest_fact("v1", "capital", "Bonn")
    store.ingest_fact("v2", "capital", "Berlin", supersedes="v1")
    report = force_pass(store, config)
    assert report.superseded_gc == 1
    assert store.get("v1") is None
    assert store.get("v2").supersedes == "v1"  # type: ignore[union-attr]


def test_pinned_nodes_are_never_collected(store: MemoryStore, config: DreamConfig) -> None:
    store.ingest_fact("law", "physics", "F = ma", pinned=True)
    store.ingest_fact("law2", "physics", "F = dp/dt", supersedes="law")
    report = force_pass(store, config)
    assert report.superseded_gc == 0
    node = store.get("law")
    assert node is not None and node.superseded and node.pinned


def test_cascade_invalidation(store: MemoryStore, config: DreamConfig) -> None:
    store.ingest_fact("f1", "weather", "it rains")
    store.ingest_fact("f2", "plans", "picnic at noon")
    store.ingest_conclusion("c1", "take an umbrella", premises=["f1"])
    store.ingest_conclusion("c2", "picnic will be wet", premises=["c1", "f2"])
    store.ingest_conclusion("c3", "picnic is on", premises=["f2"])
    store.ingest_fact("f1b", "weather", "it is sunny", supersedes="f1")
    report = force_pass(store, config)
    assert report.conclusions_invalidated == 2
    assert report.superseded_gc == 3  # f1, c1, c2
    assert store.get("c1") is None and store.get("c2") is None
    assert store.get("c3") is not None
    assert not store.client.exists(store.keys.dependents("f1"))


def test_removed_premise_invalidates(store: MemoryStore, config: DreamConfig) -> None:
    store.ingest_environment("door", "open", expires_at=NOW - 1)
    store.ingest_conclusion("c", "the cat may escape", premises=["door"])
    report = force_pass(store, config)
    assert (report.expired_pruned, report.conclusions_invalidated, report.superseded_gc) == (
        1,
        1,
        1,
    )
    assert store.count() == 0


def test_conclusion_on_already_superseded_premise(store: MemoryStore, config: DreamConfig) -> None:
    store.ingest_fact("a", "s", "one")
    store.ingest_fact("b", "s", "two", supersedes="a")
    store.ingest_conclusion("c", "from one", premises=["a"])
    report = force_pass(store, config)
    assert report.conclusions_invalidated == 1
    assert store.get("c") is None


# -- embeddings ------------------------------------------------------------------


def test_embeds_missing_nodes(store: MemoryStore, config: DreamConfig) -> None:
    for i in range(5):
        store.ingest_fact(f"f{i}", "s", f"fact number {i}")
    report = force_pass(store, config)
    assert report.nodes_embedded == 5
    assert report.embedding_coverage == 1.0
    model, vec = store.embedding("f3")  # type: ignore[misc]
    assert model == HashingEmbedder().model_id
    np.testing.assert_allclose(vec, HashingEmbedder().embed(["fact number 3"])[0])
    assert force_pass(store, config).nodes_embedded == 0


class OtherEmbedder:
    model_id = "other-8"

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.ones((len(texts), 8), dtype=np.float32)


def test_model_change_reembeds_everything(store: MemoryStore, config: DreamConfig) -> None:
    for i in range(3):
        store.ingest_fact(f"f{i}", "s", f"text {i}")
    force_pass(store, config)
    report = force_pass(store, config, embedder=OtherEmbedder())
    assert report.nodes_embedded == 3
    assert store.embedding("f0")[0] == "other-8"  # type: ignore[index]


def test_coverage_is_one_when_empty(store: MemoryStore, config: DreamConfig) -> None:
    report = force_pass(store, config)
    assert report.total_nodes == 0 and report.embedding_coverage == 1.0
    assert not report.did_work


def test_embeddings_file_is_written_atomically(store: MemoryStore, tmp_path: Path) -> None:
    path = tmp_path / "emb" / "vectors.npz"
    config = load_config(interval_secs=60, embeddings_path=path, data_dir=tmp_path)
    store.ingest_fact("a", "s", "alpha")
    store.ingest_fact("b", "s", "beta")
    force_pass(store, config)
    with np.load(path) as data:
        assert sorted(data["ids"].tolist()) == ["a", "b"]
        assert data["vectors"].shape == (2, 256)
        assert str(data["model_id"]) == HashingEmbedder().model_id
    assert [p.name for p in path.parent.iterdir()] == ["vectors.npz"]  # no temp left


def test_embeddings_file_failure_is_a_warning(store: MemoryStore, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    config = load_config(interval_secs=60, embeddings_path=blocker / "v.npz", data_dir=tmp_path)
    store.ingest_fact("a", "s", "alpha")
    report = force_pass(store, config)
    assert report.nodes_embedded == 1
    assert any("embeddings not persisted" in w for w in report.warnings)


# -- trajectories ----------------------------------------------------------------


def traj_config(tmp_path: Path, **kw: Any) -> DreamConfig:
    (tmp_path / "traj").mkdir(exist_ok=True)
    return load_config(interval_secs=60, trajectory_dir=tmp_path / "traj", data_dir=tmp_path, **kw)


def test_trajectory_insights_and_watermark(store: MemoryStore, tmp_path: Path) -> None:
    config = traj_config(tmp_path)
    log = tmp_path / "traj" / "run.jsonl"
    log.write_text(
        record([("search", True), ("search", False), ("shell", True)])
        + "\n"
        + record([("search", True)], outcome="failed")
        + "\n"
    )
    report = force_pass(store, config)
    assert report.trajectory_insights == 3  # search, shell, planner
    facts = {n.subject: n for n in store.iter_nodes("fact")}
    assert "succeeded in 2 of 3" in facts["tool:search"].content
    assert "success 1, failed 1" in facts["source:planner"].content
    # Read once: a second pass finds nothing new and writes nothing.
    again = force_pass(store, config)
    assert again.trajectory_insights == 0
    # Appended records update (supersede) only the insights whose figures changed.
    with log.open("a") as fh:
        fh.write(record([("shell", False)]) + "\n")
    third = force_pass(store, config)
    assert third.trajectory_insights == 2  # shell, planner
    assert third.superseded_gc == 2
    facts = {n.subject: n for n in store.iter_nodes("fact")}
    assert "succeeded in 1 of 2" in facts["tool:shell"].content
    assert len(facts) == 3 and not any(n.superseded for n in facts.values())


def test_partial_last_line_waits_for_its_newline(store: MemoryStore, tmp_path: Path) -> None:
    config = traj_config(tmp_path)
    log = tmp_path / "traj" / "run.jsonl"
    full, half = record([("a", True)]), record([("b", True)])
    log.write_text(full + "\n" + half[:20])
    assert force_pass(store, config).trajectory_insights == 2
    with log.open("a") as fh:
        fh.write(half[20:] + "\n")
    report = force_pass(store, config)
    assert report.skipped_records == 0
    assert report.trajectory_insights == 2  # tool b and the source


def test_malformed_records_are_skipped_and_counted(store: MemoryStore, tmp_path: Path) -> None:
    config = traj_config(tmp_path)
    lines = [
        record([("ok", True)]),
        "{not json",
        json.dumps({"source": "x"}),
        record([("ok", True)], outcome="exploded"),
        record([("ok", True)]).replace("08:00:00Z", "08:00:00"),
        "[1, 2]",
    ]
    (tmp_path / "traj" / "bad.jsonl").write_bytes("\n".join(lines).encode() + b"\n\xff\xfe\n")
    report = force_pass(store, config)
    assert report.status == "completed"
    assert report.skipped_records == 6
    assert len(report.warnings) == 6 and all("bad.jsonl at byte" in w for w in report.warnings)
    assert report.trajectory_insights == 2


def test_file_rewritten_shorter_is_read_again(store: MemoryStore, tmp_path: Path) -> None:
    config = traj_config(tmp_path)
    log = tmp_path / "traj" / "run.jsonl"
    log.write_text(record([("a", True)] * 5) + "\n" + record([("a", True)]) + "\n")
    force_pass(store, config)
    log.write_text(record([("z", True)]) + "\n")
    report = force_pass(store, config)
    assert any("shorter than its watermark" in w for w in report.warnings)
    assert any(n.subject == "tool:z" for n in store.iter_nodes("fact"))


def test_trajectories_in_small_batches_match_one_batch(tmp_path: Path, fake: Any) -> None:
    lines = [record([(f"t{i % 3}", i % 4 != 0)], source=f"s{i % 2}") for i in range(40)]
    texts = []
    for batch in (3, 500):
        store = MemoryStore(fake, f"b{batch}")
        config = traj_config(tmp_path, batch_size=batch)
        (tmp_path / "traj" / "run.jsonl").write_text("\n".join(lines) + "\n")
        report = force_pass(store, config)
        assert report.trajectory_insights == 5
        texts.append(sorted(n.content for n in store.iter_nodes("fact")))
    assert texts[0] == texts[1]


# -- model profiles --------------------------------------------------------------


def test_profiles_become_facts_when_changed(store: MemoryStore, tmp_path: Path) -> None:
    path = tmp_path / "profiles.json"
    config = load_config(interval_secs=60, outcome_profiles_path=path, data_dir=tmp_path)
    profiles = [{"model_id": "m-small", "success_rate": 0.8}, {"model_id": "m-big", "calls": 3}]
    path.write_text(json.dumps(profiles))
    assert force_pass(store, config).model_insights == 2
    assert force_pass(store, config).model_insights == 0
    profiles[0]["success_rate"] = 0.9
    path.write_text(json.dumps([*profiles, {"no_id": 1}]))
    report = force_pass(store, config)
    assert report.model_insights == 1 and report.skipped_records == 1
    assert report.superseded_gc == 1
    facts = [n for n in store.iter_nodes("fact") if n.subject == "model:m-small"]
    assert len(facts) == 1 and "success_rate=0.9" in facts[0].content


def test_bad_profiles_file_is_a_warning(store: MemoryStore, tmp_path: Path) -> None:
    path = tmp_path / "profiles.json"
    path.write_text('{"model_id": "not a list"}')
    config = load_config(interval_secs=60, outcome_profiles_path=path, data_dir=tmp_path)
    report = force_pass(store, config)
    assert report.model_insights == 0 and report.skipped_records == 1
    assert "expected a JSON array" in report.warnings[0]


# -- the whole pass ----------------------------------------------------------------


def test_pass_on_fake_and_real_redis_agree(
    fake_store: MemoryStore, real_store: MemoryStore, tmp_path: Path
) -> None:
    config = traj_config(tmp_path)
    (tmp_path / "traj" / "r.jsonl").write_text(record([("x", True)]) + "\n")
    reports = []
    for store in (fake_store, real_store):
        store.ingest_fact("f1", "s", "one")
        store.ingest_fact("f2", "s", "two", supersedes="f1")
        store.ingest_environment("e", "gone", expires_at=NOW - 5)
        store.ingest_conclusion("c", "derived", premises=["f1"])
        r = force_pass(store, config)
        timing = {"started_at", "finished_at", "duration_ms", "namespace", "pass_id"}
        reports.append({**r.model_dump(exclude=timing), "step_ms": list(r.step_ms)})
    assert reports[0] == reports[1]
    assert reports[0]["expired_pruned"] == 1 and reports[0]["superseded_gc"] == 2
    # Every step was due, and each one's time is in the report in the order it ran.
    ran = ["trajectories", "prune", "invalidate", "collect", "embed", "merge", "stats"]
    assert reports[0]["step_ms"] == ran


def test_every_report_is_kept(store: MemoryStore, config: DreamConfig) -> None:
    first = run_pass(store, config, clock=clock)
    second = run_pass(store, config, clock=clock)
    assert (first.status, second.status, second.reason) == ("completed", "skipped", "coalesced")
    stored = store.reports(10)
    assert [r.status for r in stored] == ["skipped", "completed"]


def test_report_timing_fields(store: MemoryStore, config: DreamConfig) -> None:
    """started_at and finished_at are the pass's first and last clock readings, and
    duration_ms is measured on the monotonic clock: a wall clock that jumps an hour per
    reading does not make a pass last hours."""
    readings: list[float] = []

    def jumping() -> float:
        readings.append(NOW + 3600 * len(readings))
        return readings[-1]

    before = time.monotonic()
    report = run_pass(store, config, clock=jumping)
    elapsed_ms = (time.monotonic() - before) * 1000
    assert report.status == "completed"
    assert report.started_at == datetime.fromtimestamp(readings[0], UTC)
    assert report.finished_at == datetime.fromtimestamp(readings[-1], UTC)
    assert len(readings) >= 2 and report.finished_at > report.started_at
    assert 0 < report.duration_ms <= elapsed_ms
    assert store.reports(1)[0].duration_ms == report.duration_ms  # as stored
