-- KEYS[1] lock. ARGV: prefix, token, now, limit, pass id, journal retention secs.
-- Removes superseded, unpinned nodes, journaled.
-- Reply {'ok', done, left} or {fence reply}.
local f = fence(KEYS[1], ARGV[2]) if f then return {f} end
JOURNAL = {pass = ARGV[5], step = 'collect', keep = ARGV[6]}
local ids = redis.call('ZRANGE', P .. K.collectable, 0, tonumber(ARGV[4]) - 1)
local n = 0
for _, id in ipairs(ids) do
  local c = redis.call('HMGET', nk(id), 'pinned', 'superseded_by', 'invalidated')
  if c[1] ~= '1' then
    local why = 'listed as collectable'
    if c[2] == '' then why = 'invalidated: ' .. (c[3] or '?')
    elseif c[2] then why = 'superseded by ' .. c[2] end
    n = n + remove_node(id, why)
  end
  redis.call('ZREM', P .. K.collectable, id)
end
return {'ok', n, redis.call('ZCARD', P .. K.collectable)}
