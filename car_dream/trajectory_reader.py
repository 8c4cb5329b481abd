"""Trajectory files read in batches past each file's watermark; nothing here talks to Redis."""

from __future__ import annotations

import hashlib
import itertools
import os
import struct
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .trajectory import Tally, fast_counts, parse_counts

__all__ = ["Batch", "Listing", "list_directory", "read_batches"]


@dataclass
class Batch:
    """Records read from one file, and the offset to store once they are applied."""

    file: str
    end_offset: int
    tally: Tally
    records: int = 0
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Listing:
    """The ``*.jsonl`` files of a trajectory directory as ``(name, size)``, in the
    directory's order, and a digest of each file's name, size, inode and modification
    time, which changes whenever a file is added, removed, appended to or replaced."""

    entries: list[tuple[str, int]]
    digest: str
    problem: str | None = None  # the directory could not be listed: why

    @property
    def files(self) -> list[tuple[str, int]]:
        """``(name, size)`` of each file, sorted by name (the order they are read in)."""
        return sorted(self.entries)


_STAT = struct.Struct("<qqq").pack


def list_directory(directory: Path) -> Listing:
    """One listing of ``directory``: a ``stat`` per file, no file opened.

    The digest follows the directory's own order (stable while it is unchanged; a
    reordering costs one pass that finds nothing new), so an idle pass does not sort."""
    found: list[tuple[str, int]] = []
    parts: list[bytes] = []
    try:
        with os.scandir(directory) as entries:
            for e in entries:
                name = e.name
                if name.endswith(".jsonl") and name[0] != "." and e.is_file():
                    st = e.stat()
                    found.append((name, st.st_size))
                    parts.append(name.encode("utf-8", "surrogateescape"))
                    parts.append(_STAT(st.st_size, st.st_ino, st.st_mtime_ns))
    except (NotADirectoryError, FileNotFoundError):
        return Listing([], "", f"trajectory dir {directory}: not a directory")
    except OSError as exc:
        return Listing([], "", f"trajectory dir {directory}: {exc}")
    digest = hashlib.blake2b(b"\0".join(parts), digest_size=16).hexdigest()
    return Listing(found, digest)


def read_batches(
    directory: Path, offsets: Mapping[str, int], batch_size: int, listing: Listing | None = None
) -> Iterator[Batch | str]:
    """Stream new complete lines of ``*.jsonl`` past each file's offset.

    Yields batches of at most ``batch_size`` lines, and plain strings for warnings
    about whole files. A line without its newline is left for the next pass: its
    writer may be mid-write. Memory stays flat in the file size. ``listing``: the
    directory as already listed (else it is listed here).
    """
    listing = list_directory(directory) if listing is None else listing
    if listing.problem is not None:
        yield listing.problem
        return
    for name, size in listing.files:
        start = int(offsets.get(name, 0))
        try:
            if size < start:
                yield f"{name}: shorter than its watermark ({size} < {start}); read again from 0"
                start = 0
            if size == start:
                continue
            yield from _read_file(directory / name, name, start, batch_size)
        except OSError as exc:  # vanished or unreadable: try again next pass
            yield f"{name}: {exc.strerror or exc}"


def _read_file(path: Path, name: str, start: int, batch_size: int) -> Iterator[Batch]:
    with path.open("rb") as fh:
        fh.seek(start)
        offset = start
        while lines := list(itertools.islice(fh, batch_size)):
            last = not lines[-1].endswith(b"\n")
            if last:
                lines.pop()  # its writer may be mid-write: left for the next pass
                if not lines:
                    return
            batch = Batch(name, offset, Tally())
            # Plain records only append here; the counts are made once per batch, in C.
            outcomes: list[tuple[str, str]] = []
            actions: list[tuple[str, str]] = []
            for raw in lines:
                at = offset
                offset += len(raw)
                counts = fast_counts(raw)
                if counts is None:
                    if not raw.strip():
                        continue
                    try:
                        counts = parse_counts(raw)
                    except ValueError as exc:
                        batch.skipped.append(f"{name} at byte {at}: {exc}")
                        continue
                outcomes.append((counts[0], counts[1]))
                if counts[2]:
                    actions += counts[2]
            batch.records = len(outcomes)
            batch.end_offset = offset
            _tally_into(batch.tally.sources, outcomes)
            _tally_into(batch.tally.tools, actions)
            yield batch
            if last:
                return


def _tally_into(into: dict[str, Counter[str]], pairs: list[tuple[str, str]]) -> None:
    for (name, result), n in Counter(pairs).items():
        c = into.get(name)
        if c is None:
            c = into[name] = Counter()
        c[result] += n
