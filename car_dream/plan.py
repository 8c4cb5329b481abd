"""A dry run: what a pass would remove, read from the indexes without writing anything.

It follows the same rules as the scripts of the prune, forget, invalidate and collect
steps (``prune.lua``, ``forget.lua``, ``invalidate.lua``, ``collect.lua``): the expired
environment nodes, the facts beyond the memory budget or unused, then the conclusions
whose premises would be gone or superseded, in cascade, then every superseded unpinned
node, those just invalidated included. Each read is pipelined a batch at a time, and it
costs what the pass would cost: its work, not the store.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .config import DreamConfig
from .embedder import Embedder
from .keys import Keys
from .node import KINDS
from .report import ConsolidationReport
from .store import MemoryStore

__all__ = ["PLANNED_IDS", "Plan", "plan_pass", "plan_removals"]

PLANNED_IDS = 100  # node ids a dry-run report names per step


@dataclass
class Plan:
    """The ids each step would remove (or invalidate), in the order it would."""

    prune: list[str] = field(default_factory=list)
    forget: list[str] = field(default_factory=list)
    invalidate: list[str] = field(default_factory=list)
    collect: list[str] = field(default_factory=list)

    @property
    def removed(self) -> list[str]:
        return self.prune + self.forget + self.collect

    def named(self, limit: int = PLANNED_IDS) -> dict[str, list[str]]:
        steps = {
            "prune": self.prune,
            "forget": self.forget,
            "invalidate": self.invalidate,
            "collect": self.collect,
        }
        return {step: ids[:limit] for step, ids in steps.items() if ids}


@dataclass
class _Node:
    kind: str | None
    premises: list[str]
    superseded_by: str | None
    pinned: bool


class _Reader:
    """Nodes and dependents sets, read a batch at a time and kept."""

    def __init__(self, client: Any, keys: Keys, batch: int) -> None:
        self.client, self.keys, self.batch = client, keys, batch
        self.nodes: dict[str, _Node] = {}

    def chunks(self, ids: list[str]) -> Iterator[list[str]]:
        for i in range(0, len(ids), self.batch):
            yield ids[i : i + self.batch]

    def read(self, ids: list[str]) -> None:
        todo = [i for i in dict.fromkeys(ids) if i not in self.nodes]
        for chunk in self.chunks(todo):
            pipe = self.client.pipeline(transaction=False)
            for node_id in chunk:
                pipe.hmget(self.keys.node(node_id), ["kind", "premises", "superseded_by", "pinned"])
            for node_id, (kind, prem, sup, pinned) in zip(chunk, pipe.execute(), strict=True):
                self.nodes[node_id] = _Node(
                    kind.decode() if kind else None,
                    json.loads(prem) if prem else [],
                    sup.decode() if sup is not None else None,
                    pinned == b"1",
                )

    def dependents(self, ids: list[str]) -> list[str]:
        out: list[str] = []
        for chunk in self.chunks(ids):
            pipe = self.client.pipeline(transaction=False)
            for node_id in chunk:
                pipe.smembers(self.keys.dependents(node_id))
            for members in pipe.execute():
                out += sorted(m.decode() for m in members)
        return out

    def zrange(self, key: str, low: str, high: str) -> list[str]:
        out: list[str] = []
        while True:
            page = self.client.zrangebyscore(key, low, high, start=len(out), num=self.batch)
            out += [m.decode() for m in page]
            if len(page) < self.batch:
                return out


def plan_removals(
    client: Any,
    keys: Keys,
    now: float,
    batch: int,
    max_nodes: int | None = None,
    cutoff: float | None = None,
) -> Plan:
    """What the prune, forget, invalidate and collect steps of a pass at ``now`` would
    do (``max_nodes``, ``cutoff``: the forget step's budget and lowest score kept)."""
    r = _Reader(client, keys, batch)
    plan = Plan()
    expired = r.zrange(keys.expiry, "-inf", repr(now))
    r.read(expired)
    plan.prune = [i for i in expired if r.nodes[i].kind]
    if max_nodes is not None or cutoff is not None:
        plan.forget = _forgotten(client, keys, len(plan.prune), max_nodes, cutoff)
    gone = set(plan.removed)
    queue = sorted(m.decode() for m in client.smembers(keys.invalidate))
    queue += r.dependents(plan.removed)
    invalidated: set[str] = set()
    while queue:
        r.read(queue)
        r.read([p for c in queue for p in r.nodes[c].premises])
        newly = []
        for c in dict.fromkeys(queue):
            n = r.nodes[c]
            if n.kind != "conclusion" or n.superseded_by is not None or c in invalidated:
                continue
            for p in n.premises:
                q = r.nodes[p]
                if q.kind is None or p in gone or q.superseded_by is not None or p in invalidated:
                    newly.append(c)
                    invalidated.add(c)
                    break
        plan.invalidate += newly
        queue = r.dependents(newly)
    collectable = r.zrange(keys.collectable, "-inf", "+inf")
    listed = set(collectable)
    collectable += [c for c in plan.invalidate if c not in listed]
    r.read(collectable)
    plan.collect = [i for i in collectable if r.nodes[i].kind and not r.nodes[i].pinned]
    return plan


def _forgotten(
    client: Any, keys: Keys, pruned: int, max_nodes: int | None, cutoff: float | None
) -> list[str]:
    """The facts forget.lua would remove once ``pruned`` nodes are gone."""
    pipe = client.pipeline(transaction=False)
    for kind in KINDS:
        pipe.scard(keys.kind(kind))
    pipe.zcard(keys.collectable)
    pipe.zcard(keys.forgettable)
    pipe.zcount(keys.forgettable, "-inf", "(" + repr(cutoff) if cutoff is not None else "-inf")
    *counts, collectable, scored, old = pipe.execute()
    live = sum(counts) - collectable - pruned
    over = max(live - max_nodes, 0) if max_nodes is not None else 0
    want = min(max(over, old if cutoff is not None else 0), scored)
    return [m.decode() for m in client.zrange(keys.forgettable, 0, want - 1)] if want else []


def plan_pass(
    store: MemoryStore,
    config: DreamConfig,
    report: ConsolidationReport,
    embedder: Embedder,
    now: float,
) -> None:
    """Fill ``report`` with what a pass at ``now`` would do; writes nothing."""
    client, keys = store.client, store.keys
    age = config.forget_unused_after_secs
    cutoff = None if age is None else now - age
    plan = plan_removals(client, keys, now, config.batch_size, config.max_nodes, cutoff)
    report.expired_pruned = len(plan.prune)
    report.forgotten = len(plan.forget)
    report.conclusions_invalidated = len(plan.invalidate)
    report.superseded_gc = len(plan.collect)
    report.planned = plan.named()
    sizes = store.index_sizes()
    removed = plan.removed
    total = sizes.total_nodes - len(removed)
    if sizes.embedding_model not in (None, embedder.model_id):
        report.nodes_embedded = total  # a new model: every node again
    else:
        listed = 0
        for i in range(0, len(removed), config.batch_size):
            chunk = removed[i : i + config.batch_size]
            listed += sum(client.smismember(keys.unembedded, chunk))
        report.nodes_embedded = sizes.unembedded - listed
    report.total_nodes = total  # the coverage stays None: measured by the embed step
    if config.trajectory_dir or config.outcome_profiles_path:
        report.warn("dry run: the insights of trajectories and outcome profiles are not planned")
