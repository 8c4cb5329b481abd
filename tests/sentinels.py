"""A primary, a replica and three Sentinels of a test's own, on loopback, private ports."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

import redis

from car_dream.embedded import free_port

from .conftest import wait_for
from .servers import RedisServer, redis_binary


def sentinel_command() -> list[str]:
    """Debian's ``redis-sentinel`` (package redis-sentinel), else the same program as
    ``redis-server --sentinel``."""
    found = shutil.which("redis-sentinel")
    return [found] if found else [redis_binary(), "--sentinel"]


class SentinelGroup:
    """A primary, a replica and three Sentinels on loopback, private ports: the servers
    ask for ``password``, the Sentinels for ``sentinel_password``. With ``pki`` (see
    :func:`make_pki`) they all speak TLS to each other and to clients too (each keeps a
    plain port for the test's own looks)."""

    SERVICE = "car-dream"

    def __init__(
        self, directory: Path, password: str, sentinel_password: str, pki: Path | None = None
    ) -> None:
        self.dir = directory
        self.password, self.sentinel_password, self.pki = password, sentinel_password, pki
        auth = ["--requirepass", password, "--masterauth", password]
        self.primary = RedisServer(directory / "primary", list(auth), password=password)
        self.replica = RedisServer(directory / "replica", list(auth), password=password)
        self.taken = {self.primary.port, self.replica.port}
        self.ports = [self._port() for _ in range(3)]
        self.plain: dict[int, int] = {}  # TLS port -> plain port, of servers and Sentinels
        for server in (self.primary, self.replica):
            self.plain[self._tls(server.extra, server.port)] = server.port
        self.sentinels: list[subprocess.Popen[bytes]] = []

    def _tls(self, extra: list[str], port: int) -> int:
        """Add the TLS settings to a server's ``extra``; its TLS port (or ``port``)."""
        if self.pki is None:
            return port
        tls = self._port()
        extra += [
            "--tls-port",
            str(tls),
            "--tls-cert-file",
            str(self.pki / "server.pem"),
            "--tls-key-file",
            str(self.pki / "server.key"),
            "--tls-ca-cert-file",
            str(self.pki / "ca.pem"),
            "--tls-auth-clients",
            "no",
            "--tls-replication",
            "yes",
        ]
        return tls

    def _port(self) -> int:
        """A free port none of the group's others has (free_port() may repeat one)."""
        port = free_port()
        while port in self.taken:
            port = free_port()
        self.taken.add(port)
        return port

    def addresses(self, port: int) -> int:
        """The port clients use (the TLS one with a PKI)."""
        return next((t for t, p in self.plain.items() if p == port), port)

    def url(self, db: int = 0) -> str:
        hosts = ",".join(f"127.0.0.1:{self.addresses(p)}" for p in self.ports)
        scheme = "rediss+sentinel" if self.pki else "redis+sentinel"
        tls = f"&ssl_ca_certs={self.pki / 'ca.pem'}" if self.pki else ""
        return (
            f"{scheme}://:{self.password}@{hosts}/{self.SERVICE}/{db}"
            f"?sentinel_password={self.sentinel_password}{tls}"
        )

    def start(self) -> None:
        try:
            self._start()
        except BaseException:  # what did start is stopped, not left behind
            self.stop()
            raise

    def _start(self) -> None:
        self.primary.start()
        primary = self.addresses(self.primary.port)
        self.replica.extra += ["--replicaof", "127.0.0.1", str(primary)]
        self.replica.start()
        wait_for(
            lambda: (
                self.server(self.replica.port).info("replication")["master_link_status"] == "up"
            ),
            30,
        )
        for port in self.ports:
            conf = self.dir / f"sentinel-{port}.conf"
            extra: list[str] = []
            self.plain[self._tls(extra, port)] = port
            pairs = zip(extra[::2], extra[1::2], strict=True)
            tls = "".join(f"{k.removeprefix('--')} {v}\n" for k, v in pairs)
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {self.dir}\n{tls}"
                f"requirepass {self.sentinel_password}\n"
                f"sentinel sentinel-pass {self.sentinel_password}\n"
                f"sentinel monitor {self.SERVICE} 127.0.0.1 {primary} 2\n"
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
        """A plain client of the server at ``port`` (as the Sentinels name it)."""
        port = self.plain.get(port, port)
        return redis.Redis(port=port, password=self.password, socket_timeout=10)

    def primary_client(self, db: int = 0) -> redis.Redis:
        port = self.plain.get(self.primary_port(), self.primary_port())
        return redis.Redis(port=port, password=self.password, db=db, socket_timeout=10)

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
