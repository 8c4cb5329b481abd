-- KEYS[1] lock. ARGV: prefix, token, now, limit, pass id, journal retention secs, max
-- nodes ('' none), lowest score kept ('' none). Removes the lowest-scoring live,
-- unpinned facts (the forgettable index) while the namespace's live nodes are over the
-- budget, and those scored below the cutoff (unused for too long), journaled.
-- Reply {'ok', done, left} or {fence reply}.
local f = fence(KEYS[1], ARGV[2]) if f then return {f} end
JOURNAL = {pass = ARGV[5], step = 'forget', keep = ARGV[6]}
local idx, max, cutoff = P .. K.forget, tonumber(ARGV[7]), tonumber(ARGV[8])
local function wanted()
  local over = 0
  if max then
    local live = -redis.call('ZCARD', P .. K.collectable)  -- superseded nodes go anyway
    for _, kind in ipairs(KINDS) do live = live + redis.call('SCARD', P .. K.kind .. kind) end
    over = math.max(live - max, 0)
  end
  local old = cutoff and redis.call('ZCOUNT', idx, '-inf', '(' .. cutoff) or 0
  return math.min(math.max(over, old), redis.call('ZCARD', idx)), over
end
local want, over = wanted()
local ids = redis.call('ZRANGE', idx, 0, math.min(want, tonumber(ARGV[4])) - 1, 'WITHSCORES')
local n = 0
for i = 1, #ids, 2 do
  local id, score = ids[i], ids[i + 1]
  local why
  if n < over then why = 'over the budget of ' .. ARGV[7] .. ' nodes (score ' .. score .. ')'
  else why = 'unused: score ' .. score .. ' below ' .. ARGV[8] end
  n = n + remove_node(id, why)
  redis.call('ZREM', idx, id)
end
return {'ok', n, (wanted())}
