-- The lock's rules, after lock.py's prelude (RUNNING, DONE, held): the lock scripts of
-- lock.py and the scripts that begin and end a pass (begin_pass.lua, end_pass.lua).

-- Takes the lock (a fresh token's running:<token>), or says why not: {outcome, pttl}.
-- force: '1' also over a "done" window; takeover: this token's own "done" (a trailing
-- pass) or ''; ignore_pause: '1' even while paused (check --repair).
local function acquire(lock, paused, token, ttl, force, takeover, ignore_pause)
  if ignore_pause ~= '1' and redis.call('EXISTS', paused) == 1 then
    return {'paused', redis.call('PTTL', lock)}
  end
  local mine = RUNNING .. token
  if redis.call('SET', lock, mine, 'NX', 'EX', ttl) then return {'acquired', 0} end
  local v = redis.call('GET', lock)
  local done = held(v, DONE)
  if not v or (done and ((takeover ~= '' and done == takeover) or force == '1')) then
    redis.call('SET', lock, mine, 'EX', ttl)
    return {'acquired', 0}
  end
  -- A plain trigger merges into the running or finished pass; only a forced one,
  -- which would have run, is told that a pass is running.
  if held(v, RUNNING) and force == '1' then return {'running', redis.call('PTTL', lock)} end
  return {'coalesced', redis.call('PTTL', lock)}
end

-- Marks the window "consolidated recently" for ttl seconds: 1, or 0 if token lost it.
local function finish(lock, token, ttl)
  if held(redis.call('GET', lock), RUNNING) ~= token then return 0 end
  redis.call('SET', lock, DONE .. token, 'EX', ttl)
  return 1
end
