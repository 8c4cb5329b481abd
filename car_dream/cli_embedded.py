"""``car-dream embedded``: see and stop the embedded Redis under ``CAR_DREAM_DATA_DIR``.

Neither command starts a server: they read ``embedded.json`` only, whatever
``CAR_DREAM_REDIS_URL`` says.
"""

from __future__ import annotations

import json
from typing import Any

import click

from . import embedded as server
from .config import mask_url

__all__ = ["embedded"]


@click.group()
def embedded() -> None:
    """The embedded Redis (used while CAR_DREAM_REDIS_URL is unset)."""


@embedded.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_obj
def embedded_status(env: Any, as_json: bool) -> None:
    """Whether an embedded Redis is running under CAR_DREAM_DATA_DIR, and which."""
    data_dir = env.config.data_dir.expanduser()
    found = server.state(data_dir)
    running = bool(found and found["running"])
    if as_json:
        data = {
            "data_dir": str(data_dir),
            "running": running,
            "url": mask_url(found["url"]) if found else None,
            "pid": found.get("pid") if found else None,
            "started_by": found.get("owner_pid") if found else None,
        }
        click.echo(json.dumps(data, indent=2))
    elif found and running:
        click.echo(
            f"running under {data_dir}: {mask_url(found['url'])}, pid {found.get('pid')} "
            f"(started by pid {found.get('owner_pid')}); stop it with `car-dream embedded stop`"
        )
    elif found:
        click.echo(f"not running under {data_dir} (its last record is stale)")
    else:
        click.echo(f"not running under {data_dir}")


@embedded.command("stop")
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait for it to exit.")
@click.pass_obj
def embedded_stop(env: Any, timeout: float) -> None:
    """Stop the embedded Redis under CAR_DREAM_DATA_DIR (it saves its data first)."""
    data_dir = env.config.data_dir.expanduser()
    pid = server.shutdown(data_dir, timeout)
    if pid is None:
        click.echo(f"no embedded Redis running under {data_dir}")
    else:
        click.echo(f"stopped the embedded Redis under {data_dir} (pid {pid})")
