-- KEYS[1] lock. ARGV: prefix, token, now, limit. Removes superseded, unpinned nodes.
-- Reply {'ok', done, left} or {fence reply}.
local f = fence(KEYS[1], ARGV[2]) if f then return {f} end
local ids = redis.call('ZRANGE', P .. K.gc, 0, tonumber(ARGV[4]) - 1)
local n = 0
for _, id in ipairs(ids) do
  if redis.call('HGET', nk(id), 'pinned') ~= '1' then n = n + remove_node(id) end
  redis.call('ZREM', P .. K.gc, id)
end
return {'ok', n, redis.call('ZCARD', P .. K.gc)}
