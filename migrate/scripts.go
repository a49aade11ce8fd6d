package migrate

import (
	"strconv"
	"strings"
	"time"
)

// fenced starts every script that moves or writes data for a migration: it refuses when the
// migration's run (the fence field, FenceField) is recorded as over on this server (fence.go).
// The field is the script's ARGV[fenceArg]; an empty field checks nothing.
func fenced(fenceArg, body string) *script { return newScript(fencedLua(fenceArg, body)) }

// fencedLua is the source of a fenced script (fenced), for one that starts with allowOOM.
func fencedLua(fenceArg, body string) string {
	return `
local fence = ARGV[` + fenceArg + `]
if fence ~= '' and redis.call('HEXISTS', '` + FenceKey + `', fence) == 1 then
  return redis.error_reply('REDRAFTOVER ' .. fence .. ' is over: this mover acts for a migration run that is no longer live')
end
` + body
}

// allowOOM starts the scripts that run on a source and write there only bookkeeping (the locks
// hash, a dump's guard key; fence.go's marks) or delete keys: a Redis 7 shebang with the
// allow-oom flag. Without it, a source over maxmemory with noeviction refused their first write
// that may grow memory (the locks hash's HSET) with -OOM, so nothing could be moved off a full
// source and MoveKeys failed for every key of a migrating slot, even for a client's DEL
// (session 43). The scripts that write user data run on the target and keep its maxmemory.
// A shebang changes no other default that matters here: no-writes, allow-stale and
// allow-cross-slot-keys concern replicas and cluster mode, and on a non-cluster server a
// flagged script may still access keys it did not declare (the dump's guard key).
const allowOOM = "#!lua flags=allow-oom\n"

// LocksKey is the hash, one per database of a source, that holds the locks of the keys being
// moved out of it: field the key's name, value LockValue (its holder's token and deadline). One
// hash rather than a key per lock lets a batch copy take and release the locks of all its keys
// in one command each (HMGET, HSET, HDEL), where a lock key per moved key cost three commands
// per key (SET NX PX, GET, DEL) and a third of the source's CPU for the move (DESIGN.md, "Locks").
// The hash is never moved (MoveSlots skips it); it is deleted with its last lock (unlock, in
// lockLua). It has no expiry: with one (the last lock's deadline, a few seconds ahead) a source
// under a volatile-* eviction policy dropped it before any user key, every live lock with it,
// and another mover then moved a locked key and a client wrote it on the target, which the
// first mover's restore overwrote (a write lost). The lapsed fields a mover that died leaves
// behind are swept once a MoveSlots run finds no key left (sweepLocksScript).
const LocksKey = "__redraft:locks"

// locksPadField is a field of LocksKey that is no lock: the dump script sets it with the
// batch's locks, to locksPad, a value longer than hash-max-listpack-value (64 bytes by
// default), so that the hash is a hash table, never a listpack. As a listpack every HSET,
// HMGET and HDEL of a batch's 50 fields scanned the whole list per field: 22 % of the
// source's instructions per moved key (callgrind, migrate/DESIGN.md, "CPU per moved key").
// Its value has no colon, so it reads as no lock (holder, tokenOf); its name is an internal
// key's, which no client key can have. Deleting the last lock deletes it too (unlock), so a
// source holds no locks hash once no key is locked.
const locksPadField = LocksKey + ":pad"

// locksPad is locksPadField's value (see there).
var locksPad = strings.Repeat("p", 256)

// LockValue is the value of a lock held by token until deadline (the source's clock): the
// deadline in Unix ms, a colon, the token. A lock is live while the source's clock is at or
// before its deadline; after it, it is free whatever the hash still holds.
func LockValue(token string, deadline time.Time) string {
	return strconv.FormatInt(deadline.UnixMilli(), 10) + ":" + token
}

// lockLua defines the Lua helpers of the scripts that take, check or release locks:
// nowMs() is the server's clock in ms; holder(v, now) the token of lock value v if it is live
// at now, else nil; tokenOf(v) its token, live or not (a lock whose value still holds our
// token was not taken by anyone since: ours to drop); keepLocks() makes sure the locks hash has
// no expiry (LocksKey: a hash with one was the first key an evicting source dropped).
const lockLua = `
local function nowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function holder(v, now)
  if not v then return nil end
  local c = string.find(v, ':', 1, true)
  if not c then return nil end
  local d = tonumber(string.sub(v, 1, c - 1))
  if not d or d < now then return nil end
  return string.sub(v, c + 1)
end
local function tokenOf(v)
  local c = v and string.find(v, ':', 1, true)
  if not c then return nil end
  return string.sub(v, c + 1)
end
-- unlock deletes fields fs (a table of names) of the locks hash, and the hash when only the
-- pad (locksPadField) is left: a source keeps no locks hash once no lock is in it. It
-- returns how many fields went.
local function unlock(fs)
  local n = redis.call('HDEL', '` + LocksKey + `', unpack(fs))
  if redis.call('HLEN', '` + LocksKey + `') == 1 and redis.call('HEXISTS', '` + LocksKey + `', '` + locksPadField + `') == 1 then
    redis.call('DEL', '` + LocksKey + `')
  end
  return n
end
local function keepLocks()
  redis.call('PERSIST', '` + LocksKey + `')
end
`

// Statuses the scripts report per key.
const (
	stNoKey    = 0 // not on the source: already moved, or never existed
	stMoved    = 1 // taken by a batch copy (dumpScript)
	stBusy     = 2 // locked by another mover
	stBig      = 3 // too big for a batch copy: needs a chunked copy under the lock
	stDeferred = 4 // over this call's byte budget: ask again
)

// checkScript runs on the source for a key whose lock the caller holds (moveLocked): in one
// atomic step it reports whether the key exists, whether another mover holds its lock, and its
// MEMORY USAGE. Every key that is there and not busy is then copied by the chunked copy under
// the lock, small or big (a small one in one chunk), but one of a type the chunked copy does not
// know (a module's) or an empty string (no chunk to copy): that one is reported stMoved, for a
// batch copy once the lock is released. (It used to MIGRATE a small key from the
// source, which put the target's credentials in the source's hands: an admin caller who added
// a group on a Redis of their own as a migration's source read the target group's internal
// password there, docs/security.md.)
//
// KEYS: LocksKey, key. ARGV: token, fence field.
// Returns: status (stNoKey, stBusy, stBig or stMoved), bytes.
var checkScript = fenced("2", lockLua+`
local k = KEYS[2]
local owner = holder(redis.call('HGET', KEYS[1], k), nowMs())
if owner and owner ~= ARGV[1] then return {2, 0} end
local t = redis.call('TYPE', k)['ok']
if t == 'none' then return {0, 0} end
local st = 3
if t ~= 'string' and t ~= 'hash' and t ~= 'set' and t ~= 'zset' and t ~= 'list' and t ~= 'stream' then st = 1 end
if t == 'string' and redis.call('STRLEN', k) == 0 then st = 1 end -- no chunk to copy
return {st, redis.call('MEMORY', 'USAGE', k) or 0}
`)

// sweepLocksScript drops the lapsed locks of the locks hash KEYS[1] (LocksKey; a mover that
// died leaves them: the hash has no expiry), and the hash with the last of them (unlock). It reads
// the hash only while it has at most ARGV[1] fields, so that it never blocks the source long.
// It returns how many fields went.
var sweepLocksScript = newScript(allowOOM + lockLua + `
local n = redis.call('HLEN', KEYS[1])
if n == 0 or n > tonumber(ARGV[1]) then return 0 end
local now, all, gone = nowMs(), redis.call('HGETALL', KEYS[1]), {}
for i = 1, #all, 2 do
  if all[i] ~= '` + locksPadField + `' and not holder(all[i+1], now) then gone[#gone+1] = all[i] end
end
-- In chunks: Lua unpacks at most about 8,000 values at once.
local dropped = 0
for i = 1, #gone, 1000 do
  dropped = dropped + unlock({unpack(gone, i, math.min(i + 999, #gone))})
end
return dropped
`)

// lockScript takes (ARGV[3] == "1") or refreshes the lock of key KEYS[2] in the locks hash
// KEYS[1] for token ARGV[1] with TTL ARGV[2] ms; ARGV[4] is the fence field. It returns the
// source's clock in ms when the caller holds the lock, else 0.
var lockScript = newScript(allowOOM + fencedLua("4", lockLua+`
local now = nowMs()
local h = holder(redis.call('HGET', KEYS[1], KEYS[2]), now)
if ARGV[3] == '1' then
  if h then return 0 end
elseif h ~= ARGV[1] then
  return 0
end
local deadline = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], KEYS[2], deadline .. ':' .. ARGV[1])
keepLocks()
return now
`))

// finishScript runs on the source after the commit on the target: it deletes the key (UNLINK:
// freed in the background) and its lock, only if the caller still holds the lock.
// KEYS: LocksKey, key. ARGV: token.
var finishScript = newScript(allowOOM + lockLua + `
local v = redis.call('HGET', KEYS[1], KEYS[2])
if holder(v, nowMs()) ~= ARGV[1] then
  if tokenOf(v) == ARGV[1] then unlock({KEYS[2]}) end
  return 0
end
redis.call('UNLINK', KEYS[2])
unlock({KEYS[2]})
return 1
`)

// unlockScript releases the lock of key KEYS[2] in the locks hash KEYS[1] if it holds token
// ARGV[1] (live or lapsed).
var unlockScript = newScript(allowOOM + lockLua + `
if tokenOf(redis.call('HGET', KEYS[1], KEYS[2])) == ARGV[1] then
  return unlock({KEYS[2]})
end
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
// the fence moved on, if the key appeared meanwhile (someone else moved it: ours is stale), or
// if the target's clock is past ARGV[4], half the lock's lease after its last refresh: the
// lock may have lapsed since, and another mover that took it may have moved the key by a batch
// copy (which set no fence) and a client deleted it on the target since, which the
// commit would undo.
// It also refuses a temp key whose size (HLEN, SCARD, ZCARD, LLEN, XLEN or STRLEN by ARGV[6],
// the type) is not ARGV[5], the source's at the start: the source is locked and cannot
// change, so another size means the temp key lost chunks (evicted and made again by a later
// chunk's write) or the source key went mid-copy (expired or evicted: its last reads came back
// empty), and committing would publish a value that never existed over the source's deletion.
// KEYS: tmp, fence, key. ARGV: token, pexpireat, migration fence field, deadline (ms),
// elements, type.
var commitScript = fenced("3", `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return redis.error_reply('REDRAFTFENCED another mover took over this key')
end
local t = redis.call('TIME')
if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > tonumber(ARGV[4]) then
  redis.call('UNLINK', KEYS[1])
  redis.call('DEL', KEYS[2])
  return redis.error_reply('REDRAFTLEASE the lock lease ran out before the commit (or the target clock is ahead of the source clock)')
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('UNLINK', KEYS[1])
  redis.call('DEL', KEYS[2])
  return redis.error_reply('REDRAFTEXISTS the key appeared on the target during the copy')
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('REDRAFTNOTMP the temp key is missing')
end
local sizeOf = {hash = 'HLEN', set = 'SCARD', zset = 'ZCARD', list = 'LLEN', stream = 'XLEN', string = 'STRLEN'}
local n = redis.call(sizeOf[ARGV[6]], KEYS[1])
if n ~= tonumber(ARGV[5]) then
  redis.call('UNLINK', KEYS[1])
  redis.call('DEL', KEYS[2])
  return redis.error_reply('REDRAFTSHORT the copy holds ' .. n .. ' of the source key\'s ' .. ARGV[5] .. ' (a chunk lost, or the source key gone mid-copy)')
end
redis.call('RENAME', KEYS[1], KEYS[3])
local at = tonumber(ARGV[2])
if at > 0 then redis.call('PEXPIREAT', KEYS[3], at) else redis.call('PERSIST', KEYS[3]) end
redis.call('DEL', KEYS[2])
return 1
`)

// abortScript drops the temp key and the fence KEYS[2] if the fence holds token ARGV[1].
var abortScript = newScript(`
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('UNLINK', KEYS[1])
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
`)

// dumpScript starts a batch copy on the source (copy.go): for each key it checks, in one atomic
// step, whether the key exists and how big it is, locks each small key
// within the byte budget with the caller's token for the lock TTL (a key another mover holds
// is busy), and reads its remaining TTL, and the DUMP of each locked key that is not a string.
// The strings' values are not read here: carrying a value through Lua (a Lua string made of
// the reply, then a reply made of it) cost the source 12 k instructions per 512 B key, more
// than the rest of the script. dumpBatch reads them by a plain MGET of the batch's keys queued
// behind the script in the same round trip, in a MULTI under WATCH of the guard key: the
// script touches the guard (so EXEC aborts and nothing is read) when the batch holds a string
// MGET must not read, one too big for a batch copy or over the byte budget; dumpBatch then
// reads the locked strings alone in a second round trip. Nothing is sent anywhere: the source
// is busy only for its own work.
//
// The commands per key are as few as the checks allow, since each costs the source about a
// third of a µs in a script: STRLEN (a string's size; 0 for a missing key, an error for other
// types, which then take MEMORY USAGE: nil for a missing key), and PEXPIRETIME of each key taken. The
// locks of the whole batch are read by one HMGET and taken by one HSET; a collection cannot
// hold more elements than it has bytes, so TYPE and the element count are read only for keys
// over big-elements bytes.
//
// KEYS: LocksKey, key1, key2, ...
// ARGV: big elements, big bytes, byte budget, token, lock TTL ms, fence field, guard key (empty:
// none).
// Returns: the source's clock (ms), the batch's lock value (LockValue: its deadline and the
// token), then per key: status, bytes (a string's length and its name's, else MEMORY USAGE),
// kind (1: a string, read by MGET; 0: anything else), PEXPIRETIME (-1: none), and the DUMP of a
// locked key that is not a string (else nil).
var dumpScript = newScript(allowOOM + fencedLua("6", lockLua+`
local bigElems, bigBytes, budget = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local token, ttl, guard = ARGV[4], tonumber(ARGV[5]), ARGV[7]
local now = nowMs()
local lockv = (now + ttl) .. ':' .. token
local held = redis.call('HMGET', KEYS[1], unpack(KEYS, 2))
local out, used, sent, taking, unread = {now, lockv}, 0, 0, {}, false
local counts = {hash = 'HLEN', set = 'SCARD', zset = 'ZCARD', list = 'LLEN', stream = 'XLEN', string = false}
for i = 1, #KEYS - 1 do
  local k = KEYS[i+1]
  local st, kind, expat, payload = 0, 0, -1, false
  local mem, big = nil, false
  local len = redis.pcall('STRLEN', k)
  if type(len) == 'number' then
    if len > 0 or redis.call('EXISTS', k) == 1 then
      mem, kind, big = len + #k, 1, len > bigBytes
    end
  else
    mem = redis.call('MEMORY', 'USAGE', k)
    if mem and (mem > bigElems or mem > bigBytes) then
      local c = counts[redis.call('TYPE', k)['ok']]
      if c ~= nil then
        big = mem > bigBytes or (c and redis.call(c, k) > bigElems)
      end
    end
  end
  if mem then
    if big then
      st = 3
    elseif sent > 0 and used + mem > budget then
      st = 4
    elseif taking[k] or holder(held[i], now) then
      st = 2
    else
      st = 1
      used, sent = used + mem, sent + 1
      taking[k] = true
      taking[#taking+1] = k
      expat = redis.call('PEXPIRETIME', k)
      if kind == 0 then payload = redis.call('DUMP', k) end
    end
    if kind == 1 and (st == 3 or st == 4 or (st == 2 and mem > budget)) then unread = true end
  else
    mem = 0
    -- Missing, but locked by a batch in flight (the key expired after that batch's dump):
    -- busy, or a write could reach the target before that batch's restore removes the key.
    if holder(held[i], now) then st = 2 end
  end
  out[#out+1] = st
  out[#out+1] = mem
  out[#out+1] = kind
  out[#out+1] = expat
  out[#out+1] = payload
end
if #taking > 0 then
  local args = {}
  for j, k in ipairs(taking) do
    args[2*j-1] = k
    args[2*j] = lockv
  end
  args[#args+1] = '`+locksPadField+`'
  args[#args+1] = '`+locksPad+`'
  redis.call('HSET', KEYS[1], unpack(args))
  keepLocks()
end
if unread and guard ~= '' then
  redis.call('SET', guard, 1)
  redis.call('DEL', guard)
end
return out
`))

// restoreScript applies a batch copy on the target in one atomic step: it refuses when the
// target's clock is past the lease deadline ARGV[1] (the locks on the source may have lapsed
// and the keys been moved and written since), then writes each key with its TTL: a string by
// SET (those without a TTL by one MSET), anything else by RESTORE. A copy the target already
// has is stale while the source holds the key and is replaced (DESIGN.md); with keep-target
// ("1", Config.KeepTarget) it is kept instead (SET NX, RESTORE without REPLACE).
// KEYS: key1, key2, ... ARGV: deadline ms, keep-target, fence field, then per key kind (1: a
// string's value, 0: a DUMP), PEXPIRETIME (-1: none; kept absolute, as restoreTx) and payload.
// Returns per key 1 (written) or 2 (the target's copy kept).
var restoreScript = fenced("3", `
local t = redis.call('TIME')
if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > tonumber(ARGV[1]) then
  return redis.error_reply('REDRAFTLEASE the batch lease ran out before the restore (or the target clock is ahead of the source clock)')
end
local keep, out, mset = ARGV[2] == '1', {}, {}
for i, k in ipairs(KEYS) do
  local a = 1 + 3*i
  local str, at, v = ARGV[a] == '1', ARGV[a+1], ARGV[a+2]
  if at == '0' then at = '1' end
  local timed = tonumber(at) > 0
  out[i] = 1
  if str then
    if keep then
      local r
      if timed then r = redis.call('SET', k, v, 'NX', 'PXAT', at) else r = redis.call('SET', k, v, 'NX') end
      if not r then out[i] = 2 end
    elseif timed then
      redis.call('SET', k, v, 'PXAT', at)
    else
      mset[#mset+1] = k
      mset[#mset+1] = v
    end
  else
    local args = {k, '0', v}
    if timed then args = {k, at, v, 'ABSTTL'} end
    if keep then
      local r = redis.pcall('RESTORE', unpack(args))
      if type(r) == 'table' and r.err then
        if not string.find(r.err, 'BUSYKEY', 1, true) then return r end
        out[i] = 2
      end
    else
      args[#args+1] = 'REPLACE'
      redis.call('RESTORE', unpack(args))
    end
  end
end
if #mset > 0 then redis.call('MSET', unpack(mset)) end
return out
`)

// unlockDeleteScript ends a batch copy on the source. While the batch's lock value (the dump
// script's) is live, every lock of the batch still holds it (a live lock is taken by nobody
// else, and released only with its value), so with ARGV[2] "1" (the target has the keys now)
// it deletes the keys and their locks by one DEL and one HDEL, and answers 1 for all. Else,
// for each key whose lock still holds the batch's lock value (one string comparison per key,
// after one HMGET), it drops the lock, deleting the key too when ARGV[2] is "1" and the lock
// live; past the deadline the locks that still hold it are dropped and their keys kept:
// whoever takes them next moves them again. The caller passes only keys that the batch's
// dump locked.
// KEYS: LocksKey, key1, key2, ... ARGV: the batch's lock value, delete.
// Returns 1 when every key was ours and deleted, else per key 1 (the lock was ours and live)
// or 0.
var unlockDeleteScript = newScript(allowOOM + lockLua + `
local lockv, del = ARGV[1], ARGV[2] == '1'
local live = holder(lockv, nowMs()) ~= nil
if del and live then
  redis.call('DEL', unpack(KEYS, 2))
  unlock({unpack(KEYS, 2)})
  return 1
end
local held = redis.call('HMGET', KEYS[1], unpack(KEYS, 2))
local out, ours = {}, {}
for i = 1, #KEYS - 1 do
  out[i] = 0
  if held[i] == lockv then
    ours[#ours+1] = KEYS[i+1]
    if live then out[i] = 1 end
  end
end
if #ours > 0 then
  if del and live then redis.call('DEL', unpack(ours)) end
  unlock(ours)
end
return out
`)
