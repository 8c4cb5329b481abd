-- KEYS[1] node key. ARGV: prefix, node id, entry id, entry step, the node's fields as
-- the entry holds them (json), its dependents then (json), restore id, now, pin (0/1),
-- check only (0/1). Brings back a node a pass removed, or undoes a pass's invalidation,
-- with its indexes (node_indexes) and links, journaled (step restore); its vector is
-- recomputed by the next pass. Refused if the node was written since the entry.
-- Reply {'ok'} or {'refused', why}.
local id, entry, step, now = ARGV[2], ARGV[3], ARGV[4], ARGV[8]
local f = cjson.decode(ARGV[5])
local k = nk(id)
local cur = redis.call('HMGET', k, 'rev', 'superseded_by')
if step == 'invalidate' then
  if not cur[1] then return {'refused', 'removed since it was invalidated'} end
  if cur[1] ~= f.rev or cur[2] ~= '' then
    return {'refused', 'written since it was invalidated (now rev ' .. cur[1] .. ')'}
  end
elseif cur[1] then
  return {'refused', 'a node with this id was written since (rev ' .. cur[1] .. ')'}
end
if ARGV[10] == '1' then return {'ok'} end
JOURNAL = {pass = ARGV[7], step = 'restore'}
-- A pass's own verdict is undone: an invalidated conclusion comes back live (the next
-- pass checks its premises again). A supersession by another node stays.
local marks = {'superseded_by', 'superseded_at', 'invalidated'}
if f.superseded_by == '' then
  for _, name in ipairs(marks) do f[name] = nil end
end
if ARGV[9] == '1' then f.pinned = '1' end
if cur[1] then
  redis.call('HDEL', k, unpack(marks))
  if ARGV[9] == '1' then redis.call('HSET', k, 'pinned', '1') end
else
  local flat = {}
  for name, value in pairs(f) do flat[#flat + 1] = name flat[#flat + 1] = value end
  redis.call('HSET', k, unpack(flat))
end
local model = redis.call('HGET', P .. K.meta, 'embed_model')
-- Where it may be: nowhere once removed; in expiry/collectable/invalidate as invalidated.
place(id, node_indexes(read_node(id), model, now),
  {expiry = true, collectable = true, unembedded = true, invalidate = true, forget = true, vector = true})
-- The conclusions that cited it and still do cite it again.
local deps = cjson.decode(ARGV[6])
for _, c in ipairs(type(deps) == 'table' and deps or NONE) do
  local p = redis.call('HMGET', nk(c), 'kind', 'premises')
  if p[1] == 'conclusion' and p[2] and contains(cjson.decode(p[2]), id) then
    redis.call('SADD', P .. K.deps .. id, c)
  end
end
journal(id, 'restored from ' .. entry .. ' (' .. step .. ')')
return {'ok'}
