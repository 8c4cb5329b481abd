"""``python -m tests.user_apps.django_site.setup_db``: migrate, then schedule car-dream's
pass in django-celery-beat from ``car_dream.beat_entry()`` (which reads CAR_DREAM)."""

from __future__ import annotations

import json
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.user_apps.django_site.settings")
django.setup()

from django.core.management import call_command  # noqa: E402  # after django.setup()
from django_celery_beat.models import IntervalSchedule, PeriodicTask  # noqa: E402

import car_dream  # noqa: E402

call_command("migrate", verbosity=0)
entry = car_dream.beat_entry()
every, _ = IntervalSchedule.objects.get_or_create(
    every=int(entry["schedule"].total_seconds()), period=IntervalSchedule.SECONDS
)
PeriodicTask.objects.update_or_create(
    name="car-dream",
    defaults={
        "task": entry["task"],
        "interval": every,
        "kwargs": json.dumps(entry["kwargs"]),
        "expire_seconds": entry["options"]["expires"],
    },
)
print("scheduled", entry["task"], "every", every.every, "seconds")
