-- KEYS[1] lock. ARGV: prefix, token, model. When the embedder's model changed, every
-- node counts as unembedded again and the vector index is emptied. Reply {'ok', 1 if the index was rebuilt else 0} or
-- {fence reply}. A namespace that never held an embedding (no emb_version) has every
-- node listed already: its first pass skips the rebuild, which costs about a
-- microsecond per node.
local f = fence(KEYS[1], ARGV[2]) if f then return {f} end
local meta = redis.call('HMGET', P .. K.meta, 'embed_model', 'emb_version')
if meta[1] == ARGV[3] then return {'ok', 0} end
if not meta[1] and not meta[2] then
  redis.call('HSET', P .. K.meta, 'embed_model', ARGV[3])
  return {'ok', 0}
end
local sets = {}
for i, kind in ipairs(KINDS) do sets[i] = P .. K.kind .. kind end
redis.call('SUNIONSTORE', P .. K.unembedded, P .. K.unembedded, unpack(sets))
-- Two models' vectors never mix in one index: it refills as the nodes are re-embedded.
redis.call('DEL', P .. K.vectors)
redis.call('HSET', P .. K.meta, 'embed_model', ARGV[3])
redis.call('HINCRBY', P .. K.meta, 'emb_version', 1)
return {'ok', 1}
