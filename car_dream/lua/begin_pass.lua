-- The first round trip of a pass: take the lock and, when it is taken, read all a pass
-- decides from (pass_start.py), so an idle pass needs only end_pass.lua after it.
-- KEYS: lock, paused, meta, insights:dirty, the kind sets (ARGV[7] of them), expiry, gc,
--   invalidate, unembedded, forget.
-- ARGV: token, ttl_secs, force, takeover|'', ignore_pause (the lock's, see lock.lua);
--   due: epoch seconds that count as expired ('' = the server's TIME); the number of kind
--   sets; then the meta fields to read.
-- Reply: {outcome, pttl, secs, micros} (the server's TIME), and when acquired, after
--   those: dirty insights, expired by due, each kind set's size, expiry, gc, invalidate,
--   unembedded, forget sizes, then the meta fields' values (false: not set).
local got = acquire(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
local t = redis.call('TIME')
local reply = {got[1], got[2], t[1], t[2]}
if got[1] ~= 'acquired' then return reply end
local due = ARGV[6]
if due == '' then due = t[1] .. '.' .. string.rep('0', 6 - #t[2]) .. t[2] end
local kinds = tonumber(ARGV[7])
local at = 5 + kinds  -- KEYS[at]: the expiry index
reply[5] = redis.call('SCARD', KEYS[4])
reply[6] = redis.call('ZCOUNT', KEYS[at], '-inf', due)
for i = 1, kinds do reply[6 + i] = redis.call('SCARD', KEYS[4 + i]) end
local n = #reply
reply[n + 1] = redis.call('ZCARD', KEYS[at])
reply[n + 2] = redis.call('ZCARD', KEYS[at + 1])
reply[n + 3] = redis.call('SCARD', KEYS[at + 2])
reply[n + 4] = redis.call('SCARD', KEYS[at + 3])
reply[n + 5] = redis.call('ZCARD', KEYS[at + 4])
if #ARGV > 7 then
  local meta = redis.call('HMGET', KEYS[3], unpack(ARGV, 8))
  for i = 1, #meta do reply[n + 5 + i] = meta[i] end
end
return reply
