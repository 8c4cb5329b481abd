"""What ``celery -A car_dream worker|beat|flower|...`` checks before Celery starts.

Celery reads car-dream's settings inside its ``on_configure`` signal, and catches what
is raised there: a bad ``CAR_DREAM_*`` value would leave the program running on
Celery's defaults (amqp://localhost, no result backend, beat's schedule files in the
working directory). So the settings are read while the ``celery`` program imports
this package, and a bad one ends the program there. Imported any other way (a
library, a test, the ``car-dream`` CLI), nothing is read and nothing is checked.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from .config import unknown_settings
from .errors import ConfigError

__all__ = ["SETTINGS_EXIT", "check_settings", "started_by_celery", "warn_unknown_settings"]

SETTINGS_EXIT = 2  # as the car-dream CLI: invalid settings


def started_by_celery() -> bool:
    """True while the ``celery`` program loads its app (``-A car_dream``)."""
    program = sys.modules.get("celery.bin.celery")
    if program is None:
        return False
    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.find_root().command is getattr(program, "celery", None)


def warn_unknown_settings() -> None:
    """Name each misspelt ``CAR_DREAM_*`` variable on stderr, once per program."""
    for warning in unknown_settings():
        print(f"car-dream: warning: {warning}", file=sys.stderr)


def check_settings(load: Callable[[], Any]) -> None:
    """Read the settings with ``load``; a bad one ends the program with one line naming it."""
    warn_unknown_settings()
    try:
        load()
    except ConfigError as exc:
        # SystemExit: celery's app loader turns any Exception into a usage error with a
        # traceback, and the program must not go on.
        print(f"car-dream: {exc}", file=sys.stderr)
        raise SystemExit(SETTINGS_EXIT) from None
