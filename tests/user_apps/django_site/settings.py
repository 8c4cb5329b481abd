"""The Django project's settings: SQLite, django-celery-beat, and car-dream's CAR_DREAM dict.

Where the test puts things comes from ``CAR_DREAM_TEST_*`` variables; car-dream's settings
come from the ``CAR_DREAM`` dict alone (the test's processes have no ``CAR_DREAM_*``).
"""

from __future__ import annotations

import os

SECRET_KEY = "car-dream-tests-only"  # a test project, never served
INSTALLED_APPS = ["django_celery_beat"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("CAR_DREAM_TEST_DJANGO_DB", "django-site.sqlite3"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True
TIME_ZONE = "UTC"

CELERY_BROKER_URL = os.environ.get("CAR_DREAM_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CAR_DREAM_TEST_QUEUE", "celery")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"

CAR_DREAM = {
    "REDIS_URL": os.environ.get("CAR_DREAM_TEST_MEMORY_URL"),
    "NAMESPACE": "django-site",
    "INTERVAL_SECS": 2,
}
