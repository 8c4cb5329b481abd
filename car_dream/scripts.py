"""Lua scripts, as named constants, registered once per client by :class:`Scripts`.

Every script receives the namespace key prefix as ``ARGV[1]`` and builds the other
key names of the namespace from it. All of them share the namespace hash tag, so
this is safe on Redis Cluster; ``KEYS[1]`` is always a key of the namespace so the
script is routed to the right node.

Destructive scripts are *fenced*: they first check that the namespace lock still
holds ``running:<token>`` of the calling pass, and do nothing otherwise.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from redis.commands.core import Script

from .keys import SUFFIX

__all__ = ["Scripts"]

# Key suffixes from keys.py as a Lua table: ``P .. K.node .. id`` is ``Keys.node(id)``.
KEY_TABLE = "local K = {" + ", ".join(f"{k} = '{v}'" for k, v in SUFFIX.items()) + "}\n"

# Shared helpers, prepended to each script. ``P`` is the key prefix.
LIB = (
    KEY_TABLE
    + r"""
local P = ARGV[1]
local unpack = unpack or table.unpack
local function nk(id) return P .. K.node .. id end

local function queue_dependents(id)
  local deps = redis.call('SMEMBERS', P .. K.deps .. id)
  for _, c in ipairs(deps) do redis.call('SADD', P .. K.invalidate, c) end
end

local function mark_superseded(id, by, now)
  local k = nk(id)
  redis.call('HSET', k, 'superseded_by', by, 'superseded_at', now)
  redis.call('ZREM', P .. K.expiry, id)
  if redis.call('HGET', k, 'pinned') ~= '1' then
    redis.call('ZADD', P .. K.gc, now, id)
  end
  queue_dependents(id)
end

local function remove_node(id)
  local k = nk(id)
  local f = redis.call('HMGET', k, 'kind', 'premises', 'emb_model')
  if not f[1] then return 0 end
  if f[2] then
    for _, p in ipairs(cjson.decode(f[2])) do redis.call('SREM', P .. K.deps .. p, id) end
  end
  queue_dependents(id)
  redis.call('DEL', P .. K.deps .. id)
  redis.call('UNLINK', k)
  redis.call('SREM', P .. K.kind .. f[1], id)
  redis.call('ZREM', P .. K.expiry, id)
  redis.call('ZREM', P .. K.gc, id)
  redis.call('SREM', P .. K.unembedded, id)
  redis.call('SREM', P .. K.invalidate, id)
  if f[3] then redis.call('HINCRBY', P .. K.meta, 'emb_version', 1) end
  return 1
end

-- Checks a write of node `id` of `kind` superseding `sup` citing `premises`.
-- Returns nil when it may go ahead, else an error reply {code, detail}.
local function check_write(id, kind, sup, premises)
  local cur = redis.call('HMGET', nk(id), 'kind', 'superseded_by')
  if cur[2] then return {'superseded', id} end
  if cur[1] and cur[1] ~= kind then return {'kind', cur[1]} end
  if sup ~= '' then
    local target = redis.call('HMGET', nk(sup), 'kind', 'superseded_by')
    if not target[1] then return {'unknown', sup} end
    if target[2] then return {'superseded', sup} end
    -- A new node may only supersede an older one: refuse a loop back to itself.
    local walk, seen = sup, 0
    while walk and seen < 1000 do
      local back = redis.call('HGET', nk(walk), 'supersedes')
      if back == id then return {'cycle', sup} end
      walk, seen = back, seen + 1
    end
  end
  for _, p in ipairs(premises) do
    if p == id then return {'cycle', p} end
    if redis.call('EXISTS', nk(p)) == 0 then return {'unknown', p} end
  end
  return nil
end

-- Writes (or rewrites) node `id`; `fields` is a flat list of name, value pairs
-- that must include 'content'. An embedding survives a rewrite with the same content.
-- Its first write is one a full Redis refuses (HINCRBY): Redis checks maxmemory only at a
-- script's first write, so a full Redis refuses the whole write, never lets it through.
local function write_node(id, kind, now, sup, premises, pinned, expires_at, fields)
  local k = nk(id)
  local rev = redis.call('HINCRBY', P .. K.meta, 'rev', 1)
  local old = redis.call('HMGET', k, 'content', 'emb', 'emb_model', 'premises')
  if old[4] then
    for _, p in ipairs(cjson.decode(old[4])) do redis.call('SREM', P .. K.deps .. p, id) end
  end
  redis.call('DEL', k)
  redis.call('HSET', k, 'kind', kind, 'rev', rev, 'pinned', pinned, 'written_at', now, unpack(fields))
  if expires_at ~= '' then redis.call('HSET', k, 'expires_at', expires_at) end
  local content = redis.call('HGET', k, 'content')
  if old[2] and old[1] == content then
    redis.call('HSET', k, 'emb', old[2], 'emb_model', old[3])
  else
    if old[2] then redis.call('HINCRBY', P .. K.meta, 'emb_version', 1) end
    redis.call('SADD', P .. K.unembedded, id)
  end
  redis.call('SADD', P .. K.kind .. kind, id)
  if kind == 'environment' and expires_at ~= '' and pinned ~= '1' then
    redis.call('ZADD', P .. K.expiry, expires_at, id)
  else
    redis.call('ZREM', P .. K.expiry, id)
  end
  if #premises > 0 then
    redis.call('HSET', k, 'premises', cjson.encode(premises))
    local stale = false
    for _, p in ipairs(premises) do
      redis.call('SADD', P .. K.deps .. p, id)
      if redis.call('HEXISTS', nk(p), 'superseded_by') == 1 then stale = true end
    end
    if stale then redis.call('SADD', P .. K.invalidate, id) end
  end
  if sup ~= '' then
    redis.call('HSET', k, 'supersedes', sup)
    mark_superseded(sup, id, now)
  end
  return old[1] and 0 or 1
end

local function fence(lock_key, token)
  if redis.call('GET', lock_key) ~= 'running:' .. token then return 'lost' end
  if redis.call('GET', P .. K.cancel) == token then return 'cancelled' end
  return nil
end
"""
)

# KEYS[1] node key. ARGV: prefix, id, kind, now, supersedes|'', premises json, pinned,
# expires_at|'', then field name/value pairs.
INGEST = (
    LIB
    + r"""
local id, kind, now, sup = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local premises = cjson.decode(ARGV[6])
local fields = {}
for i = 9, #ARGV do fields[#fields + 1] = ARGV[i] end
local err = check_write(id, kind, sup, premises)
if err then return err end
return {'ok', write_node(id, kind, now, sup, premises, ARGV[7], ARGV[8], fields)}
"""
)

# The three batch scripts below reply {'ok', done, left}: left is how much work remains.

# KEYS[1] lock. ARGV: prefix, token, now, limit. Prunes expired environment nodes.
PRUNE = (
    LIB
    + r"""
local f = fence(KEYS[1], ARGV[2]) if f then return {f} end
local ids = redis.call('ZRANGEBYSCORE', P .. K.expiry, '-inf', ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))
local n = 0
for _, id in ipairs(ids) do n = n + remove_node(id) ; redis.call('ZREM', P .. K.expiry, id) end
return {'ok', n, redis.call('ZCOUNT', P .. K.expiry, '-inf', ARGV[3])}
"""
)

# KEYS[1] lock. ARGV: prefix, token, now, limit. Invalidates conclusions whose
# premises are gone or superseded; their own dependents are queued in turn.
INVALIDATE = (
    LIB
    + r"""
local f = fence(KEYS[1], ARGV[2]) if f then return {f} end
local ids = redis.call('SPOP', P .. K.invalidate, tonumber(ARGV[4]))
local n = 0
for _, id in ipairs(ids) do
  local c = redis.call('HMGET', nk(id), 'kind', 'premises', 'superseded_by')
  if c[1] == 'conclusion' and not c[3] and c[2] then
    local why = nil
    for _, p in ipairs(cjson.decode(c[2])) do
      local s = redis.call('HMGET', nk(p), 'kind', 'superseded_by')
      if not s[1] then why = 'premise ' .. p .. ' removed' break end
      if s[2] then why = 'premise ' .. p .. ' superseded' break end
    end
    if why then
      mark_superseded(id, '', ARGV[3])
      redis.call('HSET', nk(id), 'invalidated', why)
      n = n + 1
    end
  end
end
return {'ok', n, redis.call('SCARD', P .. K.invalidate)}
"""
)

# KEYS[1] lock. ARGV: prefix, token, now, limit. Removes superseded, unpinned nodes.
COLLECT = (
    LIB
    + r"""
local f = fence(KEYS[1], ARGV[2]) if f then return {f} end
local ids = redis.call('ZRANGE', P .. K.gc, 0, tonumber(ARGV[4]) - 1)
local n = 0
for _, id in ipairs(ids) do
  if redis.call('HGET', nk(id), 'pinned') ~= '1' then n = n + remove_node(id) end
  redis.call('ZREM', P .. K.gc, id)
end
return {'ok', n, redis.call('ZCARD', P .. K.gc)}
"""
)

# KEYS[1] lock. ARGV: prefix, token, model, vector size in bytes, ids ('\n'-joined),
# revs ('\n'-joined, one per id), the vectors concatenated in id order, ids of vanished
# nodes ('\n'-joined). One packed argument per column, so a pass sends a whole batch
# without one argument per vector. A vector is stored only if its node's revision is the
# one it was computed from, and only ids still in the unembedded index are stored and
# counted, so an id read twice is stored once.
STORE_VECTORS = (
    LIB
    + r"""
local f = fence(KEYS[1], ARGV[2]) if f then return {f} end
local size, blob, idx = tonumber(ARGV[4]), ARGV[7], P .. K.unembedded
local ids, revs, done = {}, {}, {}
for id in string.gmatch(ARGV[5], '[^\n]+') do ids[#ids + 1] = id end
for rev in string.gmatch(ARGV[6], '[^\n]+') do revs[#revs + 1] = rev end
local n = 0
for c = 1, #ids, 1000 do
  local chunk = {unpack(ids, c, math.min(c + 999, #ids))}
  local listed = redis.call('SMISMEMBER', idx, unpack(chunk))
  for j, id in ipairs(chunk) do
    local i = c + j - 1
    if listed[j] == 1 then
      local cur = redis.call('HGET', nk(id), 'rev')
      if cur == revs[i] then
        redis.call('HSET', nk(id), 'emb', string.sub(blob, (i - 1) * size + 1, i * size), 'emb_model', ARGV[3])
        n = n + 1
      end
      -- stored, or vanished: off the index; rewritten since it was read: still to embed
      if cur == revs[i] or not cur then done[#done + 1] = id end
    end
  end
  if #done > 0 then redis.call('SREM', idx, unpack(done)) done = {} end
end
for id in string.gmatch(ARGV[8], '[^\n]+') do
  if redis.call('EXISTS', nk(id)) == 0 then redis.call('SREM', idx, id) end
end
if n > 0 then redis.call('HINCRBY', P .. K.meta, 'emb_version', 1) end
return {'ok', n}
"""
)

# KEYS[1] unembedded index. ARGV: prefix, cursor, count. One SSCAN page of ids without
# an embedding with their content and rev, as one JSON reply [next_cursor, [[id,
# content, rev], ...]] (content and rev false for a vanished node): one round trip and
# one reply to parse instead of a read per node. Reads only.
FETCH_UNEMBEDDED = (
    KEY_TABLE
    + r"""
local P = ARGV[1]
local page = redis.call('SSCAN', KEYS[1], ARGV[2], 'COUNT', tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(page[2]) do
  local f = redis.call('HMGET', P .. K.node .. id, 'content', 'rev')
  out[#out + 1] = {id, f[1], f[2]}
end
if #out == 0 then return '["' .. page[1] .. '", []]' end
return '["' .. page[1] .. '", ' .. cjson.encode(out) .. ']'
"""
)

# KEYS[1] lock. ARGV: prefix, token, model. When the embedder's model changed, every
# node counts as unembedded again. Returns whether the index was rebuilt. A namespace
# that never held an embedding (no emb_version) has every node listed already: its
# first pass skips the rebuild, which costs about a microsecond per node.
SWITCH_MODEL = (
    LIB
    + r"""
local f = fence(KEYS[1], ARGV[2]) if f then return {f} end
local meta = redis.call('HMGET', P .. K.meta, 'embed_model', 'emb_version')
if meta[1] == ARGV[3] then return {'ok', 0} end
if not meta[1] and not meta[2] then
  redis.call('HSET', P .. K.meta, 'embed_model', ARGV[3])
  return {'ok', 0}
end
redis.call('SUNIONSTORE', P .. K.unembedded, P .. K.unembedded,
  P .. K.kind .. 'fact', P .. K.kind .. 'environment', P .. K.kind .. 'conclusion')
redis.call('HSET', P .. K.meta, 'embed_model', ARGV[3])
redis.call('HINCRBY', P .. K.meta, 'emb_version', 1)
return {'ok', 1}
"""
)

# KEYS[1] lock. ARGV: prefix, token, now, payload json:
#   {"hset": {key: {field: value}}, "sadd": {key: [member]}, "srem": {key: [member]},
#    "facts": [{"slot", "base", "subject", "content", "tags"}]}
# Applies bookkeeping and writes insight facts atomically; each fact supersedes the
# slot's previous fact. Returns the number of facts written.
APPLY_INSIGHTS = (
    LIB
    + r"""
local f = fence(KEYS[1], ARGV[2]) if f then return {f} end
local now = ARGV[3]
local pl = cjson.decode(ARGV[4])
local function own(key)
  if string.sub(key, 1, #P) ~= P then error('key outside namespace: ' .. key) end
  return key
end
for key, m in pairs(pl.hset or {}) do
  for field, value in pairs(m) do redis.call('HSET', own(key), field, value) end
end
for key, members in pairs(pl.sadd or {}) do
  for _, m in ipairs(members) do redis.call('SADD', own(key), m) end
end
for key, members in pairs(pl.srem or {}) do
  for _, m in ipairs(members) do redis.call('SREM', own(key), m) end
end
local n = 0
for _, fact in ipairs(pl.facts or {}) do
  local seq = redis.call('HINCRBY', P .. K.meta, 'insight_seq', 1)
  local id = fact.base .. '.' .. seq
  local prev = redis.call('HGET', P .. K.insights, fact.slot)
  local sup = ''
  if prev and redis.call('EXISTS', nk(prev)) == 1 and not redis.call('HGET', nk(prev), 'superseded_by') then
    sup = prev
  end
  write_node(id, 'fact', now, sup, {}, '0', '', {
    'content', fact.content, 'subject', fact.subject, 'source', 'car-dream',
    'provenance', 'consolidation', 'scope', 'global', 'timestamp', now,
    'tags', cjson.encode(fact.tags)})
  redis.call('HSET', P .. K.insights, fact.slot, id)
  n = n + 1
end
return {'ok', n}
"""
)

# Lock scripts. KEYS: lock, paused. ARGV: token, ttl_secs, force (0/1), takeover|''.
ACQUIRE = r"""
if redis.call('EXISTS', KEYS[2]) == 1 then return {'paused', redis.call('PTTL', KEYS[1])} end
local mine = 'running:' .. ARGV[1]
if redis.call('SET', KEYS[1], mine, 'NX', 'EX', ARGV[2]) then return {'acquired', 0} end
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], mine, 'EX', ARGV[2])
  return {'acquired', 0}
end
local state, tok = string.match(v, '^(%a+):(.*)$')
if state == 'done' and ((ARGV[4] ~= '' and tok == ARGV[4]) or ARGV[3] == '1') then
  redis.call('SET', KEYS[1], mine, 'EX', ARGV[2])
  return {'acquired', 0}
end
-- A plain trigger merges into the running or finished pass; only a forced one,
-- which would have run, is told that a pass is running.
if state == 'running' and ARGV[3] == '1' then return {'running', redis.call('PTTL', KEYS[1])} end
return {'coalesced', redis.call('PTTL', KEYS[1])}
"""

# KEYS: lock, cancel. ARGV: token, ttl_ms. 0 lost, 1 extended, 2 extended but cancelled.
EXTEND = r"""
if redis.call('GET', KEYS[1]) ~= 'running:' .. ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[1] then return 2 end
return 1
"""

# KEYS: lock. ARGV: token, ttl_secs. Marks the window "consolidated recently".
FINISH = r"""
if redis.call('GET', KEYS[1]) ~= 'running:' .. ARGV[1] then return 0 end
redis.call('SET', KEYS[1], 'done:' .. ARGV[1], 'EX', ARGV[2])
return 1
"""

# KEYS: lock. ARGV: token. Deletes the lock only if this token holds it.
RELEASE = r"""
local v = redis.call('GET', KEYS[1])
if v == 'running:' .. ARGV[1] or v == 'done:' .. ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

# KEYS: lock, cancel. ARGV: ttl_secs. Asks the running pass to stop; returns its token.
REQUEST_CANCEL = r"""
local v = redis.call('GET', KEYS[1])
if not v then return false end
local state, tok = string.match(v, '^(%a+):(.*)$')
if state ~= 'running' then return false end
redis.call('SET', KEYS[2], tok, 'EX', ARGV[1])
return tok
"""


_registered: weakref.WeakKeyDictionary[Any, Scripts] = weakref.WeakKeyDictionary()
_registering = threading.Lock()


class Scripts:
    """The scripts registered on one client: ``Scripts.of(client).prune(keys=..., args=...)``."""

    @classmethod
    def of(cls, client: Any) -> Scripts:
        """The client's scripts, registered once per client."""
        with _registering:
            scripts = _registered.get(client)
            if scripts is None:
                scripts = _registered[client] = cls(client)
            return scripts

    def __init__(self, client: Any) -> None:
        self.ingest: Script = client.register_script(INGEST)
        self.prune: Script = client.register_script(PRUNE)
        self.invalidate: Script = client.register_script(INVALIDATE)
        self.collect: Script = client.register_script(COLLECT)
        self.store_vectors: Script = client.register_script(STORE_VECTORS)
        self.fetch_unembedded: Script = client.register_script(FETCH_UNEMBEDDED)
        self.switch_model: Script = client.register_script(SWITCH_MODEL)
        self.apply_insights: Script = client.register_script(APPLY_INSIGHTS)
        self.acquire: Script = client.register_script(ACQUIRE)
        self.extend: Script = client.register_script(EXTEND)
        self.finish: Script = client.register_script(FINISH)
        self.release: Script = client.register_script(RELEASE)
        self.request_cancel: Script = client.register_script(REQUEST_CANCEL)
