"""Round trips of a pass, counted on a real Redis: an idle pass (a trajectory directory,
a profiles file and an export path configured) and a coalesced trigger take two; an
idle pass over 2,000 trajectory files opens none and sends nothing per file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from car_dream import trajectory_reader
from car_dream.config import DreamConfig, load_config
from car_dream.consolidate import run_pass
from car_dream.insight_reads import TRAJ_LISTING
from car_dream.store import MemoryStore


class Counted(redis.Connection):
    """Counts what is sent: one per command, one per pipeline (as benchmarks/ do)."""

    sent = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        Counted.sent += 1
        super().send_packed_command(command, check_health)


@pytest.fixture
def counted(redis_url: str, namespace: str) -> Iterator[MemoryStore]:
    kwargs = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs
    pool = redis.ConnectionPool(connection_class=Counted, **kwargs)
    client = redis.Redis(connection_pool=pool)
    store = MemoryStore(client, namespace)
    yield store
    keys = list(client.scan_iter(match=f"{store.keys.prefix}*", count=1000))
    if keys:
        client.unlink(*keys)
    client.close()


def trips(store: MemoryStore, config: DreamConfig, **kw: Any) -> tuple[int, Any]:
    before = Counted.sent
    report = run_pass(store, config, **kw)
    return Counted.sent - before, report


def record(source: str) -> str:
    event = {"kind": "action_succeeded", "action_id": "a", "tool": "search", "data": None}
    return (
        json.dumps(
            {
                "proposal_id": f"p-{source}",
                "source": source,
                "action_count": 1,
                "events": [event],
                "outcome": "success",
                "timestamp": "2025-01-01T00:00:00Z",
                "duration_ms": 1.0,
                "replan_attempts": 0,
            }
        )
        + "\n"
    )


def files_config(tmp_path: Path, files: int = 2) -> DreamConfig:
    traj = tmp_path / "traj"
    traj.mkdir()
    for i in range(files):
        (traj / f"t{i:05}.jsonl").write_text(record(f"agent-{i % 3}"))
    profiles = tmp_path / "profiles.json"
    profiles.write_text(json.dumps([{"model_id": "m1", "success_rate": 0.5}]))
    return load_config(
        interval_secs=60,
        data_dir=tmp_path / "data",
        trajectory_dir=traj,
        outcome_profiles_path=profiles,
        embeddings_path=tmp_path / "vectors.npz",
    )


def test_an_idle_pass_takes_two_round_trips(counted: MemoryStore, tmp_path: Path) -> None:
    config = files_config(tmp_path)
    for i in range(20):
        counted.ingest_fact(f"f{i}", "s", f"fact {i}")
    n, first = trips(counted, config, force=True)
    assert first.status == "completed" and first.trajectory_insights and first.model_insights
    assert n > 2 and first.nodes_embedded == first.total_nodes
    for _ in range(3):
        n, report = trips(counted, config, force=True)
        assert report.status == "completed" and not report.did_work, report
        assert n == 2, report.step_ms
        assert set(report.step_ms) == {"stats"}  # every other step decided "not due"
    # The report and its totals went with the second round trip.
    assert len(counted.reports(10)) == 4
    totals = counted.client.hget(counted.keys.totals, "passes|completed|0")
    assert totals == b"4"


def test_a_coalesced_trigger_takes_two_round_trips(
    counted: MemoryStore, tmp_path: Path, config: DreamConfig
) -> None:
    counted.ingest_fact("f", "s", "fact")
    assert run_pass(counted, config).status == "completed"
    n, report = trips(counted, config)
    assert (report.status, report.reason, n) == ("skipped", "coalesced", 2)
    assert counted.reports(1)[0].reason == "coalesced"


def test_an_idle_pass_opens_no_trajectory_file(
    counted: MemoryStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = files_config(tmp_path, files=2_000)
    first = run_pass(counted, config, force=True)
    assert first.trajectory_insights
    assert counted.client.hlen(counted.keys.traj_offsets) == 2_000

    def opened(*args: Any) -> Any:
        raise AssertionError("an unchanged trajectory file was opened")

    monkeypatch.setattr(trajectory_reader, "_read_file", opened)
    n, report = trips(counted, config, force=True)
    assert n == 2 and "trajectories" not in report.step_ms
    monkeypatch.undo()
    # One file appended to: the listing changes, the next pass reads just that record.
    path = config.trajectory_dir / "t00007.jsonl"  # type: ignore[operator]
    with path.open("a") as fh:
        fh.write(record("agent-new"))
    report = run_pass(counted, config, force=True)
    assert report.trajectory_insights == 2  # the new source's fact and the tool's
    assert "trajectories" in report.step_ms
    listing = counted.client.hget(counted.keys.meta, TRAJ_LISTING)
    n, report = trips(counted, config, force=True)
    assert n == 2 and not report.did_work
    assert counted.client.hget(counted.keys.meta, TRAJ_LISTING) == listing


def test_a_file_left_unread_is_listed_again(
    counted: MemoryStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that could not be read leaves the listing unrecorded: every pass tries again
    (and warns) until it is read, then the passes are idle."""
    config = files_config(tmp_path)
    (config.trajectory_dir / "locked.jsonl").write_text(record("agent-late"))  # type: ignore[operator]
    read_file = trajectory_reader._read_file

    def locked(path: Path, name: str, start: int, batch_size: int) -> Any:
        if name == "locked.jsonl":
            raise PermissionError(13, "Permission denied")
        return read_file(path, name, start, batch_size)

    monkeypatch.setattr(trajectory_reader, "_read_file", locked)
    for _ in range(2):
        report = run_pass(counted, config, force=True)
        assert any("locked.jsonl: Permission denied" in w for w in report.warnings)
        assert counted.client.hget(counted.keys.meta, TRAJ_LISTING) is None
    monkeypatch.undo()
    report = run_pass(counted, config, force=True)
    assert report.trajectory_insights and not report.warnings
    assert "source:agent-late" in {n.subject for n in counted.iter_nodes("fact")}
    n, report = trips(counted, config, force=True)
    assert n == 2 and not report.did_work
