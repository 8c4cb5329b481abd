"""``car-dream ingest`` on careless files: every good line is kept, every bad one named.

Against the real Redis, through the CLI.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from car_dream.cli import cli
from car_dream.errors import InvalidInputError
from car_dream.store import MemoryStore

from .celery_env import process_env
from .servers import RedisServer


@pytest.fixture
def ingest(real_store: MemoryStore, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run ``car-dream ingest`` on these bytes (a file) against ``real_store``."""
    monkeypatch.setenv("CAR_DREAM_REDIS_URL", redis_url)
    monkeypatch.setenv("CAR_DREAM_NAMESPACE", real_store.namespace)

    def run(data: bytes, tmp: Path, **env: str) -> Result:
        path = tmp / "in.jsonl"
        path.write_bytes(data)
        return CliRunner().invoke(cli, ["ingest", str(path)], env=env)

    return run


def fact(node_id: str, content: str = "c") -> bytes:
    return json.dumps({"kind": "fact", "id": node_id, "subject": "s", "content": content}).encode()


def test_a_line_not_utf8_is_named_and_the_others_kept(
    real_store: MemoryStore, redis_url: str, tmp_path: Path
) -> None:
    # The example, as a user runs it.
    path = tmp_path / "f.jsonl"
    path.write_bytes(
        b'{"kind":"fact","id":"u1","subject":"s","content":"ok"}\n'
        b'{"kind":"fact","id":"u2","subject":"s","content":"\xff"}\n'
        b'{"kind":"fact","id":"u3","subject":"s","content":"after"}\n'
    )
    env = process_env(redis_url, tmp_path / "data", namespace=real_store.namespace)
    out = subprocess.run(
        [sys.executable, "-c", "from car_dream.cli import main; main()", "ingest", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert out.stderr == "line 2: not valid UTF-8\n"
    assert out.stdout == "ingested 2 line(s), rejected 1\n"
    assert real_store.get("u1") is not None and real_store.get("u3") is not None
    assert real_store.get("u2") is None


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"[" * 100_000, "nested too deeply"),
        (b'{"kind":"fact","id":"x","subject":"s","content":"\\ud800"}', "content"),
        (b'{"kind":"fact","id":"x","subject":"s","content":"c","timestamp":1e400}', "finite"),
        (b'{"kind":"fact","id":"x","subject":"s","content":"c","tags":5}', "tags"),
        (b'{"kind":"conclusion","id":"x","content":"c","premises":5}', "premises"),
    ],
    ids=["deep nesting", "lone surrogate", "infinite timestamp", "tags a number", "premises"],
)
def test_whatever_a_line_holds_the_lines_before_and_after_are_written(
    ingest: Any, real_store: MemoryStore, tmp_path: Path, line: bytes, why: str
) -> None:
    data = b"\n".join([fact("before"), line, fact("after")]) + b"\n"
    for batch in ("500", "1"):
        real_store.client.delete(real_store.keys.node("before"), real_store.keys.node("after"))
        out = ingest(data, tmp_path, CAR_DREAM_BATCH_SIZE=batch)
        assert out.exception is None or isinstance(out.exception, SystemExit), out.exception
        assert out.exit_code == 1, out.output
        assert out.stdout == "ingested 2 line(s), rejected 1\n", (batch, out.output)
        assert out.stderr.startswith("line 2: ") and why in out.stderr, out.stderr
        assert real_store.get("before") is not None and real_store.get("after") is not None


def test_a_failed_read_still_writes_what_was_queued(
    real_store: MemoryStore, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from car_dream.ingest import Ingest

    def lines() -> Iterator[bytes]:
        yield fact("r1")
        yield fact("r2")
        raise OSError(5, "Input/output error")

    job = Ingest(real_store, batch_size=500)
    with pytest.raises(OSError):
        job.run(lines())
    assert (job.good, job.bad, job.read) == (2, 0, 2)
    assert real_store.get("r1") is not None and real_store.get("r2") is not None


def test_a_line_missing_its_closing_brace_is_placed_at_its_end(
    ingest: Any, real_store: MemoryStore, tmp_path: Path
) -> None:
    line = b'{"kind":"fact","id":"x","subject":"s","content":"c"'
    out = ingest(line + b"\n" + fact("y") + b"\n", tmp_path)
    assert out.exit_code == 1
    assert out.stderr == f"line 1: not JSON (Expecting ',' delimiter at column {len(line) + 1})\n"
    assert real_store.get("y") is not None


def test_a_byte_order_mark_on_the_first_line_is_ignored(
    ingest: Any, real_store: MemoryStore, tmp_path: Path
) -> None:
    out = ingest(b"\xef\xbb\xbf" + fact("bom") + b"\r\n" + fact("crlf") + b"\r\n", tmp_path)
    assert out.exit_code == 0, out.output
    assert out.stdout == "ingested 2 line(s), rejected 0\n"
    assert real_store.get("bom") is not None and real_store.get("crlf") is not None


@pytest.mark.parametrize(
    "obj",
    [
        {"kind": "fact", "id": "é" * 5000, "subject": "s", "content": "c"},
        {"kind": "f" * 5000},
        {"kind": "fact", "id": "x", "subject": "s", "content": "c", "k" * 5000: 1},
        {"kind": "fact", "id": "x", "subject": "s", "content": "c", "timestamp": "t" * 5000},
        {"kind": "conclusion", "id": "x", "content": "c", "premises": ["p" * 5000]},
        {"kind": "fact", "id": "x", "subject": "s", "content": "c", "supersedes": "s" * 5000},
    ],
    ids=["id", "kind", "field name", "time", "premise", "supersedes"],
)
def test_long_values_are_cut_in_messages(
    ingest: Any, real_store: MemoryStore, tmp_path: Path, obj: dict[str, Any]
) -> None:
    out = ingest(json.dumps(obj, ensure_ascii=False).encode() + b"\n", tmp_path)
    assert out.exit_code == 1
    assert out.stderr.startswith("line 1: ") and "…" in out.stderr
    assert len(out.stderr) < 300, out.stderr


def test_store_calls_cut_long_values_too(real_store: MemoryStore) -> None:
    with pytest.raises(InvalidInputError) as info:
        real_store.ingest_fact("é" * 5000, "s", "c")
    assert "…" in str(info.value) and len(str(info.value)) < 300
    with pytest.raises(InvalidInputError) as info:
        MemoryStore(real_store.client, "n" * 5000)
    assert "…" in str(info.value) and len(str(info.value)) < 300


def test_redis_gone_is_one_clean_error_after_the_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis goes away while the file is read: the lines refused so far are still told,
    the summary says where it stopped, then one clean error."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    monkeypatch.setenv("CAR_DREAM_REDIS_URL", server.url)
    lines = [fact("a"), b"not json", fact("b"), fact("c")]

    class Stream(io.BytesIO):
        """stdin that stops the server once line 3 has been read."""

        def __init__(self) -> None:
            super().__init__(b"\n".join(lines) + b"\n")
            self.read_lines = 0

        def __next__(self) -> bytes:
            line = super().__next__()
            self.read_lines += 1
            if self.read_lines == 3:
                server.stop()
            return line

    try:
        out = CliRunner().invoke(
            cli, ["ingest", "-"], input=Stream(), env={"CAR_DREAM_BATCH_SIZE": "1"}
        )
    finally:
        server.stop()
    assert out.exit_code == 1
    # Line 1 went in before Redis left; line 3 was the one it left during.
    assert out.stdout == "ingested 1 line(s), rejected 1, stopped at line 3\n"
    assert out.stderr.startswith("line 2: not JSON")
    assert out.stderr.splitlines()[-1].startswith("car-dream: cannot reach Redis")
    assert "Traceback" not in out.output


def test_redis_away_from_the_start_is_one_clean_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .conftest import free_port

    monkeypatch.setenv("CAR_DREAM_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    path = tmp_path / "in.jsonl"
    path.write_bytes(fact("a") + b"\nnot json\n")
    out = CliRunner().invoke(cli, ["ingest", str(path)])
    assert out.exit_code == 1
    assert out.stdout == ""
    assert out.stderr.startswith("car-dream: cannot reach Redis")
    assert len(out.stderr.splitlines()) == 1
