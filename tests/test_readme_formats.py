"""The input formats the README documents are the ones the code accepts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from car_dream.cli import cli
from car_dream.profiles import load_profiles
from car_dream.store import MemoryStore
from car_dream.trajectory import parse_counts

README = (Path(__file__).parent.parent / "README.md").read_text()


def example(heading: str, nth: int = 0) -> str:
    """The ``nth`` json block of the README section under ``heading``."""
    section = README.split(heading, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```json\n(.*?)```", section, re.S)[nth]


def test_the_ingest_example_ingests(
    real_store: MemoryStore, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAR_DREAM_REDIS_URL", redis_url)
    monkeypatch.setenv("CAR_DREAM_NAMESPACE", real_store.namespace)
    lines = example("### Ingest files")
    assert [json.loads(line)["kind"] for line in lines.splitlines()] == [
        "fact",
        "environment",
        "conclusion",
    ]
    path = tmp_path / "memory.jsonl"
    path.write_text(lines)
    out = CliRunner().invoke(cli, ["ingest", str(path)])
    assert out.exit_code == 0, out.output
    assert out.stdout == "ingested 3 line(s), rejected 0\n"
    assert real_store.count() == 3


def test_the_trajectory_example_parses() -> None:
    line = example("### Trajectory records and outcome profiles", 0)
    source, outcome, counted = parse_counts(line.encode())
    assert (source, outcome) == ("planner", "replan_success")
    assert counted == [("search", "success"), ("fetch", "failure")]


def test_the_profiles_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "profiles.json"
    path.write_text(example("### Trajectory records and outcome profiles", 1))
    profiles, problems, _ = load_profiles(path)
    assert list(profiles) == ["demo-small"] and problems == []
