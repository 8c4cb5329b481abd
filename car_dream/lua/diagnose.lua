-- KEYS[1] a key of the namespace. ARGV: prefix, then ids. Reads only.
-- Reply: per id, one JSON verdict {id, exists, kind, p: problems, dp: premises lost,
-- ds/db: 1 if its supersedes/superseded_by link dangles, emb: vector bytes (-1: none
-- for the current model), u: 1 if in the unembedded index}.
local model = redis.call('HGET', P .. K.meta, 'embed_model')
local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local k = nk(id)
  local p = {}
  local v = {id = id, dp = 0, ds = 0, db = 0, emb = -1, u = 0}
  local exists = redis.call('EXISTS', k) == 1
  local f = redis.call('HMGET', k, 'kind', 'content', 'pinned', 'expires_at',
    'superseded_by', 'premises', 'emb_model', 'supersedes', 'superseded_at')
  local kind = f[1]
  if exists and (not kind or not f[2] or not contains(KINDS, kind)) then
    p[#p + 1] = 'malformed'
    kind = false
  end
  v.kind = kind or ''
  v.exists = exists and 1 or 0
  for _, kk in ipairs(KINDS) do
    local member = redis.call('SISMEMBER', P .. K.kind .. kk, id) == 1
    if member and kk ~= kind then p[#p + 1] = 'kind_stale:' .. kk end
    if kind and not member and kk == kind then p[#p + 1] = 'kind_missing:' .. kk end
  end
  local superseded = f[5] ~= false
  local pinned = f[3] == '1'
  local score = redis.call('ZSCORE', P .. K.expiry, id)
  if kind == 'environment' and f[4] and not pinned and not superseded then
    if not score then p[#p + 1] = 'expiry_missing'
    elseif tonumber(score) ~= tonumber(f[4]) then p[#p + 1] = 'expiry_score' end
  elseif score then p[#p + 1] = 'expiry_stale' end
  local g = redis.call('ZSCORE', P .. K.gc, id)
  if kind and superseded and not pinned then
    if not g then p[#p + 1] = 'gc_missing' end
  elseif g then p[#p + 1] = 'gc_stale' end
  local un = redis.call('SISMEMBER', P .. K.unembedded, id) == 1
  v.u = un and 1 or 0
  if kind then
    local len = redis.call('HSTRLEN', k, 'emb')
    local current = len > 0 and f[7] and ((not model) or f[7] == model)
    if current then v.emb = len end
    if current and un then p[#p + 1] = 'unembedded_stale'
    elseif (not current) and (not un) then p[#p + 1] = 'unembedded_missing' end
  elseif un then p[#p + 1] = 'unembedded_stale' end
  local inv = redis.call('SISMEMBER', P .. K.invalidate, id) == 1
  if kind == 'conclusion' and f[6] then
    local stale = false
    for _, q in ipairs(cjson.decode(f[6])) do
      local s = redis.call('HMGET', nk(q), 'kind', 'superseded_by')
      if not s[1] then
        v.dp = v.dp + 1
        stale = true
      else
        if s[2] then stale = true end
        if redis.call('SISMEMBER', P .. K.deps .. q, id) == 0 then
          p[#p + 1] = 'deps_missing:' .. q
        end
      end
    end
    if stale and not superseded and not inv then p[#p + 1] = 'invalidate_missing' end
  elseif inv and kind ~= 'conclusion' then p[#p + 1] = 'invalidate_stale' end
  for _, c in ipairs(redis.call('SMEMBERS', P .. K.deps .. id)) do
    local cp = redis.call('HMGET', nk(c), 'kind', 'premises')
    if not kind or cp[1] ~= 'conclusion' or not cp[2]
      or not contains(cjson.decode(cp[2]), id) then
      p[#p + 1] = 'deps_stale:' .. c
    end
  end
  if f[8] and redis.call('EXISTS', nk(f[8])) == 0 then v.ds = 1 end
  if f[5] and f[5] ~= '' and redis.call('EXISTS', nk(f[5])) == 0 then v.db = 1 end
  v.p = p
  out[#out + 1] = cjson.encode(v)
end
return out
