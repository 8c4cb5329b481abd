"""Redis behind Sentinel: ``redis+sentinel://`` URLs, and what Celery, kombu and RedBeat
each want to be told about them.

    redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db][?options]

The hosts are the Sentinels (port 26379 if left out), ``service`` the name they monitor
the primary under, the user and password those of the Redis servers. Options:
``sentinel_password`` and ``sentinel_username`` (when the Sentinels ask for one), and for
``rediss+sentinel://`` (TLS to the Sentinels and the servers alike) ``ssl_ca_certs``,
``ssl_certfile``, ``ssl_keyfile`` and ``ssl_cert_reqs`` (``required`` unless it says
``none`` or ``optional``). Every client asks the Sentinels for the primary and asks again
after a fail-over.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import redis

__all__ = ["SCHEMES", "SentinelURL", "is_sentinel", "parse_sentinel"]

SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_PORT = 26379
PRIMARY_CHECK_SECS = 0.5
TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")
OPTIONS = ("sentinel_password", "sentinel_username", *TLS_OPTIONS)
CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}


def is_sentinel(url: str | None) -> bool:
    return bool(url) and urlsplit(str(url)).scheme in SCHEMES


@dataclass(frozen=True)
class SentinelURL:
    hosts: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    tls: bool = False
    tls_options: dict[str, Any] = field(default_factory=dict)

    def _tls(self) -> dict[str, Any]:
        return {"ssl_cert_reqs": ssl.CERT_REQUIRED, **self.tls_options} if self.tls else {}

    def sentinel_kwargs(self, **socket: Any) -> dict[str, Any]:
        """How to talk to the Sentinels themselves (redis-py's ``sentinel_kwargs``)."""
        kwargs: dict[str, Any] = dict(socket)
        if self.sentinel_password is not None:
            kwargs["password"] = self.sentinel_password
        if self.sentinel_username is not None:
            kwargs["username"] = self.sentinel_username
        if self.tls:
            kwargs.update(ssl=True, **self._tls())
        return kwargs

    def client(self, **options: Any) -> Any:
        """A client of the current primary (redis-py's ``Sentinel.master_for``)."""
        from redis.sentinel import Sentinel

        socket = {k: v for k, v in options.items() if k.startswith("socket_")}
        kwargs = {"db": self.db, **self._credentials(), **options}
        if self.tls:
            kwargs.update(ssl=True, **self._tls())
        sentinel = Sentinel(list(self.hosts), sentinel_kwargs=self.sentinel_kwargs(**socket))
        return sentinel.master_for(self.service, connection_pool_class=_pool_class(), **kwargs)

    def _credentials(self) -> dict[str, str]:
        found = {"username": self.username, "password": self.password}
        return {k: v for k, v in found.items() if v is not None}

    def celery_url(self) -> str:
        """Celery's and kombu's spelling: ``sentinel://:pw@host:port/db`` per Sentinel,
        joined by ``;`` (the password is the servers', the rest goes in options)."""
        auth = ""
        if self.password is not None:
            auth = f"{quote(self.username or '', safe='')}:{quote(self.password, safe='')}@"
        return ";".join(f"sentinel://{auth}{_netloc(h, p)}/{self.db}" for h, p in self.hosts)

    def transport_options(self) -> dict[str, Any]:
        """``broker_transport_options`` / ``result_backend_transport_options``."""
        options: dict[str, Any] = {"master_name": self.service}
        sentinel = self.sentinel_kwargs()
        if sentinel:
            options["sentinel_kwargs"] = sentinel
        return options

    def use_ssl(self) -> dict[str, Any] | None:
        """``broker_use_ssl`` / ``redis_backend_use_ssl`` / ``redbeat_redis_use_ssl``."""
        return self._tls() or None

    def redbeat_options(self) -> dict[str, Any]:
        """``redbeat_redis_options`` (with ``redbeat_redis_url = "redis-sentinel://"``)."""
        options: dict[str, Any] = {
            "sentinels": [list(h) for h in self.hosts],
            "service_name": self.service,
            "db": self.db,
            "sentinel_kwargs": self.sentinel_kwargs(),
            **self._credentials(),
        }
        return options


def _pool_class() -> Any:
    """redis-py's Sentinel pool, asking the Sentinels for the primary at most twice a
    second as it hands out connections (redis-py asks only when it opens one).

    After a fail-over the old primary takes writes until Sentinel turns it into a replica
    (some ten seconds after ``SENTINEL FAILOVER``), and those writes are then lost; a pool
    that reconnects only on errors would keep writing there. When the answer changes,
    redis-py drops the idle connections at once and the busy ones when they come back.
    """
    from redis.sentinel import SentinelConnectionPool

    class PrimaryCheckingPool(SentinelConnectionPool):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._next_check = 0.0
            self._checking = threading.Lock()

        def get_connection(self, *args: Any, **kwargs: Any) -> Any:
            now = time.monotonic()
            if self.is_master and now >= self._next_check and self._checking.acquire(False):
                try:
                    self._next_check = now + PRIMARY_CHECK_SECS
                    with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                        self.get_master_address()  # no Sentinel answers: the error comes next
                finally:
                    self._checking.release()
            return super().get_connection(*args, **kwargs)

    return PrimaryCheckingPool


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _host(item: str) -> tuple[str, int]:
    if item.startswith("["):  # [::1]:26379
        host, _, rest = item[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = item.partition(":")
    if not host:
        raise ValueError(f"a Sentinel address without a host: {item!r}")
    try:
        number = int(port) if port else DEFAULT_PORT
    except ValueError:
        raise ValueError(f"a Sentinel port must be a number: {item!r}") from None
    if not 0 < number < 65536:
        raise ValueError(f"a Sentinel port must be 1-65535: {item!r}")
    return host, number


def parse_sentinel(url: str) -> SentinelURL:
    """The parts of a ``redis+sentinel://`` URL; ValueError saying what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"not a Sentinel URL: scheme must be one of {', '.join(SCHEMES)}")
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    hosts = tuple(_host(item) for item in hostlist.split(",") if item)
    if not hosts:
        raise ValueError("name at least one Sentinel: redis+sentinel://host:26379/service")
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2:
        raise ValueError(
            "the path is the service name the Sentinels monitor, then the database: "
            "redis+sentinel://host:26379/mymaster/0"
        )
    db = 0
    if len(path) == 2:
        if not path[1].isdigit():
            raise ValueError(f"the database must be a number, got {path[1]!r}")
        db = int(path[1])
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(query) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r}; known: {', '.join(OPTIONS)}")
    tls = parts.scheme == "rediss+sentinel"
    tls_options: dict[str, Any] = {k: query[k] for k in TLS_OPTIONS if k in query}
    if tls_options and not tls:
        raise ValueError("TLS options need a rediss+sentinel:// URL")
    if "ssl_cert_reqs" in tls_options:
        reqs = tls_options["ssl_cert_reqs"].lower()
        if reqs not in CERT_REQS:
            raise ValueError(f"ssl_cert_reqs must be one of {', '.join(CERT_REQS)}")
        tls_options["ssl_cert_reqs"] = CERT_REQS[reqs]
    user, colon, password = userinfo.partition(":") if at else ("", "", "")
    return SentinelURL(
        hosts=hosts,
        service=unquote(path[0]),
        db=db,
        username=unquote(user) or None,
        password=unquote(password) if colon else None,
        sentinel_username=query.get("sentinel_username"),
        sentinel_password=query.get("sentinel_password"),
        tls=tls,
        tls_options=tls_options,
    )
