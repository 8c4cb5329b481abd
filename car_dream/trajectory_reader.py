"""Trajectory files read in batches past each file's watermark; nothing here talks to Redis."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .trajectory import Tally, fast_counts, parse_counts

__all__ = ["Batch", "read_batches"]


@dataclass
class Batch:
    """Records read from one file, and the offset to store once they are applied."""

    file: str
    end_offset: int
    tally: Tally
    records: int = 0
    skipped: list[str] = field(default_factory=list)


def read_batches(
    directory: Path, offsets: Mapping[str, int], batch_size: int
) -> Iterator[Batch | str]:
    """Stream new complete lines of ``*.jsonl`` past each file's offset.

    Yields batches of at most ``batch_size`` lines, and plain strings for warnings
    about whole files. A line without its newline is left for the next pass: its
    writer may be mid-write. Memory stays flat in the file size.
    """
    if not directory.is_dir():
        yield f"trajectory dir {directory}: not a directory"
        return
    try:
        files = sorted(p for p in directory.glob("*.jsonl") if p.is_file())
    except OSError as exc:
        yield f"trajectory dir {directory}: {exc}"
        return
    for path in files:
        name = path.name
        start = int(offsets.get(name, 0))
        try:
            size = path.stat().st_size
            if size < start:
                yield f"{name}: shorter than its watermark ({size} < {start}); read again from 0"
                start = 0
            if size == start:
                continue
            yield from _read_file(path, name, start, batch_size)
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
