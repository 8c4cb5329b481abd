"""Celery apps as their owners write them, car-dream installed: ``celery -A tests.user_apps.X``
(the tests put the repository on PYTHONPATH)."""
