-- KEYS[1] lock. ARGV: prefix, token, now, payload json:
--   {"hset": {key: {field: value}}, "sadd": {key: [member]}, "srem": {key: [member]},
--    "facts": [{"slot", "base", "subject", "content", "tags"}]}
-- Applies bookkeeping and writes insight facts atomically; each fact supersedes the
-- slot's previous fact. Reply {'ok', facts written} or {fence reply}.
local f = fence(KEYS[1], ARGV[2]) if f then return {f} end
local now = ARGV[3]
local pl = cjson.decode(ARGV[4])
local function own(key)
  if string.sub(key, 1, #P) ~= P then error('key outside namespace: ' .. key) end
  return key
end
for key, m in pairs(pl.hset or {}) do
  for field, value in pairs(m) do redis.call('HSET', own(key), field, value) end
end
for key, members in pairs(pl.sadd or {}) do
  for _, m in ipairs(members) do redis.call('SADD', own(key), m) end
end
for key, members in pairs(pl.srem or {}) do
  for _, m in ipairs(members) do redis.call('SREM', own(key), m) end
end
local n = 0
for _, fact in ipairs(pl.facts or {}) do
  local seq = redis.call('HINCRBY', P .. K.meta, 'insight_seq', 1)
  local id = fact.base .. '.' .. seq
  local prev = redis.call('HGET', P .. K.insights, fact.slot)
  local sup = ''
  if prev and redis.call('EXISTS', nk(prev)) == 1
    and not redis.call('HGET', nk(prev), 'superseded_by') then
    sup = prev
  end
  write_node(id, read_old(id), 'fact', now, sup, {}, '0', '', {
    'content', fact.content, 'subject', fact.subject, 'source', 'car-dream',
    'provenance', 'consolidation', 'scope', 'global', 'timestamp', now,
    'tags', cjson.encode(fact.tags)})
  redis.call('HSET', P .. K.insights, fact.slot, id)
  n = n + 1
end
return {'ok', n}
