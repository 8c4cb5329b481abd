"""The project's Celery app: settings from Django's (``CELERY_*``), car-dream installed."""

from __future__ import annotations

import os

from celery import Celery

import car_dream

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.user_apps.django_site.settings")

app = Celery("django_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
car_dream.install(app)
