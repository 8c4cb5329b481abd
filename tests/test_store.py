"""MemoryStore: ingest, reads, validation, supersession, indexes and key layout.

Most tests run on fakeredis; the core ones (marked by the ``store`` fixture) run on a
real Redis server too, since fakeredis's Lua is never the only proof a script works.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import fakeredis
import numpy as np
import pytest
import redis

from car_dream.errors import (
    ConfigError,
    InvalidInputError,
    SupersededNodeError,
    UnknownNodeError,
)
from car_dream.keys import METRICS_RECENT_KEY, METRICS_TOTALS_KEY, NAMESPACES_KEY
from car_dream.report import ConsolidationReport
from car_dream.store import MemoryStore, Node

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest) -> MemoryStore:
    """The same test on fakeredis and on the real server."""
    return request.getfixturevalue(f"{request.param}_store")


def snapshot(client: Any, pattern: str) -> dict[bytes, Any]:
    """Every key matching ``pattern`` with its type, value and TTL."""
    out: dict[bytes, Any] = {}
    for key in client.scan_iter(match=pattern, count=1000):
        kind = client.type(key).decode()
        if kind == "string":
            value: Any = client.get(key)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "set":
            value = client.smembers(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        else:  # pragma: no cover - nothing else is used
            value = kind
        out[key] = (kind, value, client.pttl(key) > 0)
    return out


def ns_snapshot(store: MemoryStore) -> dict[bytes, Any]:
    return snapshot(store.client, store.keys.prefix + "*")


def members(store: MemoryStore, key: str) -> set[str]:
    return {m.decode() for m in store.client.smembers(key)}


def zmembers(store: MemoryStore, key: str) -> dict[str, float]:
    return {m.decode(): s for m, s in store.client.zrange(key, 0, -1, withscores=True)}


def embed(store: MemoryStore, node_id: str, model: str = "m1") -> np.ndarray:
    """Store an embedding the way a pass does: the fenced script, under a held lock."""
    node = store.get(node_id)
    assert node is not None
    vec = np.arange(4, dtype=np.float32) + 0.5
    store.client.set(store.keys.lock, "running:tok")
    try:
        reply = store.scripts.store_vectors(
            keys=[store.keys.lock],
            args=[
                store.keys.prefix,
                "tok",
                model,
                vec.nbytes,
                node_id,
                str(node.rev),
                vec.tobytes(),
                "",
            ],
        )
    finally:
        store.client.delete(store.keys.lock)
    assert reply[0] == b"ok" and int(reply[1]) == 1
    return vec


def seed(store: MemoryStore) -> None:
    """base (fact), env (environment), old superseded by new, c1 citing base."""
    store.ingest_fact("base", "topic", "the sky is blue", timestamp=T0)
    store.ingest_environment("env", "door open", observed_at=T0, expires_at=T0 + timedelta(hours=1))
    store.ingest_fact("old", "topic", "v1", timestamp=T0)
    store.ingest_fact("new", "topic", "v2", timestamp=T0, supersedes="old")
    store.ingest_conclusion("c1", "therefore blue", premises=["base"])


# -- ingest and reads (both backends) -------------------------------------------------


def test_ingest_fact_and_read_back(store: MemoryStore) -> None:
    assert (
        store.ingest_fact(
            "f1",
            "weather",
            "it rains",
            source="sensor",
            provenance="observed",
            timestamp=T0,
            scope="team",
            tags=["a", "b"],
            pinned=True,
        )
        is True
    )
    node = store.get("f1")
    assert isinstance(node, Node)
    assert node.kind == "fact"
    assert (node.subject, node.content, node.source) == ("weather", "it rains", "sensor")
    assert (node.provenance, node.scope, node.tags) == ("observed", "team", ["a", "b"])
    assert node.timestamp == T0.timestamp()
    assert node.pinned is True
    assert node.superseded is False and node.superseded_by is None
    assert node.rev >= 1
    assert node.embedding_model is None
    assert "f1" in members(store, store.keys.unembedded)
    # Re-ingest: not new, the new values win, the revision moves on.
    assert store.ingest_fact("f1", "weather", "it pours", timestamp=T0) is False
    again = store.get("f1")
    assert again is not None
    assert again.content == "it pours" and again.rev > node.rev and again.pinned is False
    assert store.count() == 1


def test_fact_defaults(store: MemoryStore) -> None:
    before = datetime.now(UTC).timestamp()
    store.ingest_fact("f", "s", "c")
    node = store.get("f")
    assert node is not None
    assert (node.source, node.provenance, node.scope, node.tags) == ("agent", "self", "global", [])
    assert node.timestamp is not None and before - 1 <= node.timestamp <= before + 60


def test_ingest_environment_is_indexed_for_expiry(store: MemoryStore) -> None:
    exp = T0 + timedelta(minutes=5)
    assert store.ingest_environment("e1", "door open", observed_at=T0, expires_at=exp) is True
    node = store.get("e1")
    assert node is not None and node.kind == "environment"
    assert node.observed_at == T0.timestamp() and node.expires_at == exp.timestamp()
    assert zmembers(store, store.keys.expiry) == {"e1": exp.timestamp()}


def test_environment_without_expiry_is_not_scheduled(store: MemoryStore) -> None:
    store.ingest_environment("e1", "door open", observed_at=T0)
    node = store.get("e1")
    assert node is not None and node.expires_at is None
    assert zmembers(store, store.keys.expiry) == {}


def test_ingest_conclusion_records_premises_and_dependents(store: MemoryStore) -> None:
    store.ingest_fact("p1", "s", "a", timestamp=T0)
    store.ingest_fact("p2", "s", "b", timestamp=T0)
    assert store.ingest_conclusion("c", "a and b", premises=["p1", "p2", "p1"]) is True
    node = store.get("c")
    assert node is not None and node.kind == "conclusion"
    assert node.premises == ["p1", "p2"]  # deduplicated, order kept
    assert members(store, store.keys.dependents("p1")) == {"c"}
    assert members(store, store.keys.dependents("p2")) == {"c"}
    assert members(store, store.keys.invalidate) == set()


def test_counts_ids_iter_nodes_and_index_sizes(store: MemoryStore) -> None:
    seed(store)
    assert store.count() == 5
    assert store.count("fact") == 3
    assert store.count("environment") == 1
    assert store.count("conclusion") == 1
    assert set(store.ids("fact")) == {"base", "old", "new"}
    assert {n.id for n in store.iter_nodes("fact")} == {"base", "old", "new"}
    assert {(n.id, n.kind) for n in store.iter_nodes()} == {
        ("base", "fact"),
        ("old", "fact"),
        ("new", "fact"),
        ("env", "environment"),
        ("c1", "conclusion"),
    }
    sizes = store.index_sizes()
    assert sizes.nodes == {"fact": 3, "environment": 1, "conclusion": 1}
    assert sizes.total_nodes == 5
    assert sizes.expiry_scheduled == 1
    assert sizes.collectable == 1
    assert sizes.conclusions_to_check == 0
    assert sizes.unembedded == 5
    assert sizes.embedding_coverage == 0.0
    assert sizes.as_dict()["total_nodes"] == 5


def test_get_unknown_is_none(store: MemoryStore) -> None:
    assert store.get("nobody") is None


# -- validation writes nothing (both backends) ---------------------------------------

Call = Callable[[MemoryStore], Any]
NAIVE = datetime(2024, 5, 1, 12, 0)

BAD_CALLS: dict[str, tuple[Call, type[Exception]]] = {
    "id empty": (lambda s: s.ingest_fact("", "s", "c"), InvalidInputError),
    "id space": (lambda s: s.ingest_fact("a b", "s", "c"), InvalidInputError),
    "id braces": (lambda s: s.ingest_fact("{x}", "s", "c"), InvalidInputError),
    "id one brace": (lambda s: s.ingest_fact("x}", "s", "c"), InvalidInputError),
    "id newline": (lambda s: s.ingest_fact("x\n", "s", "c"), InvalidInputError),
    "id tab": (lambda s: s.ingest_environment("a\tb", "c"), InvalidInputError),
    "id too long": (lambda s: s.ingest_fact("x" * 201, "s", "c"), InvalidInputError),
    "id not str": (lambda s: s.ingest_fact(5, "s", "c"), InvalidInputError),
    "content empty": (lambda s: s.ingest_fact("f", "s", ""), InvalidInputError),
    "content env empty": (lambda s: s.ingest_environment("e", ""), InvalidInputError),
    "content conclusion empty": (
        lambda s: s.ingest_conclusion("c", "", premises=["base"]),
        InvalidInputError,
    ),
    "content not str": (lambda s: s.ingest_fact("f", "s", 123), InvalidInputError),
    "content too long": (lambda s: s.ingest_fact("f", "s", "x" * 1_000_001), InvalidInputError),
    "content lone surrogate": (lambda s: s.ingest_fact("f", "s", "a\ud800"), InvalidInputError),
    "timestamp naive": (lambda s: s.ingest_fact("f", "s", "c", timestamp=NAIVE), InvalidInputError),
    "timestamp nan": (
        lambda s: s.ingest_fact("f", "s", "c", timestamp=math.nan),
        InvalidInputError,
    ),
    "timestamp inf": (
        lambda s: s.ingest_fact("f", "s", "c", timestamp=math.inf),
        InvalidInputError,
    ),
    "timestamp huge int": (
        lambda s: s.ingest_fact("f", "s", "c", timestamp=10**400),
        InvalidInputError,
    ),
    "timestamp bool": (lambda s: s.ingest_fact("f", "s", "c", timestamp=True), InvalidInputError),
    "timestamp str": (
        lambda s: s.ingest_fact("f", "s", "c", timestamp="2024-05-01"),
        InvalidInputError,
    ),
    "observed_at naive": (
        lambda s: s.ingest_environment("e", "c", observed_at=NAIVE),
        InvalidInputError,
    ),
    "expires_at naive": (
        lambda s: s.ingest_environment("e", "c", expires_at=NAIVE),
        InvalidInputError,
    ),
    "expires_at nan": (
        lambda s: s.ingest_environment("e", "c", expires_at=math.nan),
        InvalidInputError,
    ),
    "supersedes itself": (
        lambda s: s.ingest_fact("f", "s", "c", supersedes="f"),
        InvalidInputError,
    ),
    "supersedes bad id": (
        lambda s: s.ingest_fact("f", "s", "c", supersedes="a b"),
        InvalidInputError,
    ),
    "supersedes unknown": (
        lambda s: s.ingest_fact("f", "s", "c", supersedes="ghost"),
        UnknownNodeError,
    ),
    "rewrite supersedes unknown": (
        lambda s: s.ingest_fact("base", "s", "changed", supersedes="ghost"),
        UnknownNodeError,
    ),
    "premises string": (
        lambda s: s.ingest_conclusion("c", "x", premises="base"),
        InvalidInputError,
    ),
    "premises empty": (lambda s: s.ingest_conclusion("c", "x", premises=[]), InvalidInputError),
    "premise bad id": (
        lambda s: s.ingest_conclusion("c", "x", premises=["a b"]),
        InvalidInputError,
    ),
    "premise unknown": (
        lambda s: s.ingest_conclusion("c", "x", premises=["ghost"]),
        UnknownNodeError,
    ),
    "one premise unknown": (
        lambda s: s.ingest_conclusion("c", "x", premises=["base", "ghost"]),
        UnknownNodeError,
    ),
    "premise itself": (
        lambda s: s.ingest_conclusion("c", "x", premises=["base", "c"]),
        InvalidInputError,
    ),
    "rewrite superseded": (lambda s: s.ingest_fact("old", "topic", "v3"), SupersededNodeError),
    "kind change fact->env": (lambda s: s.ingest_environment("base", "x"), InvalidInputError),
    "kind change env->fact": (lambda s: s.ingest_fact("env", "s", "x"), InvalidInputError),
    "kind change fact->conclusion": (
        lambda s: s.ingest_conclusion("new", "x", premises=["base"]),
        InvalidInputError,
    ),
}


@pytest.mark.parametrize(("call", "error"), BAD_CALLS.values(), ids=list(BAD_CALLS))
def test_bad_call_raises_and_writes_nothing(
    store: MemoryStore, call: Call, error: type[Exception]
) -> None:
    seed(store)
    before = ns_snapshot(store)
    with pytest.raises(error) as info:
        call(store)
    assert str(info.value)
    assert ns_snapshot(store) == before


def test_unknown_node_error_names_the_node(store: MemoryStore) -> None:
    seed(store)
    with pytest.raises(UnknownNodeError, match="ghost"):
        store.ingest_conclusion("c", "x", premises=["base", "ghost"])
    with pytest.raises(KeyError):  # UnknownNodeError is a KeyError too
        store.ingest_fact("f", "s", "c", supersedes="ghost")


# -- supersession, invalidation, embeddings (both backends) --------------------------


def test_supersession_marks_the_old_node_and_queues_it_for_gc(store: MemoryStore) -> None:
    store.ingest_fact("v1", "topic", "first", timestamp=T0)
    store.ingest_fact("v2", "topic", "second", timestamp=T0, supersedes="v1")
    old, new = store.get("v1"), store.get("v2")
    assert old is not None and new is not None
    assert old.superseded is True and old.superseded_by == "v2"
    assert old.content == "first"  # kept until a pass collects it
    assert new.superseded is False and new.supersedes == "v1"
    assert set(zmembers(store, store.keys.collectable)) == {"v1"}
    assert store.count() == 2


def test_pinned_superseded_node_is_not_queued_for_gc(store: MemoryStore) -> None:
    store.ingest_fact("v1", "topic", "first", timestamp=T0, pinned=True)
    store.ingest_fact("v2", "topic", "second", timestamp=T0, supersedes="v1")
    old = store.get("v1")
    assert old is not None and old.superseded and old.pinned
    assert zmembers(store, store.keys.collectable) == {}


def test_superseded_node_cannot_be_rewritten(store: MemoryStore) -> None:
    store.ingest_fact("v1", "topic", "first", timestamp=T0)
    store.ingest_fact("v2", "topic", "second", timestamp=T0, supersedes="v1")
    with pytest.raises(SupersededNodeError, match="v1"):
        store.ingest_fact("v1", "topic", "first again", timestamp=T0)
    node = store.get("v1")
    assert node is not None and node.content == "first" and node.superseded_by == "v2"


def test_reingesting_environment_refreshes_expiry(store: MemoryStore) -> None:
    store.ingest_environment("e", "door open", observed_at=T0, expires_at=T0 + timedelta(hours=1))
    later = T0 + timedelta(hours=5)
    assert store.ingest_environment("e", "door open", observed_at=T0, expires_at=later) is False
    assert zmembers(store, store.keys.expiry) == {"e": later.timestamp()}
    node = store.get("e")
    assert node is not None and node.expires_at == later.timestamp()
    # Without an expiry it no longer expires.
    store.ingest_environment("e", "door open", observed_at=T0)
    assert zmembers(store, store.keys.expiry) == {}


def test_superseded_environment_leaves_the_expiry_index(store: MemoryStore) -> None:
    store.ingest_environment("e", "door open", expires_at=T0 + timedelta(hours=1))
    store.ingest_fact("f", "door", "door closed", supersedes="e")
    assert zmembers(store, store.keys.expiry) == {}
    assert set(zmembers(store, store.keys.collectable)) == {"e"}


def test_same_content_keeps_the_embedding(store: MemoryStore) -> None:
    store.ingest_fact("f", "s", "stable text", timestamp=T0)
    vec = embed(store, "f")
    assert "f" not in members(store, store.keys.unembedded)
    store.ingest_fact("f", "other subject", "stable text", timestamp=T0, tags=["x"])
    got = store.embedding("f")
    assert got is not None
    assert got[0] == "m1" and np.array_equal(got[1], vec)
    node = store.get("f")
    assert node is not None and node.embedding_model == "m1" and node.subject == "other subject"
    assert "f" not in members(store, store.keys.unembedded)


def test_changed_content_drops_the_embedding(store: MemoryStore) -> None:
    store.ingest_fact("f", "s", "old text", timestamp=T0)
    embed(store, "f")
    version = store.client.hget(store.keys.meta, "emb_version")
    store.ingest_fact("f", "s", "new text", timestamp=T0)
    assert store.embedding("f") is None
    node = store.get("f")
    assert node is not None and node.embedding_model is None
    assert "f" in members(store, store.keys.unembedded)
    assert store.client.hget(store.keys.meta, "emb_version") != version


def test_superseding_a_premise_queues_its_conclusions(store: MemoryStore) -> None:
    store.ingest_fact("p", "s", "a", timestamp=T0)
    store.ingest_fact("q", "s", "b", timestamp=T0)
    store.ingest_conclusion("c1", "from p", premises=["p"])
    store.ingest_conclusion("c2", "from p and q", premises=["q", "p"])
    store.ingest_conclusion("c3", "from q", premises=["q"])
    store.ingest_fact("p2", "s", "a'", timestamp=T0, supersedes="p")
    assert members(store, store.keys.invalidate) == {"c1", "c2"}


def test_conclusion_citing_a_superseded_premise_is_queued_at_once(store: MemoryStore) -> None:
    seed(store)  # "old" is superseded
    store.ingest_conclusion("c2", "stale", premises=["base", "old"])
    assert members(store, store.keys.invalidate) == {"c2"}
    store.ingest_conclusion("c3", "fresh", premises=["base", "new"])
    assert "c3" not in members(store, store.keys.invalidate)


def test_every_key_written_is_under_the_namespace_prefix(store: MemoryStore) -> None:
    everything_before = set(store.client.keys("*"))
    seed(store)
    embed(store, "base")
    store.ingest_conclusion("c2", "stale", premises=["old"])
    store.record_report(ConsolidationReport(started_at=T0, namespace=store.namespace))
    # The keys outside: the dispatcher's list of namespaces, and the exporter's totals of
    # all namespaces and its recency set.
    outside = {NAMESPACES_KEY, METRICS_TOTALS_KEY, METRICS_RECENT_KEY}
    written = set(store.client.keys("*")) - everything_before - {k.encode() for k in outside}
    assert len(written) > 8
    prefix = f"car-dream:{{{store.namespace}}}:".encode()
    assert all(k.startswith(prefix) for k in written), sorted(written)


def test_two_namespaces_never_see_each_other(store: MemoryStore) -> None:
    other = MemoryStore(store.client, store.namespace + "-b")
    try:
        store.ingest_fact("same", "s", "mine", timestamp=T0)
        store.ingest_environment("only-a", "x", expires_at=T0)
        other.ingest_fact("same", "s", "theirs", timestamp=T0)
        other.ingest_fact("only-b", "s", "y", timestamp=T0, supersedes="same")
        a, b = store.get("same"), other.get("same")
        assert a is not None and b is not None
        assert (a.content, a.superseded) == ("mine", False)
        assert (b.content, b.superseded) == ("theirs", True)
        assert store.get("only-b") is None and other.get("only-a") is None
        assert store.count() == 2 and other.count() == 2
        assert set(store.ids("fact")) == {"same"}
        assert store.index_sizes().collectable == 0
        assert store.index_sizes().expiry_scheduled == 1
        assert other.index_sizes().expiry_scheduled == 0
        # A premise of the other namespace does not exist here.
        with pytest.raises(UnknownNodeError):
            store.ingest_conclusion("c", "x", premises=["only-b"])
    finally:
        keys = list(store.client.scan_iter(match=other.keys.prefix + "*"))
        if keys:
            store.client.delete(*keys)


def test_reports_keep_the_last_100_newest_first(store: MemoryStore) -> None:
    for i in range(105):
        store.record_report(
            ConsolidationReport(started_at=T0, namespace=store.namespace, total_nodes=i)
        )
    assert store.client.llen(store.keys.reports) == 100
    everything = store.reports(1000)
    assert [r.total_nodes for r in everything] == list(range(104, 4, -1))
    assert [r.total_nodes for r in store.reports(3)] == [104, 103, 102]
    assert store.reports()[0].started_at == T0


def test_live_reports_stay_in_their_database(
    real_client: redis.Redis, other_redis_url: str, namespace: str
) -> None:
    # Pub/sub is server-wide: the same namespace in another database has its own channel.
    mine = MemoryStore(real_client, namespace)
    other = redis.Redis.from_url(other_redis_url)
    theirs = MemoryStore(other, namespace)
    assert mine.reports_channel != theirs.reports_channel
    pubsub = real_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(mine.reports_channel)
    try:
        theirs.record_report(ConsolidationReport(started_at=T0, namespace=namespace, reason="b"))
        mine.record_report(ConsolidationReport(started_at=T0, namespace=namespace, reason="a"))
        received: list[str | None] = []
        deadline = time.monotonic() + 30
        while "a" not in received and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=1)  # None for the subscription's own reply
            if message is not None:
                received.append(ConsolidationReport.model_validate_json(message["data"]).reason)
        assert received == ["a"]
    finally:
        pubsub.close()
        other.close()


def test_reports_empty(store: MemoryStore) -> None:
    assert store.reports() == []


def test_report_roundtrip_keeps_fields(store: MemoryStore) -> None:
    report = ConsolidationReport(
        started_at=T0,
        finished_at=T0 + timedelta(seconds=1),
        namespace=store.namespace,
        status="skipped",
        reason="coalesced",
        warnings=["w1"],
        skipped_records=2,
        embedding_coverage=0.5,
        lock_ttl_remaining=12.5,
    )
    store.record_report(report)
    assert store.reports(1) == [report]


def test_decode_responses_client_is_refused(redis_url: str) -> None:
    with pytest.raises(ConfigError, match="decode_responses"):
        MemoryStore(fakeredis.FakeRedis(decode_responses=True))
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        with pytest.raises(ConfigError):
            MemoryStore(client, "x")
    finally:
        client.close()


# -- fakeredis only -----------------------------------------------------------------


def test_store_exposes_namespace_and_prefix(fake: fakeredis.FakeRedis) -> None:
    s = MemoryStore(fake, "ns.1")
    assert s.namespace == "ns.1" and s.keys.prefix == "car-dream:{ns.1}:"
    assert MemoryStore(fake).namespace == "default"


@pytest.mark.parametrize("ns", ["", "a b", "{x}", "x" * 65])
def test_invalid_namespace_refused(fake: fakeredis.FakeRedis, ns: str) -> None:
    with pytest.raises(ValueError):
        MemoryStore(fake, ns)


def test_get_with_an_invalid_id_raises(fake_store: MemoryStore) -> None:
    with pytest.raises(ValueError):
        fake_store.get("a b")


@pytest.mark.parametrize(
    "ts",
    [T0, T0.astimezone(timezone(timedelta(hours=5))), T0.timestamp(), int(T0.timestamp())],
)
def test_timestamps_as_aware_datetimes_or_epoch_numbers(fake_store: MemoryStore, ts: Any) -> None:
    fake_store.ingest_fact("f", "s", "c", timestamp=ts)
    node = fake_store.get("f")
    assert node is not None and node.timestamp == T0.timestamp()


def test_revisions_increase_across_the_namespace(fake_store: MemoryStore) -> None:
    revs = []
    for i in range(4):
        fake_store.ingest_fact(f"f{i % 2}", "s", f"c{i}", timestamp=T0)
        node = fake_store.get(f"f{i % 2}")
        assert node is not None
        revs.append(node.rev)
    assert revs == sorted(revs) and len(set(revs)) == 4


def test_iter_nodes_in_small_batches(fake_store: MemoryStore) -> None:
    for i in range(7):
        fake_store.ingest_fact(f"f{i}", "s", "c", timestamp=T0)
    got = [n.id for n in fake_store.iter_nodes("fact", batch=2)]
    assert sorted(got) == [f"f{i}" for i in range(7)]
    assert [n.id for n in fake_store.iter_nodes("conclusion", batch=2)] == []


def test_rewriting_a_conclusion_moves_its_dependency_edges(fake_store: MemoryStore) -> None:
    s = fake_store
    s.ingest_fact("p", "s", "a", timestamp=T0)
    s.ingest_fact("q", "s", "b", timestamp=T0)
    s.ingest_conclusion("c", "from p", premises=["p"])
    s.ingest_conclusion("c", "from q", premises=["q"])
    assert members(s, s.keys.dependents("p")) == set()
    assert members(s, s.keys.dependents("q")) == {"c"}
    node = s.get("c")
    assert node is not None and node.premises == ["q"]
    # Superseding the old premise no longer concerns it.
    s.ingest_fact("p2", "s", "a'", timestamp=T0, supersedes="p")
    assert members(s, s.keys.invalidate) == set()


def test_index_sizes_of_an_empty_store(fake_store: MemoryStore) -> None:
    sizes = fake_store.index_sizes()
    assert sizes.total_nodes == 0 and sizes.embedding_coverage == 1.0
    assert sizes.nodes == {"fact": 0, "environment": 0, "conclusion": 0}
    assert sizes.embedding_model is None


def test_coverage_counts_embedded_nodes(fake_store: MemoryStore) -> None:
    fake_store.ingest_fact("a", "s", "x", timestamp=T0)
    fake_store.ingest_fact("b", "s", "y", timestamp=T0)
    embed(fake_store, "a")
    sizes = fake_store.index_sizes()
    assert sizes.unembedded == 1 and sizes.embedding_coverage == 0.5


def test_embedding_of_a_rewritten_node_is_not_stored(fake_store: MemoryStore) -> None:
    """STORE_VECTORS skips a node whose revision moved since it was read."""
    s = fake_store
    s.ingest_fact("f", "s", "one", timestamp=T0)
    node = s.get("f")
    assert node is not None
    s.ingest_fact("f", "s", "two", timestamp=T0)
    s.client.set(s.keys.lock, "running:tok")
    reply = s.scripts.store_vectors(
        keys=[s.keys.lock],
        args=[s.keys.prefix, "tok", "m1", 16, "f", str(node.rev), b"\0" * 16, ""],
    )
    assert int(reply[1]) == 0
    assert s.embedding("f") is None and "f" in members(s, s.keys.unembedded)


def test_superseding_twice_refused_or_consistent(fake_store: MemoryStore) -> None:
    """A node superseded by v2 and then by v3: whichever rule, one consistent successor."""
    s = fake_store
    s.ingest_fact("v1", "t", "a", timestamp=T0)
    s.ingest_fact("v2", "t", "b", timestamp=T0, supersedes="v1")
    try:
        s.ingest_fact("v3", "t", "c", timestamp=T0, supersedes="v1")
    except (SupersededNodeError, InvalidInputError):
        assert s.get("v3") is None
        return
    old = s.get("v1")
    assert old is not None and old.superseded_by in ("v2", "v3")
    assert list(zmembers(s, s.keys.collectable)) == ["v1"]


def test_tags_as_a_string_refused(fake_store: MemoryStore) -> None:
    with pytest.raises(InvalidInputError):
        fake_store.ingest_fact("f", "s", "c", tags="urgent")


def test_namespaces_register_on_first_write(fake: Any) -> None:
    assert MemoryStore.namespaces(fake) == []
    MemoryStore(fake, "agent-b").ingest_fact("f", "s", "c")
    a = MemoryStore(fake, "agent-a")
    with pytest.raises(InvalidInputError):
        a.ingest_fact("bad id", "s", "c")  # a refused write registers nothing
    assert MemoryStore.namespaces(fake) == ["agent-b"]
    a.ingest_environment("e", "c")
    assert MemoryStore.namespaces(fake) == ["agent-a", "agent-b"]


# -- batched writes (both backends) ------------------------------------------------


def test_batch_sends_on_execute_in_order_and_returns_each_outcome(store: MemoryStore) -> None:
    b = store.batch()
    b.ingest_fact("f1", "topic", "the sky is blue", timestamp=T0)
    b.ingest_conclusion("c1", "therefore blue", premises=["f1"])  # cites a queued fact
    b.ingest_conclusion("c2", "nonsense", premises=["missing"])
    b.ingest_fact("f2", "topic", "v2", timestamp=T0, supersedes="f1")
    b.ingest_fact("f1", "topic", "rewritten", timestamp=T0)  # f1 is superseded by now
    b.ingest_environment("e1", "door open", observed_at=T0)
    assert len(b) == 6 and store.get("f1") is None  # nothing sent yet
    out = b.execute()
    assert out[:2] == [True, True] and out[3:4] == [True] and out[5:] == [True]
    assert isinstance(out[2], UnknownNodeError) and "missing" in str(out[2])
    assert isinstance(out[4], SupersededNodeError)
    assert len(b) == 0 and b.execute() == []
    f1 = store.get("f1")
    assert f1 is not None and f1.content == "the sky is blue" and f1.superseded_by == "f2"
    assert store.get("c2") is None and store.count() == 4
    # The same writes one by one leave the same graph (revisions aside).
    other = MemoryStore(store.client, store.namespace + "-direct")
    other.ingest_fact("f1", "topic", "the sky is blue", timestamp=T0)
    other.ingest_conclusion("c1", "therefore blue", premises=["f1"])
    other.ingest_fact("f2", "topic", "v2", timestamp=T0, supersedes="f1")
    other.ingest_environment("e1", "door open", observed_at=T0)
    for node_id in ("f1", "c1", "f2", "e1"):
        mine, theirs = store.get(node_id), other.get(node_id)
        assert mine is not None and theirs is not None
        skip = {"rev", "observed_at", "timestamp", "superseded_at"}
        assert mine.model_dump(exclude=skip) == theirs.model_dump(exclude=skip)
    assert store.namespace in MemoryStore.namespaces(store.client)


def test_batch_validates_when_queued(store: MemoryStore) -> None:
    b = store.batch()
    with pytest.raises(InvalidInputError):
        b.ingest_fact("bad id", "s", "c")
    with pytest.raises(InvalidInputError):
        b.ingest_conclusion("c", "x", premises=[])
    assert len(b) == 0 and b.execute() == []
    assert store.count() == 0 and store.namespace not in MemoryStore.namespaces(store.client)
