"""Django's ``CAR_DREAM`` setting, read when the process runs Django.

car-dream does not need Django; it only looks at Django's settings when the process
already uses them: they are configured (``django.conf`` is imported then), or
``DJANGO_SETTINGS_MODULE`` names them (Celery's Django fix-up loads them then). That
Django is merely installed means nothing: kombu imports parts of it whenever it is.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError

__all__ = ["SETTING", "django_settings"]

SETTING = "CAR_DREAM"


def django_settings() -> Mapping[str, Any] | None:
    """Django's ``CAR_DREAM`` dict; None without Django or without that setting."""
    module = os.environ.get("DJANGO_SETTINGS_MODULE")
    if "django.conf" not in sys.modules and not module:
        return None  # no Django settings here: never load them for nothing
    try:
        from django.conf import settings
    except ImportError:
        return None
    if not settings.configured and not module:
        return None
    try:
        value = getattr(settings, SETTING, None)
    except Exception as exc:  # reading them loads them: a broken settings module
        raise ConfigError(
            f"DJANGO_SETTINGS_MODULE={module}: Django's settings could not be loaded ({exc})"
        ) from None
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"invalid settings: {SETTING} in Django's settings must be a dict such as "
            f'{{"REDIS_URL": ...}}, got {type(value).__name__}'
        )
    return value
