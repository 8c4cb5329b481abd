"""Store invariants: ``check_store(store, repair=False) -> CheckReport``.

The checker verifies one namespace: every index entry points to an existing node
of the right state, every node is in the indexes its fields require, supersession
and premise links point to existing nodes (or are counted as dangling, which is
normal after garbage collection), and the embedding counts add up.

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
from .errors import CarDreamError
from .keys import NAMESPACES_KEY, SUFFIX
from .lock import PassLock
from .scripts import LIB
from .store import KINDS, MemoryStore

__all__ = ["CheckReport", "RepairRefusedError", "check_store"]

MALFORMED = "malformed"

BATCH = 200
MAX_MESSAGES = 200

# valid_utf8(s): whether Python could decode s (strict UTF-8: no overlong forms, no
# surrogates, nothing above U+10FFFF). Runs of ASCII are skipped by one pattern search.
VALID_UTF8 = r"""
local function valid_utf8(s)
  local i, n = 1, #s
  while true do
    i = string.find(s, '[\128-\255]', i)
    if not i then return true end
    local c = string.byte(s, i)
    local len, cp, least
    if c >= 194 and c <= 223 then len, cp, least = 1, c - 192, 128
    elseif c >= 224 and c <= 239 then len, cp, least = 2, c - 224, 2048
    elseif c >= 240 and c <= 244 then len, cp, least = 3, c - 240, 65536
    else return false end
    if i + len > n then return false end
    for j = i + 1, i + len do
      local b = string.byte(s, j)
      if b < 128 or b > 191 then return false end
      cp = cp * 64 + b - 128
    end
    if cp < least or cp > 1114111 or (cp >= 55296 and cp <= 57343) then return false end
    i = i + len + 1
  end
end
"""

# Per id, one JSON verdict. ARGV: prefix, then ids. KEYS[1] is a key of the namespace.
# Shared by both check scripts.
CHECK_LIB = (
    LIB
    + VALID_UTF8
    + r"""
local function contains(list, x)
  for _, v in ipairs(list) do if v == x then return true end end
  return false
end
"""
)

DIAGNOSE = (
    CHECK_LIB
    + r"""
local model = redis.call('HGET', P .. K.meta, 'embed_model')
local kinds = {'fact', 'environment', 'conclusion'}
local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local k = nk(id)
  local p = {}
  local v = {id = id, dp = 0, ds = 0, db = 0, emb = -1, u = 0}
  local exists = redis.call('EXISTS', k) == 1
  local f = redis.call('HMGET', k, 'kind', 'content', 'pinned', 'expires_at',
    'superseded_by', 'premises', 'emb_model', 'supersedes', 'superseded_at')
  local kind = f[1]
  if exists and (not kind or not f[2] or not contains(kinds, kind)) then
    p[#p + 1] = 'malformed'
    kind = false
  elseif f[2] and not valid_utf8(f[2]) then
    -- Written by hand: no pass can embed it. Its indexes are judged as usual.
    p[#p + 1] = 'malformed:content_not_utf8'
  end
  v.kind = kind or ''
  v.exists = exists and 1 or 0
  for _, kk in ipairs(kinds) do
    local member = redis.call('SISMEMBER', P .. K.kind .. kk, id) == 1
    if member and kk ~= kind then p[#p + 1] = 'kind_stale:' .. kk end
    if kind and not member and kk == kind then p[#p + 1] = 'kind_missing:' .. kk end
  end
  local superseded = f[5] ~= false
  local pinned = f[3] == '1'
  local score = redis.call('ZSCORE', P .. K.expiry, id)
  if kind == 'environment' and f[4] and not pinned and not superseded then
    if not score then p[#p + 1] = 'expiry_missing'
    elseif tonumber(score) ~= tonumber(f[4]) then p[#p + 1] = 'expiry_score' end
  elseif score then p[#p + 1] = 'expiry_stale' end
  local g = redis.call('ZSCORE', P .. K.gc, id)
  if kind and superseded and not pinned then
    if not g then p[#p + 1] = 'gc_missing' end
  elseif g then p[#p + 1] = 'gc_stale' end
  local un = redis.call('SISMEMBER', P .. K.unembedded, id) == 1
  v.u = un and 1 or 0
  if kind then
    local len = redis.call('HSTRLEN', k, 'emb')
    local current = len > 0 and f[7] and ((not model) or f[7] == model)
    if current then v.emb = len end
    if current and un then p[#p + 1] = 'unembedded_stale'
    elseif (not current) and (not un) then p[#p + 1] = 'unembedded_missing' end
  elseif un then p[#p + 1] = 'unembedded_stale' end
  local inv = redis.call('SISMEMBER', P .. K.invalidate, id) == 1
  if kind == 'conclusion' and f[6] then
    local stale = false
    for _, q in ipairs(cjson.decode(f[6])) do
      local s = redis.call('HMGET', nk(q), 'kind', 'superseded_by')
      if not s[1] then
        v.dp = v.dp + 1
        stale = true
      else
        if s[2] then stale = true end
        if redis.call('SISMEMBER', P .. K.deps .. q, id) == 0 then
          p[#p + 1] = 'deps_missing:' .. q
        end
      end
    end
    if stale and not superseded and not inv then p[#p + 1] = 'invalidate_missing' end
  elseif inv and kind ~= 'conclusion' then p[#p + 1] = 'invalidate_stale' end
  for _, c in ipairs(redis.call('SMEMBERS', P .. K.deps .. id)) do
    local cp = redis.call('HMGET', nk(c), 'kind', 'premises')
    if not kind or cp[1] ~= 'conclusion' or not cp[2] or not contains(cjson.decode(cp[2]), id) then
      p[#p + 1] = 'deps_stale:' .. c
    end
  end
  if f[8] and redis.call('EXISTS', nk(f[8])) == 0 then v.ds = 1 end
  if f[5] and f[5] ~= '' and redis.call('EXISTS', nk(f[5])) == 0 then v.db = 1 end
  v.p = p
  out[#out + 1] = cjson.encode(v)
end
return out
"""
)

# Re-derives the index entries of each id from its node hash. KEYS[1] lock.
# ARGV: prefix, token, now, vector byte size ('' = any), then ids. Never deletes a node.
REINDEX = (
    CHECK_LIB
    + r"""
local f0 = fence(KEYS[1], ARGV[2]) if f0 then return {f0} end
local now, size = ARGV[3], tonumber(ARGV[4])
local model = redis.call('HGET', P .. K.meta, 'embed_model')
local kinds = {'fact', 'environment', 'conclusion'}
local n = 0
for i = 5, #ARGV do
  local id = ARGV[i]
  local k = nk(id)
  local f = redis.call('HMGET', k, 'kind', 'content', 'pinned', 'expires_at',
    'superseded_by', 'premises', 'emb_model', 'superseded_at')
  local kind = f[1]
  if not (kind and f[2] and contains(kinds, kind)) then kind = false end
  for _, kk in ipairs(kinds) do
    if kk == kind then redis.call('SADD', P .. K.kind .. kk, id)
    else redis.call('SREM', P .. K.kind .. kk, id) end
  end
  local superseded = f[5] ~= false
  local pinned = f[3] == '1'
  if kind == 'environment' and f[4] and not pinned and not superseded then
    redis.call('ZADD', P .. K.expiry, f[4], id)
  else
    redis.call('ZREM', P .. K.expiry, id)
  end
  if kind and superseded and not pinned then
    if not redis.call('ZSCORE', P .. K.gc, id) then
      redis.call('ZADD', P .. K.gc, f[8] or now, id)
    end
  else
    redis.call('ZREM', P .. K.gc, id)
  end
  if kind then
    local len = redis.call('HSTRLEN', k, 'emb')
    if len > 0 and size and len ~= size then
      redis.call('HDEL', k, 'emb', 'emb_model')
      redis.call('HINCRBY', P .. K.meta, 'emb_version', 1)
      len = 0
    end
    local current = len > 0 and f[7] and ((not model) or f[7] == model)
    if current then redis.call('SREM', P .. K.unembedded, id)
    else redis.call('SADD', P .. K.unembedded, id) end
  else
    redis.call('SREM', P .. K.unembedded, id)
  end
  if kind == 'conclusion' and f[6] then
    local stale = false
    for _, q in ipairs(cjson.decode(f[6])) do
      local s = redis.call('HMGET', nk(q), 'kind', 'superseded_by')
      if not s[1] then stale = true
      else
        if s[2] then stale = true end
        redis.call('SADD', P .. K.deps .. q, id)
      end
    end
    if stale and not superseded then redis.call('SADD', P .. K.invalidate, id) end
  else
    redis.call('SREM', P .. K.invalidate, id)
  end
  for _, c in ipairs(redis.call('SMEMBERS', P .. K.deps .. id)) do
    local cp = redis.call('HMGET', nk(c), 'kind', 'premises')
    if not kind or cp[1] ~= 'conclusion' or not cp[2] or not contains(cjson.decode(cp[2]), id) then
      redis.call('SREM', P .. K.deps .. id, c)
    end
  end
  n = n + 1
end
return {'ok', n}
"""
)


class RepairRefusedError(CarDreamError):
    """A repair was asked for while a pass holds the namespace lock."""


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
            f"{self.unembedded_index} unembedded; dangling supersedes={self.dangling_supersedes} "
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
    for zkey in (k.expiry, k.collectable):
        ids.update(m.decode() for m, _ in c.zscan_iter(zkey, count=1000))
    for skey in (k.invalidate, k.unembedded):
        ids.update(m.decode() for m in c.sscan_iter(skey, count=1000))
    return sorted(ids)


def _diagnose(store: MemoryStore, ids: list[str]) -> list[dict[str, Any]]:
    script = store.client.register_script(DIAGNOSE)
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
    got = lock.acquire(force=True)
    if got.ok:
        return
    if got.outcome == "paused":  # an operator may well pause passes to repair
        client, key = lock.client, lock.keys.lock
        with client.pipeline() as pipe:
            pipe.watch(key)
            value = pipe.get(key)
            if value is None or value.startswith(b"done:"):
                pipe.multi()
                pipe.set(key, f"running:{lock.token}", ex=lock.ttl)
                if pipe.execute()[0]:
                    return
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
    script = store.client.register_script(REINDEX)
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
                    args=[store.keys.prefix, lock.token, now, size or "",
                          *ids[i : i + BATCH]],
                )  # fmt: skip
                code = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
                if code != "ok":
                    raise RepairRefusedError(f"repair stopped: the lock was {code}")
                done += int(reply[1])
    finally:
        lock.release()
    return done
