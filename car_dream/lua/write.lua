-- Writing a node, for the scripts that do (after lib.lua).

-- What a write reads of the node it replaces: {content, emb, emb_model, premises, kind,
-- superseded_by, digest}.
local function read_old(id)
  return redis.call('HMGET', nk(id), 'content', 'emb', 'emb_model', 'premises', 'kind',
    'superseded_by', 'digest')
end

-- Checks a write of node `id` (`old`: from read_old) of `kind` superseding `sup` citing
-- `premises`. Returns nil when it may go ahead, else an error reply {code, detail}.
local function check_write(id, old, kind, sup, premises)
  if old[6] then return {'superseded', id} end
  if old[5] and old[5] ~= kind then return {'kind', old[5]} end
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

-- Writes (or rewrites) node `id` (`old`: from read_old); `fields` is a flat list of name,
-- value pairs that must include 'content'. An embedding survives a rewrite with the same content.
-- Callers have checked the write (check_write) or write a new id: the node is live and
-- keeps its kind, so it is in no other kind set and not in the collectable index.
-- Its first write is one a full Redis refuses (HINCRBY): Redis checks maxmemory only at a
-- script's first write, so a full Redis refuses the whole write, never lets it through.
local function write_node(id, old, kind, now, sup, premises, pinned, expires_at, fields)
  local k = nk(id)
  local rev = redis.call('HINCRBY', P .. K.meta, 'rev', 1)
  -- Its digest (the merge step's, recorded again when it is embedded) goes with it.
  if old[7] then forget_digest(id, old[7]) end
  redis.call('DEL', k)
  local content, subject = nil, nil
  for i = 1, #fields, 2 do
    if fields[i] == 'content' then content = fields[i + 1]
    elseif fields[i] == 'subject' then subject = fields[i + 1] end
  end
  local n = #fields
  if expires_at ~= '' then fields[n + 1], fields[n + 2], n = 'expires_at', expires_at, n + 2 end
  if #premises > 0 then fields[n + 1], fields[n + 2] = 'premises', cjson.encode(premises) end
  redis.call('HSET', k, 'kind', kind, 'rev', rev, 'pinned', pinned, 'written_at', now,
    unpack(fields))
  local kept = old[2] and old[1] == content
  if kept then
    redis.call('HSET', k, 'emb', old[2], 'emb_model', old[3])
  elseif old[2] then
    redis.call('HINCRBY', P .. K.meta, 'emb_version', 1)
  end
  -- The model matters only to a node that keeps a vector.
  local model = kept and redis.call('HGET', P .. K.meta, 'embed_model')
  local want = node_indexes({kind = kind, content = content, pinned = pinned,
    expires_at = expires_at ~= '' and expires_at, premises = premises, written_at = now,
    emb = kept and #old[2] or 0, emb_model = kept and old[3], subject = subject}, model, now)
  -- Where it may be: where the rule put the node it replaces. Only an environment node
  -- can be in the expiry index; a new node is in none.
  place(id, want, {expiry = old[5] == 'environment', forget = old[5] == 'fact', unembedded = true,
    premises = old[4] and cjson.decode(old[4]), vector = old[3]})
  if sup ~= '' then
    redis.call('HSET', k, 'supersedes', sup)
    mark_superseded(sup, id, now)
  end
  return old[1] and 0 or 1
end
