-- KEYS[1] the vector index. ARGV: prefix, query vector (float32 bytes), count, FILTER
-- expression ('' for none), subject ('' for any; its tag is in the filter). The nearest
-- nodes by VSIM, each read back in the same script, so a hit is never a node removed,
-- superseded or invalidated in between; expired ones (expires_at <= server time) are
-- dropped. Reply {'novsets'} on a Redis without vector sets, {'empty'} when the index
-- key does not exist, else {'ok', how many VSIM returned, id, score, fields (flat, no
-- vector), id, score, fields...}.
local P = ARGV[1]
local card = redis.pcall('VCARD', KEYS[1])
if type(card) == 'table' and card.err then
  if string.find(card.err, 'nknown') then return {'novsets'} end
  return redis.error_reply(card.err)
end
if card == 0 then return {'empty'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local args = {'VSIM', KEYS[1], 'FP32', ARGV[2], 'WITHSCORES', 'COUNT', ARGV[3]}
if ARGV[4] ~= '' then args[#args + 1] = 'FILTER' args[#args + 1] = ARGV[4] end
local sim = redis.call(unpack(args))
local out = {'ok', #sim / 2}
for i = 1, #sim, 2 do
  local raw = redis.call('HGETALL', P .. K.node .. sim[i])
  local f, flat = {}, {}
  for j = 1, #raw, 2 do
    f[raw[j]] = raw[j + 1]
    if raw[j] ~= 'emb' then flat[#flat + 1] = raw[j] flat[#flat + 1] = raw[j + 1] end
  end
  local live = f.kind and not f.superseded_by
    and not (f.expires_at and tonumber(f.expires_at) and tonumber(f.expires_at) <= now)
    and (ARGV[5] == '' or f.subject == ARGV[5])
  if live then
    out[#out + 1] = sim[i]
    out[#out + 1] = sim[i + 1]
    out[#out + 1] = flat
  end
end
return out
