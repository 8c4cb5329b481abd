"""``car-dream exporter``: ``/metrics`` for Prometheus, from what the passes keep in Redis.

One process serves every namespace; it holds no state, so it can be restarted or run
twice (fail-over) without a counter going backwards or counting twice.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server

from .config import DreamConfig
from .errors import CarDreamError
from .metrics import DreamCollector

__all__ = ["registry", "serve"]

log = logging.getLogger(__name__)


def registry(client: Any, config: DreamConfig) -> CollectorRegistry:
    """A registry of car-dream's collector alone (no process or platform metrics: the
    exporter's own process is not what an operator of the memory watches)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(
        DreamCollector(
            client,
            max_namespaces=config.metrics_max_namespaces,
            interval_secs=config.interval_secs,
        )
    )
    return reg


def serve(
    client: Any,
    config: DreamConfig,
    address: str,
    port: int,
    ready: Any = None,
    stop: threading.Event | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT (or ``stop`` is set); ``ready(port)`` once listening."""
    try:
        server, thread = start_http_server(port, address, registry(client, config))
    except OSError as exc:
        raise CarDreamError(f"cannot listen on {address}:{port}: {exc.strerror or exc}") from None
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    if ready is not None:
        ready(server.server_port)
    try:
        while not stop.wait(1.0):  # a timed wait: signal handlers run in between
            pass
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
