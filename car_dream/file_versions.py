"""The version of a local file (a digest, the version an export recorded), worked out
again only when the file's ``stat`` changes: an idle pass stats the profiles file and
the embeddings file instead of reading them.

A file changed within :data:`RACY_SECS` is not cached: a rewrite in the same tick of the
file system's clock, at the same size, would keep its ``stat`` (git's "racily clean").
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

__all__ = ["RACY_SECS", "stat_cached"]

T = TypeVar("T")

RACY_SECS = 2.0
_KEPT = 1024  # files remembered per process (one per setting in practice)
_cache: dict[tuple[str, str], tuple[tuple[int, ...], object]] = {}
_guard = threading.Lock()


def stat_cached(path: Path, compute: Callable[[Path], T]) -> T:
    """``compute(path)``, or what it returned last time if the file's ``stat`` is the same."""
    try:
        st = os.stat(path)
    except OSError:  # missing or unreachable: compute says what that means
        return compute(path)
    sig = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    key = (compute.__module__ + "." + compute.__qualname__, os.fspath(path))
    with _guard:
        hit = _cache.get(key)
    if hit is not None and hit[0] == sig:
        return hit[1]  # type: ignore[return-value]
    value = compute(path)
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > RACY_SECS * 1e9:
        with _guard:
            if len(_cache) >= _KEPT:
                _cache.clear()
            _cache[key] = (sig, value)
    return value
