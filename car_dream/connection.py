"""Redis connections: URLs as Celery spells them, TLS, the memory client, the credential
check, and what kind of client a client is."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Mapping
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis
from redis.cluster import RedisCluster

from .config import mask_url
from .errors import ConfigError
from .sentinel import is_sentinel, parse_sentinel

__all__ = [
    "RedisClient",
    "celery_url",
    "check_credentials",
    "connection_kwargs",
    "database_of",
    "is_cluster",
    "memory_client",
    "tls_options",
]

log = logging.getLogger(__name__)

# The memory's client: bytes-returning, a single server or a Redis Cluster.
RedisClient: TypeAlias = "redis.Redis | RedisCluster"


def celery_url(url: str) -> str:
    """``url`` as Celery and kombu spell it: they want ``redis+socket://`` for sockets."""
    if is_sentinel(url):
        return parse_sentinel(url).celery_url()
    parts = urlsplit(url)
    if parts.scheme != "unix":
        return url
    query = dict(parse_qsl(parts.query))
    netloc = parts.netloc
    if "db" in query:
        query["virtual_host"] = query.pop("db")
    if "password" in query and "@" not in netloc:  # redis-py's spelling; kombu's is netloc
        netloc = f"{query.pop('username', '')}:{query.pop('password')}@"
    tail = f"?{urlencode(query)}" if query else ""
    return f"redis+socket://{netloc}{parts.path}{tail}"


def tls_options(url: str) -> dict[str, Any] | None:
    """Certificate checking for a ``rediss://`` URL that does not choose it itself.

    Celery refuses a rediss:// URL without ssl_cert_reqs; certificates are verified
    unless the URL says otherwise (``?ssl_cert_reqs=none`` is the user's explicit choice).
    """
    parts = urlsplit(url)
    if parts.scheme != "rediss" or "ssl_cert_reqs" in dict(parse_qsl(parts.query)):
        return None
    return {"ssl_cert_reqs": ssl.CERT_REQUIRED}


def memory_client(url: str, **options: Any) -> Any:
    """A bytes-returning client for the memory and the locks.

    ``redis+cluster://`` / ``rediss+cluster://`` URLs give a ``RedisCluster`` client
    (every key of a namespace shares one hash tag, so each script runs on one node);
    ``redis+sentinel://`` / ``rediss+sentinel://`` a client of the primary the Sentinels
    name (asked again after a fail-over), see :mod:`car_dream.sentinel`.
    """
    kwargs: dict[str, Any] = {"decode_responses": False, "health_check_interval": 30, **options}
    if is_sentinel(url):
        return parse_sentinel(url).client(**kwargs)
    cluster = urlsplit(url).scheme.endswith("+cluster")
    if cluster:
        url = url.replace("+cluster", "", 1)
    tls = tls_options(url)
    if tls:
        kwargs.update(tls)
    if cluster:
        return RedisCluster.from_url(url, **kwargs)
    return redis.Redis.from_url(url, **kwargs)


def check_credentials(urls: Mapping[str, str]) -> None:
    """Raise :class:`ConfigError`, naming the variable, if a Redis of ``urls`` (variable ->
    URL) refuses our credentials or its TLS certificate is not trusted.

    An unreachable Redis is no error here: worker and beat retry until it is back. A
    refused password or an untrusted certificate never gets better by retrying, so it
    stops start-up instead.
    """
    for var, url in urls.items():
        if is_sentinel(url):
            _check_sentinels(var, url)
        client = memory_client(url, socket_connect_timeout=5, socket_timeout=5)
        try:
            client.ping()
        except redis.AuthenticationError as exc:
            raise ConfigError(
                f"{var}: Redis at {mask_url(url)} refused the credentials ({exc}); "
                "put the user and password in the URL, e.g. redis://user:password@host:6379/0"
            ) from None
        except redis.ConnectionError as exc:
            untrusted = certificate_error(exc)
            if untrusted is not None:  # like a refused password: retrying never helps
                raise ConfigError(
                    f"{var}: the TLS certificate of Redis at {mask_url(url)} was not trusted "
                    f"({untrusted}); name the CA that signed it in the URL, e.g. "
                    "rediss://host:6380/0?ssl_ca_certs=/path/to/ca.pem"
                ) from None
            log.warning("car-dream: Redis at %s not reachable yet: %s", mask_url(url), exc)
        except redis.TimeoutError as exc:
            log.warning("car-dream: Redis at %s not reachable yet: %s", mask_url(url), exc)
        finally:
            client.close()


def _check_sentinels(var: str, url: str) -> None:
    """A Sentinel that refuses the Sentinel credentials stops start-up (redis-py would
    report it as no primary found, as if the Sentinels were away)."""
    parsed = parse_sentinel(url)
    for host, port in parsed.hosts:
        sentinel = redis.Redis(
            host, port, **parsed.sentinel_kwargs(socket_connect_timeout=5, socket_timeout=5)
        )
        try:
            sentinel.ping()
        except redis.AuthenticationError as exc:
            raise ConfigError(
                f"{var}: the Sentinel at {host}:{port} refused the credentials ({exc}); "
                "put them in the URL: ...?sentinel_password=...&sentinel_username=..."
            ) from None
        except (redis.ConnectionError, redis.TimeoutError):
            continue  # one Sentinel away is what Sentinel is for
        finally:
            sentinel.close()


def certificate_error(exc: BaseException) -> str | None:
    """The reason, if ``exc`` (or what it wraps) is a failed certificate verification."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen.verify_message or str(seen)
        seen = seen.__cause__ or seen.__context__
    return None


def is_cluster(client: object) -> bool:
    """True for a Redis Cluster client, whose pipelines refuse scripts and PUBLISH."""
    return isinstance(client, RedisCluster)


def connection_kwargs(client: Any) -> dict[str, Any]:
    """The client's connection settings (empty for a cluster client: it has no one pool)."""
    return getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})


def database_of(client: Any) -> int:
    """The database number the client talks to (0 on a cluster)."""
    return int(connection_kwargs(client).get("db") or 0)
