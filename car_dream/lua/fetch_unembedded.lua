-- KEYS[1] unembedded index. ARGV: prefix, cursor, count. One SSCAN page of ids without
-- an embedding with their content and rev, as one JSON reply [next_cursor, [[id,
-- content, rev], ...]] (content and rev false for a vanished node): one round trip and
-- one reply to parse instead of a read per node. Reads only.
local P = ARGV[1]
local page = redis.call('SSCAN', KEYS[1], ARGV[2], 'COUNT', tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(page[2]) do
  local f = redis.call('HMGET', P .. K.node .. id, 'content', 'rev')
  out[#out + 1] = {id, f[1], f[2]}
end
if #out == 0 then return '["' .. page[1] .. '", []]' end
return '["' .. page[1] .. '", ' .. cjson.encode(out) .. ']'
