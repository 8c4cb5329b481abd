-- KEYS[1] node key. ARGV: prefix, id, kind, now, supersedes|'', premises json, pinned,
-- expires_at|'', then field name/value pairs. Reply {'ok', 1 new | 0 rewritten} or an
-- error reply {code, detail} (see check_write).
local id, kind, now, sup = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local premises = cjson.decode(ARGV[6])
local fields = {}
for i = 9, #ARGV do fields[#fields + 1] = ARGV[i] end
local old = read_old(id)
local err = check_write(id, old, kind, sup, premises)
if err then return err end
return {'ok', write_node(id, old, kind, now, sup, premises, ARGV[7], ARGV[8], fields)}
