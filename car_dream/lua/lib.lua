-- Shared helpers, prepended by scripts.py to the scripts that need them, after a
-- generated prelude: K (key suffixes, from keys.py), KINDS (node kinds, from writes.py)
-- and RUNNING (the lock's value prefix while a pass runs, from lock.py).
-- ARGV[1] of every such script is the namespace key prefix.
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
local function write_node(id, kind, now, sup, premises, pinned, expires_at, fields)
  local k = nk(id)
  local old = redis.call('HMGET', k, 'content', 'emb', 'emb_model', 'premises')
  if old[4] then
    for _, p in ipairs(cjson.decode(old[4])) do redis.call('SREM', P .. K.deps .. p, id) end
  end
  redis.call('DEL', k)
  local rev = redis.call('HINCRBY', P .. K.meta, 'rev', 1)
  redis.call('HSET', k, 'kind', kind, 'rev', rev, 'pinned', pinned, 'written_at', now,
    unpack(fields))
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
  if redis.call('GET', lock_key) ~= RUNNING .. token then return 'lost' end
  if redis.call('GET', P .. K.cancel) == token then return 'cancelled' end
  return nil
end
