package xdc

import (
	"github.com/redraft/redraft/migrate"
)

// Convergence (docs/convergence.md): every write WRITE records carries a hybrid logical
// clock stamp and its origin DC, and each DC keeps, per key, the stamp of the write its data
// holds (and, for counters, what each DC added) in the slot's metadata hash, so that APPLY
// can order writes however they arrive.

// Metadata and pull keys.
const (
	// MetaPrefix starts the key of a slot's metadata hash, "__redraft:m:{TAG}". Its fields:
	// "s:<key>" the key's stamp ("<ts>:<dc>"), "c:<key>" the increments each DC applied to
	// the key ("<dc> <count> <sum>\n" per DC), "v:<key>" those the key's last whole-value
	// write had seen. It moves with the slot in a migration and is part of a full copy.
	MetaPrefix = "__redraft:m:"
	// PullPrefix starts the key of a slot's pull hash, "__redraft:pull:{TAG}": key → the
	// stamp of a write APPLY could not apply because the key's state here differs from the
	// one the write saw at its origin; the key's state is then pulled from the origin.
	PullPrefix = "__redraft:pull:"
)

var metaKeys, pullKeys = func() (m, p [migrate.NumSlots]string) {
	for s, t := range tags {
		m[s] = MetaPrefix + "{" + t + "}"
		p[s] = PullPrefix + "{" + t + "}"
	}
	return
}()

// ElemKey returns the key of the element hash of key (in slot) for hashes, sets and sorted
// sets (elemLua), "__redraft:e:{TAG}:<key>".
func ElemKey(slot int, key string) string {
	return ElemPrefix + "{" + tags[checkSlot(slot)] + "}:" + key
}

// MetaKey returns the key of slot's metadata hash.
func MetaKey(slot int) string { return metaKeys[checkSlot(slot)] }

// PullKey returns the key of slot's pull hash.
func PullKey(slot int) string { return pullKeys[checkSlot(slot)] }

// stampLua is the Lua the scripts share: stamps ("<ts>:<dc>", ts = ms*4096 + logical, exact
// in Lua's doubles until the year 2248) and their order, the stamp of a key in the slot's
// metadata hash (local meta), counter vectors ("<dc> <count> <sum>\n" per DC, in DC order)
// and whole-state writes that reset the increments they had seen.
const stampLua = `
local stamps = {}
local function stampOf(k)
  local s = stamps[k]
  if s == nil then
    s = redis.call('HGET', meta, 's:' .. k) or ''
    stamps[k] = s
  end
  return s
end
local function restamp(k, st)
  stamps[k] = st
  redis.call('HSET', meta, 's:' .. k, st)
end
local function tsOf(s) return tonumber(string.match(s, '^%d+')) or 0 end
-- newer reports whether stamp a orders after stamp b ('' is before everything).
local function newer(a, b)
  if b == '' then return a ~= '' end
  if a == '' then return false end
  local at, ad = string.match(a, '^(%d+):(.*)$')
  local bt, bd = string.match(b, '^(%d+):(.*)$')
  at, bt = tonumber(at), tonumber(bt)
  if at ~= bt then return at > bt end
  return ad > bd
end
local function vecParse(s)
  local v = {}
  if s then
    for d, n, x in string.gmatch(s, '(%S+) (%d+) (%S+)\n') do v[d] = {tonumber(n), tonumber(x)} end
  end
  return v
end
local function vecString(v)
  local ds = {}
  for d in pairs(v) do ds[#ds + 1] = d end
  table.sort(ds)
  local out = {}
  for _, d in ipairs(ds) do
    out[#out + 1] = d .. ' ' .. string.format('%.0f', v[d][1]) .. ' ' .. string.format('%.0f', v[d][2]) .. '\n'
  end
  return table.concat(out)
end
-- observed makes a whole-state write of k observe every increment applied here: it returns
-- the counter vector it saw ('' for none) and records it as the key's.
local function observed(k)
  local c = redis.call('HGET', meta, 'c:' .. k)
  if c then
    redis.call('HSET', meta, 'v:' .. k, c)
    return c
  end
  return ''
end
-- adopt records V, the counter vector the whole-state write now in k had seen at its origin,
-- and adds to k the increments applied here that it had not seen. It answers the error of
-- that INCRBY, if any.
local function adopt(k, V)
  if V == '' then
    redis.call('HDEL', meta, 'v:' .. k)
  else
    redis.call('HSET', meta, 'v:' .. k, V)
  end
  local c = redis.call('HGET', meta, 'c:' .. k)
  if not c then return nil end
  local seen, sum, any = vecParse(V), 0, false
  for d, e in pairs(vecParse(c)) do
    local o = seen[d] or {0, 0}
    if e[1] > o[1] then sum, any = sum + e[2] - o[2], true end
  end
  if any then
    local r = redis.pcall('INCRBY', k, string.format('%.0f', sum))
    if type(r) == 'table' and r['err'] then return r['err'] end
  end
  return nil
end
-- putState installs a whole state of k: kind 's' (value, pxat), 'r' (pxat, DUMP) or 'd'.
local function putState(kind, k, a, b)
  if kind == 's' then
    if tonumber(b) > 0 then return redis.pcall('SET', k, a, 'PXAT', b) end
    return redis.pcall('SET', k, a)
  elseif kind == 'r' then
    if tonumber(a) > 0 then return redis.pcall('RESTORE', k, a, b, 'REPLACE', 'ABSTTL') end
    return redis.pcall('RESTORE', k, '0', b, 'REPLACE')
  end
  return redis.pcall('DEL', k)
end
`

// ElemPrefix starts the key of a hash's, set's or sorted set's element metadata,
// "__redraft:e:{TAG}:<key>" (in the key's slot): element → its adds and removes
// (elemLua).
const ElemPrefix = "__redraft:e:"

// elemLua is the per-element merging of hashes, sets and sorted sets (docs/convergence.md,
// "Elements"), shared by WRITE, APPLY and the pulled-state script. It needs stampLua and
// "meta". An element's state, msgpack in the key's element hash: a = per DC its newest add
// {ts, value}, r = per DC the newest of its adds a remove had seen, ib = whether it is in the
// base state (the key's state at its last whole-state write, stamp K), b = the newest base
// stamp a remove of it had seen. The element is present iff some add is newer than the removes
// of its DC seen, or it is in the base and no remove saw that base; its value is the newest
// add's after K, else the base's. An element without state is as the base has it.
const elemLua = `
local function ekey(k) return '` + ElemPrefix + `' .. string.sub(meta, 13) .. ':' .. k end
-- einRedis returns e's value in k ('' for a set member), or false when absent (or when k
-- holds another type: the command that follows fails with WRONGTYPE).
local function einRedis(ty, k, e)
  local r
  if ty == 'hash' then r = redis.pcall('HGET', k, e)
  elseif ty == 'set' then r = redis.pcall('SISMEMBER', k, e)
  else r = redis.pcall('ZSCORE', k, e) end
  if type(r) == 'table' then return false end
  if ty == 'set' then return r == 1 and '' end
  return r
end
-- eload returns e's state and its value in Redis now (false when absent). An element
-- without state is in the base iff it is in Redis, or, at the origin of a write that just
-- changed it, iff it was there before (pre).
local function eload(ty, k, e, pre)
  local cur = einRedis(ty, k, e)
  local p = redis.call('HGET', ekey(k), e)
  if p then return cmsgpack.unpack(p), cur end
  if pre == nil then pre = cur ~= false end
  return {a = {}, r = {}, b = '', ib = pre, t = ty}, cur
end
-- A base a remove saw is recorded as '=' .. its stamp ('=' alone: the key had no stamp).
local function bsaw(b, K) return b ~= '' and not newer(K, string.sub(b, 2)) end
local function esave(k, e, st)
  redis.call('HSET', ekey(k), e, cmsgpack.pack(st))
end
local function eput(ty, k, e, v)
  if ty == 'hash' then redis.call('HSET', k, e, v)
  elseif ty == 'set' then redis.call('SADD', k, e)
  else redis.call('ZADD', k, v, e) end
end
local function edel(ty, k, e)
  if ty == 'hash' then redis.call('HDEL', k, e)
  elseif ty == 'set' then redis.call('SREM', k, e)
  else redis.call('ZREM', k, e) end
end
local function estamp(ts, d) return string.format('%.0f', ts) .. ':' .. d end
-- live reports whether some add of st is newer than the removes of its DC seen.
local function live(st)
  for d, a in pairs(st.a) do
    if a[1] > (st.r[d] or 0) then return true end
  end
  return false
end
-- newest returns the value of st's newest add after stamp K, or nil.
local function newest(st, K)
  local bs, bv = nil, nil
  for d, a in pairs(st.a) do
    local s = estamp(a[1], d)
    if newer(s, K) and (bs == nil or newer(s, bs)) then bs, bv = s, a[2] end
  end
  return bv
end
-- esettle writes element e of k as st says; base is its value in the base state.
local function esettle(ty, k, e, st, base, K)
  local baseLive = st.ib and not bsaw(st.b, K)
  if live(st) or baseLive then
    eput(ty, k, e, newest(st, K) or base)
  else
    edel(ty, k, e)
  end
  esave(k, e, st)
end
-- ebase returns the base value of e: its value in Redis when no add after K changed it.
local function ebase(st, cur, K)
  if newest(st, K) == nil then return cur end
  return nil
end
-- eadd applies an add of e with value v by DC d at ts (the key's stamp is K).
local function eadd(ty, k, e, v, d, ts, K, pre)
  local st, cur = eload(ty, k, e, pre)
  local base = ebase(st, cur, K)
  -- (>=: a later command of the same entry, same stamp, replaces the value.)
  if st.a[d] == nil or ts >= st.a[d][1] then st.a[d] = {ts, v} end
  esettle(ty, k, e, st, base, K)
end
-- eseen is what a remove of e observes here: its adds, and the base (K) if e is present.
local function eseen(ty, k, e, K)
  local st, cur = eload(ty, k, e)
  local o = {a = {}, b = ''}
  for d, a in pairs(st.a) do o.a[d] = a[1] end
  if cur then o.b = '=' .. K end
  return o
end
-- erem applies a remove of e that observed o (the key's stamp is K).
local function erem(ty, k, e, o, K, pre)
  local st, cur = eload(ty, k, e, pre)
  local base = ebase(st, cur, K)
  for d, ts in pairs(o.a) do
    if ts > (st.r[d] or 0) then st.r[d] = ts end
  end
  if o.b ~= '' and (st.b == '' or newer(string.sub(o.b, 2), string.sub(st.b, 2))) then st.b = o.b end
  esettle(ty, k, e, st, base, K)
end
-- erebase re-applies, after a whole state with stamp K2 was installed in k, the element
-- adds and removes newer than it; older ones are in that state or lost to it.
local function erebase(k, K2)
  local eh = ekey(k)
  local all = redis.call('HGETALL', eh)
  if #all == 0 then return end
  local have = redis.call('TYPE', k)['ok']
  for i = 1, #all, 2 do
    local e, st = all[i], cmsgpack.unpack(all[i + 1])
    local ty = st.t
    if have ~= 'none' and have ~= ty then
      -- The whole state made k another type: older element writes are lost to it, newer
      -- ones (in another DC they made the key this type again) wait for their pull.
      redis.call('DEL', eh)
      return
    end
    for d, a in pairs(st.a) do
      if not newer(estamp(a[1], d), K2) then st.a[d] = nil end
    end
    for d, ts in pairs(st.r) do
      if not newer(estamp(ts, d), K2) then st.r[d] = nil end
    end
    if st.b ~= '' and newer(K2, string.sub(st.b, 2)) then st.b = '' end
    local cur = einRedis(ty, k, e)
    st.ib = cur ~= false
    if next(st.a) == nil and next(st.r) == nil and st.b == '' then
      redis.call('HDEL', eh, e)
    else
      esettle(ty, k, e, st, cur, K2)
    end
  end
end
`

// elemArgsLua finds, for WRITE, the elements an element command names: elems(name, argv)
// returns the key's type, the elements, and whether the command adds (else removes) them;
// nil for a command whose elements come from its reply (pops).
const elemArgsLua = `
local function elems(name, argv)
  local out = {}
  if name == 'HSET' or name == 'HMSET' then
    for j = 3, #argv, 2 do out[#out + 1] = argv[j] end
    return 'hash', out, true
  elseif name == 'HSETNX' or name == 'HINCRBY' or name == 'HINCRBYFLOAT' then
    return 'hash', {argv[3]}, true
  elseif name == 'HDEL' then
    for j = 3, #argv do out[#out + 1] = argv[j] end
    return 'hash', out, false
  elseif name == 'SADD' or name == 'SREM' then
    for j = 3, #argv do out[#out + 1] = argv[j] end
    return 'set', out, name == 'SADD'
  elseif name == 'ZREM' then
    for j = 3, #argv do out[#out + 1] = argv[j] end
    return 'zset', out, false
  elseif name == 'ZINCRBY' then
    return 'zset', {argv[4]}, true
  elseif name == 'ZADD' then
    local j = 3
    while j <= #argv do
      local o = string.upper(argv[j])
      if o == 'NX' or o == 'XX' or o == 'GT' or o == 'LT' or o == 'CH' or o == 'INCR' then j = j + 1 else break end
    end
    for m = j + 1, #argv, 2 do out[#out + 1] = argv[m] end
    return 'zset', out, true
  end
  return nil
end
-- popped returns the type and the elements a pop took, from its reply.
local function popped(name, r)
  local out = {}
  if name == 'SPOP' then
    if type(r) == 'string' then return 'set', {r} end
    if type(r) == 'table' then return 'set', r end
  elseif name == 'ZPOPMIN' or name == 'ZPOPMAX' then
    if type(r) == 'table' then
      for j = 1, #r, 2 do out[#out + 1] = r[j] end
    end
    return 'zset', out
  elseif name == 'ZMPOP' and type(r) == 'table' then
    for _, p in ipairs(r[2]) do out[#out + 1] = p[1] end
    return 'zset', out, r[1]
  end
  return 'set', out
end
`
