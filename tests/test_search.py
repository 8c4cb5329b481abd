"""store.search: live nodes only, filters, scores, on Redis 8 (vector sets, a server of the
tests' own) and on the shared Redis 7 (the exact scan and its size limit); the vector index
kept in step by the scripts and verified by check_store."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import redis
from click.testing import CliRunner

from car_dream import CarDreamError, HashingEmbedder, SearchHit, check_store
from car_dream.cli import cli
from car_dream.config import DreamConfig
from car_dream.consolidate import run_pass
from car_dream.errors import InvalidInputError, SearchUnavailableError
from car_dream.search import vector_sets_warning
from car_dream.steps.embed import STORE_CHUNK, store_parts
from car_dream.store import MemoryStore

from .servers import RedisServer

EMB = HashingEmbedder()


@pytest.fixture(params=["redis8", "redis7"])
def store(request: pytest.FixtureRequest) -> MemoryStore:
    return request.getfixturevalue("redis8_store" if request.param == "redis8" else "real_store")


def vcard(s: MemoryStore) -> int:
    return int(s.client.execute_command("VCARD", s.keys.vectors))


def populate(s: MemoryStore, config: DreamConfig) -> None:
    now = time.time()
    s.ingest_fact("paris", "geo", "Paris is the capital of France")
    s.ingest_fact("berlin", "geo", "Berlin is the capital of Germany")
    s.ingest_fact("apples", "food", "I like to eat apples and pears")
    s.ingest_fact("quoted", 'it\'s "q"', "the capital of a quoted subject")
    s.ingest_environment("build", "the build server is down", observed_at=now)
    s.ingest_environment("gone", "capital of France outage", observed_at=now, expires_at=now + 2)
    s.ingest_conclusion("why", "France has Paris as its capital city", premises=["paris"])
    assert run_pass(s, config, force=True, embedder=EMB).status == "completed"


def exact(s: MemoryStore, query: str, ids: list[str]) -> dict[str, float]:
    q = EMB.embed([query])[0]
    out = {}
    for node_id in ids:
        found = s.embedding(node_id)
        assert found is not None
        v = found[1]
        out[node_id] = float(v @ q / (np.linalg.norm(v) * np.linalg.norm(q)))
    return out


def test_search_ranks_live_nodes_by_cosine_with_filters(
    store: MemoryStore, config: DreamConfig
) -> None:
    s = store
    populate(s, config)
    hits = s.search("Paris is the capital of France", 4, embedder=EMB)
    assert all(isinstance(h, SearchHit) for h in hits)
    assert hits[0].node.id == "paris" and hits[0].node.content.startswith("Paris")
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    want = exact(s, "Paris is the capital of France", [h.node.id for h in hits])
    for h in hits:  # Q8 in the vector set: close to the exact cosine, not equal
        assert h.score == pytest.approx(want[h.node.id], abs=0.02)
    assert {h.node.kind for h in s.search("capital", 10, kind="fact", embedder=EMB)} == {"fact"}
    by_subject = s.search("capital", 10, subject="geo", embedder=EMB)
    assert {h.node.id for h in by_subject} == {"paris", "berlin"}
    assert [h.node.id for h in s.search("capital", 3, subject='it\'s "q"', embedder=EMB)] == [
        "quoted"
    ]
    assert s.search("capital", 3, subject="nobody", embedder=EMB) == []
    high = s.search("Paris is the capital of France", 10, min_score=hits[1].score, embedder=EMB)
    assert [h.node.id for h in high] == [h.node.id for h in hits[:2]]
    vec = EMB.embed(["Paris is the capital of France"])[0]
    assert [h.node.id for h in s.search(list(map(float, vec)), 4)] == [h.node.id for h in hits]


def test_superseded_invalidated_expired_and_removed_nodes_are_never_found(
    store: MemoryStore, config: DreamConfig
) -> None:
    s = store
    populate(s, config)
    ids = {h.node.id for h in s.search("Paris is the capital of France", 20, embedder=EMB)}
    assert {"paris", "why", "gone"} <= ids
    time.sleep(2.1)  # "gone" expires (server time), before any pass prunes it
    assert "gone" not in {
        h.node.id for h in s.search("Paris is the capital of France", 20, embedder=EMB)
    }
    s.ingest_fact("paris2", "geo", "Paris, France's capital", supersedes="paris")
    found = {h.node.id for h in s.search("Paris is the capital of France", 20, embedder=EMB)}
    assert "paris" not in found and "paris2" not in found  # not embedded yet
    # The pass invalidates the conclusion citing the superseded fact, prunes "gone".
    assert run_pass(s, config, force=True, embedder=EMB).status == "completed"
    found = {h.node.id for h in s.search("Paris is the capital of France", 20, embedder=EMB)}
    assert "paris2" in found and not {"paris", "why", "gone"} & found
    assert check_store(s).ok


def test_a_text_query_needs_the_memory_s_model(store: MemoryStore, config: DreamConfig) -> None:
    populate(store, config)
    with pytest.raises(CarDreamError, match="hashing-v1-256"):
        store.search("capital", embedder=HashingEmbedder(128))
    with pytest.raises(InvalidInputError, match="dimension"):
        store.search([0.5] * 128)
    for bad in ({"k": 0}, {"kind": "nope"}, {"min_score": float("nan")}):
        with pytest.raises(InvalidInputError):
            store.search("capital", embedder=EMB, **bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        store.search([0.0] * 256)


def test_without_vector_sets_search_scans_up_to_its_limit(
    real_store: MemoryStore, config: DreamConfig
) -> None:
    populate(real_store, config)
    assert real_store.client.info()["redis_version"] < "8"
    limited = MemoryStore(real_store.client, real_store.namespace, search_scan_limit=6)
    # All kinds: 7 nodes, none unembedded, above 6; facts alone: 4, within it.
    with pytest.raises(SearchUnavailableError, match="Redis 8"):
        limited.search("capital", embedder=EMB)
    assert limited.search("capital", 2, kind="fact", embedder=EMB)[0].node.kind == "fact"


def test_the_vector_index_follows_every_write(
    redis8_store: MemoryStore, config: DreamConfig
) -> None:
    s = redis8_store
    populate(s, config)
    assert vcard(s) == 7 and check_store(s).ok
    # A rewrite with the same content keeps its vector, and its new subject is searchable.
    s.ingest_fact("berlin", "cities", "Berlin is the capital of Germany")
    assert vcard(s) == 7 and check_store(s).ok
    assert [h.node.id for h in s.search("Berlin", 1, subject="cities", embedder=EMB)] == ["berlin"]
    s.ingest_fact("berlin", "cities", "Berlin is a city in Germany")  # new content: out
    assert vcard(s) == 6 and check_store(s).ok
    run_pass(s, config, force=True, embedder=EMB)
    assert vcard(s) == 7 and check_store(s).ok
    # Another model: the index empties, then refills with that model's vectors only.
    other = HashingEmbedder(128)
    run_pass(s, config, force=True, embedder=other)
    assert check_store(s).ok
    assert int(s.client.execute_command("VDIM", s.keys.vectors)) == 128
    assert s.search("Paris is the capital of France", 1, embedder=other)[0].node.id == "paris"


def test_check_finds_and_repair_rebuilds_vector_index_drift(
    redis8_store: MemoryStore, config: DreamConfig
) -> None:
    s = redis8_store
    populate(s, config)
    c, key = s.client, s.keys.vectors
    c.execute_command("VREM", key, "paris")
    c.execute_command("VADD", key, "FP32", np.ones(256, np.float32).tobytes(), "ghost")
    c.execute_command("VSETATTR", key, "berlin", '{"kind":"environment","s":""}')
    report = check_store(s)
    assert not report.ok and report.vector_index == 7
    assert report.problem_counts == {"vector_attrs": 1, "vector_missing": 1, "vector_stale": 1}
    repaired = check_store(s, repair=True)
    assert repaired.ok and repaired.vector_index == 7, repaired.messages
    assert s.search("Paris is the capital of France", 1, embedder=EMB)[0].node.id == "paris"
    # Data from a Redis 7 (no index at all): the scan answers, the repair builds it.
    c.delete(key)
    assert s.search("Paris is the capital of France", 1, embedder=EMB)[0].node.id == "paris"
    assert check_store(s).problem_counts == {"vector_missing": 7}
    assert check_store(s, repair=True).ok and vcard(s) == 7


def test_cli_search(
    redis8: RedisServer,
    redis8_store: MemoryStore,
    config: DreamConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    populate(redis8_store, config)
    monkeypatch.setenv("CAR_DREAM_REDIS_URL", redis8.url)
    monkeypatch.setenv("CAR_DREAM_NAMESPACE", redis8_store.namespace)
    runner = CliRunner()
    out = runner.invoke(cli, ["search", "Paris is the capital of France", "-k", "2"])
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[0].endswith("paris [geo]: Paris is the capital of France")
    js = runner.invoke(cli, ["search", "capital", "--kind", "fact", "--subject", "geo", "--json"])
    assert js.exit_code == 0, js.output
    assert {h["node"]["id"] for h in json.loads(js.output)} == {"paris", "berlin"}
    none = runner.invoke(cli, ["search", "capital", "--subject", "nobody"])
    assert none.exit_code == 0 and none.output == "no match\n"
    bad = runner.invoke(cli, ["search", "capital", "-k", "0"])
    assert bad.exit_code == 2


def test_a_worker_says_once_that_search_needs_redis_8(
    real_client: redis.Redis, redis8: RedisServer
) -> None:
    warning = vector_sets_warning(real_client)
    assert warning is not None and "Redis 8" in warning
    assert vector_sets_warning(redis8.client()) is None


def test_store_parts_cuts_a_batch_into_calls() -> None:
    blob = b"".join(bytes([i]) * 8 for i in range(5))
    args = ["m", 8, "a\nb\nc\nd\ne", "1\n2\n3\n4\n5", blob, "x\ny"]
    parts = store_parts(args, 2)
    assert [p[2] for p in parts] == ["a\nb", "c\nd", "e"]
    assert [p[3] for p in parts] == ["1\n2", "3\n4", "5"]
    assert b"".join(p[4] for p in parts) == blob and parts[2][4] == bytes([4]) * 8
    assert [p[5] for p in parts] == ["x\ny", "", ""]
    assert store_parts(["m", 0, "", "", b"", "x"], 2) == [["m", 0, "", "", b"", "x"]]


def test_a_pass_indexes_a_batch_in_several_calls(
    redis8_store: MemoryStore, config: DreamConfig
) -> None:
    s = redis8_store
    batch = s.batch()
    for i in range(STORE_CHUNK * 2 + 5):
        batch.ingest_fact(f"n{i}", f"s{i % 3}", f"note {i} about topic {i % 7}")
    batch.execute()
    report = run_pass(s, config, force=True, embedder=EMB)
    assert report.nodes_embedded == STORE_CHUNK * 2 + 5 == vcard(s)
    assert check_store(s).ok
