-- KEYS[1] lock. ARGV: prefix, token, now, limit, pass id, journal retention secs.
-- Prunes expired environment nodes, journaled.
-- Reply {'ok', done, left} (left: how much work remains) or {fence reply}.
local f = fence(KEYS[1], ARGV[2]) if f then return {f} end
JOURNAL = {pass = ARGV[5], step = 'prune', keep = ARGV[6]}
local ids = redis.call('ZRANGEBYSCORE', P .. K.expiry, '-inf', ARGV[3], 'LIMIT', 0,
  tonumber(ARGV[4]))
local n = 0
for _, id in ipairs(ids) do
  local at = redis.call('ZSCORE', P .. K.expiry, id)
  n = n + remove_node(id, 'expired at ' .. at)
  redis.call('ZREM', P .. K.expiry, id)
end
return {'ok', n, redis.call('ZCOUNT', P .. K.expiry, '-inf', ARGV[3])}
