-- KEYS[1] lock. ARGV: prefix, token, now, pass id, journal retention secs, groups,
-- digests. `groups`: one line per group, '\n'-joined, of space-separated
-- `canonical rev duplicate rev duplicate rev ...` (merge.py chose them: complete
-- linkage, the canonical rule). `digests`: lines `id rev digest`, the exact-duplicate
-- key of each node recorded in the digest index (idx:digest, digest -> node id).
-- A revision is the one the decision was made on: a node rewritten since, superseded,
-- pinned (a duplicate) or gone is left out, and a group without its canonical is
-- skipped. Each duplicate is superseded by the canonical, reason 'duplicate'
-- (journaled); the conclusions citing it are moved to cite the canonical first, so none
-- is queued for invalidation. Reply {'ok', merged, conclusions moved} or {fence reply}.
local f = fence(KEYS[1], ARGV[2]) if f then return {f} end
JOURNAL = {pass = ARGV[4], step = 'merge', keep = ARGV[5]}
local now, merged, moved = ARGV[3], 0, 0

local function state(id, rev)
  local s = redis.call('HMGET', nk(id), 'kind', 'rev', 'superseded_by', 'pinned')
  if not s[1] or s[2] ~= rev or s[3] then return nil end
  return s
end

-- Conclusion `c` cites `to` instead of `from` (once; never itself).
local function recite(c, from, to)
  local raw = redis.call('HGET', nk(c), 'premises')
  if not raw then return end
  local out, seen = {}, {}
  for _, p in ipairs(cjson.decode(raw)) do
    if p == from then p = to end
    if p ~= c and not seen[p] then seen[p] = true out[#out + 1] = p end
  end
  if #out > 0 then redis.call('HSET', nk(c), 'premises', cjson.encode(out))
  else redis.call('HDEL', nk(c), 'premises') end
  if seen[to] then redis.call('SADD', P .. K.deps .. to, c) end
  moved = moved + 1
end

for line in string.gmatch(ARGV[6], '[^\n]+') do
  local w = {}
  for word in string.gmatch(line, '%S+') do w[#w + 1] = word end
  local canon = state(w[1], w[2])
  if canon then
    for i = 3, #w - 1, 2 do
      local id = w[i]
      local dup = id ~= w[1] and state(id, w[i + 1])
      if dup and dup[1] == canon[1] and dup[4] ~= '1' then
        local deps = P .. K.deps .. id
        for _, c in ipairs(redis.call('SMEMBERS', deps)) do recite(c, id, w[1]) end
        redis.call('DEL', deps)
        mark_superseded(id, w[1], now, 'duplicate')
        merged = merged + 1
      end
    end
  end
end

for line in string.gmatch(ARGV[7], '[^\n]+') do
  local id, rev, digest = string.match(line, '^(%S+) (%S+) (%S+)$')
  if id and state(id, rev) then
    redis.call('HSET', nk(id), 'digest', digest)
    redis.call('HSET', P .. K.digests, digest, id)
  end
end
return {'ok', merged, moved}
