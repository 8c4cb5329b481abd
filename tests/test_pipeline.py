"""The pass as a pipeline: steps chosen by their "due" test, timed in the report, fenced."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from car_dream.config import DreamConfig
from car_dream.consolidate import run_pass
from car_dream.errors import LockLostError
from car_dream.export import persisted_version, write_npz
from car_dream.pipeline import PassContext
from car_dream.steps import STEPS
from car_dream.store import MemoryStore

NOW = 1_800_000_000.0


def clock() -> float:
    return NOW


class Recorder:
    """A step of the test's own: due when told, records what it saw."""

    def __init__(self, name: str, due: bool = True) -> None:
        self.name, self.is_due = name, due
        self.seen: list[int] = []

    def due(self, ctx: PassContext) -> bool:
        return self.is_due

    def run(self, ctx: PassContext) -> None:
        self.seen.append(ctx.sizes.total_nodes)


def test_the_default_steps_in_order() -> None:
    names = [s.name for s in STEPS]
    assert names == [
        "trajectories",
        "profiles",
        "prune",
        "forget",
        "invalidate",
        "collect",
        "embed",
        "merge",
        "stats",
        "export",
    ]
    assert len(set(names)) == len(names)


def test_an_idle_pass_runs_only_the_stats_step(
    fake_store: MemoryStore, config: DreamConfig
) -> None:
    fake_store.ingest_fact("f", "s", "x", timestamp=NOW)
    first = run_pass(fake_store, config, force=True, clock=clock)
    assert "embed" in first.step_ms
    idle = run_pass(fake_store, config, force=True, clock=clock)
    assert idle.status == "completed"
    assert list(idle.step_ms) == ["stats"]
    assert idle.total_nodes == 1 and idle.embedding_coverage == 1.0


def test_a_new_step_is_one_more_entry_in_the_tuple(
    fake_store: MemoryStore, config: DreamConfig
) -> None:
    fake_store.ingest_fact("f", "s", "x", timestamp=NOW)
    extra, skipped = Recorder("extra"), Recorder("never", due=False)
    report = run_pass(fake_store, config, force=True, clock=clock, steps=(*STEPS, extra, skipped))
    assert report.status == "completed"
    assert extra.seen == [1] and skipped.seen == []
    assert "extra" in report.step_ms and "never" not in report.step_ms
    assert report.step_ms["extra"] >= 0


def test_a_failing_step_fails_the_pass_and_keeps_its_time(
    fake_store: MemoryStore, config: DreamConfig
) -> None:
    class Boom(Recorder):
        def run(self, ctx: PassContext) -> None:
            raise RuntimeError("boom")

    report = run_pass(fake_store, config, force=True, clock=clock, steps=(Boom("boom"),))
    assert report.status == "failed" and "boom" in (report.reason or "")
    assert list(report.step_ms) == ["boom"]


def test_fenced_raises_when_the_lock_was_taken_over(
    fake_store: MemoryStore, config: DreamConfig
) -> None:
    seen: list[str] = []

    class Thief(Recorder):
        def run(self, ctx: PassContext) -> None:
            ctx.store.client.set(ctx.store.keys.lock, "running:someone-else")
            try:
                ctx.fenced(ctx.store.scripts.prune, repr(NOW), 10)
            except LockLostError as exc:
                seen.append(str(exc))
                raise

    report = run_pass(fake_store, config, force=True, clock=clock, steps=(Thief("thief"),))
    assert report.status == "lost_lock"
    assert seen and "fence" in seen[0]


# -- the embeddings file, without Redis ----------------------------------------------


def test_write_npz_round_trips(tmp_path: Path) -> None:
    vectors = np.arange(12, dtype=np.float32).reshape(3, 4)
    rows = [(f"id-{i}", vectors[i].tobytes()) for i in range(3)]
    path = tmp_path / "sub" / "emb.npz"
    assert write_npz(path, iter(rows), "model-x", "7", batch=2) == 3
    with np.load(path) as data:
        assert list(data["ids"]) == ["id-0", "id-1", "id-2"]
        assert np.array_equal(data["vectors"], vectors)
        assert str(data["model_id"]) == "model-x"
    assert persisted_version(path) == "7"
    assert [p.name for p in path.parent.iterdir()] == ["emb.npz"]  # no scratch left


def test_write_npz_leaves_out_vectors_of_another_size(tmp_path: Path) -> None:
    rows = [("a", b"\0" * 8), ("b", b"\0" * 12), ("c", b"\0" * 8)]
    path = tmp_path / "emb.npz"
    assert write_npz(path, rows, "m", "1") == 2
    with np.load(path) as data:
        assert list(data["ids"]) == ["a", "c"] and data["vectors"].shape == (2, 2)


def test_write_npz_of_nothing_and_an_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "emb.npz"
    assert persisted_version(path) is None
    assert write_npz(path, [], "m", "0") == 0
    with np.load(path) as data:
        assert data["vectors"].shape == (0, 0)
    path.write_bytes(b"not a zip")
    assert persisted_version(path) is None


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "emb.npz"
    write_npz(path, [("a", b"\0" * 4)], "m", "1")

    def broken() -> object:
        yield ("b", b"\0" * 4)
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_npz(path, broken(), "m", "2")  # type: ignore[arg-type]
    assert persisted_version(path) == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["emb.npz"]
