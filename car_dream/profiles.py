"""Model outcome profiles (a JSON array of objects with ``model_id``) as facts.

Pure functions; the pass decides which profiles changed by their digest.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, NamedTuple

from .errors import shown
from .trajectory import ensure_encodable, reject_constant

__all__ = [
    "FIGURES",
    "MISSING",
    "Profiles",
    "load_profiles",
    "profile_digest",
    "profile_insight",
    "profiles_version",
]

MAX_SUMMARY = 2000
MISSING = "missing"

# The figures a profile may carry with a known meaning: (lowest, highest, whole numbers
# only). Checked, so that "success_rate": "high" never becomes a fact; other fields are
# kept as they are.
FIGURES: dict[str, tuple[float, float, bool]] = {
    "success_rate": (0.0, 1.0, False),
    "avg_latency_ms": (0.0, math.inf, False),
    "samples": (0, math.inf, True),
}


class Profiles(NamedTuple):
    """What :func:`load_profiles` read."""

    by_id: dict[str, dict[str, Any]]  # valid profiles by model id
    problems: list[str]  # one per skipped entry, or one for a file that could not be used
    version: str  # the digest of the file's bytes, MISSING, or why it could not be read


def _bad_figure(profile: dict[str, Any]) -> str | None:
    for name, (low, high, whole) in FIGURES.items():
        if name not in profile:
            continue
        value = profile[name]
        number = isinstance(value, int) if whole else isinstance(value, int | float)
        if not number or isinstance(value, bool) or not low <= value <= high:
            kind = "a whole number" if whole else "a number"
            bounds = f", at least {low:g}" if high == math.inf else f" from {low:g} to {high:g}"
            return f"{name} must be {kind}{bounds}, got {shown(value)}"
    return None


def _read(path: Path) -> tuple[bytes | None, str, str | None]:
    """The file's bytes (None if unreadable), its version, and why it is unreadable."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, MISSING, None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return None, f"unreadable: {reason}", f"profiles {path.name}: {reason}"
    return raw, hashlib.sha256(raw).hexdigest(), None


def profiles_version(path: Path) -> str:
    """The version :func:`load_profiles` would report, without parsing the file."""
    return _read(path)[1]


def load_profiles(path: Path) -> Profiles:
    """The valid profiles of the file at ``path``, one problem per skipped entry, and
    the version of the file read.

    A file that cannot be read or is not a JSON array yields no profiles and one
    problem; a missing one, no profiles and no problem (version MISSING). Duplicate ids
    keep the first entry.
    """
    raw, version, problem = _read(path)
    if raw is None:
        return Profiles({}, [problem] if problem else [], version)
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        problem = f"profiles {path.name}: not valid JSON ({exc.__class__.__name__})"
        return Profiles({}, [problem], version)
    if not isinstance(data, list):
        problem = f"profiles {path.name}: expected a JSON array, got {type(data).__name__}"
        return Profiles({}, [problem], version)
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
        bad = _bad_figure(item)
        if bad:
            problems.append(f"profiles[{i}] {shown(model_id)}: {bad}")
        elif model_id in profiles:
            problems.append(f"profiles[{i}]: duplicate model_id {shown(model_id)}, first kept")
        else:
            profiles[model_id] = item
    return Profiles(profiles, problems, version)


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
