-- KEYS[1] a key of the namespace. ARGV: prefix, then ids. Reads only.
-- Reply: per id, one JSON verdict {id, exists, kind, p: problems, dp: premises lost,
-- ds/db: 1 if its supersedes/superseded_by link dangles, emb: vector bytes (-1: none
-- for the current model), u: 1 if in the unembedded index}. A problem is an index
-- membership that node_indexes does not want, or a wanted one that is missing.
local model = redis.call('HGET', P .. K.meta, 'embed_model')
local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local exists = redis.call('EXISTS', nk(id)) == 1
  local f = read_node(id)
  local want = node_indexes(f, model, '0')  -- the collectable score is not checked
  local p = {}
  if exists and not want.kind then p[#p + 1] = 'malformed'
  elseif f.content and not valid_utf8(f.content) then
    -- Written by hand: no pass can embed it. Its indexes are judged as usual.
    p[#p + 1] = 'malformed:content_not_utf8'
  end
  local v = {id = id, exists = exists and 1 or 0, kind = want.kind or '', dp = want.lost,
    ds = 0, db = 0, emb = -1, u = 0}
  for _, kind in ipairs(KINDS) do
    local member = redis.call('SISMEMBER', P .. K.kind .. kind, id) == 1
    if member and kind ~= want.kind then p[#p + 1] = 'kind_stale:' .. kind
    elseif not member and kind == want.kind then p[#p + 1] = 'kind_missing:' .. kind end
  end
  local score = redis.call('ZSCORE', P .. K.expiry, id)
  if want.expiry then
    if not score then p[#p + 1] = 'expiry_missing'
    elseif tonumber(score) ~= tonumber(want.expiry) then p[#p + 1] = 'expiry_score' end
  elseif score then p[#p + 1] = 'expiry_stale' end
  local g = redis.call('ZSCORE', P .. K.collectable, id)
  if want.collectable and not g then p[#p + 1] = 'gc_missing'
  elseif g and not want.collectable then p[#p + 1] = 'gc_stale' end
  local fs = redis.call('ZSCORE', P .. K.forget, id)
  if want.forget then
    if not fs then p[#p + 1] = 'forget_missing'
    elseif tonumber(fs) ~= want.forget then p[#p + 1] = 'forget_score' end
  elseif fs then p[#p + 1] = 'forget_stale' end
  local un = redis.call('SISMEMBER', P .. K.unembedded, id) == 1
  v.u = un and 1 or 0
  if want.kind and not want.unembedded then v.emb = f.emb end
  if un and not want.unembedded then p[#p + 1] = 'unembedded_stale'
  elseif want.unembedded and not un then p[#p + 1] = 'unembedded_missing' end
  if vsets() then
    local member = redis.call('VISMEMBER', P .. K.vectors, id) == 1
    if want.vector and not member then p[#p + 1] = 'vector_missing'
    elseif member and not want.vector then p[#p + 1] = 'vector_stale'
    elseif member then
      local attrs = redis.call('VGETATTR', P .. K.vectors, id)
      local a, w = attrs and cjson.decode(attrs) or {}, cjson.decode(vector_attrs(want.vector))
      if a.kind ~= w.kind or a.s ~= w.s then p[#p + 1] = 'vector_attrs' end
    end
  end
  for _, q in ipairs(want.premises) do
    if redis.call('SISMEMBER', P .. K.deps .. q, id) == 0 then p[#p + 1] = 'deps_missing:' .. q end
  end
  local inv = redis.call('SISMEMBER', P .. K.invalidate, id) == 1
  if want.invalidate and not inv then p[#p + 1] = 'invalidate_missing'
  elseif want.invalidate == false and inv then p[#p + 1] = 'invalidate_stale' end
  for _, c in ipairs(stale_dependents(id, want.kind)) do p[#p + 1] = 'deps_stale:' .. c end
  if f.supersedes and redis.call('EXISTS', nk(f.supersedes)) == 0 then v.ds = 1 end
  if f.superseded_by and f.superseded_by ~= ''
    and redis.call('EXISTS', nk(f.superseded_by)) == 0 then
    v.db = 1
  end
  v.p = p
  out[#out + 1] = cjson.encode(v)
end
return out
