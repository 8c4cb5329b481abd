"""``car-dream journal``, ``restore`` and ``undo`` as a user runs them, on the test Redis."""

from __future__ import annotations

import json

from car_dream.config import load_config
from car_dream.consolidate import run_pass
from car_dream.store import MemoryStore

from .test_cli import Cli, cli  # noqa: F401

NOW = 1_800_000_000.0


def pruned_store(store: MemoryStore) -> str:
    store.ingest_environment("door", "the door is open " * 3, expires_at=NOW - 1)
    store.ingest_fact("f", "car", "the car is red")
    report = run_pass(store, load_config(interval_secs=60), force=True, clock=lambda: NOW)
    assert report.expired_pruned == 1
    return report.pass_id


def test_journal_lists_newest_first_and_filters(
    cli: Cli,  # noqa: F811
    real_store: MemoryStore,
) -> None:
    pass_id = pruned_store(real_store)
    out = cli("journal")
    assert out.returncode == 0, out.stderr
    (line,) = out.stdout.splitlines()
    assert f"{pass_id} prune" in line and "door: expired at" in line
    assert "'the door is open the door is open …'" in line
    out = cli("journal", "--json", "--pass", pass_id, "--since", "1h")
    assert [e["node"] for e in json.loads(out.stdout)] == ["door"]
    assert json.loads(cli("journal", "--json", "--node", "f").stdout) == []
    assert cli("journal", "--pass", "other").stdout.strip() == "no journal entries"
    bad = cli("journal", "--since", "soon")
    assert bad.returncode == 2 and "--since" in bad.stderr


def test_restore_and_undo(cli: Cli, real_store: MemoryStore) -> None:  # noqa: F811
    pass_id = pruned_store(real_store)
    dry = cli("undo", pass_id, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        f"would restore door (prune of pass {pass_id}: expired at 1799999999)",
        "would restore 1, refused 0",
    ]
    assert real_store.get("door") is None
    out = cli("restore", "door", "f")
    assert out.returncode == 1
    assert out.stdout.splitlines()[0].startswith("restored door (prune of pass")
    assert out.stdout.splitlines()[1].startswith("refused f: no journal entry")
    assert real_store.get("door") is not None
    out = cli("undo", pass_id)
    assert out.stdout.splitlines()[-1] == "restored 0, refused 1"
    assert "refused door: a node with this id was written since" in out.stdout
    missing = cli("undo", "nosuchpass")
    assert missing.returncode == 1 and "no journal entries of pass 'nosuchpass'" in missing.stderr


def test_run_once_dry_run(cli: Cli, real_store: MemoryStore) -> None:  # noqa: F811
    real_store.ingest_environment("door", "the door is open", expires_at=1.0)
    out = cli("run-once", "--dry-run")
    assert out.returncode == 0, out.stderr
    head, planned = out.stdout.splitlines()
    assert "completed (dry run: nothing written): pruned=1 " in head
    assert planned == "  would prune: door"
    assert real_store.get("door") is not None
    assert cli("run-once").stdout.count("pruned=1 ") == 1  # the window was left open
