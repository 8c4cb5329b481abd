"""Nodes edited by hand into something no write makes: content that is not UTF-8.

A pass skips and counts such a node and completes; ``check`` reports it as malformed and
``--repair`` leaves it alone. On the real Redis (the verdicts are Lua).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from car_dream.check import check_store
from car_dream.cli import cli
from car_dream.config import DreamConfig
from car_dream.consolidate import run_pass
from car_dream.scripts import lua
from car_dream.store import MemoryStore


def corrupt(store: MemoryStore) -> dict[bytes, bytes]:
    """Three good facts and c1, a fact whose content was then overwritten by hand."""
    for i in range(3):
        store.ingest_fact(f"ok{i}", "s", f"fact {i}")
    store.ingest_fact("c1", "s", "will be garbled")
    store.client.hset(store.keys.node("c1"), "content", b"\xff\xfe")
    return dict(store.client.hgetall(store.keys.node("c1")))


def test_every_pass_skips_and_counts_the_node_and_completes(
    real_store: MemoryStore, config: DreamConfig
) -> None:
    corrupt(real_store)
    # And a node whose very id is not UTF-8, listed as unembedded by hand.
    c, k = real_store.client, real_store.keys
    c.hset(k.node("x").encode()[:-1] + b"\xff", mapping={"content": "x", "rev": "1"})
    c.sadd(k.unembedded, b"\xff")
    for _ in range(2):  # they stay unembedded: the next pass skips them again
        report = run_pass(real_store, config, force=True)
        assert report.status == "completed", report.reason
        assert report.skipped_records == 2
        assert [w for w in report.warnings if "'c1'" in w and "UTF-8" in w], report.warnings
        assert [w for w in report.warnings if "'\\udcff'" in w], report.warnings
    assert real_store.embedding("ok2") is not None
    assert real_store.embedding("c1") is None
    # The index lists c1 and the stray id: two of the four nodes.
    assert report.total_nodes == 4 and report.embedding_coverage == 0.5


def test_check_reports_it_malformed_and_repair_leaves_it(real_store: MemoryStore) -> None:
    fields = corrupt(real_store)
    # The issue's own example: a node hash holding nothing but such a content.
    real_store.client.hset(real_store.keys.node("c2"), "content", b"\xff\xfe")
    c, k = real_store.client, real_store.keys
    indexes = (k.kind("fact"), k.unembedded)
    before = [c.smembers(key) for key in indexes]
    report = check_store(real_store)
    assert not report.ok and report.malformed_nodes == 2
    assert report.problem_counts == {"malformed": 2}
    assert "c1: malformed:content_not_utf8" in report.messages
    fixed = check_store(real_store, repair=True)
    assert fixed.malformed_nodes == 2 and fixed.repaired_ids == 0
    assert c.hgetall(k.node("c1")) == fields
    assert [c.smembers(key) for key in indexes] == before


def test_cli_check_suggests_repair_only_for_drift_it_can_fix(
    real_store: MemoryStore, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAR_DREAM_REDIS_URL", redis_url)
    monkeypatch.setenv("CAR_DREAM_NAMESPACE", real_store.namespace)
    corrupt(real_store)
    out = CliRunner().invoke(cli, ["check"])
    assert out.exit_code == 1
    assert "malformed: 1" in out.stdout and "c1: malformed" in out.stdout
    assert "--repair" not in out.stderr
    assert "left for you" in out.stderr  # what to do instead
    real_store.client.srem(real_store.keys.kind("fact"), "ok0")  # drift that repair fixes
    out = CliRunner().invoke(cli, ["check"])
    assert out.exit_code == 1 and "car-dream check --repair" in out.stderr


@pytest.fixture(scope="module")
def valid_utf8(redis_url: str) -> Iterator[Any]:
    client = redis.Redis.from_url(redis_url)
    yield client.register_script(lua("utf8") + "return valid_utf8(ARGV[1]) and 1 or 0")
    client.close()


EDGES = [
    b"",
    b"plain",
    "é€𝄞".encode(),
    b"\xc3",
    b"\xc0\xaf",
    b"\xe0\x80\xaf",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xf0\x9f\x98",
    b"\x80",
    b"ok\xffok",
    "\U0010ffff".encode(),
]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=24) | st.text(max_size=12).map(str.encode) | st.sampled_from(EDGES))
def test_lua_utf8_verdict_is_pythons(valid_utf8: Any, data: bytes) -> None:
    try:
        data.decode("utf-8")
        expected = 1
    except UnicodeDecodeError:
        expected = 0
    assert valid_utf8(keys=[], args=[data]) == expected
