"""``openai:<model>``: the OpenAI-compatible client against real servers on loopback.

Infinity (``infinity_emb``, the PyPI ``infinity-emb`` server) serves the tests' MiniLM
model for the real protocol; :class:`ScriptedServer` serves the same model with the
faults a real server only shows on a bad day.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import SecretStr

from car_dream.config import load_config
from car_dream.consolidate import run_pass
from car_dream.embedder import embed_checked
from car_dream.embedding_models import SentenceTransformerEmbedder
from car_dream.errors import EmbedderError
from car_dream.openai_embedder import OpenAIEmbedder
from car_dream.store import MemoryStore

from .conftest import free_port
from .embedder_factories import minilm_path, shared_minilm
from .embedding_servers import SERVED_NAME, InfinityServer, ScriptedServer

KEY = "sk-test-infinity-4242"
TEXTS = [
    "The deploy to staging failed because the database was unreachable.",
    "Staging deployment broke: it could not reach the database.",
    "My grandmother grows tomatoes in her garden every summer.",
]


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEmbedder:
    return shared_minilm()


@pytest.fixture(scope="module")
def infinity(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfinityServer]:
    server = InfinityServer(tmp_path_factory.mktemp("infinity"), minilm_path(), KEY)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def scripted(minilm: SentenceTransformerEmbedder) -> Iterator[ScriptedServer]:
    with ScriptedServer(minilm.embed, api_key=KEY, stall=3.0) as server:
        yield server


def client(url: str, key: str | None = KEY, **kw: Any) -> OpenAIEmbedder:
    kw.setdefault("timeout", 1.0)
    return OpenAIEmbedder(SERVED_NAME, url, SecretStr(key) if key else None, **kw)


def settings(url: str, tmp_path: Path, **kw: Any) -> Any:
    model = f"openai:{SERVED_NAME}"
    base = {"interval_secs": 60, "data_dir": tmp_path, "embedder": model, "embedder_url": url}
    return load_config(**base, embedder_api_key=KEY, **kw)


# -- Infinity ---------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_pass_embeds_through_infinity(
    infinity: InfinityServer,
    minilm: SentenceTransformerEmbedder,
    real_store: MemoryStore,
    tmp_path: Path,
) -> None:
    for i, text in enumerate(TEXTS):
        real_store.ingest_fact(f"f{i}", "ops", text)
    report = run_pass(real_store, settings(infinity.url, tmp_path), force=True)
    assert report.status == "completed" and not report.warnings, report.warnings
    assert report.nodes_embedded == 3 and report.embedding_coverage == 1.0
    stored = [real_store.embedding(f"f{i}") for i in range(3)]
    assert {model for model, _ in stored} == {f"openai:{SERVED_NAME}"}  # type: ignore[misc]
    vectors = np.stack([vec for _, vec in stored])  # type: ignore[misc]
    assert vectors.shape == (3, 384)
    # The same model as in this process: the same vectors, up to float noise.
    local = minilm.embed(TEXTS)
    assert np.min(np.sum(vectors * local, axis=1)) > 0.999
    assert vectors[0] @ vectors[1] > 0.7 and vectors[0] @ vectors[2] < 0.2


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_infinity_refusing_the_key_stops_only_the_embed_step(
    infinity: InfinityServer,
    real_store: MemoryStore,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = "sk-wrong-key-31337"
    real_store.ingest_fact("f", "ops", TEXTS[0])
    now = time.time()
    real_store.ingest_environment("old", "door open", observed_at=now - 60, expires_at=now - 1)
    config = settings(infinity.url, tmp_path).model_copy(
        update={"embedder_api_key": SecretStr(wrong)}
    )
    with caplog.at_level(logging.DEBUG):
        report = run_pass(real_store, config, force=True)
    assert report.status == "completed" and report.expired_pruned == 1
    assert report.nodes_embedded == 0 and real_store.index_sizes().unembedded == 1
    [warning] = report.warnings
    assert "HTTP 401" in warning and "CAR_DREAM_EMBEDDER_API_KEY" in warning
    assert wrong not in report.model_dump_json() and wrong not in caplog.text


# -- faults, from a scripted server -----------------------------------------------


@pytest.mark.parametrize("fault", ["429", "500", "503", "stall", "drop"])
def test_transient_faults_are_retried(
    scripted: ScriptedServer, minilm: SentenceTransformerEmbedder, fault: str
) -> None:
    scripted.script = [fault]
    vectors = client(scripted.url, retries=1).embed(TEXTS)
    np.testing.assert_allclose(vectors, minilm.embed(TEXTS), atol=1e-5)
    assert len(scripted.requests) == 2


@pytest.mark.parametrize("retries", [0, 2])
def test_retries_are_bounded(scripted: ScriptedServer, retries: int) -> None:
    scripted.script = ["500"] * 10
    with pytest.raises(EmbedderError, match="HTTP 500"):
        client(scripted.url, retries=retries).embed(TEXTS)
    assert len(scripted.requests) == retries + 1


@pytest.mark.timeout(60)
def test_a_long_retry_after_is_capped_at_the_timeout(
    scripted: ScriptedServer, minilm: SentenceTransformerEmbedder
) -> None:
    scripted.script = ["429-for-an-hour"]
    vectors = client(scripted.url, retries=1, timeout=1.0).embed(TEXTS)
    assert vectors.shape == (3, 384)


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ("400", "HTTP 400"),
        ("malformed", "something else than embeddings"),
        ("html", "something else than embeddings"),
    ],
)
def test_answers_that_retrying_cannot_mend_fail_at_once(
    scripted: ScriptedServer, fault: str, says: str
) -> None:
    scripted.script = [fault]
    with pytest.raises(EmbedderError, match=says):
        client(scripted.url, retries=3).embed(TEXTS)
    assert len(scripted.requests) == 1


def test_a_refused_key_names_the_variable_and_is_never_echoed(scripted: ScriptedServer) -> None:
    wrong = "sk-wrong-key-31337"
    with pytest.raises(EmbedderError) as err:
        client(scripted.url, key=wrong, retries=3).embed(TEXTS)
    assert "HTTP 401" in str(err.value) and "CAR_DREAM_EMBEDDER_API_KEY" in str(err.value)
    assert wrong not in str(err.value)  # the server quoted it; the client does not
    assert len(scripted.requests) == 1
    assert scripted.requests[0]["auth"] == f"Bearer {wrong}"


@pytest.mark.parametrize(
    ("fault", "says"),
    [("count", "gave an array of shape"), ("nan", "NaN"), ("dims", "100 dimensions, not 384")],
)
def test_garbage_answers_are_refused(scripted: ScriptedServer, fault: str, says: str) -> None:
    embedder = client(scripted.url)
    embed_checked(embedder, TEXTS, batch=8)  # a good answer first: 384 dimensions
    scripted.script = [fault]
    with pytest.raises(EmbedderError, match=says):
        embed_checked(embedder, TEXTS, batch=8)


def test_rows_are_matched_by_index(
    scripted: ScriptedServer, minilm: SentenceTransformerEmbedder
) -> None:
    scripted.script = ["reversed"]
    np.testing.assert_allclose(client(scripted.url).embed(TEXTS), minilm.embed(TEXTS), atol=1e-5)


def test_a_server_that_is_down(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with pytest.raises(EmbedderError, match="unreachable after 2 tries"):
        client(url, retries=1).embed(TEXTS)


def test_no_key_no_authorization_header(minilm: SentenceTransformerEmbedder) -> None:
    with ScriptedServer(minilm.embed) as server:
        assert client(server.url, key=None).embed(TEXTS[:1]).shape == (1, 384)
        assert server.requests[0]["auth"] is None
        assert server.requests[0]["body"] == {"model": SERVED_NAME, "input": TEXTS[:1]}


def test_a_pass_against_a_failing_server_completes_and_the_next_one_embeds(
    scripted: ScriptedServer, real_store: MemoryStore, tmp_path: Path
) -> None:
    for i in range(10):
        real_store.ingest_fact(f"f{i}", "ops", f"{TEXTS[i % 3]} ({i})")
    now = time.time()
    real_store.ingest_environment("old", "door open", observed_at=now - 60, expires_at=now - 1)
    config = settings(scripted.url, tmp_path, embed_batch=4, embedder_retries=1)
    scripted.script = ["500"] * 2
    report = run_pass(real_store, config, force=True)
    assert report.status == "completed" and report.expired_pruned == 1
    assert report.nodes_embedded == 0 and report.embedding_coverage == 0.0
    assert any("10 nodes wait" in w and "HTTP 500" in w for w in report.warnings)
    scripted.requests.clear()
    healed = run_pass(real_store, config, force=True)
    assert healed.nodes_embedded == 10 and healed.embedding_coverage == 1.0
    # CAR_DREAM_EMBED_BATCH texts per request
    assert sorted(len(r["body"]["input"]) for r in scripted.requests) == [2, 4, 4]
