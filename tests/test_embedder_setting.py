"""CAR_DREAM_EMBEDDER: what it accepts, one load per process, and a failing model stopping
only the embed step."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from car_dream import embedding_models
from car_dream.config import DreamConfig, load_config
from car_dream.consolidate import run_pass
from car_dream.embedder import HashingEmbedder
from car_dream.embedder_spec import parse_embedder
from car_dream.embedding_models import configured_embedder
from car_dream.errors import ConfigError
from car_dream.report import ConsolidationReport
from car_dream.store import MemoryStore
from car_dream.tasks import TASK_NAME

from . import embedder_factories
from .celery_env import Processes, fresh_app, process_env, procs_fixture  # noqa: F401
from .conftest import wait_for

FACTORY = "tests.embedder_factories:counting_hashing"
MINILM_FACTORY = "tests.embedder_factories:counting_minilm"


@pytest.fixture(autouse=True)
def _no_cached_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts in a process that has loaded no model yet."""
    monkeypatch.setattr(embedding_models, "_cache", {})


# -- the setting -------------------------------------------------------------------


def test_default_is_hashing() -> None:
    config = load_config()
    assert config.embedder == "hashing" and config.embed_batch == 32
    embedder = configured_embedder(config)
    assert isinstance(embedder, HashingEmbedder)
    assert embedder.model_id == HashingEmbedder().model_id  # stores made before keep theirs


@pytest.mark.parametrize(
    ("value", "kind", "name"),
    [
        ("hashing", "hashing", ""),
        ("sentence-transformers:all-MiniLM-L6-v2", "sentence-transformers", "all-MiniLM-L6-v2"),
        ("sentence-transformers:/models/mini lm", "sentence-transformers", "/models/mini lm"),
        ("openai:text-embedding-3-small", "openai", "text-embedding-3-small"),
        ("openai:nomic-embed-text:v1.5", "openai", "nomic-embed-text:v1.5"),
        (FACTORY, "factory", FACTORY),
        ("pkg.sub:Factory.create", "factory", "pkg.sub:Factory.create"),
    ],
)
def test_accepted_values(value: str, kind: str, name: str) -> None:
    assert parse_embedder(value) == (kind, name)
    assert load_config(embedder=value).embedder == value


INVALID = "|bert|hashing:512|openai:|openai:  |sentence-transformers:|module:|:factory"
INVALID += "|my-pkg:factory|pkg:fac:tory|pkg:1factory|pkg/mod:factory"


@pytest.mark.parametrize("value", INVALID.split("|"))
def test_invalid_value_fails_at_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CAR_DREAM_EMBEDDER", value)
    with pytest.raises(ConfigError) as err:
        load_config()
    assert "CAR_DREAM_EMBEDDER:" in str(err.value)


def test_other_embedder_settings_name_their_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAR_DREAM_EMBEDDER_URL", "ftp://user:hunter2@models.example/v1")
    monkeypatch.setenv("CAR_DREAM_EMBED_BATCH", "0")
    monkeypatch.setenv("CAR_DREAM_EMBEDDER_TIMEOUT_SECS", "-1")
    monkeypatch.setenv("CAR_DREAM_EMBEDDER_RETRIES", "99")
    with pytest.raises(ConfigError) as err:
        load_config()
    message = str(err.value)
    for name in ("URL", "TIMEOUT_SECS", "RETRIES"):
        assert f"CAR_DREAM_EMBEDDER_{name}:" in message
    assert "CAR_DREAM_EMBED_BATCH:" in message
    assert "hunter2" not in message


def test_the_api_key_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-test-0123456789abcdef"
    monkeypatch.setenv("CAR_DREAM_EMBEDDER", "openai:text-embedding-3-small")
    monkeypatch.setenv("CAR_DREAM_EMBEDDER_API_KEY", key)
    config = load_config()
    assert config.embedder_api_key is not None
    assert config.embedder_api_key.get_secret_value() == key
    shown = [repr(config), str(config), config.model_dump_json()]
    for text in [*shown, repr(configured_embedder(config))]:
        assert key not in text
    monkeypatch.setenv("CAR_DREAM_INTERVAL_SECS", "1")  # an error among the settings
    with pytest.raises(ConfigError) as err:
        load_config()
    assert key not in str(err.value)


# -- module:factory and one load per process ---------------------------------------


def test_a_factory_is_called_once_per_process(fake_store: MemoryStore, tmp_path: Path) -> None:
    config = load_config(interval_secs=60, data_dir=tmp_path, embedder=FACTORY)
    before = len(embedder_factories.CALLS)
    fake_store.ingest_fact("a", "s", "alpha")
    first = run_pass(fake_store, config, force=True)
    fake_store.ingest_fact("b", "s", "beta")
    second = run_pass(fake_store, config, force=True)
    assert (first.status, second.status) == ("completed", "completed")
    assert first.nodes_embedded == second.nodes_embedded == 1
    assert len(embedder_factories.CALLS) == before + 1
    assert fake_store.embedding("b")[0] == "hashing-v1-64"  # type: ignore[index]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("tests.embedder_factories:not_an_embedder", "not an embedder"),
        ("tests.embedder_factories:broken", "the model file is corrupt"),
        ("tests.embedder_factories:missing", "missing"),
        ("tests.no_such_module:factory", "No module named"),
        ("sentence-transformers:/nonexistent/model-dir", "/nonexistent/model-dir"),
    ],
)
def test_a_model_that_cannot_load_fails_the_pass_naming_the_variable(
    fake_store: MemoryStore, tmp_path: Path, value: str, says: str
) -> None:
    config = load_config(interval_secs=60, data_dir=tmp_path, embedder=value)
    with pytest.raises(ConfigError, match=says):
        configured_embedder(config)
    report = run_pass(fake_store, config)
    assert report.status == "failed"
    assert report.reason is not None and "CAR_DREAM_EMBEDDER" in report.reason
    assert says in report.reason
    # It never took the lock: a pass with a working model runs at once.
    assert run_pass(fake_store, load_config(interval_secs=60, data_dir=tmp_path)).status == (
        "completed"
    )


# -- a model that fails or answers garbage stops the embed step, not the pass --------


class Scripted:
    """Answers good 8-d vectors until call ``fail_at`` (0-based), then ``answer`` it."""

    model_id = "scripted-8"

    def __init__(self, answer: Any, fail_at: int = 0) -> None:
        self.answer, self.fail_at, self.calls = answer, fail_at, 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        if self.calls - 1 < self.fail_at:
            return np.ones((len(texts), 8), dtype=np.float32)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer(len(texts))  # type: ignore[no-any-return]


GARBAGE = {
    "raises": (RuntimeError("CUDA out of memory"), "CUDA out of memory"),
    "NaN": (lambda n: np.full((n, 8), np.nan, dtype=np.float32), "NaN"),
    "infinity": (lambda n: np.full((n, 8), np.inf, dtype=np.float32), "NaN or infinity"),
    "too few rows": (lambda n: np.ones((n - 1, 8), dtype=np.float32), "shape"),
    "too many rows": (lambda n: np.ones((n + 1, 8), dtype=np.float32), "shape"),
    "one row, flat": (lambda n: np.ones(8 * n, dtype=np.float32), "shape"),
    "other width": (lambda n: np.ones((n, 9), dtype=np.float32), "9 dimensions, not 8"),
    "no width": (lambda n: np.ones((n, 0), dtype=np.float32), "shape"),
    "not numbers": (lambda n: [["a"] * 8] * n, "ValueError"),
}


@pytest.mark.parametrize("case", list(GARBAGE))
def test_garbage_stops_the_embed_step_and_every_other_step_completes(
    real_store: MemoryStore, tmp_path: Path, case: str
) -> None:
    answer, says = GARBAGE[case]
    # Pages of about 100 nodes (SSCAN), each one model call; the second call fails, so
    # the first page is stored and the rest waits.
    path = tmp_path / "vectors.npz"
    config = load_config(
        interval_secs=60, data_dir=tmp_path, batch_size=100, embed_batch=1000, embeddings_path=path
    )
    now = time.time()
    real_store.ingest_environment("old", "door open", observed_at=now - 60, expires_at=now - 1)
    batch = real_store.batch()
    for i in range(300):
        batch.ingest_fact(f"f{i}", "s", f"fact {i}")
    batch.execute()
    report = run_pass(real_store, config, force=True, embedder=Scripted(answer, fail_at=1))
    assert report.status == "completed", report.reason
    embedded = report.nodes_embedded
    assert 0 < embedded < 300
    assert real_store.index_sizes().unembedded == 300 - embedded
    assert report.embedding_coverage == pytest.approx(embedded / 300)
    [warning] = [w for w in report.warnings if w.startswith("embed stopped")]
    assert f"{300 - embedded} nodes wait for the next pass" in warning and says in warning
    # The steps before embed ran, and the ones after; nothing but good vectors stored.
    assert report.expired_pruned == 1
    with np.load(path) as data:
        assert data["vectors"].shape == (embedded, 8) and np.isfinite(data["vectors"]).all()
    # The next pass, with the model working again, embeds the rest.
    healed = run_pass(real_store, config, force=True, embedder=Scripted(None, fail_at=10**6))
    assert healed.nodes_embedded == 300 - embedded and healed.embedding_coverage == 1.0
    assert not healed.warnings


def test_a_model_switch_whose_model_fails_reports_the_true_coverage(
    real_store: MemoryStore, config: DreamConfig
) -> None:
    for i in range(3):
        real_store.ingest_fact(f"f{i}", "s", f"fact {i}")
    assert run_pass(real_store, config, force=True).embedding_coverage == 1.0
    report = run_pass(real_store, config, force=True, embedder=Scripted(RuntimeError("down")))
    assert report.status == "completed"
    assert report.embedding_coverage == 0.0  # every node waits for the new model
    assert any("3 nodes wait" in w for w in report.warnings)


def test_texts_go_to_the_model_embed_batch_at_a_time(
    real_store: MemoryStore, tmp_path: Path
) -> None:
    sizes: list[int] = []

    class Recording(HashingEmbedder):
        def embed(self, texts: Sequence[str]) -> np.ndarray:
            sizes.append(len(texts))
            return super().embed(texts)

    for i in range(10):
        real_store.ingest_fact(f"f{i}", "s", f"fact {i}")
    config = load_config(interval_secs=60, data_dir=tmp_path, embed_batch=3)
    report = run_pass(real_store, config, force=True, embedder=Recording())
    assert report.nodes_embedded == 10
    assert max(sizes) <= 3 and sum(sizes) == 10


# -- a real worker ------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(240)
def test_a_worker_process_loads_the_model_once(
    db: redis.Redis,
    redis_url: str,
    procs: Processes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loads = tmp_path / "loads.log"
    root = str(Path(__file__).resolve().parent.parent)
    settings = {"interval_secs": 3600, "max_trailing": 0, "embedder": MINILM_FACTORY}
    env = process_env(redis_url, tmp_path / "data", **settings)
    env["CAR_DREAM_TEST_LOAD_LOG"] = str(loads)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    procs.worker(env, concurrency=1)
    task = fresh_app(monkeypatch, redis_url, **settings).tasks[TASK_NAME]
    store = MemoryStore(db, "default")
    for i in range(3):
        store.ingest_fact(f"f{i}", "s", f"the agent learnt fact number {i}")
        result = task.delay(force=True).get(timeout=180)
        report = ConsolidationReport.model_validate(result)
        assert report.status == "completed" and report.nodes_embedded == 1, result
    model, vector = store.embedding("f2")  # type: ignore[misc]
    assert model.startswith("sentence-transformers:") and vector.shape == (384,)
    pids = wait_for(lambda: loads.read_text().split(), timeout=5)
    assert len(pids) == 1, pids  # three passes, one load
