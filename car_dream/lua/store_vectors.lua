-- KEYS[1] lock. ARGV: prefix, token, model, vector size in bytes, ids ('\n'-joined),
-- revs ('\n'-joined, one per id), the vectors concatenated in id order, ids of vanished
-- nodes ('\n'-joined). One packed argument per column, so a pass sends a whole batch
-- without one argument per vector. A vector is stored only if its node's revision is the
-- one it was computed from, and only ids still in the unembedded index are stored and
-- counted, so an id read twice is stored once. A live node's vector goes in the vector
-- index too (Redis 8). Reply {'ok', stored} or {fence reply}.
local f = fence(KEYS[1], ARGV[2]) if f then return {f} end
local size, blob, idx = tonumber(ARGV[4]), ARGV[7], P .. K.unembedded
local ids, revs, done = {}, {}, {}
for id in string.gmatch(ARGV[5], '[^\n]+') do ids[#ids + 1] = id end
for rev in string.gmatch(ARGV[6], '[^\n]+') do revs[#revs + 1] = rev end
local n = 0
for c = 1, #ids, 1000 do
  local chunk = {unpack(ids, c, math.min(c + 999, #ids))}
  local listed = redis.call('SMISMEMBER', idx, unpack(chunk))
  for j, id in ipairs(chunk) do
    local i = c + j - 1
    if listed[j] == 1 then
      local node = redis.call('HMGET', nk(id), 'rev', 'kind', 'subject', 'superseded_by')
      local cur = node[1]
      if cur == revs[i] then
        local vector = string.sub(blob, (i - 1) * size + 1, i * size)
        redis.call('HSET', nk(id), 'emb', vector, 'emb_model', ARGV[3])
        -- The vector index holds live nodes only (node_indexes' vector).
        if not node[4] and vsets() then
          vector_add(id, vector_attrs({kind = node[2], subject = node[3]}), vector)
        end
        n = n + 1
      end
      -- stored, or vanished: off the index; rewritten since it was read: still to embed
      if cur == revs[i] or not cur then done[#done + 1] = id end
    end
  end
  if #done > 0 then redis.call('SREM', idx, unpack(done)) done = {} end
end
for id in string.gmatch(ARGV[8], '[^\n]+') do
  if redis.call('EXISTS', nk(id)) == 0 then redis.call('SREM', idx, id) end
end
if n > 0 then redis.call('HINCRBY', P .. K.meta, 'emb_version', 1) end
return {'ok', n}
