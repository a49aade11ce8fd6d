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
