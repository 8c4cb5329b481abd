-- KEYS[1] a key of the namespace. ARGV: prefix, now, resolution secs, then ids. Records
-- an access of each node that exists: last_accessed and access_count, at most once per
-- node per resolution (an O(1) read otherwise), and its forgetting score. Reply: the
-- number of nodes written.
local now, res = tonumber(ARGV[2]), tonumber(ARGV[3])
local n = 0
for i = 4, #ARGV do
  local id = ARGV[i]
  local last = redis.call('HMGET', nk(id), 'kind', 'last_accessed')
  if last[1] and not (last[2] and now - tonumber(last[2]) < res) then
    redis.call('HSET', nk(id), 'last_accessed', ARGV[2])
    redis.call('HINCRBY', nk(id), 'access_count', 1)
    if last[1] == 'fact' then
      local f = redis.call('HMGET', nk(id), 'pinned', 'superseded_by', 'written_at',
        'access_count')
      if f[1] ~= '1' and not f[2] then
        redis.call('ZADD', P .. K.forget, forget_score({written_at = f[3],
          last_accessed = ARGV[2], access_count = f[4]}, now), id)
      end
    end
    n = n + 1
  end
end
return n
