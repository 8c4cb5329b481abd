"""Scale-out: dispatch over every namespace, RabbitMQ as the broker, Redis Cluster.

- ``car_dream.dispatch`` sends one pass per registered namespace, a page at a time, and a
  second dispatch in the same interval passes no namespace twice (real worker);
- a real worker with RabbitMQ (127.0.0.1:5672) as broker and Redis for the rest, on a
  queue of its own that the test deletes afterwards;
- a three-node Redis Cluster started by the test: the store, the lock and a full pass.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import generate_latest

from car_dream.config import load_config
from car_dream.consolidate import run_pass
from car_dream.errors import UnknownNodeError
from car_dream.exporter import registry
from car_dream.keys import NAMESPACES_KEY
from car_dream.lock import PassLock, lock_state, request_cancel
from car_dream.metrics import read_snapshot
from car_dream.store import MemoryStore
from car_dream.tasks import DISPATCH_TASK_NAME, TASK_NAME

from .celery_env import (  # noqa: F401
    RABBIT,
    Processes,
    fresh_app,
    process_env,
    procs_fixture,
    rabbit_queue_fixture,
)
from .conftest import wait_for
from .metrics_env import promtool
from .servers import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def completed_passes(client: redis.Redis, namespace: str) -> list[Any]:
    return [
        r
        for r in MemoryStore(client, namespace).reports(100)
        if r.status == "completed" and not r.trailing
    ]


def seed(store: MemoryStore) -> None:
    store.ingest_fact("f1", "weather", "it rains", timestamp=T0)
    store.ingest_fact("f2", "weather", "it is sunny", timestamp=T0, supersedes="f1")
    store.ingest_environment("door", "the door is open", observed_at=T0, expires_at=T0)
    store.ingest_conclusion("c1", "take an umbrella", premises=["f1"])


# -- dispatch --------------------------------------------------------------------------


def test_dispatch_pages_through_namespaces_and_passes_each_once(
    db: redis.Redis,
    redis_url: str,
    procs: Processes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = [f"tenant-{i:02d}" for i in range(30)]
    for ns in names:
        MemoryStore(db, ns).ingest_fact("f", "s", f"memory of {ns}", timestamp=T0)
    assert sorted(MemoryStore.namespaces(db)) == names
    settings = {"interval_secs": 600, "dispatch_chunk": 4, "max_trailing": 0}
    env = process_env(redis_url, tmp_path / "data", **settings)
    procs.worker(env, concurrency=2)
    app = fresh_app(monkeypatch, redis_url, **settings)
    first = app.send_task(DISPATCH_TASK_NAME).get(timeout=60)
    assert first["cursor"] == 0 and first["dispatched"] >= 1 and first["next_cursor"] != 0
    wait_for(lambda: all(completed_passes(db, ns) for ns in names), timeout=90)
    # A second beat tick in the same interval: every namespace's window is closed.
    app.send_task(DISPATCH_TASK_NAME).get(timeout=60)

    def all_coalesced() -> bool:
        return all(len(MemoryStore(db, ns).reports(100)) >= 2 for ns in names)

    wait_for(all_coalesced, timeout=90)
    for ns in names:
        reports = MemoryStore(db, ns).reports(100)
        statuses = Counter((r.status, r.reason) for r in reports)
        assert statuses == {("completed", None): 1, ("skipped", "coalesced"): 1}, (ns, statuses)
        assert reports[-1].nodes_embedded == 1


def test_dispatch_sends_small_messages_in_pages(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, db: redis.Redis
) -> None:
    """Without a worker: one dispatch run sends its page of passes and its continuation."""
    names = [f"ns-{i:03d}" for i in range(25)]
    db.sadd(NAMESPACES_KEY, *names, "bad name{x}")
    app = fresh_app(monkeypatch, redis_url, dispatch_chunk=5, interval_secs=300)
    sent: list[tuple[str, dict[str, Any], dict[str, Any]]] = []

    def fake_apply_async(task: Any, args: Any = None, kwargs: Any = None, **opts: Any) -> None:
        sent.append((task.name, dict(kwargs or {}), opts))

    monkeypatch.setattr("celery.app.task.Task.apply_async", fake_apply_async)
    dispatch = app.tasks[DISPATCH_TASK_NAME]
    passes: list[str] = []
    cursor, pages = 0, 0
    while True:
        sent.clear()
        result = dispatch.run(cursor=cursor)
        pages += 1
        passes += [kw["namespace"] for name, kw, _ in sent if name == TASK_NAME]
        follow = [kw for name, kw, _ in sent if name == DISPATCH_TASK_NAME]
        assert all(opts.get("expires") == 300 for _, _, opts in sent)
        assert len(sent) <= 5 * 3 + 1  # a page (SSCAN's COUNT is a hint) plus one follow-up
        if not result["next_cursor"]:
            assert follow == []
            break
        assert follow == [{"cursor": result["next_cursor"]}]
        cursor = result["next_cursor"]
    assert pages > 1
    assert sorted(set(passes)) == names  # the invalid name is skipped, every other sent
    assert len(passes) == len(set(passes))


def test_dispatch_setting_picks_the_beat_entry(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, db: redis.Redis
) -> None:
    from car_dream.app import create_app
    from car_dream.celery_config import dream_config
    from car_dream.schedule import DISPATCH_ENTRY_NAME, ensure_dream_task, get_schedule

    plain = fresh_app(monkeypatch, redis_url, interval_secs=900)
    dream_config(plain)  # read now, before the variable below
    assert ensure_dream_task(plain) is True
    assert get_schedule(plain)["name"] == "car-dream"  # type: ignore[index]
    monkeypatch.setenv("CAR_DREAM_DISPATCH", "true")
    fanout = create_app()
    assert ensure_dream_task(fanout) is True
    entry = get_schedule(fanout)
    assert entry is not None and entry["name"] == DISPATCH_ENTRY_NAME
    assert entry["task"] == DISPATCH_TASK_NAME and entry["every_secs"] == 900
    assert entry["kwargs"] == {}
    assert get_schedule(plain) is None  # the single-namespace entry made way for dispatch
    assert ensure_dream_task(fanout) is False


# -- RabbitMQ as the broker ------------------------------------------------------------


def test_rabbitmq_broker_with_a_real_worker(
    rabbit_queue: str,
    db: redis.Redis,
    redis_url: str,
    procs: Processes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # rabbit_queue comes first: set up first, torn down last, after the worker stopped
    # (a queue deleted under a live worker is declared again by it).
    settings = {"broker_url": RABBIT, "queue": rabbit_queue, "interval_secs": 600}
    for ns in ("alpha", "beta"):
        seed(MemoryStore(db, ns))
    env = process_env(redis_url, tmp_path / "data", **settings)
    procs.worker(env)
    app = fresh_app(monkeypatch, redis_url, **settings)
    assert app.conf.broker_url.startswith("amqp://")
    report = app.send_task(TASK_NAME, kwargs={"namespace": "alpha"}).get(timeout=60)
    assert report["status"] == "completed" and report["expired_pruned"] == 1
    assert report["superseded_gc"] == 2 and report["conclusions_invalidated"] == 1
    # The trailing pass travelled through RabbitMQ too; dispatch covers the rest.
    wait_for(lambda: any(r.trailing for r in MemoryStore(db, "alpha").reports(10)), timeout=60)
    app.send_task(DISPATCH_TASK_NAME).get(timeout=60)
    wait_for(lambda: completed_passes(db, "beta"), timeout=60)
    assert len(completed_passes(db, "alpha")) == 1  # alpha's window was still closed
    # Memory, locks and results stayed in Redis.
    assert lock_state(db, MemoryStore(db, "beta").keys).state == "done"
    assert list(db.scan_iter(match="celery-task-meta-*"))


# -- Redis Cluster ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    cli = shutil.which("redis-cli")
    if not cli:
        pytest.skip("redis-cli is needed to create a cluster")
    from redis.cluster import RedisCluster

    base = tmp_path_factory.mktemp("cluster")
    ports = _cluster_ports(3)
    nodes = [
        RedisServer(
            base / str(port),
            ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"],
            port=port,
            persist=False,
        )
        for port in ports
    ]
    try:
        for node in nodes:
            node.start()
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        wait_for(lambda: all(_cluster_ok(p) for p in ports), timeout=30, interval=0.2)
        client = RedisCluster(host="127.0.0.1", port=ports[0])
        yield client
        client.close()
    finally:
        for node in nodes:
            node.stop()


def _cluster_ports(n: int) -> list[int]:
    """Free ports whose cluster bus port (+10000) is free and valid too."""
    ports: list[int] = []
    rng = random.Random()
    while len(ports) < n:
        port = rng.randrange(20000, 30000)
        if port not in ports and _bindable(port) and _bindable(port + 10000):
            ports.append(port)
    return ports


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _cluster_ok(port: int) -> bool:
    with redis.Redis(port=port, decode_responses=True) as client:
        info = client.execute_command("CLUSTER", "INFO")
    if isinstance(info, dict):
        return bool(info.get("cluster_state") == "ok")
    return "cluster_state:ok" in str(info)


def test_cluster_full_pass_in_namespaces_on_every_node(cluster: Any, tmp_path: Path) -> None:
    names = [f"cl-{i}" for i in range(12)]
    slots = {cluster.keyslot(MemoryStore(cluster, ns).keys.lock) for ns in names}
    owners = {cluster.get_node_from_key(MemoryStore(cluster, ns).keys.lock).port for ns in names}
    assert len(slots) == len(names) and len(owners) == 3  # the namespaces span the cluster
    path = tmp_path / "vectors.npz"
    config = load_config(interval_secs=60, data_dir=tmp_path, embeddings_path=path)
    for ns in names:
        store = MemoryStore(cluster, ns)
        seed(store)
        report = run_pass(store, config)
        assert report.status == "completed", report.reason
        assert (report.expired_pruned, report.superseded_gc, report.conclusions_invalidated) == (
            1,
            2,
            1,
        )
        assert report.nodes_embedded == 1 and report.embedding_coverage == 1.0
        assert store.count() == 1 and store.get("f2") is not None
        again = run_pass(store, config)
        assert again.status == "skipped" and again.reason == "coalesced"
        assert [r.status for r in store.reports(5)] == ["skipped", "completed"]
    assert set(names) <= set(MemoryStore.namespaces(cluster))


def test_cluster_totals_and_one_scrape_over_every_node(cluster: Any, tmp_path: Path) -> None:
    """Totals recorded and read back on a cluster: the scrape's pipeline spans the slots."""
    names = [f"mx-{uuid.uuid4().hex[:6]}-{i}" for i in range(9)]
    config = load_config(interval_secs=60, data_dir=tmp_path)
    for ns in names:
        store = MemoryStore(cluster, ns)
        store.ingest_fact("f", "s", "x")
        run_pass(store, config)
        run_pass(store, config)
    snap = read_snapshot(cluster, 1000, time.time())
    shown = {s.name: s for s in snap.shown}
    assert set(names) <= set(shown)
    for ns in names:
        assert shown[ns].totals.passes == {("completed", "0"): 1, ("skipped", "0"): 1}
        assert shown[ns].sizes.nodes["fact"] == 1 and shown[ns].lock.state == "done"
    assert not any(snap.other.passes.values())  # every namespace reported is shown
    promtool("check", "metrics", stdin=generate_latest(registry(cluster, config)))


def test_cluster_lock_scripts(cluster: Any) -> None:
    store = MemoryStore(cluster, f"lock-{uuid.uuid4().hex[:6]}")
    lock = PassLock(cluster, store.keys, 30)
    assert lock.acquire().ok
    other = PassLock(cluster, store.keys, 30)
    assert other.acquire().outcome == "coalesced"
    assert other.acquire(force=True).outcome == "running"
    assert lock_state(cluster, store.keys).state == "running"
    assert request_cancel(cluster, store.keys, 30) == lock.token
    assert lock.extend() and lock.cancelled.is_set()
    assert not other.release() and lock.finish()
    assert lock_state(cluster, store.keys).state == "done"
    assert other.acquire(force=True).ok and not lock.release() and other.release()
    assert lock_state(cluster, store.keys).state == "free"


def test_cluster_batches_and_a_held_lock(cluster: Any, tmp_path: Path) -> None:
    store = MemoryStore(cluster, f"batch-{uuid.uuid4().hex[:6]}")
    for i in range(25):
        store.ingest_environment(f"e{i}", f"obs {i}", observed_at=T0, expires_at=T0)
        store.ingest_fact(f"f{i}", "s", f"fact {i}", timestamp=T0)
    config = load_config(interval_secs=60, batch_size=4, data_dir=tmp_path)
    report = run_pass(store, config)
    assert report.status == "completed"
    assert report.expired_pruned == 25 and report.nodes_embedded == 25
    # Beside a running pass (someone else's lock) nothing is written.
    store.ingest_fact("late", "s", "late fact", timestamp=T0 + timedelta(days=1))
    cluster.set(store.keys.lock, "running:someone-else", ex=30)
    lost = run_pass(store, config, force=True)
    assert lost.status == "skipped" and lost.reason == "running"
    assert store.embedding("late") is None


def test_worker_with_its_memory_on_the_cluster(
    cluster: Any,
    db: redis.Redis,
    redis_url: str,
    procs: Processes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CAR_DREAM_MEMORY_URL=redis+cluster://...: memory and locks on the cluster, broker,
    results and schedule on plain Redis; dispatch reaches namespaces on every node."""
    node = cluster.get_default_node()
    memory_url = f"redis+cluster://{node.host}:{node.port}"
    names = [f"wk-{uuid.uuid4().hex[:6]}-{i}" for i in range(6)]
    cluster.delete(NAMESPACES_KEY)
    for ns in names:
        seed(MemoryStore(cluster, ns))
    settings = {"memory_url": memory_url, "interval_secs": 600, "max_trailing": 0}
    procs.worker(process_env(redis_url, tmp_path / "data", **settings))
    app = fresh_app(monkeypatch, redis_url, **settings)
    app.send_task(DISPATCH_TASK_NAME).get(timeout=60)
    wait_for(lambda: all(completed_passes(cluster, ns) for ns in names), timeout=90)
    for ns in names:
        (report,) = completed_passes(cluster, ns)
        assert (report.expired_pruned, report.superseded_gc, report.nodes_embedded) == (1, 2, 1)
        assert lock_state(cluster, MemoryStore(cluster, ns).keys).state == "done"
    assert not list(db.scan_iter(match="car-dream:{*}:*"))  # nothing of the memory here


def test_cluster_batched_writes(cluster: Any) -> None:
    store = MemoryStore(cluster, f"batch-{uuid.uuid4().hex[:6]}")
    b = store.batch()
    b.ingest_fact("f1", "s", "one")
    b.ingest_conclusion("c1", "from one", premises=["f1"])
    b.ingest_conclusion("c2", "from nothing", premises=["nope"])
    out = b.execute()
    assert out[:2] == [True, True] and isinstance(out[2], UnknownNodeError)
    assert store.count() == 2 and store.namespace in MemoryStore.namespaces(cluster)


def test_cluster_eviction_policy_is_read_on_every_node(cluster: Any) -> None:
    """One node that may evict is enough to refuse the cluster."""
    from car_dream.eviction import eviction_policy

    assert eviction_policy(cluster) == "noeviction"
    node = cluster.get_nodes()[-1]
    cluster.config_set("maxmemory-policy", "volatile-lru", target_nodes=node)
    try:
        assert eviction_policy(cluster) == "volatile-lru"
    finally:
        cluster.config_set("maxmemory-policy", "noeviction", target_nodes=node)
