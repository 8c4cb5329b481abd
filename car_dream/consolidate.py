"""One consolidation pass: lock, then the steps in order, then the report.

Every destructive batch is one fenced Lua script, so a pass that lost its lock
stops at its next batch without writing. Each step works from an index, so an
idle pass costs a handful of round trips whatever the size of the store.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .config import DreamConfig, mask_url
from .embedder import Embedder, HashingEmbedder
from .errors import LockLostError, PassCancelledError, shown
from .keys import Keys
from .lock import PassLock
from .profiles import MISSING, load_profiles, profile_digest, profile_insight
from .report import ConsolidationReport
from .shutdown import SHUTDOWN, pass_running
from .store import KINDS, MemoryStore
from .trajectory import Batch, read_batches, slot_id, source_insight, tool_insight

__all__ = ["log_report", "run_pass"]

log = logging.getLogger("car_dream")

# Running trajectory counts kept in memory during a pass (tools plus sources).
TRAJ_COUNTS_CACHED = 10_000
# Field of the meta hash: the version of the profiles file the last pass read.
PROFILES_READ = "profiles_file"


def run_pass(
    store: MemoryStore,
    config: DreamConfig,
    *,
    force: bool = False,
    trailing: bool = False,
    token: str | None = None,
    takeover: bool = False,
    embedder: Embedder | None = None,
    clock: Callable[[], float] = time.time,
    cancel_event: threading.Event | None = None,
) -> ConsolidationReport:
    """Run one pass over ``store`` under its namespace lock and return the report.

    ``force`` ignores the "consolidated recently" window but never a running pass;
    ``takeover`` lets a trailing pass take over the finished lock of ``token``.
    """
    started = time.monotonic()
    report = ConsolidationReport(
        namespace=store.namespace, trailing=trailing, started_at=_utc(clock())
    )
    lock = PassLock(store.client, store.keys, config.lock_ttl, token)
    try:
        got = lock.acquire(force=force, takeover=takeover)
    except Exception as exc:
        return _finish(store, report, started, clock, "failed", _reason(exc))
    if not got.ok:
        report.lock_ttl_remaining = got.ttl_remaining
        return _finish(store, report, started, clock, "skipped", got.outcome)
    status, reason = "completed", None
    try:
        with lock.keepalive(), pass_running():
            _Pass(store, config, report, lock, embedder, clock, cancel_event).run()
        if not lock.finish():
            status, reason = "lost_lock", "lock taken over before the pass could finish"
    except LockLostError as exc:
        status, reason = "lost_lock", str(exc)
    except PassCancelledError as exc:
        status, reason = "cancelled", str(exc)
        _quietly(lock.release)
    except Exception as exc:
        log.exception("car-dream: pass over %s failed", store.namespace)
        status, reason = "failed", _reason(exc)
        _quietly(lock.release)  # if Redis is gone the TTL frees it instead
    return _finish(store, report, started, clock, status, reason)


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _reason(exc: BaseException) -> str:
    # Connection errors can quote the URL; never let a password reach a report.
    text = f"{exc.__class__.__name__}: {exc}"
    return " ".join(mask_url(w) or w if "://" in w else w for w in text.split(" "))


def _quietly(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception as exc:
        log.warning("car-dream: %s", _reason(exc))


def _finish(
    store: MemoryStore,
    report: ConsolidationReport,
    started: float,
    clock: Callable[[], float],
    status: str,
    reason: str | None,
) -> ConsolidationReport:
    report.status = status  # type: ignore[assignment]
    report.reason = reason
    report.finished_at = _utc(clock())
    report.duration_ms = round((time.monotonic() - started) * 1000, 3)
    log_report(report)
    try:
        store.record_report(report)
    except Exception as exc:
        log.warning("car-dream: report not stored: %s", _reason(exc))
    return report


def log_report(report: ConsolidationReport) -> None:
    fields = report.model_dump(mode="json", exclude={"warnings"})
    fields["warnings"] = len(report.warnings)
    if report.embedding_coverage is not None:  # null when the pass measured nothing
        fields["embedding_coverage"] = f"{report.embedding_coverage * 100:.1f}%"
    line = " ".join(f"{k}={json.dumps(v)}" for k, v in fields.items())
    log.info("dream consolidation pass %s %s", outcome(report), line, extra={"report": fields})


def outcome(report: ConsolidationReport) -> str:
    """What became of the pass, in words: ``completed``, ``skipped (paused)``, ..."""
    if report.status == "completed" or not report.reason:
        return report.status
    return f"{report.status} ({report.reason})"


class _Pass:
    """The steps of one pass, sharing the lock, the report and the clock."""

    def __init__(
        self,
        store: MemoryStore,
        config: DreamConfig,
        report: ConsolidationReport,
        lock: PassLock,
        embedder: Embedder | None,
        clock: Callable[[], float],
        cancel_event: threading.Event | None,
    ) -> None:
        self.store, self.config, self.report, self.lock = store, config, report, lock
        self.keys: Keys = store.keys
        self.client = store.client
        self.scripts = store.scripts
        self.embedder = embedder or HashingEmbedder()
        self.clock = clock
        self.cancel_event = cancel_event
        self.batch = config.batch_size

    def run(self) -> None:
        if self.config.trajectory_dir is not None:
            self.ingest_trajectories(self.config.trajectory_dir)
        if self.config.outcome_profiles_path is not None:
            self.ingest_profiles(self.config.outcome_profiles_path)
        # One read of every work index: a step whose index is empty (and that no earlier
        # step can fill) is skipped, so an idle pass is a handful of round trips.
        todo = self.store.stats(due=self.clock())
        self.checkpoint()
        if todo["expiry_due"]:
            self.report.expired_pruned = self.drain(self.scripts.prune)
        if todo["conclusions_to_check"] or self.report.expired_pruned:
            # Each conclusion is invalidated at most once: that bounds the cascade.
            cascade = int(self.client.scard(self.keys.kind("conclusion")))
            self.report.conclusions_invalidated = self.drain(self.scripts.invalidate, cascade)
        if todo["superseded_pending"] or self.report.conclusions_invalidated:
            self.report.superseded_gc = self.drain(self.scripts.collect)
        if todo["unembedded"] or todo["embedding_model"] != self.embedder.model_id:
            self.embed_missing()
        removed = self.report.expired_pruned + self.report.superseded_gc
        stats = self.store.stats() if removed or self.report.nodes_embedded else todo
        self.report.total_nodes = stats["total_nodes"]
        self.report.embedding_coverage = stats["embedding_coverage"]
        if self.config.embeddings_path is not None:
            self.persist_embeddings(self.config.embeddings_path)

    # -- plumbing ------------------------------------------------------------------

    def checkpoint(self) -> None:
        """Between batches: stop if the lock was lost or the pass cancelled."""
        if self.lock.lost.is_set():
            raise LockLostError("lock lost: another pass holds the namespace")
        if self.lock.cancelled.is_set() or (self.cancel_event and self.cancel_event.is_set()):
            raise PassCancelledError("cancelled between batches")
        if SHUTDOWN.is_set():
            raise PassCancelledError("worker shutting down (SIGTERM): stopped between batches")

    def fenced(self, script: Any, *args: Any) -> list[Any]:
        self.checkpoint()
        reply = script(keys=[self.keys.lock], args=[self.keys.prefix, self.lock.token, *args])
        code = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
        if code == "lost":
            self.lock.lost.set()
            raise LockLostError("lock lost: a batch was refused by its fence")
        if code == "cancelled":
            self.lock.cancelled.set()
            raise PassCancelledError("cancelled by an operator")
        return list(reply)

    def drain(self, script: Any, extra: int = 0) -> int:
        """Run a batch script until no work is left; the total it did.

        Rounds are capped by the work left after the first batch (plus ``extra``
        items the step may add itself), so work that writers add meanwhile is
        left to the trailing pass instead of keeping this one busy.
        """
        _, done, left = self.fenced(script, repr(self.clock()), self.batch)
        done, left = int(done), int(left)
        rounds = math.ceil((left + extra) / self.batch) + 1 if left else 0
        for _ in range(rounds):
            _, n, left = self.fenced(script, repr(self.clock()), self.batch)
            done += int(n)
            if not int(left):
                break
        return done

    def apply(self, payload: dict[str, Any]) -> int:
        return int(
            self.fenced(self.scripts.apply_insights, repr(self.clock()), json.dumps(payload))[1]
        )

    # -- step 1: trajectories ------------------------------------------------------

    def ingest_trajectories(self, directory: Path) -> None:
        """Apply each batch of new records; the writes run behind the reading.

        The running counts are read from Redis once per tool or source and then kept
        here (only a pass holding this namespace's lock writes them), so each batch is
        one fenced write of absolute counts and its watermark, sent by a writer thread
        in order while the next batch is parsed.
        """
        k = self.keys
        offsets = {f.decode(): int(v) for f, v in self.client.hgetall(k.traj_offsets).items()}
        counts: dict[str, dict[str, Counter[str]]] = {k.traj_tools: {}, k.traj_sources: {}}
        pending: Future[int] | None = None
        with ThreadPoolExecutor(1, thread_name_prefix="car-dream-traj") as writer:
            try:
                for item in read_batches(directory, offsets, self.batch):
                    if isinstance(item, str):
                        self.report.warn(item)
                        continue
                    self.checkpoint()
                    if sum(map(len, counts.values())) > TRAJ_COUNTS_CACHED:
                        if pending is not None:  # what it writes is read again afterwards
                            pending.result()
                            pending = None
                        for cached in counts.values():
                            cached.clear()
                    payload = self.batch_payload(item, counts)
                    if pending is not None:
                        pending.result()
                    pending = writer.submit(self.apply, payload)
            finally:
                if pending is not None:
                    pending.result()
        self.report.trajectory_insights += self.write_dirty_insights()

    def batch_payload(self, batch: Batch, counts: dict[str, dict[str, Counter[str]]]) -> Any:
        """The APPLY_INSIGHTS payload of one batch: new absolute counts, watermark, dirty."""
        k = self.keys
        for problem in batch.skipped:
            self.report.warn(problem, skipped=1)
        hset: dict[str, dict[str, Any]] = {k.traj_offsets: {batch.file: batch.end_offset}}
        pairs = ((k.traj_tools, batch.tally.tools), (k.traj_sources, batch.tally.sources))
        for key, tally in pairs:
            known = counts[key]
            unknown = [name for name in tally if name not in known]
            if unknown:
                for name, raw in zip(unknown, self.client.hmget(key, unknown), strict=True):
                    known[name] = _load(raw)
            if tally:
                for name, delta in tally.items():
                    known[name].update(delta)
                hset[key] = {name: json.dumps(dict(known[name])) for name in tally}
        dirty = [f"tool:{t}" for t in batch.tally.tools]
        dirty += [f"source:{s}" for s in batch.tally.sources]
        return {"hset": hset, "sadd": {k.insight_dirty: dirty} if dirty else {}}

    def write_dirty_insights(self) -> int:
        """One fact per tool and source whose counts changed, superseding the last one."""
        k = self.keys
        written = 0
        dirty = sorted(m.decode() for m in self.client.smembers(k.insight_dirty))
        for i in range(0, len(dirty), self.batch):
            chunk = dirty[i : i + self.batch]
            tools = [s[5:] for s in chunk if s.startswith("tool:")]
            sources = [s[7:] for s in chunk if s.startswith("source:")]
            pipe = self.client.pipeline(transaction=False)
            pipe.hmget(k.traj_tools, tools or ["-"])
            pipe.hmget(k.traj_sources, sources or ["-"])
            tool_counts, source_counts = pipe.execute()
            facts = [
                _fact(f"tool:{t}", slot_id("tool", t), f"tool:{t}", tool_insight(t, _load(c)))
                for t, c in zip(tools, tool_counts, strict=False)
            ] + [
                _fact(f"source:{s}", slot_id("source", s), f"source:{s}",
                      source_insight(s, _load(c)))
                for s, c in zip(sources, source_counts, strict=False)
            ]  # fmt: skip
            written += self.apply({"facts": facts, "srem": {k.insight_dirty: chunk}})
        return written

    # -- step 2: model profiles ----------------------------------------------------

    def ingest_profiles(self, path: Path) -> None:
        """Write a fact per profile whose digest changed, and report the file's problems.

        The version of the file last read (its digest, or MISSING) is kept in the meta
        hash, written last: a file unchanged since is written already and its problems
        reported, so it costs one read and no repeated warning.
        """
        loaded = load_profiles(path)
        last = self.client.hget(self.keys.meta, PROFILES_READ)
        if last is not None and last.decode() == loaded.version:
            return
        if loaded.version == MISSING:
            self.report.warn(f"profiles {path}: no such file (CAR_DREAM_OUTCOME_PROFILES_PATH)")
        for problem in loaded.problems:
            self.report.warn(problem, skipped=1)
        profiles = loaded.by_id
        ids = list(profiles)
        for i in range(0, len(ids), self.batch):
            chunk = ids[i : i + self.batch]
            old = self.client.hmget(self.keys.profile_digests, chunk)
            digests = {m: profile_digest(profiles[m]) for m in chunk}
            changed = [
                m for m, o in zip(chunk, old, strict=True) if o is None or o.decode() != digests[m]
            ]
            if not changed:
                continue
            facts = [
                _fact(
                    f"model:{m}", slot_id("model", m), f"model:{m}", profile_insight(m, profiles[m])
                )
                for m in changed
            ]
            self.report.model_insights += self.apply(
                {
                    "hset": {self.keys.profile_digests: {m: digests[m] for m in changed}},
                    "facts": facts,
                }
            )
        self.apply({"hset": {self.keys.meta: {PROFILES_READ: loaded.version}}})

    # -- step 6: embeddings --------------------------------------------------------

    def embed_missing(self) -> None:
        """Embed every node the index lists, reading ahead and writing behind.

        One SSCAN cycle over the index (so the step is bounded by what is missing when
        it starts; what agents add meanwhile is the trailing pass's). Each batch is one
        read (ids, contents and revs from one script) and one fenced write. While batch
        ``i`` is embedded, a reader thread fetches batch ``i + 1`` and a writer thread
        stores batch ``i - 1``, so Redis I/O hides behind the embedder. Ids in flight are
        left out of a read, and the write stores only ids still listed, so none is
        stored twice.
        """
        model = self.embedder.model_id
        self.fenced(self.scripts.switch_model, model)
        k = self.keys

        def fetch(cursor: str) -> tuple[str, list[list[Any]]]:
            reply = self.scripts.fetch_unembedded(
                keys=[k.unembedded], args=[k.prefix, cursor, self.batch]
            )
            if isinstance(reply, bytes):
                # A node edited by hand may hold bytes that are not UTF-8: they come through
                # as surrogates, for embed_batch to skip that node, not fail the page.
                reply = reply.decode("utf-8", "surrogateescape")
            nxt, page = json.loads(reply)
            return str(nxt), page

        inflight: set[str] = set()
        pending: Future[int] | None = None
        with (
            ThreadPoolExecutor(1, thread_name_prefix="car-dream-read") as reader,
            ThreadPoolExecutor(1, thread_name_prefix="car-dream-write") as writer,
        ):
            ahead: Future[tuple[str, list[list[Any]]]] | None = reader.submit(fetch, "0")
            try:
                while ahead is not None:
                    cursor, page = ahead.result()
                    self.checkpoint()
                    ahead = reader.submit(fetch, cursor) if cursor != "0" else None
                    seen: set[str] = set()
                    rows = []
                    for row in page:
                        if row[0] not in inflight and row[0] not in seen:
                            seen.add(row[0])
                            rows.append(row)
                    if not rows:
                        continue
                    args = self.embed_batch(model, rows)
                    if pending is not None:
                        self.report.nodes_embedded += pending.result()
                    pending = writer.submit(self.store_vectors, args)
                    inflight = seen
            finally:
                if ahead is not None:
                    ahead.cancel()
                if pending is not None:
                    self.report.nodes_embedded += pending.result()

    def embed_batch(self, model: str, rows: list[list[Any]]) -> list[Any]:
        """The STORE_VECTORS arguments for rows of ``[id, content|false, rev|false]``.

        A node whose id or content is not UTF-8 is skipped and counted: it stays listed
        as unembedded, and ``car-dream check`` reports it as malformed.
        """
        live, gone = [], []
        for i, c, r in rows:
            if not _is_utf8(i) or (isinstance(c, str) and not _is_utf8(c)):
                self.report.warn(f"node {shown(i)}: not valid UTF-8, not embedded", skipped=1)
            elif isinstance(c, str) and isinstance(r, str):
                live.append((i, c, r))
            else:
                gone.append(i)
        if live:
            vectors = np.ascontiguousarray(
                self.embedder.embed([c for _, c, _ in live]), dtype=np.float32
            )
            size, blob = vectors.shape[1] * 4, vectors.tobytes()
        else:
            size, blob = 0, b""
        return [model, size, "\n".join(i for i, _, _ in live),
                "\n".join(r for _, _, r in live), blob, "\n".join(gone)]  # fmt: skip

    def store_vectors(self, args: list[Any]) -> int:
        return int(self.fenced(self.scripts.store_vectors, *args)[1])

    # -- step 8: embeddings file ---------------------------------------------------

    def persist_embeddings(self, path: Path) -> None:
        try:
            version = (self.client.hget(self.keys.meta, "emb_version") or b"0").decode()
            if _persisted_version(path) == version:
                return
            self.write_embeddings(path, version)
        except Exception as exc:
            self.report.warn(f"embeddings not persisted to {path}: {_reason(exc)}")

    def write_embeddings(self, path: Path, version: str) -> None:
        """Stream every current embedding to ``path`` (.npz: ids, vectors, model_id, version).

        Vectors are spooled to a scratch file next to ``path`` batch by batch, then copied
        into the archive: memory stays one batch whatever the size of the store.
        """
        model = self.embedder.model_id
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as spool:
            ids_path, vec_path = Path(spool) / "ids", Path(spool) / "vectors"
            count, width, size = 0, 1, 0
            with ids_path.open("w", encoding="ascii") as ids_out, vec_path.open("wb") as vec_out:
                for node_id, blob in self._current_vectors(model):
                    if count and len(blob) != size:
                        continue  # a vector of another shape cannot join the matrix
                    size = len(blob)
                    ids_out.write(node_id + "\n")
                    vec_out.write(blob)
                    width = max(width, len(node_id))
                    count += 1
            dims = size // 4
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as fh:
                    with zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                        with ids_path.open(encoding="ascii") as ids_in:
                            _npy_entry(zf, "ids", np.dtype(f"<U{width}"), (count,),
                                       _id_chunks(ids_in, width, self.batch))  # fmt: skip
                        with vec_path.open("rb") as vec_in:
                            chunks = iter(lambda: vec_in.read(1 << 20), b"")
                            _npy_entry(zf, "vectors", np.dtype("<f4"), (count, dims), chunks)
                        for name, value in (("model_id", model), ("version", version)):
                            with zf.open(f"{name}.npy", "w") as entry:
                                np.lib.format.write_array(entry, np.array(value))
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def _current_vectors(self, model: str) -> Iterator[tuple[str, bytes]]:
        for kind in KINDS:
            chunk: list[str] = []
            for node_id in self.store.ids(kind, self.batch):
                chunk.append(node_id)
                if len(chunk) >= self.batch:
                    yield from self._collect(chunk, model)
                    chunk = []
            yield from self._collect(chunk, model)

    def _collect(self, chunk: list[str], model: str) -> Iterator[tuple[str, bytes]]:
        if not chunk:
            return
        pipe = self.client.pipeline(transaction=False)
        for node_id in chunk:
            pipe.hmget(self.keys.node(node_id), ["emb_model", "emb"])
        for node_id, (m, blob) in zip(chunk, pipe.execute(), strict=True):
            if m is not None and blob is not None and m.decode() == model:
                yield node_id, blob


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
    zf: zipfile.ZipFile, name: str, dtype: np.dtype[Any], shape: tuple[int, ...],
    chunks: Iterator[bytes],
) -> None:  # fmt: skip
    """One ``.npy`` member of an ``.npz``, its data streamed from ``chunks``."""
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
              "shape": shape}  # fmt: skip
    with zf.open(f"{name}.npy", "w", force_zip64=True) as entry:
        np.lib.format.write_array_header_2_0(entry, header)
        for chunk in chunks:
            entry.write(chunk)


def _persisted_version(path: Path) -> str | None:
    try:
        with np.load(path) as data:
            return str(data["version"])
    except Exception:
        return None


def _is_utf8(text: str) -> bool:
    """False for text that came from bytes that were not UTF-8 (as surrogates)."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _load(raw: bytes | None) -> Counter[str]:
    return Counter(json.loads(raw)) if raw else Counter()


def _fact(slot: str, base: str, subject: str, content: str) -> dict[str, Any]:
    return {"slot": slot, "base": base, "subject": subject, "content": content,
            "tags": ["car-dream", "insight", slot.split(":", 1)[0]]}  # fmt: skip
