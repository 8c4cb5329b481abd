"""A plain Celery app car-dream did not configure: RabbitMQ as the broker, the RPC result
backend, the default beat scheduler, a task of its own, and car-dream installed.

The broker and the queue come from the test (``CAR_DREAM_TEST_*``); car-dream's settings
from the ``CAR_DREAM_*`` variables, as in a deployment.
"""

from __future__ import annotations

import os

from celery import Celery

import car_dream

BROKER = os.environ.get("CAR_DREAM_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def add(a: int, b: int) -> int:
    """The app's own task."""
    return a + b


def make_app(queue: str | None = None) -> Celery:
    app = Celery("user-app", broker=BROKER, backend="rpc://", set_as_current=False)
    app.conf.task_default_queue = queue or os.environ.get("CAR_DREAM_TEST_QUEUE", "celery")
    app.conf.broker_connection_retry_on_startup = True
    app.task(name="user_app.add")(add)
    car_dream.install(app)
    app.conf.beat_schedule = {"car-dream": car_dream.beat_entry()}
    return app


app = make_app()
