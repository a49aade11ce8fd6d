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
// in Lua's doubles until September 2039: docs/convergence.md) and their order, the stamp of a key in the slot's
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
  -- ts as the scripts write it (string.format('%.0f'): no leading zero, no sign) compares by
  -- its length, then its bytes; the DC name after it breaks ties.
  local ia, ib = string.find(a, ':', 1, true), string.find(b, ':', 1, true)
  if ia ~= ib then return ia > ib end
  if a == b then return false end
  local at, bt = string.sub(a, 1, ia), string.sub(b, 1, ib)
  if at ~= bt then return at > bt end
  return a > b
end
local function vecParse(s)
  local v = {}
  if s then
    for d, n, x in string.gmatch(s, '(%S+) (%d+) (%S+)\n') do v[d] = {tonumber(n), x} end
  end
  return v
end
local function vecString(v)
  local ds = {}
  for d in pairs(v) do ds[#ds + 1] = d end
  table.sort(ds)
  local out = {}
  for _, d in ipairs(ds) do
    out[#out + 1] = d .. ' ' .. string.format('%.0f', v[d][1]) .. ' ' .. v[d][2] .. '\n'
  end
  return table.concat(out)
end
-- isInt reports whether s is written as an integer (of at most 64 bits' digits); small,
-- whether Lua's doubles also hold it exactly.
local function isInt(s)
  return type(s) == 'string' and #s <= 20 and string.match(s, '^-?%d+$') ~= nil
end
local function small(s) return isInt(s) and math.abs(tonumber(s)) < 9007199254740992 end
-- neg returns -s; zero stays '0' (INCRBY refuses '-0').
local function neg(s)
  if string.sub(s, 1, 1) == '-' then return string.sub(s, 2) end
  if s == '0' then return s end
  return '-' .. s
end
-- calc returns a + b (numbers as strings): integers exactly (in Lua while small, else by
-- INCRBY, 64 bits as Redis counts), anything else as Redis's INCRBYFLOAT computes and formats
-- it (on a scratch key of the slot), so that every DC computes the same string from the same
-- strings. nil and the error when Redis refuses (an overflow, not a number).
local function calc(a, b)
  if small(a) and small(b) then return string.format('%.0f', tonumber(a) + tonumber(b)) end
  local t = '__redraft:calc:' .. string.sub(meta, 13)
  redis.call('SET', t, a)
  local r
  if isInt(a) and isInt(b) then
    r = redis.pcall('INCRBY', t, b)
    if type(r) == 'number' then r = redis.call('GET', t) end
  else
    r = redis.pcall('INCRBYFLOAT', t, b)
  end
  redis.call('DEL', t)
  if type(r) == 'table' then return nil, r end
  return r
end
-- sum adds the terms to a, in order (nil and the error when Redis refuses).
local function sum(a, terms)
  for _, x in ipairs(terms) do
    local r, err = calc(a, x)
    if not r then return nil, err end
    a = r
  end
  return a
end
-- unseen returns, in DC order, the sums of the increments in counter vector C that vector V
-- had not seen, as the terms to add (a DC's sum, then the negated sum V had seen of it).
local function unseen(C, V)
  local ds = {}
  for d, e in pairs(C) do
    if e[1] > (V[d] and V[d][1] or 0) then ds[#ds + 1] = d end
  end
  table.sort(ds)
  local out = {}
  for _, d in ipairs(ds) do
    out[#out + 1] = C[d][2]
    if V[d] and V[d][2] ~= '0' then out[#out + 1] = neg(V[d][2]) end
  end
  return out
end
-- vmax merges two counter vectors: per DC the one with the higher count.
local function vmax(A, B)
  local out = {}
  for d, x in pairs(A or {}) do out[d] = x end
  for d, x in pairs(B or {}) do
    if not out[d] or x[1] > out[d][1] then out[d] = x end
  end
  return out
end
local function allInt(xs)
  for _, x in ipairs(xs) do
    if not isInt(x) then return false end
  end
  return true
end
local function vecsOf(k)
  return vecParse(redis.call('HGET', meta, 'c:' .. k)), vecParse(redis.call('HGET', meta, 'v:' .. k))
end
-- A float counter (a key with "b:": the value of its last whole-value write, its base) is
-- recomputed from its base and counter vectors in one fixed order, so that every DC gets the
-- same float whatever order the increments arrived in: recompute sets k to base + the
-- increments its whole-value write had not seen and answers the value, or an error (k holds
-- another type, or the value is not a number).
local function recompute(k)
  local ty = redis.call('TYPE', k)['ok']
  if ty ~= 'string' and ty ~= 'none' then
    return {err = 'WRONGTYPE Operation against a key holding the wrong kind of value'}
  end
  local base = redis.call('HGET', meta, 'b:' .. k) or ''
  local terms = unseen(vecsOf(k))
  if base == '' and #terms == 0 then
    redis.call('DEL', k)
    return false
  end
  if base == '' then base = '0' end
  redis.call('SET', k, base, 'KEEPTTL')
  local r = base
  for _, x in ipairs(terms) do
    r = redis.pcall('INCRBYFLOAT', k, x)
    if type(r) == 'table' then return r end
  end
  return r
end
-- floatMode makes k a float counter before an increment is added to its vector: its base is
-- its value cur (nil: read it; absent counts as 0) less the increments its last whole-value
-- write had not seen, exact since until now they were integers added by INCRBY.
local function floatMode(k, cur)
  if redis.call('HEXISTS', meta, 'b:' .. k) == 1 then return end
  if cur == nil then cur = redis.pcall('GET', k) end
  if type(cur) ~= 'string' then cur = '' end
  local terms = unseen(vecsOf(k))
  local base = cur
  if #terms > 0 and (cur == '' or isInt(cur)) and allInt(terms) then
    local negs = {}
    for i, x in ipairs(terms) do negs[i] = neg(x) end
    if cur == '' then cur = '0' end
    base = sum(cur, negs) or cur
  end
  redis.call('HSET', meta, 'b:' .. k, base)
end
-- observed makes a whole-state write of k observe every increment applied here: it returns
-- the counter vector it saw ('' for none) and records it as the key's (and, for a float
-- counter, k's value now as its base). With no increment applied here it saw none, and a
-- vector the key had adopted from another DC's write (increments that write had seen, not
-- applied here yet) goes, as adopt('') does where this write is applied: an increment arriving
-- later counts here as it does there.
local function observed(k)
  local c = redis.call('HGET', meta, 'c:' .. k)
  if c then
    redis.call('HSET', meta, 'v:' .. k, c)
    if redis.call('HEXISTS', meta, 'b:' .. k) == 1 then
      local cur = redis.pcall('GET', k)
      if type(cur) ~= 'string' then cur = '' end
      redis.call('HSET', meta, 'b:' .. k, cur)
    end
    return c
  end
  redis.call('HDEL', meta, 'v:' .. k)
  return ''
end
-- adopt records V, the counter vector the whole-state write now in k had seen at its origin,
-- and adds to k the increments applied here that it had not seen: by INCRBY while they are
-- integers, else k becomes a float counter based on the value just written. It answers the
-- error of that, if any.
local function adopt(k, V)
  if V == '' then
    redis.call('HDEL', meta, 'v:' .. k)
  else
    redis.call('HSET', meta, 'v:' .. k, V)
  end
  local c = redis.call('HGET', meta, 'c:' .. k)
  if not c then return nil end
  local terms = unseen(vecParse(c), vecParse(V))
  local cur = redis.pcall('GET', k)
  if type(cur) ~= 'string' then cur = '' end
  local float = redis.call('HEXISTS', meta, 'b:' .. k) == 1
  if float or not allInt(terms) or (#terms > 0 and cur ~= '' and not isInt(cur)) then
    redis.call('HSET', meta, 'b:' .. k, cur)
    if not float and #terms == 0 then return nil end
    local r = recompute(k)
    if type(r) == 'table' and r['err'] then return r['err'] end
    return nil
  end
  if #terms > 0 then
    local d, err = sum('0', terms)
    if not d then return err['err'] end
    local r = redis.pcall('INCRBY', k, d)
    if type(r) == 'table' and r['err'] then return r['err'] end
  end
  return nil
end
-- count adds an increment of delta d (a string) by DC dc to k's counter vector, before
-- the value changes (cur: k's value before it, nil to read): while k, d and the vector are
-- integers k is changed by INCRBY (by the caller); otherwise, or when force (INCRBYFLOAT),
-- k is a float counter and is recomputed. It answers whether it recomputed k, and the value
-- or error.
local function count(k, dc, d, cur, force)
  if cur == nil then cur = redis.pcall('GET', k) end
  local C = vecParse(redis.call('HGET', meta, 'c:' .. k))
  local e = C[dc] or {0, '0'}
  local float = force or not isInt(d) or not isInt(e[2]) or redis.call('HEXISTS', meta, 'b:' .. k) == 1 or
    (type(cur) == 'string' and not isInt(cur))
  if float and cur == false and redis.call('HEXISTS', meta, 'b:' .. k) == 1 then
    local V = vecParse(redis.call('HGET', meta, 'v:' .. k))
    if redis.call('HGET', meta, 'b:' .. k) ~= '' or #unseen(C, V) > 0 then
      -- A float counter that is gone here without a write (it expired) restarts from
      -- nothing, as INCRBYFLOAT on an expired key does: as if deleted after every
      -- increment here.
      redis.call('HSET', meta, 'b:' .. k, '')
      local M = vmax(C, V)
      if next(M) then redis.call('HSET', meta, 'v:' .. k, vecString(M)) end
    end
  end
  if float then floatMode(k, cur) end
  local s = calc(e[2], d)
  C[dc] = {e[1] + 1, s or e[2]}
  redis.call('HSET', meta, 'c:' .. k, vecString(C))
  if not float then return false end
  return true, recompute(k)
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
-- Element counters (HINCRBY, HINCRBYFLOAT, ZINCRBY): st.c is per DC {count, sum} of its
-- increments of e; an add records the counters it had seen (a[d][3]), the newest remove of
-- each DC its stamp and the counters it had seen (rc[d] = {ts, seen}), the base the counters
-- it had seen (bs) and, once e has counters, its value in the base (bv, false: absent). An
-- increment counts unless the add or base that gives e its value, or a remove, had seen it.
-- eplus adds two numbers (strings) as the element's type does: a hash field as HINCRBYFLOAT
-- (calc), a score in doubles, as ZINCRBY; nil where the element's type refuses the sum (a
-- score of inf plus -inf, which ZINCRBY refuses as NaN: two DCs' ZINCRBY inf and -inf of
-- one member, recorded before Prepare refused infinite increments, made ZADD of "nan" stop
-- APPLY half way).
local function eplus(ty, a, b)
  if ty == 'zset' then
    local x, y = tonumber(a), tonumber(b)
    if not x or not y then return nil end
    local r = x + y
    if r ~= r then return nil end
    return string.format('%.17g', r)
  end
  return calc(a, b)
end
-- eterms returns the increments of e that count, as unseen's terms.
local function eterms(st, K)
  if not st.c then return {} end
  local bs, bsd = nil, nil
  for d, a in pairs(st.a) do
    local s = estamp(a[1], d)
    if newer(s, K) and (bs == nil or newer(s, bs)) then bs, bsd = s, d end
  end
  local seen = st.bs
  if bsd then seen = st.a[bsd][3] end
  for _, r in pairs(st.rc or {}) do seen = vmax(seen, r[2]) end
  return unseen(st.c, seen or {})
end
-- esettle writes element e of k as st says; base is its value in the base state (for an
-- element with counters, st.bv).
local function esettle(ty, k, e, st, base, K)
  local baseLive = st.ib and not bsaw(st.b, K)
  local terms = eterms(st, K)
  if live(st) or baseLive or #terms > 0 then
    local v = false
    if st.c and st.bv ~= nil then base = st.bv end
    if live(st) or baseLive then v = newest(st, K) or base end
    if #terms > 0 then
      v = v or '0'
      for _, x in ipairs(terms) do v = eplus(ty, v, x) or v end
    end
    if v then eput(ty, k, e, v) else edel(ty, k, e) end
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
-- eadd applies an add of e with value v by DC d at ts (the key's stamp is K) that had seen
-- the counters seen (nil: none; at the origin, every counter of e here).
local function eadd(ty, k, e, v, d, ts, K, pre, seen)
  local st, cur = eload(ty, k, e, pre)
  local base = ebase(st, cur, K)
  if seen == nil and pre ~= nil then seen = st.c end
  -- (>=: a later command of the same entry, same stamp, replaces the value.)
  if st.a[d] == nil or ts >= st.a[d][1] then st.a[d] = {ts, v, seen} end
  esettle(ty, k, e, st, base, K)
  return seen
end
-- eincr applies an increment d of e by DC dc (the key's stamp is K); before is e's value
-- before it (nil: read it here).
local function eincr(ty, k, e, d, dc, K, before)
  local pre = nil
  if before ~= nil then pre = before ~= false end
  local st, cur = eload(ty, k, e, pre)
  if before == nil then before = cur end
  if not st.c then
    st.c, st.bs = {}, st.bs or {}
    if newest(st, K) == nil then st.bv = before end
  end
  local x = st.c[dc] or {0, '0'}
  st.c[dc] = {x[1] + 1, eplus(ty, x[2], d) or x[2]}
  local have = redis.call('TYPE', k)['ok']
  if have ~= 'none' and have ~= ty then
    esave(k, e, st)
  else
    esettle(ty, k, e, st, nil, K)
  end
end
-- eseen is what a remove of e observes here: its adds, and the base (K) if e is present.
local function eseen(ty, k, e, K)
  local st, cur = eload(ty, k, e)
  local o = {a = {}, b = ''}
  for d, a in pairs(st.a) do o.a[d] = a[1] end
  if cur then o.b = '=' .. K end
  o.c = st.c
  return o
end
-- erem applies a remove of e by DC rd at rts that observed o (the key's stamp is K).
local function erem(ty, k, e, o, K, pre, rd, rts)
  local st, cur = eload(ty, k, e, pre)
  local base = ebase(st, cur, K)
  for d, ts in pairs(o.a) do
    if ts > (st.r[d] or 0) then st.r[d] = ts end
  end
  if o.c and next(o.c) then
    st.rc = st.rc or {}
    if not st.rc[rd] or rts >= st.rc[rd][1] then st.rc[rd] = {rts, o.c} end
  end
  if o.b ~= '' and (st.b == '' or newer(string.sub(o.b, 2), string.sub(st.b, 2))) then st.b = o.b end
  esettle(ty, k, e, st, base, K)
end
-- erebase re-applies, after a whole state with stamp K2 was installed in k, the element
-- adds and removes newer than it; older ones are in that state or lost to it. Element
-- counters stay (they count per DC for good): E (from the whole state's origin, absorb) says
-- which of them the state had seen.
local function erebase(k, K2, E)
  local eh = ekey(k)
  local all = redis.call('HGETALL', eh)
  E = E or {}
  -- Counters the state had seen that have no state here yet (their increments have not
  -- arrived): recorded as seen, so that they do not count again when they arrive.
  local here = {}
  for i = 1, #all, 2 do here[all[i]] = true end
  for e, x in pairs(E) do
    if not here[e] then
      all[#all + 1], all[#all + 2] = e, cmsgpack.pack({a = {}, r = {}, b = '', ib = false, t = x[1], c = {}})
    end
  end
  if #all == 0 then return end
  local have = redis.call('TYPE', k)['ok']
  local function seenOf(e) return E[e] and E[e][2] or {} end
  for i = 1, #all, 2 do
    local e, st = all[i], cmsgpack.unpack(all[i + 1])
    local ty = st.t
    -- (The state had seen increments of e that have not arrived here: e counts from now.)
    if E[e] and not st.c then st.c = {} end
    if have ~= 'none' and have ~= ty then
      -- The whole state made k another type: older element writes are lost to it, newer
      -- ones (in another DC they made the key this type again) wait for their pull.
      if st.c then
        esave(k, e, {a = {}, r = {}, b = '', ib = false, t = ty, c = st.c, bs = seenOf(e), bv = false})
      else
        redis.call('HDEL', eh, e)
      end
    else
      for d, a in pairs(st.a) do
        if not newer(estamp(a[1], d), K2) then st.a[d] = nil end
      end
      for d, ts in pairs(st.r) do
        if not newer(estamp(ts, d), K2) then st.r[d] = nil end
      end
      for d, r in pairs(st.rc or {}) do
        if not newer(estamp(r[1], d), K2) then st.rc[d] = nil end
      end
      if st.b ~= '' and newer(K2, string.sub(st.b, 2)) then st.b = '' end
      local cur = einRedis(ty, k, e)
      st.ib = cur ~= false
      if st.c then st.bs, st.bv = seenOf(e), cur end
      if next(st.a) == nil and next(st.r) == nil and st.b == '' and not st.c then
        redis.call('HDEL', eh, e)
      else
        esettle(ty, k, e, st, cur, K2)
      end
    end
  end
end
-- eall is every increment of e that st knows of: counted here, or seen by the base, an add
-- or a remove (whose increments may not have arrived yet): what a new base has seen.
local function eall(st)
  local v = vmax(st.c, st.bs)
  for _, a in pairs(st.a) do v = vmax(v, a[3]) end
  for _, r in pairs(st.rc or {}) do v = vmax(v, r[2]) end
  return v
end
-- absorb, at the origin of a whole-state write of k, drops k's element states but the
-- counters (kept, as seen by the new base) and returns them for the write's effect ('': none).
local function absorb(k)
  local eh = ekey(k)
  local all = redis.call('HGETALL', eh)
  if #all == 0 then return '' end
  redis.call('DEL', eh)
  local E, any = {}, false
  local have = redis.call('TYPE', k)['ok']
  for i = 1, #all, 2 do
    local e, st = all[i], cmsgpack.unpack(all[i + 1])
    if st.c then
      local cur = false
      if have == st.t then cur = einRedis(st.t, k, e) end
      local seen = eall(st)
      esave(k, e, {a = {}, r = {}, b = '', ib = cur ~= false, t = st.t, c = st.c, bs = seen, bv = cur})
      E[e], any = {st.t, seen}, true
    end
  end
  if not any then return '' end
  return cmsgpack.pack(E)
end
-- withElems appends the element counters a whole-state write had seen (absorb) to its
-- counter vector V; splitV takes them apart again.
local function withElems(V, E)
  if E == '' then return V end
  return V .. '#' .. E
end
local function splitV(V)
  local i = string.find(V, '#', 1, true)
  if not i then return V, nil end
  return string.sub(V, 1, i - 1), cmsgpack.unpack(string.sub(V, i + 1))
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
  elseif name == 'HSETNX' then
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
-- incrOf returns the type, element and increment of an element counter command, or nil.
local function incrOf(name, argv)
  if name == 'HINCRBY' or name == 'HINCRBYFLOAT' then return 'hash', argv[3], argv[4] end
  if name == 'ZINCRBY' then return 'zset', argv[4], argv[3] end
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
