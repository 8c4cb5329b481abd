"""Security: JSON only, credentials, TLS, masked passwords, confined keys.

Each test starts a redis-server of its own on a private port (password, ACL user or
TLS), so the shared server is never reconfigured.
"""

from __future__ import annotations

import os
import pickle
import secrets
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from kombu import Connection, Queue

from car_dream.app import create_app
from car_dream.cli import cli
from car_dream.config import load_config
from car_dream.consolidate import run_pass
from car_dream.errors import InvalidInputError
from car_dream.keys import Keys
from car_dream.store import MemoryStore
from car_dream.tasks import TASK_NAME

from .celery_env import (  # noqa: F401
    FAST_WORKER,
    Processes,
    fresh_app,
    process_env,
    procs_fixture,
    start_up_failure,
)
from .conftest import free_port, wait_for
from .servers import RedisServer, make_pki, redis_binary

pytestmark = pytest.mark.timeout(120)

PASSWORD = "pw-" + secrets.token_hex(8)
ALICE = "alice-" + secrets.token_hex(8)


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server with a password for the default user and an ACL user ``alice``."""
    server = RedisServer(tmp_path / "redis", ["--requirepass", PASSWORD], password=PASSWORD)
    server.start()
    admin = redis.Redis(port=server.port, password=PASSWORD)
    admin.execute_command("ACL", "SETUSER", "alice", "on", f">{ALICE}", "~*", "&*", "+@all")
    admin.close()
    yield server
    server.stop()


def url(server: RedisServer, userinfo: str = "") -> str:
    return f"redis://{userinfo}127.0.0.1:{server.port}/0"


class Spy:
    """Raw Redis traffic is not needed: a password leaks if it shows up in any text."""

    @staticmethod
    def clean(*texts: str) -> None:
        for text in texts:
            assert PASSWORD not in text and ALICE not in text


class Ran:
    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.exit_code = proc.returncode
        self.output = proc.stdout + proc.stderr


def cli_run(monkeypatch: pytest.MonkeyPatch, redis_url: str, *args: str) -> Ran:
    """``car-dream`` in a process of its own, as a user runs it (the Celery app is global)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAR_DREAM_")}
    env.update(CAR_DREAM_REDIS_URL=redis_url, CAR_DREAM_DATA_DIR="/nonexistent-car-dream")
    cmd = [sys.executable, "-c", "from car_dream.cli import main; main()", *args]
    return Ran(subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60))


def test_password_and_acl_user_from_the_environment(
    secured: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for userinfo in (f":{PASSWORD}@", f"alice:{ALICE}@"):
        ok = cli_run(monkeypatch, url(secured, userinfo), "run-once", "--force", "--json")
        assert ok.exit_code == 0, ok.output
        assert '"status": "completed"' in ok.output
        status = cli_run(monkeypatch, url(secured, userinfo), "status", "--json")
        assert status.exit_code == 0, status.output
        assert ":***@" in status.output  # the URL is shown masked
        Spy.clean(ok.output, status.output)
    store = MemoryStore(redis.Redis.from_url(url(secured, f":{PASSWORD}@")), "default")
    Spy.clean(*(r.model_dump_json() for r in store.reports(10)))


@pytest.mark.parametrize(
    "userinfo", ["", "alice:wrong@", ":wrong@", "nobody:x@"], ids=["none", "acl", "pw", "user"]
)
def test_missing_or_wrong_credentials_fail_at_start_up_clearly(
    secured: RedisServer, monkeypatch: pytest.MonkeyPatch, userinfo: str
) -> None:
    result = cli_run(monkeypatch, url(secured, userinfo), "status")
    assert result.exit_code == 1
    text = result.output
    assert "car-dream: Redis refused the credentials" in text, text
    assert "CAR_DREAM_REDIS_URL" in text
    assert "Traceback" not in text
    Spy.clean(text)


def test_a_failed_pass_never_quotes_the_password(tmp_path: Path) -> None:
    dead = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    client = redis.Redis.from_url(dead, socket_connect_timeout=1)
    report = run_pass(MemoryStore(client, "default"), load_config(interval_secs=60))
    assert report.status == "failed"
    Spy.clean(report.model_dump_json())
    with pytest.raises(Exception) as info:
        load_config(redis_url=f"http://u:{PASSWORD}@h/")
    Spy.clean(str(info.value), repr(info.value))


def test_pickle_task_message_is_refused_by_a_real_worker(
    secured: RedisServer, procs: Processes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = f"sec-{uuid.uuid4().hex[:8]}"
    full = url(secured, f":{PASSWORD}@")
    env = process_env(full, tmp_path / "data", interval_secs=60)
    log = procs.celery(
        "worker",
        ["worker", *FAST_WORKER, "--concurrency", "1", "-Q", queue, "--hostname", f"{queue}@%h"],
        env,
    )
    procs.wait_log(log, " ready.")
    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self) -> Any:  # runs code (creates the marker) if ever unpickled
            return (open, (str(marker), "w"))

    task_id = str(uuid.uuid4())
    headers = {
        "lang": "py",
        "task": TASK_NAME,
        "id": task_id,
        "root_id": task_id,
        "parent_id": None,
        "group": None,
        "retries": 0,
        "eta": None,
        "expires": None,
        "timelimit": [None, None],
        "argsrepr": "()",
        "kwargsrepr": "{}",
        "origin": "test",
    }
    body = pickle.dumps(
        ((Payload(),), {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None})
    )
    with Connection(full) as conn:
        conn.Producer().publish(
            body,
            routing_key=queue,
            exchange="",
            headers=headers,
            declare=[Queue(queue)],
            content_type="application/x-python-serialize",
            content_encoding="binary",
        )
    procs.wait_log(log, "Refusing to deserialize untrusted content of type pickle", timeout=30)
    # The worker goes on, and a JSON trigger behind it runs; the pickle one never did.
    task = fresh_app(monkeypatch, full, interval_secs=60).tasks[TASK_NAME]
    assert task.apply_async(queue=queue).get(timeout=60)["status"] == "completed"
    assert not marker.exists()
    client = redis.Redis.from_url(full)
    assert client.get(f"celery-task-meta-{task_id}") is None  # no result: it never ran
    assert len(MemoryStore(client, "default").reports(10)) == 1
    Spy.clean(log.read_text(errors="replace"))


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[RedisServer, Path]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a throwaway CA")
    if not _built_with_tls():
        pytest.skip(f"{redis_binary()} was built without TLS")
    d = make_pki(tmp_path / "pki")
    tls_port = free_port()
    server = RedisServer(
        tmp_path / "redis",
        [
            "--tls-port",
            str(tls_port),
            "--tls-cert-file",
            str(d / "server.pem"),
            "--tls-key-file",
            str(d / "server.key"),
            "--tls-ca-cert-file",
            str(d / "ca.pem"),
            "--tls-auth-clients",
            "no",
            "--requirepass",
            PASSWORD,
        ],
        password=PASSWORD,
    )
    try:
        server.start()  # a failure here fails the test: TLS support was asked about above
        server.tls_port = tls_port  # type: ignore[attr-defined]
        yield server, d / "ca.pem"
    finally:
        server.stop()


def _built_with_tls() -> bool:
    """A build without TLS refuses the ``tls-port`` directive; one with TLS, given
    nothing to listen on, exits at once."""
    cmd = [redis_binary(), "--port", "0", "--tls-port", "0", "--save", ""]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    return "Bad directive" not in out.stdout + out.stderr


def test_rediss_against_a_tls_redis(
    tls_server: tuple[RedisServer, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, ca = tls_server
    base = f"rediss://:{PASSWORD}@127.0.0.1:{server.tls_port}/0"  # type: ignore[attr-defined]
    ok = cli_run(monkeypatch, f"{base}?ssl_ca_certs={ca}", "run-once", "--force", "--json")
    assert ok.exit_code == 0, ok.output
    assert '"status": "completed"' in ok.output
    status = cli_run(monkeypatch, f"{base}?ssl_ca_certs={ca}", "status")
    assert status.exit_code == 0, status.output
    assert "rediss://:***@" in status.output
    # Without the CA the server's certificate is not trusted: refused, clearly.
    bad = cli_run(monkeypatch, base, "status")
    assert bad.exit_code == 1 and "certificate verify failed" in bad.output
    Spy.clean(ok.output, status.output, bad.output)


def test_worker_and_beat_over_tls_with_a_private_ca(
    tls_server: tuple[RedisServer, Path],
    procs: Processes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Broker, results, RedBeat's schedule and the memory, all over rediss://: the CA
    comes from the URL, certificates are verified, and the plain port is never used."""
    server, ca = tls_server
    port = server.tls_port  # type: ignore[attr-defined]
    full = f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={ca}"
    env = process_env(full, tmp_path / "data", interval_secs=2)
    worker = procs.worker(env)
    beat = procs.beat(env)
    client = redis.Redis.from_url(full)
    store = MemoryStore(client, "default")

    def beat_passes() -> bool:
        return any(r.status == "completed" and not r.trailing for r in store.reports(10))

    wait_for(beat_passes, timeout=60)
    triggered = fresh_app(monkeypatch, full, interval_secs=2).tasks[TASK_NAME].delay()
    assert triggered.get(timeout=60)["status"] in ("completed", "skipped")
    # Every connection of the worker and the beat is on the TLS port (CLIENT LIST's laddr).
    probe = redis.Redis(host="127.0.0.1", port=server.port, password=PASSWORD)
    ports = [int(c["laddr"].rsplit(":", 1)[1]) for c in probe.client_list()]
    assert ports.count(server.port) == 1  # the probe itself
    assert ports.count(port) >= 3, ports  # worker (consumer, pool, results) and beat
    Spy.clean(worker.read_text(errors="replace"), beat.read_text(errors="replace"))


@pytest.mark.parametrize("ns", ["a}b", "{x}", "../etc", "a b", "x:y", "*", "", "n" * 65, "é"])
def test_namespace_names_cannot_address_other_keys(
    ns: str, monkeypatch: pytest.MonkeyPatch, fake: Any
) -> None:
    with pytest.raises(InvalidInputError):
        MemoryStore(fake, ns)
    with pytest.raises(InvalidInputError):
        Keys(ns)
    monkeypatch.setenv("CAR_DREAM_NAMESPACE", "default")  # -N sets it; restored after the test
    result = CliRunner().invoke(cli, ["-N", ns, "status"])
    assert result.exit_code == 2 and "'-N' / '--namespace'" in result.output  # a usage error
    monkeypatch.setenv("CAR_DREAM_NAMESPACE", "default")
    monkeypatch.setenv("CAR_DREAM_REDIS_URL", "redis://127.0.0.1:1/0")  # never reached
    app = create_app()
    task = app.tasks[TASK_NAME]
    with pytest.raises(InvalidInputError):
        task.run(namespace=ns)
    assert fake.keys("*") == []


@pytest.mark.parametrize("role", ["worker", "beat"])
def test_worker_and_beat_without_credentials_stop_at_start_up(
    secured: RedisServer, tmp_path: Path, role: str
) -> None:
    """A refused password never gets better by retrying: the process exits, naming the variable."""
    text = start_up_failure(role, url(secured, ":wrong@"), tmp_path)
    assert "CAR_DREAM_REDIS_URL" in text and "refused the credentials" in text, text
    assert ":***@" in text
    Spy.clean(text)


@pytest.mark.parametrize("role", ["worker", "beat"])
def test_worker_and_beat_stop_at_start_up_on_an_untrusted_certificate(
    tls_server: tuple[RedisServer, Path], tmp_path: Path, role: str
) -> None:
    """No CA for the server's certificate: verification fails, the process exits naming
    the variable (retrying would never help), and no plain-text fallback is tried."""
    server, _ = tls_server
    bad = f"rediss://:{PASSWORD}@127.0.0.1:{server.tls_port}/0"  # type: ignore[attr-defined]
    text = start_up_failure(role, bad, tmp_path)
    assert "CAR_DREAM_REDIS_URL" in text and "certificate" in text and "ssl_ca_certs" in text
    assert ":***@" in text
    Spy.clean(text)
