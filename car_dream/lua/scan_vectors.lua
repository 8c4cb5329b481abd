-- KEYS[1] meta. ARGV: prefix, query vector size in bytes, subject filter ('1' then the
-- subject, or '0': any), then the kinds to read. For search's exact scan on a Redis
-- without vector sets (search.py): the live nodes embedded with the namespace's model,
-- not expired (server time), of those kinds (and that subject), in one reply:
-- {ids '\n'-joined, their vectors concatenated in that order, the byte size of a vector
-- of another size than the query's (0: none)}. Bounded by the caller's scan limit.
local P, size = ARGV[1], tonumber(ARGV[2])
local subject = string.sub(ARGV[3], 1, 1) == '1' and string.sub(ARGV[3], 2) or nil
local model = redis.call('HGET', KEYS[1], 'embed_model')
if not model then return {'', '', 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ids, vecs, other = {}, {}, 0
for i = 4, #ARGV do
  for _, id in ipairs(redis.call('SMEMBERS', P .. K.kind .. ARGV[i])) do
    local f = redis.call('HMGET', P .. K.node .. id, 'emb_model', 'emb', 'superseded_by',
      'expires_at', 'subject')
    local exp = f[4] and tonumber(f[4])
    if f[1] == model and f[2] and not f[3] and not (exp and exp <= now)
      and (subject == nil or (f[5] or '') == subject) then
      if #f[2] == size then
        ids[#ids + 1] = id
        vecs[#vecs + 1] = f[2]
      else
        other = #f[2]
      end
    end
  end
end
return {table.concat(ids, '\n'), table.concat(vecs), other}
