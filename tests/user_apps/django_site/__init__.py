"""A Django project with its Celery app, as Django's Celery guide lays it out."""

from .celery import app as celery_app

__all__ = ["celery_app"]
