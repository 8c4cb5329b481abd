-- KEYS[1] lock. ARGV: prefix, token, now, vector byte size ('' = any), then ids.
-- Re-derives the index entries of each id from its node hash. Never deletes a node;
-- drops a vector of the wrong size, which the next pass recomputes.
-- Reply {'ok', ids done} or {fence reply}.
local f0 = fence(KEYS[1], ARGV[2]) if f0 then return {f0} end
local now, size = ARGV[3], tonumber(ARGV[4])
local model = redis.call('HGET', P .. K.meta, 'embed_model')
local n = 0
for i = 5, #ARGV do
  local id = ARGV[i]
  local k = nk(id)
  local f = redis.call('HMGET', k, 'kind', 'content', 'pinned', 'expires_at',
    'superseded_by', 'premises', 'emb_model', 'superseded_at')
  local kind = f[1]
  if not (kind and f[2] and contains(KINDS, kind)) then kind = false end
  for _, kk in ipairs(KINDS) do
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
    if not kind or cp[1] ~= 'conclusion' or not cp[2]
      or not contains(cjson.decode(cp[2]), id) then
      redis.call('SREM', P .. K.deps .. id, c)
    end
  end
  n = n + 1
end
return {'ok', n}
