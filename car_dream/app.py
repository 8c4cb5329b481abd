"""The Celery app. Configured lazily, on first use, from ``CAR_DREAM_*`` variables.

Importing this module connects to nothing: the settings are read, and the embedded
Redis started if no URL is set, only when Celery first needs its configuration
(``celery -A car_dream worker``, ``consolidate.delay()``, ...).
"""

from __future__ import annotations

import logging
import ssl
import threading
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis
from celery import Celery
from celery.signals import beat_init, worker_init

from .config import DreamConfig, load_config, mask_url
from .errors import ConfigError
from .keys import REDBEAT_PREFIX
from .startup import check_settings, started_by_celery

__all__ = [
    "app",
    "celery_settings",
    "celery_url",
    "create_app",
    "dream_config",
    "get_redis",
    "memory_client",
]

log = logging.getLogger(__name__)

_CONFIG_ATTR = "_car_dream_config"
_REDIS_ATTR = "_car_dream_redis"
_guard = threading.RLock()  # get_redis may configure the app, which reads the config


def celery_url(url: str) -> str:
    """``url`` as Celery and kombu spell it: they want ``redis+socket://`` for sockets."""
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


def _tls_options(url: str) -> dict[str, Any] | None:
    # Celery refuses a rediss:// URL without ssl_cert_reqs; verify certificates unless
    # the URL says otherwise (…?ssl_cert_reqs=none is the user's explicit choice).
    parts = urlsplit(url)
    if parts.scheme != "rediss" or "ssl_cert_reqs" in dict(parse_qsl(parts.query)):
        return None
    return {"ssl_cert_reqs": ssl.CERT_REQUIRED}


def beat_max_loop_interval(interval_secs: int) -> int:
    """How long beat may sleep between ticks: short enough for a 2-second interval."""
    return max(1, min(30, interval_secs // 4))


def resolve_redis_url(config: DreamConfig) -> str:
    """The Redis URL to use: the configured one, else the embedded server's."""
    if config.redis_url:
        return config.redis_url
    from .embedded import ensure_embedded

    return ensure_embedded(config.data_dir)


def celery_settings(config: DreamConfig, url: str) -> dict[str, Any]:
    """The complete Celery configuration for ``config`` with Redis at ``url``."""
    broker = config.broker_url or url
    loop = beat_max_loop_interval(config.interval_secs)
    settings: dict[str, Any] = {
        "broker_url": celery_url(broker),
        "task_default_queue": config.queue,
        "result_backend": celery_url(url),
        # JSON only: a pickle message from anyone who can write to Redis would be code.
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_send_sent_event": True,
        "worker_send_task_events": True,
        "task_track_started": True,
        # A pass is long and exclusive: a worker should not hoard queued triggers.
        "worker_prefetch_multiplier": 1,
        "task_acks_late": False,
        "broker_connection_retry_on_startup": True,
        "result_expires": 7 * 24 * 3600,
        "timezone": "UTC",
        "enable_utc": True,
        "beat_scheduler": "car_dream.beat:DreamScheduler",  # RedBeat that outlives an outage
        "beat_max_loop_interval": loop,
        "redbeat_redis_url": url,
        "redbeat_key_prefix": REDBEAT_PREFIX + ":",
        # A standby beat takes over this long after the active one dies.
        "redbeat_lock_timeout": max(10, loop * 5),
        "car_dream_redis_url": url,
    }
    tls = _tls_options(url)
    if tls:
        settings["redis_backend_use_ssl"] = tls
        settings["redbeat_redis_use_ssl"] = tls
    broker_tls = _tls_options(broker)
    if broker_tls:
        settings["broker_use_ssl"] = broker_tls
    return settings


def _configure(sender: Celery, **_: Any) -> None:
    config = dream_config(sender)
    url = resolve_redis_url(config)
    sender.config_from_object(celery_settings(config, url))
    log.debug("car-dream: Redis %s, namespace %s", mask_url(url), config.namespace)


def create_app(config: DreamConfig | None = None) -> Celery:
    """A car-dream Celery app; settings from ``config`` or, on first use, the environment."""
    celery_app = Celery("car_dream")
    if config is not None:
        setattr(celery_app, _CONFIG_ATTR, config)
    celery_app.on_configure.connect(_configure, weak=False)
    return celery_app


app = create_app()


def dream_config(celery_app: Celery | None = None) -> DreamConfig:
    """The settings the app was configured from (read once per app)."""
    target = celery_app or app
    with _guard:
        config = getattr(target, _CONFIG_ATTR, None)
        if config is None:
            config = load_config()
            setattr(target, _CONFIG_ATTR, config)
    return config


def memory_client(url: str, **options: Any) -> Any:
    """A bytes-returning client for the memory and the locks.

    ``redis+cluster://`` / ``rediss+cluster://`` URLs give a ``RedisCluster`` client
    (every key of a namespace shares one hash tag, so each script runs on one node).
    """
    cluster = urlsplit(url).scheme.endswith("+cluster")
    if cluster:
        url = url.replace("+cluster", "", 1)
    kwargs: dict[str, Any] = {"decode_responses": False, "health_check_interval": 30, **options}
    tls = _tls_options(url)
    if tls:
        kwargs.update(tls)
    if cluster:
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(url, **kwargs)
    return redis.Redis.from_url(url, **kwargs)


def get_redis(celery_app: Celery | None = None) -> Any:
    """One memory client per app (``CAR_DREAM_MEMORY_URL``, else the Redis URL), shared by
    every task in the process."""
    target = celery_app or app
    with _guard:
        client = getattr(target, _REDIS_ATTR, None)
        if client is None:
            url = dream_config(target).memory_url or str(target.conf.car_dream_redis_url)
            client = memory_client(url)
            setattr(target, _REDIS_ATTR, client)
    return client


def check_credentials(celery_app: Celery | None = None) -> None:
    """Raise :class:`ConfigError`, naming the variable, if Redis refuses our credentials
    or its TLS certificate is not trusted.

    An unreachable Redis is no error here: worker and beat retry until it is back. A
    refused password or an untrusted certificate never gets better by retrying, so it
    stops start-up instead.
    """
    target = celery_app or app
    urls = {"CAR_DREAM_REDIS_URL": str(target.conf.car_dream_redis_url)}
    memory_url = dream_config(target).memory_url
    if memory_url:
        urls["CAR_DREAM_MEMORY_URL"] = memory_url
    for var, url in urls.items():
        client = memory_client(url, socket_connect_timeout=5, socket_timeout=5)
        try:
            client.ping()
        except redis.AuthenticationError as exc:
            raise ConfigError(
                f"{var}: Redis at {mask_url(url)} refused the credentials ({exc}); "
                "put the user and password in the URL, e.g. redis://user:password@host:6379/0"
            ) from None
        except redis.ConnectionError as exc:
            untrusted = _certificate_error(exc)
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


def _certificate_error(exc: BaseException) -> str | None:
    """The reason, if ``exc`` (or what it wraps) is a failed certificate verification."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen.verify_message or str(seen)
        seen = seen.__cause__ or seen.__context__
    return None


def _ours(sender: Any) -> Celery | None:
    target = getattr(sender, "app", None)
    return target if getattr(target, "main", None) == app.main else None


def preflight(target: Celery) -> None:
    """Stop the process, naming the variable, if a setting is invalid or Redis refuses
    the credentials."""
    try:
        dream_config(target)
        check_credentials(target)
    except ConfigError as exc:
        log.critical("car-dream: %s", exc)
        # SystemExit, not an Exception: Celery's signal dispatch would log and go on.
        raise SystemExit(f"car-dream: {exc}") from None


@worker_init.connect
def _check_worker_credentials(sender: Any = None, **_: Any) -> None:
    target = _ours(sender)
    if target is not None:
        preflight(target)


@beat_init.connect
def _ensure_schedule(sender: Any = None, **_: Any) -> None:
    # Sent by standalone beat and by ``worker -B`` alike (before beat_embedded_init), so
    # one receiver covers both. Other apps in the process are none of our business.
    target = _ours(sender)
    if target is None:
        return
    from .beat import DreamScheduler
    from .schedule import ensure_dream_task

    if isinstance(getattr(sender, "scheduler", None), DreamScheduler):
        return  # it creates the entry in its first tick, when Redis is there

    try:
        ensure_dream_task(target)
    except Exception:  # beat still runs whatever is scheduled already
        log.exception("car-dream: could not ensure the dream schedule entry")


if started_by_celery():  # ``celery -A car_dream ...``: stop now on a bad setting
    check_settings(lambda: dream_config(app))
