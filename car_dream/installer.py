"""car-dream inside the Celery app you already run: :func:`install` registers its tasks.

Nothing of the app's own configuration changes (broker, result backend, serializers,
routes, the queues of its other tasks): car-dream's tasks carry their own options, and
car-dream's settings (``CAR_DREAM_*``, Django's ``CAR_DREAM`` dict, or the ``config``
given) are read when a task first needs them, not when the app is configured.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_init

from .celery_config import CONFIG_ATTR, is_own, preflight
from .config import DreamConfig
from .tasks import register

__all__ = ["install"]

_INSTALLED_ATTR = "_car_dream_installed"


def install(app: Celery, config: DreamConfig | None = None) -> tuple[Any, Any]:
    """Register ``car_dream.consolidate`` and ``car_dream.dispatch`` on ``app``; returns
    them. ``config`` replaces the settings read from the environment (or Django). A second
    install on the same app changes nothing and returns the same two tasks.

    A worker of the app checks car-dream's settings and its Redis's credentials when it
    starts, and stops there, naming the variable, if one is wrong.
    """
    if getattr(app, _INSTALLED_ATTR, False) or is_own(app):
        return register(app)  # already there: the same two
    if config is not None:
        setattr(app, CONFIG_ATTR, config)
    tasks = register(app)
    setattr(app, _INSTALLED_ATTR, True)
    return tasks


@worker_init.connect
def _check_installed(sender: Any = None, **_: Any) -> None:
    # car-dream's own app has its own receiver (app.py); other apps are not ours.
    target = getattr(sender, "app", None)
    if target is not None and getattr(target, _INSTALLED_ATTR, False):
        preflight(target)
