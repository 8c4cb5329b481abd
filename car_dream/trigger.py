"""Queue a pass from outside a worker (``car-dream trigger``) and wait for its report.

Celery's client side retries an unreachable broker or result store for about twenty
seconds and then raises a page of traceback. A command must answer within seconds:
Redis and the broker are checked first, what follows is retried once at most, and a
connection error comes out as the Redis error it is (the CLI prints it as one line).
"""

from __future__ import annotations

import contextlib
from typing import Any

import redis
from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult
from kombu.exceptions import OperationalError

from .celery_config import redis_url
from .connection import memory_client
from .errors import CarDreamError

__all__ = ["queue_pass", "wait_for_report"]

CONNECT_TIMEOUT = 5.0
# One retry, at once: enough for a dropped idle connection, not for an outage.
RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5}


def _redis_error(exc: BaseException) -> redis.RedisError | None:
    """The Redis error behind ``exc`` (kombu and Celery wrap it), if there is one."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, redis.RedisError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _unreachable(exc: BaseException, what: str) -> Exception:
    return _redis_error(exc) or CarDreamError(f"cannot reach the {what}: {exc}")


def check_reachable(celery_app: Celery) -> None:
    """Raise now if Redis (results) or the broker cannot be reached or refuses us."""
    client = memory_client(
        redis_url(celery_app),
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=CONNECT_TIMEOUT,
    )
    try:
        client.ping()
    finally:
        client.close()
    with celery_app.connection_for_write() as conn:
        try:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=1)
        except (OperationalError, OSError) as exc:
            raise _unreachable(exc, "broker") from None


def queue_pass(task: Any, *, namespace: str, force: bool) -> AsyncResult:
    """Send ``task`` (``car_dream.consolidate``) for ``namespace``; its result handle."""
    celery_app = task.app
    check_reachable(celery_app)
    # Bound the result store's reconnects too (Celery's default: 20, a second apart).
    options = dict(celery_app.conf.result_backend_transport_options or {})
    options["retry_policy"] = RETRY_POLICY
    celery_app.conf.result_backend_transport_options = options
    try:
        result: AsyncResult = task.apply_async(
            kwargs={"namespace": namespace, "force": force}, retry_policy=RETRY_POLICY
        )
    except (OperationalError, OSError) as exc:
        raise _unreachable(exc, "broker") from None
    except RuntimeError as exc:  # the result store gave up reconnecting
        raise _unreachable(exc, "result store") from None
    return result


def wait_for_report(result: AsyncResult, timeout: float) -> dict[str, Any]:
    """The report the worker returns; :class:`CarDreamError` if none within ``timeout``."""
    try:
        data: dict[str, Any] = result.get(timeout=timeout)
        return data
    except CeleryTimeout:
        raise CarDreamError(f"no result after {timeout:.0f}s: is a worker running?") from None
    except CarDreamError as exc:  # raised by the pass, re-raised here
        raise CarDreamError(f"the pass failed: {exc}") from None
    except RuntimeError as exc:  # the result store gave up reconnecting
        raise _unreachable(exc, "result store") from None
    finally:
        # Stop listening now. Left to AsyncResult.__del__ at exit, the unsubscribe
        # reconnects while Python shuts down: "Exception ignored in ... __del__".
        backend: Any = result.backend
        with contextlib.suppress(Exception):
            backend.remove_pending_result(result)
