package migrate

import "github.com/redis/go-redis/v9"

// fenced starts every script that moves or writes data for a migration: it refuses when the
// migration's run (the fence field, FenceField) is recorded as over on this server (fence.go).
// The field is the script's ARGV[fenceArg]; an empty field checks nothing.
func fenced(fenceArg, script string) *redis.Script {
	return redis.NewScript(`
local fence = ARGV[` + fenceArg + `]
if fence ~= '' and redis.call('HEXISTS', '` + FenceKey + `', fence) == 1 then
  return redis.error_reply('REDRAFTOVER ' .. fence .. ' is over: this mover acts for a migration run that is no longer live')
end
` + script)
}

// Statuses the move script reports per key.
const (
	stNoKey    = 0 // not on the source: already moved, or never existed
	stMoved    = 1 // sent by MIGRATE
	stBusy     = 2 // locked by another mover's chunked copy
	stBig      = 3 // too big for one MIGRATE: needs a chunked copy under the lock
	stDeferred = 4 // over this call's byte budget: ask again
)

// moveScript runs on the source. For each key it checks, in one atomic step, whether the key
// exists, whether another mover holds its lock, and how big it is, then MIGRATEs every small,
// unlocked key in one command. Because the lock check and MIGRATE happen in one script, a key
// that a chunked copy is working on is never MIGRATEd from under it.
//
// With keep-target set ("1"; Config.KeepTarget, after a source failover) each key goes by
// its own MIGRATE without REPLACE, and a key the target already has keeps the target's copy:
// the source's is deleted.
//
// KEYS: key1, lock1, key2, lock2, ...
// ARGV: host, port, db, timeout ms, big elements, big bytes, byte budget, token, fence field,
// keep-target, auth args...
// Returns: status1, bytes1, status2, bytes2, ...
var moveScript = fenced("9", `
local bigElems, bigBytes, budget = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local token = ARGV[8]
local out, send, used = {}, {}, 0
for i = 1, #KEYS, 2 do
  local k = KEYS[i]
  local t = redis.call('TYPE', k)['ok']
  local st, mem = 0, 0
  if t ~= 'none' then
    local owner = redis.call('GET', KEYS[i+1])
    if owner and owner ~= token then
      st = 2
    else
      local n = 0
      if t == 'hash' then n = redis.call('HLEN', k)
      elseif t == 'set' then n = redis.call('SCARD', k)
      elseif t == 'zset' then n = redis.call('ZCARD', k)
      elseif t == 'list' then n = redis.call('LLEN', k)
      elseif t == 'stream' then n = redis.call('XLEN', k)
      end
      mem = redis.call('MEMORY', 'USAGE', k) or 0
      local chunkable = t == 'string' or t == 'hash' or t == 'set' or t == 'zset' or t == 'list' or t == 'stream'
      if chunkable and (n > bigElems or mem > bigBytes) then
        st = 3
      elseif #send > 0 and used + mem > budget then
        st = 4
      else
        st = 1
        used = used + mem
        send[#send+1] = k
      end
    end
  end
  out[#out+1] = st
  out[#out+1] = mem
end
if #send > 0 and ARGV[10] == '1' then
  for _, k in ipairs(send) do
    local args = {'MIGRATE', ARGV[1], ARGV[2], k, ARGV[3], ARGV[4]}
    for i = 11, #ARGV do args[#args+1] = ARGV[i] end
    local r = redis.pcall(unpack(args))
    if type(r) == 'table' and r.err then
      if not string.find(r.err, 'BUSYKEY', 1, true) then return r end
      redis.call('UNLINK', k)
    end
  end
elseif #send > 0 then
  local args = {'MIGRATE', ARGV[1], ARGV[2], '', ARGV[3], ARGV[4], 'REPLACE'}
  for i = 11, #ARGV do args[#args+1] = ARGV[i] end
  args[#args+1] = 'KEYS'
  for _, k in ipairs(send) do args[#args+1] = k end
  local r = redis.pcall(unpack(args))
  if type(r) == 'table' and r.err then return r end
end
return out
`)

// lockScript takes (ARGV[3] == "1") or refreshes the lock KEYS[1] for token ARGV[1] with TTL
// ARGV[2] ms; ARGV[4] is the fence field. It returns the source's clock in ms when the caller
// holds the lock, else 0.
var lockScript = fenced("4", `
local ok
if ARGV[3] == '1' then
  ok = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
else
  ok = redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('PEXPIRE', KEYS[1], ARGV[2]) == 1
end
if not ok then return 0 end
local t = redis.call('TIME')
return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`)

// finishScript runs on the source after the commit on the target: it deletes the key (UNLINK:
// freed in the background) and the lock, only if the caller still holds the lock.
// KEYS: key, lock. ARGV: token.
var finishScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('UNLINK', KEYS[1])
redis.call('DEL', KEYS[2])
return 1
`)

// unlockScript deletes the lock KEYS[1] if it holds token ARGV[1].
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// initScript starts a chunked copy on the target: it drops a stale temp key and a stale copy of
// the key (the source's copy is the authoritative one while it exists; see DESIGN.md), and sets
// the fence to the caller's token. It refuses when the target's clock is past the lease
// deadline ARGV[3] (the caller's lock may have expired).
// KEYS: tmp, fence, key. ARGV: token, fence TTL ms, deadline ms, migration fence field.
var initScript = fenced("4", `
local t = redis.call('TIME')
if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > tonumber(ARGV[3]) then
  return redis.error_reply('REDRAFTLEASE the lock lease ran out before the copy started (or the target clock is ahead of the source clock)')
end
redis.call('UNLINK', KEYS[1], KEYS[3])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
`)

// writeScript applies commands to the temp key KEYS[1] if the fence KEYS[2] still holds the
// caller's token, then extends both TTLs. The commands follow ARGV[1] (token), ARGV[2]
// (fence TTL ms) and ARGV[3] (migration fence field) as groups: count n, command, n-1
// arguments; the temp key goes in as the command's first argument (after the subcommand for
// XGROUP).
var writeScript = fenced("3", `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return redis.error_reply('REDRAFTFENCED another mover took over this key')
end
local i = 4
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local cmd = ARGV[i+1]
  if cmd == 'XGROUP' then
    redis.call(cmd, ARGV[i+2], KEYS[1], unpack(ARGV, i+3, i+n))
  else
    redis.call(cmd, KEYS[1], unpack(ARGV, i+2, i+n))
  end
  i = i + n + 1
end
local ttl = tonumber(ARGV[2])
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[1], ttl + 1000)
return 1
`)

// commitScript ends a chunked copy on the target in one atomic step: RENAME the temp key onto
// the key and set the source's absolute expiry (ARGV[2] ms, or none when <= 0). It refuses if
// the fence moved on or if the key appeared meanwhile (someone else moved it: ours is stale).
// KEYS: tmp, fence, key. ARGV: token, pexpireat, migration fence field.
var commitScript = fenced("3", `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return redis.error_reply('REDRAFTFENCED another mover took over this key')
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('UNLINK', KEYS[1])
  redis.call('DEL', KEYS[2])
  return redis.error_reply('REDRAFTEXISTS the key appeared on the target during the copy')
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('REDRAFTNOTMP the temp key is missing')
end
redis.call('RENAME', KEYS[1], KEYS[3])
local at = tonumber(ARGV[2])
if at > 0 then redis.call('PEXPIREAT', KEYS[3], at) else redis.call('PERSIST', KEYS[3]) end
redis.call('DEL', KEYS[2])
return 1
`)

// abortScript drops the temp key and the fence KEYS[2] if the fence holds token ARGV[1].
var abortScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('UNLINK', KEYS[1])
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
`)

// dumpScript starts a batch copy on the source (copy.go): for each key it checks, in one atomic
// step, whether the key exists and how big it is, as moveScript does, and locks each small key
// within the byte budget with the caller's token for the lock TTL (a key another mover holds
// is busy), then DUMPs it with its remaining TTL. Nothing is sent anywhere: the source is busy
// only for its own work, a few µs per key.
//
// MEMORY USAGE comes first: it answers nil for a missing key, and a collection cannot hold more
// elements than it has bytes, so TYPE and the element count are read only for keys over
// big-elements bytes.
//
// KEYS: key1, lock1, key2, lock2, ...
// ARGV: big elements, big bytes, byte budget, token, lock TTL ms, fence field.
// Returns: the source's clock (ms), then per key: status, bytes, DUMP payload ("" unless
// status 1), PTTL (-1: none).
var dumpScript = fenced("6", `
local bigElems, bigBytes, budget = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local token, ttl = ARGV[4], ARGV[5]
local t = redis.call('TIME')
local out, used, sent = {tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)}, 0, 0
local counts = {hash = 'HLEN', set = 'SCARD', zset = 'ZCARD', list = 'LLEN', stream = 'XLEN', string = false}
for i = 1, #KEYS, 2 do
  local k = KEYS[i]
  local st, payload, pttl = 0, '', -1
  local mem = redis.call('MEMORY', 'USAGE', k)
  if mem then
    local big = false
    if mem > bigElems or mem > bigBytes then
      local c = counts[redis.call('TYPE', k)['ok']]
      if c ~= nil then
        big = mem > bigBytes or (c and redis.call(c, k) > bigElems)
      end
    end
    if big then
      st = 3
    elseif sent > 0 and used + mem > budget then
      st = 4
    elseif not redis.call('SET', KEYS[i+1], token, 'NX', 'PX', ttl) then
      st = 2
    else
      st = 1
      used, sent = used + mem, sent + 1
      payload = redis.call('DUMP', k)
      pttl = redis.call('PTTL', k)
    end
  else
    mem = 0
  end
  out[#out+1] = st
  out[#out+1] = mem
  out[#out+1] = payload
  out[#out+1] = pttl
end
return out
`)

// restoreScript applies a batch copy on the target in one atomic step: it refuses when the
// target's clock is past the lease deadline ARGV[1] (the locks on the source may have lapsed
// and the keys been moved and written since), then RESTOREs each key with its TTL. A copy the
// target already has is stale while the source holds the key and is REPLACEd (DESIGN.md);
// with keep-target ("1", Config.KeepTarget) it is kept instead.
// KEYS: key1, key2, ... ARGV: deadline ms, keep-target, fence field, then per key PTTL and
// payload.
// Returns per key 1 (restored) or 2 (the target's copy kept).
var restoreScript = fenced("3", `
local t = redis.call('TIME')
if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > tonumber(ARGV[1]) then
  return redis.error_reply('REDRAFTLEASE the batch lease ran out before the restore (or the target clock is ahead of the source clock)')
end
local keep, out = ARGV[2] == '1', {}
for i, k in ipairs(KEYS) do
  local ttl = tonumber(ARGV[2 + 2*i])
  if ttl < 0 then ttl = 0 elseif ttl == 0 then ttl = 1 end
  if keep then
    local r = redis.pcall('RESTORE', k, ttl, ARGV[3 + 2*i])
    if type(r) == 'table' and r.err then
      if not string.find(r.err, 'BUSYKEY', 1, true) then return r end
      out[i] = 2
    else
      out[i] = 1
    end
  else
    redis.call('RESTORE', k, ttl, ARGV[3 + 2*i], 'REPLACE')
    out[i] = 1
  end
end
return out
`)

// unlockDeleteScript ends a batch copy on the source: for each key whose lock still holds the
// caller's token it deletes the key (when ARGV[2] is "1": the target has it now) and the lock.
// KEYS: key1, lock1, ... ARGV: token, delete.
// Returns per key 1 (the lock was ours) or 0.
var unlockDeleteScript = redis.NewScript(`
local out, del = {}, ARGV[2] == '1'
for i = 1, #KEYS, 2 do
  if redis.call('GET', KEYS[i+1]) == ARGV[1] then
    if del then redis.call('DEL', KEYS[i], KEYS[i+1]) else redis.call('DEL', KEYS[i+1]) end
    out[#out+1] = 1
  else
    out[#out+1] = 0
  end
end
return out
`)
