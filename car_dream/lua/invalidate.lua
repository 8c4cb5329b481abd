-- KEYS[1] lock. ARGV: prefix, token, now, limit, pass id, journal retention secs.
-- Invalidates conclusions whose premises are gone or superseded (journaled); their own
-- dependents are queued in turn.
-- Reply {'ok', done, left} or {fence reply}.
local f = fence(KEYS[1], ARGV[2]) if f then return {f} end
JOURNAL = {pass = ARGV[5], step = 'invalidate', keep = ARGV[6]}
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
      mark_superseded(id, '', ARGV[3], why)
      redis.call('HSET', nk(id), 'invalidated', why)
      n = n + 1
    end
  end
end
return {'ok', n, redis.call('SCARD', P .. K.invalidate)}
