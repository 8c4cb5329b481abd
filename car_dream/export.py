"""The embeddings file: a NumPy ``.npz`` archive streamed from ``(id, vector)`` rows.

Members: ``ids`` (unicode), ``vectors`` (float32, one row per id), ``model_id`` and
``version`` (the namespace's embedding version when it was written). Pure file I/O: it
knows nothing of Redis, so it is tested on its own.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["persisted_version", "write_npz"]


def write_npz(
    path: Path, rows: Iterable[tuple[str, bytes]], model: str, version: str, batch: int = 500
) -> int:
    """Write ``rows`` to ``path`` atomically; the number of vectors written.

    Vectors are spooled to a scratch file next to ``path``, then copied into the archive:
    memory stays one batch whatever the number of rows. A row whose vector has another
    size than the first cannot join the matrix and is left out.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as spool:
        ids_path, vec_path = Path(spool) / "ids", Path(spool) / "vectors"
        count, width, size = 0, 1, 0
        with ids_path.open("w", encoding="ascii") as ids_out, vec_path.open("wb") as vec_out:
            for node_id, blob in rows:
                if count and len(blob) != size:
                    continue
                size = len(blob)
                ids_out.write(node_id + "\n")
                vec_out.write(blob)
                width = max(width, len(node_id))
                count += 1
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                with zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                    with ids_path.open(encoding="ascii") as ids_in:
                        chunks = _id_chunks(ids_in, width, batch)
                        _npy_entry(zf, "ids", np.dtype(f"<U{width}"), (count,), chunks)
                    with vec_path.open("rb") as vec_in:
                        blobs = iter(lambda: vec_in.read(1 << 20), b"")
                        _npy_entry(zf, "vectors", np.dtype("<f4"), (count, size // 4), blobs)
                    for name, value in (("model_id", model), ("version", version)):
                        with zf.open(f"{name}.npy", "w") as entry:
                            np.lib.format.write_array(entry, np.array(value))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return count


def persisted_version(path: Path) -> str | None:
    """The version recorded in the file at ``path``, or None if there is no readable one."""
    try:
        with np.load(path) as data:
            return str(data["version"])
    except Exception:
        return None


def _id_chunks(lines: Iterator[str], width: int, batch: int) -> Iterator[bytes]:
    chunk: list[str] = []
    for line in lines:
        chunk.append(line.rstrip("\n"))
        if len(chunk) >= batch:
            yield np.array(chunk, dtype=f"<U{width}").tobytes()
            chunk = []
    if chunk:
        yield np.array(chunk, dtype=f"<U{width}").tobytes()


def _npy_entry(
    zf: zipfile.ZipFile,
    name: str,
    dtype: np.dtype[Any],
    shape: tuple[int, ...],
    chunks: Iterator[bytes],
) -> None:
    """One ``.npy`` member of an ``.npz``, its data streamed from ``chunks``."""
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    with zf.open(f"{name}.npy", "w", force_zip64=True) as entry:
        np.lib.format.write_array_header_2_0(entry, header)
        for chunk in chunks:
            entry.write(chunk)
