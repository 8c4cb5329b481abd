"""Model outcome profiles (a JSON array of objects with ``model_id``) as facts.

Pure functions; the pass decides which profiles changed by their digest.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .trajectory import ensure_encodable, reject_constant

__all__ = ["load_profiles", "profile_digest", "profile_insight"]

MAX_SUMMARY = 2000


def load_profiles(path: Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Valid profiles by model id, and one problem per skipped entry.

    A file that cannot be read or is not a JSON array yields no profiles and one
    problem. Duplicate ids keep the first entry.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}, []  # not written yet: nothing to learn, nothing wrong
    except OSError as exc:
        return {}, [f"profiles {path.name}: {exc.strerror or exc}"]
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return {}, [f"profiles {path.name}: not valid JSON ({exc.__class__.__name__})"]
    if not isinstance(data, list):
        return {}, [f"profiles {path.name}: expected a JSON array, got {type(data).__name__}"]
    profiles: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for i, item in enumerate(data):
        model_id = item.get("model_id") if isinstance(item, dict) else None
        if not isinstance(model_id, str) or not model_id.strip() or len(model_id) > 200:
            problems.append(f"profiles[{i}]: no usable model_id")
            continue
        try:
            ensure_encodable(item)
        except ValueError as exc:
            problems.append(f"profiles[{i}]: {exc}")
            continue
        if model_id in profiles:
            problems.append(f"profiles[{i}]: duplicate model_id {model_id!r}, first kept")
        else:
            profiles[model_id] = item
    return profiles, problems


def profile_digest(profile: dict[str, Any]) -> str:
    canonical = json.dumps(profile, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def profile_insight(model_id: str, profile: dict[str, Any]) -> str:
    parts = []
    for key in sorted(profile):
        if key == "model_id":
            continue
        value = profile[key]
        if isinstance(value, float):
            shown = f"{value:.4g}"
        elif isinstance(value, str | int | bool) or value is None:
            shown = str(value)
        else:
            shown = json.dumps(value, sort_keys=True, separators=(",", ":"))
        parts.append(f"{key}={shown}")
    summary = ", ".join(parts) or "no figures"
    if len(summary) > MAX_SUMMARY:
        summary = summary[: MAX_SUMMARY - 1] + "…"
    return f"Model '{model_id}' outcome profile: {summary}."
