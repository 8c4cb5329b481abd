"""The text of the Lua files in ``car_dream/lua/``, for the modules that assemble scripts
from them (:mod:`car_dream.scripts`, :mod:`car_dream.lock`)."""

from __future__ import annotations

from importlib.resources import files

__all__ = ["lua"]


def lua(name: str) -> str:
    """The text of ``car_dream/lua/<name>.lua``."""
    return (files("car_dream") / "lua" / f"{name}.lua").read_text(encoding="utf-8")
