"""car-dream's own Celery app, with its tasks. Configured lazily, on first use, from
``CAR_DREAM_*`` variables.

Importing this module connects to nothing: the settings are read, and the embedded
Redis started if no URL is set, only when Celery first needs its configuration
(``celery -A car_dream worker``, ``consolidate.delay()``, ...).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.local import Proxy
from celery.signals import beat_init, worker_init

from .beat import DreamScheduler
from .celery_config import CONFIG_ATTR, OWN_ATTR, configure, dream_config, preflight
from .config import DreamConfig
from .schedule import ensure_dream_task
from .startup import check_settings, started_by_celery
from .tasks import DISPATCH_TASK_NAME, TASK_NAME, register

__all__ = ["app", "consolidate", "create_app", "dispatch"]

log = logging.getLogger(__name__)

APP_NAME = "car_dream"


def create_app(config: DreamConfig | None = None) -> Celery:
    """A car-dream Celery app with its tasks; settings from ``config`` or, on first use,
    the environment."""
    celery_app = Celery(APP_NAME)
    setattr(celery_app, OWN_ATTR, True)
    if config is not None:
        setattr(celery_app, CONFIG_ATTR, config)
    celery_app.on_configure.connect(configure, weak=False)
    register(celery_app)
    return celery_app


app = create_app()
# Proxies: looking the tasks up now would finalize, and so configure, the app on import.
consolidate: Any = Proxy(lambda: app.tasks[TASK_NAME])
dispatch: Any = Proxy(lambda: app.tasks[DISPATCH_TASK_NAME])


def _ours(sender: Any) -> Celery | None:
    target = getattr(sender, "app", None)
    return target if getattr(target, "main", None) == APP_NAME else None


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
    if isinstance(getattr(sender, "scheduler", None), DreamScheduler):
        return  # it creates the entry in its first tick, when Redis is there
    try:
        ensure_dream_task(target)
    except Exception:  # beat still runs whatever is scheduled already
        log.exception("car-dream: could not ensure the dream schedule entry")


if started_by_celery():  # ``celery -A car_dream ...``: stop now on a bad setting
    check_settings(lambda: dream_config(app))
