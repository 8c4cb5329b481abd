-- The last round trip of a pass (record.py): finish the lock, store the report, add it
-- to the totals and publish it, all or nothing. Also how any other report is stored.
-- KEYS: lock, reports, totals, journal[, all-namespace totals, recency set].
-- ARGV: token ('' = store the report only), ttl_secs, report json, reports kept,
--   channel ('' = publish nothing), totals json (totals.py: {"own": adds, "shared":
--   adds, "recent": [member, score]}, adds = {"incr", "incrf", "set", "setnx": {field:
--   value}}, every value a string), the journal's retention in seconds ('' = no trim).
-- Reply: 1 stored; 0 the lock is no longer this token's: nothing done.
if ARGV[1] ~= '' and finish(KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[3])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
local totals = cjson.decode(ARGV[6])
local function add(key, adds)
  if not adds then return end
  for f, v in pairs(adds.incr or {}) do redis.call('HINCRBY', key, f, v) end
  for f, v in pairs(adds.incrf or {}) do redis.call('HINCRBYFLOAT', key, f, v) end
  local set = {}
  for f, v in pairs(adds.set or {}) do set[#set + 1] = f; set[#set + 1] = v end
  if #set > 0 then redis.call('HSET', key, unpack(set)) end
  for f, v in pairs(adds.setnx or {}) do redis.call('HSETNX', key, f, v) end
end
add(KEYS[3], totals.own)
if #KEYS >= 6 then
  add(KEYS[5], totals.shared)
  if totals.recent then redis.call('ZADD', KEYS[6], totals.recent[2], totals.recent[1]) end
end
if ARGV[7] ~= '' then
  -- Removals trim the journal as they add to it; a namespace that stops removing
  -- still drops what is past its retention, on the server's clock (as the ids are).
  local t = redis.call('TIME')
  redis.call('XTRIM', KEYS[4], 'MINID', (tonumber(t[1]) - tonumber(ARGV[7])) * 1000)
end
if ARGV[5] ~= '' then redis.call('PUBLISH', ARGV[5], ARGV[3]) end
return 1
