-- KEYS[1] lock. ARGV: prefix, token, now, vector byte size ('' = any), then ids.
-- Puts each id in the indexes node_indexes wants for its node hash, and out of the
-- others. Never deletes a node; drops a vector of the wrong size, which the next pass
-- recomputes. Reply {'ok', ids done} or {fence reply}.
local f0 = fence(KEYS[1], ARGV[2]) if f0 then return {f0} end
local now, size = ARGV[3], tonumber(ARGV[4])
local model = redis.call('HGET', P .. K.meta, 'embed_model')
local n = 0
for i = 5, #ARGV do
  local id = ARGV[i]
  local f = read_node(id)
  local want = node_indexes(f, model, now)
  if want.kind and f.emb > 0 and size and f.emb ~= size then
    redis.call('HDEL', nk(id), 'emb', 'emb_model')
    redis.call('HINCRBY', P .. K.meta, 'emb_version', 1)
    f.emb = 0
    want = node_indexes(f, model, now)
  end
  -- Where it may be is unknown: out of every index it does not belong in.
  place(id, want, {kind = true, expiry = true, collectable = true, unembedded = true, invalidate = true,
    forget = true, vector = true})
  for _, c in ipairs(stale_dependents(id, want.kind)) do
    redis.call('SREM', P .. K.deps .. id, c)
  end
  n = n + 1
end
return {'ok', n}
