-- Reading a node and its dependents for the check's scripts (after lib.lua).

local function contains(list, x)
  for i = 1, #list do if list[i] == x then return true end end
  return false
end

-- Node `id`'s fields by name, as node_indexes takes them.
local FIELDS = {'kind', 'content', 'pinned', 'expires_at', 'superseded_by',
  'superseded_at', 'premises', 'emb_model', 'supersedes', 'written_at', 'last_accessed',
  'access_count', 'subject'}
local function read_node(id)
  local v = redis.call('HMGET', nk(id), unpack(FIELDS))
  local f = {}
  for i, name in ipairs(FIELDS) do f[name] = v[i] end
  -- Only a conclusion's premises count (and are decoded).
  f.premises = f.kind == 'conclusion' and f.premises and cjson.decode(f.premises) or false
  f.emb = redis.call('HSTRLEN', nk(id), 'emb')
  return f
end

-- Members of the dependents set of `id` that do not belong there: conclusions that do
-- not cite it (the premises part of node_indexes, read from the other end), or all of
-- them when `id` is no well-formed node (`kind` false).
local function stale_dependents(id, kind)
  local out = {}
  for _, c in ipairs(redis.call('SMEMBERS', P .. K.deps .. id)) do
    local cp = redis.call('HMGET', nk(c), 'kind', 'premises')
    if not kind or cp[1] ~= 'conclusion' or not cp[2]
      or not contains(cjson.decode(cp[2]), id) then
      out[#out + 1] = c
    end
  end
  return out
end
