-- KEYS[1] lock. ARGV: prefix, token, now, limit. Prunes expired environment nodes.
-- Reply {'ok', done, left} (left: how much work remains) or {fence reply}.
local f = fence(KEYS[1], ARGV[2]) if f then return {f} end
local ids = redis.call('ZRANGEBYSCORE', P .. K.expiry, '-inf', ARGV[3], 'LIMIT', 0,
  tonumber(ARGV[4]))
local n = 0
for _, id in ipairs(ids) do n = n + remove_node(id) ; redis.call('ZREM', P .. K.expiry, id) end
return {'ok', n, redis.call('ZCOUNT', P .. K.expiry, '-inf', ARGV[3])}
