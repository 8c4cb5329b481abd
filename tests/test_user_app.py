"""car-dream installed in someone's own Celery app, with real parts: RabbitMQ as the broker,
real ``celery worker`` and ``celery beat`` processes (Celery's default scheduler, and
django-celery-beat's DatabaseScheduler in a Django project on SQLite), the memory in
Redis. The apps are in tests/user_apps, written as their owners would write them.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from car_dream.report import ConsolidationReport
from car_dream.store import MemoryStore
from car_dream.tasks import TASK_NAME

from .celery_env import RABBIT, Processes, procs_fixture, rabbit_queue_fixture  # noqa: F401
from .conftest import celery_bin, wait_for
from .test_celery_integration import reports, scheduled, stays

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parent.parent
PLAIN = "tests.user_apps.plain"
DJANGO = "tests.user_apps.django_site"


def user_env(queue: str, **car_dream: Any) -> dict[str, str]:
    """A process of the user's app: their broker and queue, car-dream's settings given here
    (none at all under Django, where they come from its CAR_DREAM dict)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAR_DREAM_")}
    env.update({f"CAR_DREAM_{k.upper()}": str(v) for k, v in car_dream.items()})
    env.update(
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        CAR_DREAM_TEST_AMQP_URL=RABBIT,
        CAR_DREAM_TEST_QUEUE=queue,
    )
    return env


def no_celery_keys(client: redis.Redis) -> bool:
    """The memory Redis holds no broker or result keys: they are RabbitMQ's and the RPC's."""
    return not any(k.startswith((b"celery", b"_kombu")) for k in client.scan_iter(count=1000))


def test_a_plain_app_with_rabbitmq_and_the_default_beat_runs_scheduled_passes(
    rabbit_queue: str, db: redis.Redis, redis_url: str, procs: Processes, tmp_path: Path
) -> None:
    env = user_env(rabbit_queue, redis_url=redis_url, interval_secs=2)
    procs.worker(env, app=PLAIN)
    beat = procs.beat(env, app=PLAIN, extra=("--schedule", str(tmp_path / "beat-schedule")))
    passes = wait_for(lambda: len(s := scheduled(reports(db))) >= 3 and s, timeout=90)
    starts = [p.started_at.timestamp() for p in passes]
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(starts))  # TTL is 1s
    assert "Sending due task car-dream (car_dream.consolidate)" in beat.read_text()
    assert "PersistentScheduler" in beat.read_text()
    assert no_celery_keys(db)


def test_a_plain_app_coalesces_ten_triggers_into_one_pass_and_its_trailing_pass(
    rabbit_queue: str,
    db: redis.Redis,
    redis_url: str,
    procs: Processes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = {"redis_url": redis_url, "interval_secs": 120, "max_trailing": 1}
    store = MemoryStore(db, "default")
    now = time.time()
    store.ingest_environment("env.old", "stale", observed_at=now - 60, expires_at=now - 1)
    store.ingest_fact("fact.a", "s", "some fact to embed")
    procs.worker(user_env(rabbit_queue, **settings), app=PLAIN)
    for name, value in settings.items():
        monkeypatch.setenv(f"CAR_DREAM_{name.upper()}", str(value))
    from .user_apps.plain import make_app

    app = make_app(rabbit_queue)
    task = app.tasks[TASK_NAME]
    barrier = threading.Barrier(10)
    got: list[Any] = [None] * 10

    def fire(i: int) -> None:
        barrier.wait(5)
        # Sent and awaited in this thread: each thread has its own RPC reply queue.
        got[i] = ConsolidationReport.model_validate(task.delay().get(timeout=60))

    threads = [threading.Thread(target=fire, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert all(r is not None for r in got), got
    completed = [r for r in got if r.status == "completed"]
    assert len(completed) == 1, [(r.status, r.reason) for r in got]
    assert not completed[0].trailing and completed[0].expired_pruned == 1
    skipped = [r for r in got if r.status == "skipped"]
    assert len(skipped) == 9 and {r.reason for r in skipped} == {"coalesced"}

    def trailing() -> list[ConsolidationReport]:
        return [r for r in reports(db) if r.trailing]

    first = wait_for(trailing, timeout=30)
    assert len(first) == 1 and first[0].status == "completed"
    assert stays(lambda: len(trailing()) == 1 and len(reports(db)) == 11, 2.0)
    assert no_celery_keys(db)
    app.close()


def test_a_worker_of_an_installed_app_stops_without_car_dreams_redis(
    rabbit_queue: str, tmp_path: Path
) -> None:
    env = user_env(rabbit_queue)  # no CAR_DREAM_REDIS_URL
    cmd = [*celery_bin(), "-A", PLAIN, "worker", "--loglevel", "INFO"]
    done = subprocess.run(
        cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=90, check=False
    )
    text = done.stdout + done.stderr
    assert done.returncode != 0, text
    assert "CAR_DREAM_REDIS_URL is not set" in text


def test_django_celery_beat_sends_and_a_worker_passes_with_the_django_settings(
    rabbit_queue: str, db: redis.Redis, redis_url: str, procs: Processes, tmp_path: Path
) -> None:
    env = user_env(rabbit_queue)  # no CAR_DREAM_* at all: the CAR_DREAM dict has them
    env.update(
        CAR_DREAM_TEST_MEMORY_URL=redis_url,
        CAR_DREAM_TEST_DJANGO_DB=str(tmp_path / "site.sqlite3"),
    )
    setup = subprocess.run(
        [sys.executable, "-m", f"{DJANGO}.setup_db"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert setup.returncode == 0, setup.stderr
    assert "scheduled car_dream.consolidate every 2 seconds" in setup.stdout
    procs.worker(env, app=DJANGO)
    scheduler = "django_celery_beat.schedulers:DatabaseScheduler"
    beat = procs.beat(env, app=DJANGO, extra=("-S", scheduler))
    ns = "django-site"  # CAR_DREAM["NAMESPACE"]
    passes = wait_for(lambda: len(s := scheduled(reports(db, ns))) >= 2 and s, timeout=120)
    assert all(p.namespace == ns for p in passes)
    log = beat.read_text()
    assert "DatabaseScheduler" in log
    assert "Sending due task car-dream (car_dream.consolidate)" in log
    assert reports(db) == []  # nothing in the default namespace of the environment
    assert no_celery_keys(db)
