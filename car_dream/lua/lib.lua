-- Shared helpers, prepended by scripts.py to the scripts that need them, after a
-- generated prelude: K (key suffixes, from keys.py), KINDS (node kinds, from writes.py)
-- and RUNNING (the lock's value prefix while a pass runs, from lock.py).
-- ARGV[1] of every such script is the namespace key prefix.
-- Each script call runs these definitions again: every closure and table here costs
-- each write, so helpers only some scripts need live in write.lua and check.lua.
local P = ARGV[1]
local unpack = unpack or table.unpack
local function nk(id) return P .. K.node .. id end

local NONE = {}  -- an empty list, never added to

-- Whether this server has vector sets (Redis 8): asked once per script call, on the
-- server (no round trip), and only by a script that would touch the vector index. On a
-- Redis without them the index is simply not kept (search scans, see search.py).
local VSETS = nil
local function vsets()
  if VSETS == nil then
    local r = redis.pcall('VCARD', P .. K.vectors)
    VSETS = not (type(r) == 'table' and r.err)
  end
  return VSETS
end

-- The attributes of node `f` in the vector index: what search filters on. The subject
-- goes in as the start of its SHA-1 (search.py subject_tag): a FILTER string has no
-- escapes, a subject may hold both quotes, and may be long; search checks the subject
-- itself on each hit.
local function vector_attrs(f)
  return cjson.encode({kind = f.kind, s = f.subject and redis.sha1hex(f.subject):sub(1, 16) or ''})
end

-- Puts node `id` (its vector read from its hash) in the vector index with `attrs`. A
-- vector the set refuses (another dimension, written by hand) leaves it out: the check
-- reports it and reindex drops the vector.
local function vector_add(id, attrs, blob)
  blob = blob or redis.call('HGET', nk(id), 'emb')
  if blob then
    redis.pcall('VADD', P .. K.vectors, 'FP32', blob, id, VECTOR_QUANT, 'SETATTR', attrs)
  end
end

local function fence(lock_key, token)
  if redis.call('GET', lock_key) ~= RUNNING .. token then return 'lost' end
  if redis.call('GET', P .. K.cancel) == token then return 'cancelled' end
  return nil
end

-- A fact's forgetting score (README "The memory budget"): the time of its last use
-- (written or accessed) plus HALF_LIFE * log2(1 + accesses). Ranking by it is ranking by
-- relevance (1 + accesses) * 2^(-(t - last use) / HALF_LIFE) at any time t, so it is
-- stored once and never recomputed. `now` stands in for a missing time.
local function forget_score(f, now)
  local last = tonumber(f.written_at) or tonumber(now)
  local acc = tonumber(f.last_accessed)
  if acc and acc > last then last = acc end
  return last + HALF_LIFE * math.log(1 + (tonumber(f.access_count) or 0)) / math.log(2)
end

-- The index rule, in one place: the indexes node `f` belongs in. `f` holds the node's
-- fields by name (false when absent; `premises` decoded, `emb` the byte length of its
-- vector); false or nil: no node. `model` is the namespace's embedding model (false:
-- none chosen yet), `now` the score of a supersession whose time is not recorded.
--   kind        the kind set it is in; false for no node or a malformed one (no known
--               kind, or no content), which belongs in no index
--   expiry      its score in the expiry index: a live, unpinned environment node that
--               expires is pruned at its expires_at; else false
--   collectable its score in the collectable index: superseded and unpinned, it is
--               collected, oldest supersession first; else false
--   forget      its score in the forgettable index (forget_score): a live, unpinned
--               fact; else false (pinned nodes are never scored)
--   unembedded  true when it has no vector for the current model
--   vector      {kind, subject} (for vector_attrs) of a live node with a vector for
--               the current model: it is in the vector index; else false
--   invalidate  true for a live conclusion with a premise gone or superseded; nil
--               (either) for another conclusion, which the pass pops and keeps
--   premises    its premises that exist: it is in the dependents set of each
--   lost        how many of its premises no longer exist
-- Reads the premises' nodes, nothing else.
local function node_indexes(f, model, now)
  local known = false
  for i = 1, #KINDS do known = known or (f and f.kind == KINDS[i]) end
  if not (known and f.content) then
    return {kind = false, expiry = false, collectable = false, unembedded = false,
      invalidate = false, premises = NONE, lost = 0, forget = false, vector = false}
  end
  local live, pinned = not f.superseded_by, f.pinned == '1'
  local want = {kind = f.kind, premises = NONE, lost = 0, invalidate = false,
    expiry = f.kind == 'environment' and live and not pinned and f.expires_at or false,
    collectable = not live and not pinned and (f.superseded_at or now) or false,
    forget = f.kind == 'fact' and live and not pinned and forget_score(f, now) or false,
    unembedded = not (f.emb > 0 and f.emb_model and ((not model) or f.emb_model == model))}
  want.vector = live and not want.unembedded and {kind = f.kind, subject = f.subject}
  if f.kind == 'conclusion' then
    local stale = false
    want.premises = {}
    for _, q in ipairs(f.premises or NONE) do
      local s = redis.call('HMGET', nk(q), 'kind', 'superseded_by')
      if s[1] then want.premises[#want.premises + 1] = q else want.lost = want.lost + 1 end
      if s[2] or not s[1] then stale = true end
    end
    want.invalidate = (stale and live) or nil
  end
  return want
end

-- Puts node `id` in the indexes `want` (as from node_indexes) names and takes it out of
-- the others it `may` be in (`may.kind`: true or the one kind set; `may.premises`: the
-- premises whose dependents sets it may be in). A field of `want` that is nil is left
-- as it stands. Adds are idempotent and always sent; a removal only where `may` allows,
-- so a write sends no command for an index it cannot be in.
local function place(id, want, may)
  local kind, was = want.kind, may.kind
  if kind then redis.call('SADD', P .. K.kind .. kind, id) end
  if kind ~= nil and was == true then
    for i = 1, #KINDS do
      if KINDS[i] ~= kind then redis.call('SREM', P .. K.kind .. KINDS[i], id) end
    end
  elseif kind ~= nil and was and was ~= kind then
    redis.call('SREM', P .. K.kind .. was, id)
  end
  local expiry, collectable, unembedded, invalidate = want.expiry, want.collectable, want.unembedded, want.invalidate
  if expiry then redis.call('ZADD', P .. K.expiry, expiry, id)
  elseif expiry == false and may.expiry then redis.call('ZREM', P .. K.expiry, id) end
  -- NX: a node already collectable keeps its place in the queue.
  if collectable then redis.call('ZADD', P .. K.collectable, 'NX', collectable, id)
  elseif collectable == false and may.collectable then redis.call('ZREM', P .. K.collectable, id) end
  local forget = want.forget
  if forget then redis.call('ZADD', P .. K.forget, forget, id)
  elseif forget == false and may.forget then redis.call('ZREM', P .. K.forget, id) end
  if unembedded then redis.call('SADD', P .. K.unembedded, id)
  elseif unembedded == false and may.unembedded then redis.call('SREM', P .. K.unembedded, id) end
  if invalidate then redis.call('SADD', P .. K.invalidate, id)
  elseif invalidate == false and may.invalidate then redis.call('SREM', P .. K.invalidate, id) end
  -- The vector index: attributes set in place when the node is in it (its vector never
  -- changes while it is: a new vector comes only through store_vectors.lua).
  local vector = want.vector
  if (vector or (vector == false and may.vector)) and vsets() then
    if not vector then redis.call('VREM', P .. K.vectors, id)
    else
      local attrs = vector_attrs(vector)
      if redis.call('VSETATTR', P .. K.vectors, id, attrs) == 0 then vector_add(id, attrs) end
    end
  end
  local premises, old = want.premises, may.premises
  if premises then
    for i = 1, #premises do redis.call('SADD', P .. K.deps .. premises[i], id) end
    if old and #old > 0 then
      local keep = #premises > 0 and {} or NONE
      for i = 1, #premises do keep[premises[i]] = true end
      for i = 1, #old do
        if not keep[old[i]] then redis.call('SREM', P .. K.deps .. old[i], id) end
      end
    end
  end
end

local function queue_dependents(id)
  local deps = redis.call('SMEMBERS', P .. K.deps .. id)
  for _, c in ipairs(deps) do redis.call('SADD', P .. K.invalidate, c) end
  return deps
end

-- The journal (journal.py reads it). A script that removes or supersedes nodes for a
-- pass sets JOURNAL = {pass = id, step = name, keep = retention secs}; every removal
-- and supersession below then adds one entry, in the same script as the change, with
-- the node's fields as they were (not its vector, nor the merge step's digest: both
-- are made again once a restored node is embedded) and its dependents. nil: no entry
-- (an agent's own write superseding a node is no pass's doing). Without `keep` (a
-- restore) nothing is trimmed: the passes trim.
local JOURNAL = nil

local function journal(id, reason, deps)
  if not JOURNAL then return end
  local raw = redis.call('HGETALL', nk(id))
  local f = {}
  for i = 1, #raw, 2 do
    local k = raw[i]
    if k ~= 'emb' and k ~= 'emb_model' and k ~= 'digest' then f[k] = raw[i + 1] end
  end
  local entry = {'pass', JOURNAL.pass, 'step', JOURNAL.step, 'node', id, 'reason', reason,
    'fields', cjson.encode(f), 'deps', cjson.encode(deps or NONE)}
  if JOURNAL.keep then
    -- Trimmed once per script call, on the server's clock (a pass's clock may be a
    -- test's), as the ids are.
    local t = redis.call('TIME')
    local minid = (tonumber(t[1]) - tonumber(JOURNAL.keep)) * 1000
    JOURNAL.keep = nil
    redis.call('XADD', P .. K.journal, 'MINID', minid, '*', unpack(entry))
  else
    redis.call('XADD', P .. K.journal, '*', unpack(entry))
  end
end

-- Marks live node `id` superseded by `by` ('' when invalidated). Of its indexes only
-- expiry, collectable, forget and vector depend on that, so only they are placed (it was live, so it is not
-- collectable yet); callers know the node exists, so its content is not read.
-- `reason`: why, for the journal (a pass's supersession).
local function mark_superseded(id, by, now, reason)
  if reason then journal(id, reason) end
  local cur = redis.call('HMGET', nk(id), 'kind', 'pinned', 'emb_model')
  redis.call('HSET', nk(id), 'superseded_by', by, 'superseded_at', now)
  local want = node_indexes({kind = cur[1], content = true, pinned = cur[2],
    superseded_by = by, superseded_at = now, emb = 0}, false, now)
  want.kind, want.unembedded, want.invalidate, want.premises = nil, nil, nil, nil
  place(id, want, {expiry = true, forget = cur[1] == 'fact', vector = cur[3]})
  queue_dependents(id)
end

-- Takes node `id` out of the digest index (merge.lua) if its entry there is its own.
local function forget_digest(id, digest)
  if redis.call('HGET', P .. K.digests, digest) == id then
    redis.call('HDEL', P .. K.digests, digest)
  end
end

-- Built on first use, once per script call (a pass removes many nodes in one): the
-- indexes of no node, and where a removed node may be (its kind and premises are set
-- per node).
local NOWHERE, GONE = nil, nil

-- Removes node `id` (if there) and journals why: `reason`.
local function remove_node(id, reason)
  local k = nk(id)
  local f = redis.call('HMGET', k, 'kind', 'premises', 'emb_model', 'digest')
  if not f[1] then return 0 end
  if f[4] then forget_digest(id, f[4]) end
  journal(id, reason, queue_dependents(id))
  redis.call('DEL', P .. K.deps .. id)
  redis.call('UNLINK', k)
  NOWHERE = NOWHERE or node_indexes(false)
  GONE = GONE or {expiry = true, collectable = true, unembedded = true, invalidate = true}
  GONE.kind, GONE.premises = f[1], f[2] and cjson.decode(f[2])
  GONE.forget = f[1] == 'fact'  -- only facts are scored
  GONE.vector = f[3]  -- only an embedded node can be in the vector index
  place(id, NOWHERE, GONE)
  if f[3] then redis.call('HINCRBY', P .. K.meta, 'emb_version', 1) end
  return 1
end
