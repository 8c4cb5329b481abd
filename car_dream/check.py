"""Store invariants: ``check_store(store, repair=False) -> CheckReport``.

The checker verifies one namespace: every index entry points to an existing node
of the right state, every node is in the indexes its fields require, supersession
and premise links point to existing nodes (or are counted as dangling, which is
normal after garbage collection), and the embedding counts add up. On Redis 8 the
vector index holds every live embedded node and nothing else (``vector_*`` problems).

Each node is judged by one read-only Lua script call (in batches), so a verdict is
atomic even while agents write and passes run. ``repair=True`` re-derives the index
entries of every node found wrong from the node itself, again atomically per batch
and fenced by the namespace lock (taken like a forced pass, refused while a pass
runs). A repair never deletes a node: it only adds and removes index entries (and
drops an embedding of the wrong size, which the next pass recomputes).
"""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from .clock import ServerClock
from .errors import RepairRefusedError
from .keys import NAMESPACES_KEY, SUFFIX
from .lock import PassLock
from .search import vector_sets_available
from .store import KINDS, MemoryStore

__all__ = ["CheckReport", "RepairRefusedError", "check_store"]

MALFORMED = "malformed"

BATCH = 200
MAX_MESSAGES = 200


class CheckReport(BaseModel):
    """What :func:`check_store` found (and, with ``repair``, fixed)."""

    namespace: str
    ok: bool = True
    nodes: int = 0
    nodes_by_kind: dict[str, int] = Field(default_factory=dict)
    malformed_nodes: int = 0
    embedding_model: str | None = None
    embedded: int = 0
    unembedded_index: int = 0
    embedding_counts_match: bool = True
    vector_index: int | None = None  # nodes in the vector index; None: no vector sets
    vector_bytes: list[int] = Field(default_factory=list)
    dangling_supersedes: int = 0
    dangling_superseded_by: int = 0
    dangling_premises: int = 0
    problems: int = 0
    repairable: int = 0  # the problems a repair fixes: all but malformed nodes
    problem_counts: dict[str, int] = Field(default_factory=dict)
    messages: list[str] = Field(default_factory=list)
    repair: bool = False
    problems_found: int = 0
    repaired_ids: int = 0
    checked_at: datetime
    duration_ms: float = 0.0

    def summary(self) -> str:
        head = "ok" if self.ok else f"{self.problems} problem(s)"
        line = (
            f"[{self.namespace}] {head}: {self.nodes} nodes, {self.embedded} embedded, "
            f"{self.unembedded_index} unembedded"
            + ("" if self.vector_index is None else f", {self.vector_index} in the vector index")
            + f"; dangling supersedes={self.dangling_supersedes} "
            f"superseded_by={self.dangling_superseded_by} premises={self.dangling_premises}"
        )
        if self.repair:
            line += f"; repaired {self.repaired_ids} node(s) of {self.problems_found} problem(s)"
        return line


def _candidates(store: MemoryStore) -> list[str]:
    """Every id a node key, an index or a dependents key of the namespace mentions."""
    k, c = store.keys, store.client
    ids: set[str] = set()
    for prefix in (k.prefix + SUFFIX["node"], k.prefix + SUFFIX["deps"]):
        for key in c.scan_iter(match=prefix + "*", count=1000):
            ids.add(key.decode()[len(prefix) :])
    for kind in KINDS:
        ids.update(m.decode() for m in c.sscan_iter(k.kind(kind), count=1000))
    for zkey in (k.expiry, k.collectable, k.forgettable):
        ids.update(m.decode() for m, _ in c.zscan_iter(zkey, count=1000))
    for skey in (k.invalidate, k.unembedded):
        ids.update(m.decode() for m in c.sscan_iter(skey, count=1000))
    if vector_sets_available(c, k):  # a vector set has no SCAN: all its elements at once
        size = int(c.execute_command("VCARD", k.vectors))
        if size:
            ids.update(m.decode() for m in c.execute_command("VRANDMEMBER", k.vectors, size))
    return sorted(ids)


def _diagnose(store: MemoryStore, ids: list[str]) -> list[dict[str, Any]]:
    script = store.scripts.diagnose
    out: list[dict[str, Any]] = []
    for i in range(0, len(ids), BATCH):
        chunk = ids[i : i + BATCH]
        for raw in script(keys=[store.keys.meta], args=[store.keys.prefix, *chunk]):
            v = json.loads(raw)
            if not isinstance(v.get("p"), list):  # cjson encodes an empty table as {}
                v["p"] = []
            out.append(v)
    return out


def _inspect(store: MemoryStore, started: float) -> tuple[CheckReport, dict[str, list[str]], int]:
    verdicts = _diagnose(store, _candidates(store))
    report = CheckReport(namespace=store.namespace, checked_at=datetime.now(UTC))
    model = store.client.hget(store.keys.meta, "embed_model")
    report.embedding_model = model.decode() if model else None
    if vector_sets_available(store.client, store.keys):
        report.vector_index = int(store.client.execute_command("VCARD", store.keys.vectors))
    kinds: Counter[str] = Counter()
    sizes: Counter[int] = Counter()
    by_id: dict[str, list[str]] = {}
    for v in verdicts:
        if v["exists"]:
            report.nodes += 1
            if v["kind"]:
                kinds[v["kind"]] += 1
        if v["emb"] > 0:
            report.embedded += 1
            sizes[v["emb"]] += 1
        report.unembedded_index += v["u"]
        report.dangling_premises += v["dp"]
        report.dangling_supersedes += v["ds"]
        report.dangling_superseded_by += v["db"]
        if v["p"]:
            by_id[v["id"]] = list(v["p"])
    report.nodes_by_kind = {kind: kinds.get(kind, 0) for kind in KINDS}
    report.vector_bytes = sorted(sizes)
    # One vector size for the current model, a whole number of float32s.
    expected = sizes.most_common(1)[0][0] if sizes else 0
    if sizes and (len(sizes) > 1 or expected % 4):
        for v in verdicts:
            if v["emb"] > 0 and (v["emb"] != expected or v["emb"] % 4):
                by_id.setdefault(v["id"], []).append(f"vector_size:{v['emb']}")
    report.embedding_counts_match = report.embedded == report.nodes - report.unembedded_index
    if not report.embedding_counts_match and not by_id:
        by_id["-"] = ["embedding_count"]
    if report.nodes and not store.client.sismember(NAMESPACES_KEY, store.namespace):
        by_id.setdefault("-", []).append("namespace_unregistered")
    counts: Counter[str] = Counter()
    for node_id, problems in sorted(by_id.items()):
        for problem in problems:
            counts[problem.split(":", 1)[0]] += 1
            if len(report.messages) < MAX_MESSAGES:
                report.messages.append(f"{node_id}: {problem}")
    report.malformed_nodes = counts.get(MALFORMED, 0)
    report.problem_counts = dict(sorted(counts.items()))
    report.problems = sum(counts.values())
    report.repairable = report.problems - report.malformed_nodes
    report.ok = report.problems == 0
    report.duration_ms = round((time.monotonic() - started) * 1000, 3)
    return report, by_id, expected


def check_store(store: MemoryStore, repair: bool = False, *, ttl: int = 60) -> CheckReport:
    """Verify the namespace of ``store``; with ``repair``, fix index drift first.

    A repair takes the namespace lock like a forced pass (it ignores "consolidated
    recently" and a pause, never a running pass: :class:`RepairRefusedError`), keeps
    it alive, fences every batch with it and releases it at the end. It never
    deletes a node. The report is that of a check run after the repair.
    """
    started = time.monotonic()
    report, by_id, size = _inspect(store, started)
    if not repair or report.ok:
        report.repair = repair
        report.problems_found = report.problems
        return report
    found = report.problems
    repaired = _repair(store, by_id, size, ttl)
    report, _, _ = _inspect(store, started)
    report.repair, report.problems_found, report.repaired_ids = True, found, repaired
    return report


def _acquire(lock: PassLock) -> None:
    # Like a forced pass, and also while paused: an operator may well pause passes to repair.
    got = lock.acquire(force=True, ignore_pause=True)
    if not got.ok:
        left = f", {got.ttl_remaining:.0f}s left on its lock" if got.ttl_remaining else ""
        raise RepairRefusedError(f"a pass is running on this namespace{left}: repair refused")


def _repair(store: MemoryStore, by_id: dict[str, list[str]], size: int, ttl: int) -> int:
    # A malformed node is left for a human: only ids with some other problem are reindexed.
    ids = sorted(
        i
        for i, problems in by_id.items()
        if i != "-" and any(not p.startswith(MALFORMED) for p in problems)
    )
    lock = PassLock(store.client, store.keys, ttl, secrets.token_hex(16))
    _acquire(lock)
    script = store.scripts.reindex
    now = repr(ServerClock(store.client, store.keys.lock)())  # a pass's clock, not ours
    done = 0
    try:
        with lock.keepalive():
            if any(p == "namespace_unregistered" for p in by_id.get("-", [])):
                store.client.sadd(NAMESPACES_KEY, store.namespace)
            for i in range(0, len(ids), BATCH):
                if lock.lost.is_set():
                    raise RepairRefusedError("lost the namespace lock during the repair")
                reply = script(
                    keys=[store.keys.lock],
                    args=[
                        store.keys.prefix,
                        lock.token,
                        now,
                        size or "",
                        *ids[i : i + BATCH],
                    ],
                )
                code = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
                if code != "ok":
                    raise RepairRefusedError(f"repair stopped: the lock was {code}")
                done += int(reply[1])
    finally:
        lock.release()
    return done
