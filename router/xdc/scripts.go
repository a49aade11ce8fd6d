package xdc

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/router/resp"
)

// WRITE marks the replies Lua cannot carry as they are, as status replies that the router
// turns back into them (FixReply): an integer beyond 2^53 (exact, read back from the key) and
// a null array.
const (
	replyIntMark       = "REDRAFT-INT "
	replyNullArrayMark = "REDRAFT-NULLARRAY"
	replyBitsMark      = "REDRAFT-BITS "
)

// writeDefsLua defines writeOne(KEYS, ARGV), the WRITE function (WriteFunc, library.go). KEYS:
// the commands' keys, then the slot's metadata hash, the slot's copy lock and the slot's
// outbox (or the group's log, LogKey: then no change feed entry and no outbox's last entry).
// ARGV: outbox MAXLEN bound, origin DC, "one" or "unit" (or "rec": a unit that does not
// check the copy lock, the record of a user script that ran before it in the same MULTI), the
// number of commands, then per command its plan (see Call.Plan), its argc and its argv. It
// stamps the write (hybrid logical clock: the server's time in ms * 4096, above the stamps of
// the keys it changes), runs each command with redis.pcall, records per key it changed an
// effect by the command's class (classOf) and the key's new stamp in the metadata hash, and
// XADDs one entry for all of them ("MAXLEN ~" ten times the bound: a safety net; the replicator
// enforces the bound itself, see Replicator), or none when nothing changed. With the entry goes
// an entry of the change feed DirtyKey (a key the script does not declare: redraft's masters
// are standalone servers, which allow it): the outbox's name and, when the effects' arguments
// hold at most feedDataMax bytes, the entry itself with its id and the id of the outbox entry
// before it (FeedEntry), which a shipping loop ships without reading the outbox. It answers the command's reply ("one") or
// the array of the replies ("unit", as EXEC does). While the slot's copy lock is set (a full
// copy to another DC is reading the slot) it answers TRYAGAIN and changes nothing. Registered
// without flags, the function is refused up front when the server is out of memory, so a write
// is not left applied without its entry.
//
// Effects (each an argv in the entry; the entry's "t" field is the stamp's ts):
//
//	~o key prior pxat cmd...    the command, to apply where key's stamp is prior
//	~s key prior V value pxat   the string's value and expiry (-1: none)
//	~r key prior V pxat dump    the key's DUMP
//	~d key prior V              a delete (tombstone)
//	~c key delta pxat [f]       an increment; f: a float one (INCRBYFLOAT), whatever its delta
//	~a key type elem value pxat an element added, with its value
//	~x key type elem seen pxat  an element removed, with what the remove had observed
//
// pxat is the key's absolute expiry after the effect at the origin (-1: none).
//
// V is the counter vector the write had seen ("" for none).
//
// It reads the library's nowms (the server's clock at the call, set by begin) and sets meta.
const writeDefsLua = `
-- groupRead returns the effects of XREADGROUP argv that answered r, as Redis propagates
-- them: per stream read with '>', the consumer, its new pending entries (XCLAIM ... FORCE
-- JUSTID, none with NOACK) and the group's last delivered id; per stream read from its
-- history, the entries delivered again (XCLAIM ... JUSTID).
local function groupRead(argv, r)
  local group, consumer, noack, ids = nil, nil, false, {}
  local i = 2
  while i <= #argv do
    local a = string.upper(argv[i])
    if a == 'GROUP' then group, consumer, i = argv[i + 1], argv[i + 2], i + 3
    elseif a == 'COUNT' or a == 'BLOCK' then i = i + 2
    elseif a == 'NOACK' then noack, i = true, i + 1
    elseif a == 'STREAMS' then
      local n = (#argv - i) / 2
      for j = 1, n do ids[argv[i + j]] = argv[i + n + j] end
      break
    else i = i + 1 end
  end
  local out = {}
  for _, st in ipairs(r) do
    local key, entries = st[1], st[2]
    if #entries > 0 then
      local claim = {'XCLAIM', key, group, consumer, '0'}
      for _, e in ipairs(entries) do claim[#claim + 1] = e[1] end
      if ids[key] == '>' then
        out[#out + 1] = {'XGROUP', 'CREATECONSUMER', key, group, consumer}
        if not noack then
          claim[#claim + 1] = 'FORCE'
          claim[#claim + 1] = 'JUSTID'
          out[#out + 1] = claim
        end
        out[#out + 1] = {'XGROUP', 'SETID', key, group, entries[#entries][1]}
      else
        claim[#claim + 1] = 'JUSTID'
        out[#out + 1] = claim
      end
    end
  end
  return out
end
-- streamID reports whether a is a stream id as XCLAIM reads its ids (ms or ms-seq), and
-- returns it in full (ms-seq).
local function streamID(a)
  if string.match(a, '^%d+$') then return a .. '-0' end
  if string.match(a, '^%d+%-%d+$') then return a end
  return nil
end
-- goneIDs returns the ids XCLAIM argv names whose entries its stream does not hold, before it
-- runs: XCLAIM drops those from the pending list without answering them.
local function goneIDs(argv)
  local gone = {}
  for j = 6, #argv do
    local id = streamID(argv[j])
    if not id then break end
    local e = redis.pcall('XRANGE', argv[2], id, id)
    if type(e) == 'table' and not e['err'] and #e == 0 then gone[#gone + 1] = id end
  end
  return gone
end
-- claimed returns the effect of XCLAIM or XAUTOCLAIM argv that answered r (gone: goneIDs of an
-- XCLAIM): XCLAIM <key> <group> <consumer> 0 <ids> JUSTID of the entries it claimed and of
-- those it dropped from the pending list as deleted, with XCLAIM's FORCE and LASTID, so that
-- the applying DC moves the same entries whatever their idle times there; nil when it claimed
-- and dropped nothing.
local function claimed(argv, r, gone)
  local e = {'XCLAIM', argv[2], argv[3], argv[4], '0'}
  local list, dropped = r, gone
  if string.upper(argv[1]) == 'XAUTOCLAIM' then list, dropped = r[2], r[3] or {} end
  for _, x in ipairs(list) do
    if type(x) == 'table' then e[#e + 1] = x[1] else e[#e + 1] = x end
  end
  for _, id in ipairs(dropped) do e[#e + 1] = id end
  if #e == 5 then return nil end
  e[#e + 1] = 'JUSTID'
  if string.upper(argv[1]) == 'XCLAIM' then
    local j = 6
    while j <= #argv and streamID(argv[j]) do j = j + 1 end
    while j <= #argv do
      local o = string.upper(argv[j])
      if o == 'FORCE' then e[#e + 1] = 'FORCE'
      elseif o == 'LASTID' and argv[j + 1] then
        e[#e + 1], e[#e + 2] = 'LASTID', argv[j + 1]
        j = j + 1
      elseif (o == 'IDLE' or o == 'TIME' or o == 'RETRYCOUNT') then j = j + 1 end
      j = j + 1
    end
  end
  return e
end
-- bitsAt answers the bytes of key k that hold field ty (i64, u63...) at offset off (n or #n) as
-- 'REDRAFT-BITS <i|u> <bits> <the field's first bit in them> <hex>', which FixReply reads.
local function bitsAt(k, ty, off)
  local bits = tonumber(string.sub(ty, 2))
  local o = tonumber(off)
  if string.sub(off, 1, 1) == '#' then o = tonumber(string.sub(off, 2)) * bits end
  local first = math.floor(o / 8)
  local b = redis.pcall('GETRANGE', k, first, math.floor((o + bits - 1) / 8))
  if type(b) == 'table' then return b end
  local hex = string.gsub(b, '.', function(c) return string.format('%02x', string.byte(c)) end)
  return {ok = 'REDRAFT-BITS ' .. string.lower(string.sub(ty, 1, 1)) .. ' ' .. bits .. ' ' .. string.format('%.0f', o - first * 8) .. ' ' .. hex}
end
-- wideBitfield runs BITFIELD argv (plan 'w': valid, with a field wider than 53 bits) one
-- operation at a time, each after the OVERFLOW before it, and answers per operation the
-- field's bytes (bitsAt: after a GET or INCRBY, before a SET), or nil where Redis answers nil.
local function wideBitfield(argv)
  local k, over, out, j = argv[2], nil, {}, 3
  while j <= #argv do
    local sub = string.upper(argv[j])
    if sub == 'OVERFLOW' then
      over, j = argv[j + 1], j + 2
    else
      local n = 4
      if sub == 'GET' then n = 3 end
      local ty, off = argv[j + 1], argv[j + 2]
      local cmd = {'BITFIELD', k}
      if over then cmd[3], cmd[4] = 'OVERFLOW', over end
      for m = j, j + n - 1 do cmd[#cmd + 1] = argv[m] end
      local before
      if sub == 'SET' then before = bitsAt(k, ty, off) end
      if before and before['err'] then return before end
      local r = redis.pcall(unpack(cmd))
      if type(r) == 'table' and r['err'] then return r end
      if not r[1] then out[#out + 1] = false
      elseif sub == 'SET' then out[#out + 1] = before
      else
        local after = bitsAt(k, ty, off)
        if after['err'] then return after end
        out[#out + 1] = after
      end
      j = j + n
    end
  end
  return out
end
-- addEntry adds entry (its fields) to outbox ob (MAXLEN ~ hardCap times bound), after
-- prev, and its change feed entry: the entry itself when its effects hold at most
-- feedDataMax bytes (size), else the outbox's name only. It returns the entry's id. To the
-- group's log (LogKey) it adds the entry alone: the log is what the shipping loop follows.
local function addEntry(ob, bound, prev, entry, size)
  -- The cap as a string, made once per bound: a number argument costs redis.call a
  -- floating-point formatting per call.
  local cap = caps[bound]
  if not cap then
    cap = string.format('%d', tonumber(bound) * hardCap)
    caps[bound] = cap
  end
  local id = redis.call('XADD', ob, 'MAXLEN', '~', cap, '*', unpack(entry))
  if ob == '` + LogKey + `' then return id end
  if size <= ` + feedDataMax + ` then
    redis.call('XADD', '` + DirtyKey + `', 'MAXLEN', '~', ` + DirtyMaxLen + `, '*', 'o', ob, 'p', prev, 'i', id, unpack(entry))
  else
    redis.call('XADD', '` + DirtyKey + `', 'MAXLEN', '~', ` + DirtyMaxLen + `, '*', 'o', ob)
  end
  return id
end
-- lastEntry returns the id of outbox ob's last entry ('' when it has none), or nil when ob
-- holds something else than a stream. known is the id WRITE recorded in the slot's metadata
-- (field o:<dc>) when it last appended to ob: when nothing in ob follows it, it is the last
-- entry, found without the entry XREVRANGE would hand to Lua. An id ob once held stays at or
-- below its last (stream ids only grow; trimming keeps the last entry), so an empty range
-- after known means known is the last; otherwise (an entry appended without WRITE, a
-- heartbeat, a user script, a WRITE of an older library) the range's one entry is the last.
-- Read backwards from the end, the range costs one step when empty, where XRANGE from known
-- would walk the stream's last node up to it.
local function lastEntry(ob, known)
  local from = '-'
  if known then from = '(' .. known end
  local last = redis.pcall('XREVRANGE', ob, '+', from, 'COUNT', 1)
  if last['err'] and known then
    last = redis.pcall('XREVRANGE', ob, '+', '-', 'COUNT', 1)
  end
  if last['err'] then return nil end
  if #last > 0 then return last[1][1] end
  return known or ''
end
-- setOne is writeOne for the most common write, a plain SET k v (no option) of a key without
-- a counter vector (its own, c:, or one adopted from another DC's write, v:, which the general
-- path's observed() drops) or element states, in a slot not being copied: the same reply,
-- entry, feed entry and stamp as writeOne's, with four Lua calls less (the copy lock and the
-- element hash in one EXISTS, the stamp and the counter vectors in one HMGET) and none of
-- writeOne's planning. It answers nil, having changed nothing, for any other write.
-- logOr returns where the write recorded in ob (the slot's outbox or the group's log) goes.
-- A group's log opens with its first write, which sets OutboxesClosedKey; from then on a
-- write meant for a slot's outbox, from a node that has not yet applied the cluster's raise to
-- group logs, goes to the log too: no outbox entry ever follows the log's first write on this
-- server, or the drain check that the log's shippers run first (logdrain.go, which sets the
-- key before it reads the outboxes).
local function logOr(ob)
  if ob == '` + LogKey + `' then
    if redis.call('EXISTS', '` + OutboxesClosedKey + `') == 0 then
      redis.call('SET', '` + OutboxesClosedKey + `', '1')
    end
  elseif redis.call('EXISTS', '` + OutboxesClosedKey + `') == 1 then
    return '` + LogKey + `'
  end
  return ob
end
local function setOne(KEYS, ARGV, ob)
  if #KEYS ~= 4 or ARGV[3] ~= 'one' or ARGV[4] ~= '1' or ARGV[6] ~= '3' or string.upper(ARGV[7]) ~= 'SET' then
    return nil
  end
  local k, v, dc = ARGV[8], ARGV[9], ARGV[2]
  meta = KEYS[2]
  if redis.call('EXISTS', KEYS[3], ekey(k)) ~= 0 then return nil end
  -- The outbox's last entry the metadata recorded (o:<dc>), for a slot's outbox only: a
  -- group's log needs no predecessor.
  local of, m, prev = nil, nil, ''
  if ob == '` + LogKey + `' then
    m = redis.call('HMGET', meta, 's:' .. k, 'c:' .. k, 'v:' .. k)
    if m[2] or m[3] then return nil end
  else
    of = 'o:' .. dc
    m = redis.call('HMGET', meta, 's:' .. k, 'c:' .. k, 'v:' .. k, of)
    if m[2] or m[3] then return nil end
    prev = lastEntry(ob, m[4])
    if not prev then return nil end
  end
  local prior = m[1] or ''
  local ts = nowms * 4096
  if prior ~= '' then
    local x = tsOf(prior)
    if x >= ts then ts = x + 1 end
  end
  -- '%d' formats an integer (as a C long: 64 bits where Redis runs) where '%.0f' would take
  -- the C library's floating-point path, 3,000 instructions a write (callgrind); exact
  -- either way below 2^53, where stamps stay until September 2039 (docs/convergence.md).
  local tss = string.format('%d', ts)
  local r = redis.pcall('SET', k, v)
  local entry = {'dc', dc, 't', tss, 'n', '1', '6', '~s', k, prior, '', v, '-1', ''}
  local id = addEntry(ob, ARGV[1], prev, entry, 4 + #k + #prior + #v)
  if prev == '' and ob == '` + LogKey + `' then
    redis.call('HSET', meta, 's:' .. k, tss .. ':' .. dc)
  else
    redis.call('HSET', meta, 's:' .. k, tss .. ':' .. dc, of, id)
  end
  return r
end
local function writeOne(KEYS, ARGV)
local ob = logOr(KEYS[#KEYS])
local fast = setOne(KEYS, ARGV, ob)
if fast then return fast end
meta = KEYS[#KEYS - 2]
if ARGV[3] ~= 'rec' and redis.call('EXISTS', KEYS[#KEYS - 1]) == 1 then
  return redis.error_reply('TRYAGAIN redraft: the slot is being copied to another DC, retry shortly')
end
-- The outbox's last entry, which the new entry follows (the feed entry carries its id). A
-- group's log needs none: its entries are in its order.
local prev = ''
if ob ~= '` + LogKey + `' then prev = lastEntry(ob, nil) end
if not prev then
  return redis.error_reply('ERR redraft: outbox ' .. ob .. ' holds a ' .. redis.call('TYPE', ob)['ok'])
end
local dc = ARGV[2]
local calls, i = {}, 5
for c = 1, tonumber(ARGV[4]) do
  local plan, argc = ARGV[i], tonumber(ARGV[i + 1])
  local argv = {}
  for j = 1, argc do argv[j] = ARGV[i + 1 + j] end
  i = i + 2 + argc
  local op, at, z, cls, wk = string.match(plan, '^(%a)(%d*)(z?)/?(%a?)([%d,]*)$')
  local w = {}
  for n in string.gmatch(wk, '%d+') do w[#w + 1] = argv[tonumber(n)] end
  calls[c] = {argv = argv, op = op, at = tonumber(at), z = z, cls = cls, w = w}
end
-- The stamp: after every stamp of the keys the write changes, so that a write that follows
-- another one (applied here) orders after it whatever the clocks say.
local ts = nowms * 4096
for _, c in ipairs(calls) do
  if c.cls ~= '' and c.cls ~= 'c' and c.op ~= 'n' then
    for _, k in ipairs(c.w) do
      local x = tsOf(stampOf(k))
      if x >= ts then ts = x + 1 end
    end
  end
  if c.cls == 'm' then
    -- An add orders after the adds of its elements applied here (values: last writer wins).
    local ty, es, add = elems(string.upper(c.argv[1]), c.argv)
    if add then
      for _, e in ipairs(es) do
        local p = redis.call('HGET', ekey(c.w[1]), e)
        if p then
          for _, a in pairs(cmsgpack.unpack(p).a) do
            if a[1] >= ts then ts = a[1] + 1 end
          end
        end
      end
    end
  end
end
local tss = string.format('%.0f', ts)
local stamp = tss .. ':' .. dc
local entry = {'dc', dc, 't', tss, 'n', '0'}
local logged, size = 0, 0
local function record(e)
  logged = logged + 1
  entry[#entry + 1] = tostring(#e)
  for _, a in ipairs(e) do
    entry[#entry + 1] = a
    size = size + #a
  end
end
-- whole records the state of k after the write: its value if a string, its DUMP otherwise,
-- a tombstone if it is gone. set is the value a plain SET k set (no expiry), nil otherwise:
-- then nothing needs reading back.
local function whole(k, asString, set)
  local prior, V = stampOf(k), observed(k)
  V = withElems(V, absorb(k))
  if set then
    record({'~s', k, prior, V, set, '-1'})
  elseif redis.call('EXISTS', k) == 0 then
    record({'~d', k, prior, V})
  elseif asString then
    local v = redis.pcall('GET', k)
    if type(v) ~= 'string' then return end
    record({'~s', k, prior, V, v, string.format('%.0f', redis.call('PEXPIRETIME', k))})
  else
    record({'~r', k, prior, V, string.format('%.0f', redis.call('PEXPIRETIME', k)), redis.call('DUMP', k)})
  end
  restamp(k, stamp)
end
-- pxatOf is k's absolute expiry in ms (-1: none, -2: gone): command effects carry the
-- expiry their key has after them at the origin, so that where the key had expired before
-- the effect arrived, the key it recreates expires as the origin's does.
local function pxatOf(k) return string.format('%.0f', redis.call('PEXPIRETIME', k)) end
local function collection(k)
  local ty = redis.call('TYPE', k)['ok']
  return ty == 'hash' or ty == 'set' or ty == 'zset'
end
local replies = {}
for c, call in ipairs(calls) do
  local argv, op, at, z, cls = call.argv, call.op, call.at, call.z, call.cls
  if op == 't' then
    argv[at] = string.format('%.0f', nowms + tonumber(argv[at]))
  end
  -- What the removes of an element command observe, before they run.
  -- and whether the elements an add names were there.
  local seen, pre, wasColl, before, gone, found = {}, {}, {}, nil, nil, nil
  if cls == 'c' then before = redis.pcall('GET', call.w[1]) end
  if cls == 'd' and #call.w > 1 then
    -- A DEL of several keys records a tombstone for those it finds only: one for a key it
    -- did not find would delete another DC's concurrent write of it everywhere.
    found = {}
    for _, k in ipairs(call.w) do found[k] = redis.call('EXISTS', k) == 1 end
  end
  if op == 'k' and string.upper(argv[1]) == 'XCLAIM' then gone = goneIDs(argv) end
  if cls == 'o' then
    -- A hash, set or sorted set changed other than element by element (ZREMRANGEBYSCORE...)
    -- is recorded by its state, even if the command deletes it.
    for _, k in ipairs(call.w) do wasColl[k] = collection(k) end
  end
  if cls == 'm' then
    local ty, es, add = elems(string.upper(argv[1]), argv)
    if ty and not add then
      local K = stampOf(call.w[1])
      for _, e in ipairs(es) do
        if einRedis(ty, call.w[1], e) then seen[#seen + 1] = {e, eseen(ty, call.w[1], e, K)} end
      end
    elseif ty then
      for _, e in ipairs(es) do pre[e] = einRedis(ty, call.w[1], e) ~= false end
    end
    local ity, ie = incrOf(string.upper(argv[1]), argv)
    if ity then before = einRedis(ity, call.w[1], ie) end
  end
  local r
  if op == 'w' then r = wideBitfield(argv) else r = redis.pcall(unpack(argv)) end
  local name = string.upper(argv[1])
  replies[c] = r
  if type(r) == 'number' and (r >= 9007199254740992 or r <= -9007199254740992) then
    -- Past 2^53 a Lua number is not the exact integer: read the value the command left.
    local exact = nil
    if name == 'INCR' or name == 'INCRBY' or name == 'DECR' or name == 'DECRBY' then
      exact = redis.call('GET', argv[2])
    elseif name == 'HINCRBY' then
      exact = redis.call('HGET', argv[2], argv[3])
    end
    if exact then replies[c] = {ok = 'REDRAFT-INT ' .. exact} end
  elseif r == false then
    -- A null array reaches Lua as false, which would go back as a null bulk string.
    if name == 'LMPOP' or name == 'ZMPOP' or name == 'XREADGROUP' or ((name == 'LPOP' or name == 'RPOP') and #argv >= 3) then
      replies[c] = {ok = 'REDRAFT-NULLARRAY'}
    end
  end
  -- A write that changed nothing (a DEL that answered 0, a pop of nothing) records nothing:
  -- it did not observe the key, so it removes nothing elsewhere either, as its reply said.
  -- LINSERT answers -1 when its pivot is missing; SET NX GET answers the value of a key that
  -- exists, which it did not set.
  local changed = not (type(r) == 'table' and r['err']) and op ~= 'n' and
    not (z == 'z' and (r == 0 or r == false or (type(r) == 'table' and not r['ok'] and #r == 0) or
      (r == -1 and name == 'LINSERT')))
  if changed and name == 'SET' and type(r) == 'string' then
    for j = 4, #argv do
      if string.upper(argv[j]) == 'NX' then changed = false end
    end
  end
  if changed and name == 'LMPOP' then
    -- One key changed, the one the reply names: recorded as the pop it was.
    cls = 'o'
  end
  if changed and cls == 'e' then
    local ty = redis.call('TYPE', call.w[1])['ok']
    if ty == 'string' or ty == 'none' then cls = 's'
    elseif ty == 'hash' or ty == 'set' or ty == 'zset' then cls = 'a'
    else cls = 'o' end
  end
  if changed and cls == 'c' then
    local d = '1'
    if name == 'DECR' then d = '-1'
    elseif name == 'INCRBY' or name == 'INCRBYFLOAT' then d = argv[3]
    elseif name == 'DECRBY' then d = neg(argv[3]) end
    if name == 'INCRBYFLOAT' then
      -- An integer as INCRBY reads it (INCRBYFLOAT takes '-0' and '007', INCRBY refuses them).
      local sg, digits = string.match(d, '^(-?)0*(%d+)$')
      if digits == '0' then d = '0' elseif digits then d = sg .. digits end
    end
    local k = call.w[1]
    -- (An integer counter's INCR has already changed the value; a float counter is
    -- recomputed from its vectors, and INCRBYFLOAT answers the recomputed value.)
    local float, v = count(k, dc, d, before, name == 'INCRBYFLOAT')
    if float and name == 'INCRBYFLOAT' and type(v) == 'string' then replies[c] = v end
    -- INCRBYFLOAT says so: applied as INCRBY elsewhere, an integer delta to a value INCRBY
    -- does not read ('007', past 64 bits) was refused there, and the DCs differed.
    if name == 'INCRBYFLOAT' then
      record({'~c', k, d, pxatOf(k), 'f'})
    else
      record({'~c', k, d, pxatOf(k)})
    end
  elseif changed and cls == 'm' then
    local k = call.w[1]
    local K = stampOf(k)
    local ty, es, add = elems(name, argv)
    local ity, ie, idelta = incrOf(name, argv)
    if ity then
      -- An element counter: the increment adds up with the other DCs' (eincr); HINCRBYFLOAT
      -- and ZINCRBY answer the value it then holds.
      eincr(ity, k, ie, idelta, dc, K, before)
      if name ~= 'HINCRBY' then
        local v = einRedis(ity, k, ie)
        if v then replies[c] = v end
      end
      record({'~i', k, ity, ie, idelta, pxatOf(k)})
    elseif ty and add then
      for _, e in ipairs(es) do
        local v = einRedis(ty, k, e)
        if v then
          local s = eadd(ty, k, e, v, dc, ts, K, pre[e])
          if s then
            record({'~a', k, ty, e, v, pxatOf(k), cmsgpack.pack(s)})
          else
            record({'~a', k, ty, e, v, pxatOf(k)})
          end
        end
      end
    elseif ty then
      for _, p in ipairs(seen) do
        erem(ty, k, p[1], p[2], K, true, dc, ts)
        record({'~x', k, ty, p[1], cmsgpack.pack(p[2]), pxatOf(k)})
      end
    else
      local pty, pes, pk = popped(name, r)
      k = pk or k
      K = stampOf(k)
      for _, e in ipairs(pes) do
        local o = eseen(pty, k, e, K)
        o.b = '=' .. K
        erem(pty, k, e, o, K, true, dc, ts)
        record({'~x', k, pty, e, cmsgpack.pack(o), pxatOf(k)})
      end
    end
  elseif changed and cls == 'd' then
    for _, k in ipairs(call.w) do
      if not found or found[k] then
        record({'~d', k, stampOf(k), withElems(observed(k), absorb(k))})
        restamp(k, stamp)
        if found then found[k] = false end -- a key named twice: one tombstone
      end
    end
  elseif changed and (cls == 's' or cls == 'a') then
    local set = nil
    if name == 'SET' and #argv == 3 and type(r) == 'table' and r['ok'] == 'OK' then set = argv[3] end
    for _, k in ipairs(call.w) do whole(k, cls == 's', set) end
  elseif changed then
    local eff
    if op == 'v' or op == 't' or op == 'w' then
      eff = argv
    elseif op == 's' then
      if type(r) == 'string' then
        eff = {'SREM', argv[2], r}
      elseif type(r) == 'table' and #r > 0 then
        eff = {'SREM', argv[2]}
        for _, m in ipairs(r) do eff[#eff + 1] = m end
      end
    elseif op == 'f' then
      eff = {'SET', argv[2], r, 'KEEPTTL'}
    elseif op == 'h' then
      eff = {'HSET', argv[2], argv[3], r}
    elseif op == 'x' and type(r) == 'string' then
      argv[at] = r
      eff = argv
    elseif op == 'k' and type(r) == 'table' then
      eff = claimed(argv, r, gone or {})
    end
    if (name == 'LMPOP' or name == 'ZMPOP') then
      eff = nil
      if type(r) == 'table' then
        -- The direction follows the numkeys keys: a key may be named LEFT or MAX.
        local pop = {LEFT = 'LPOP', RIGHT = 'RPOP', MIN = 'ZPOPMIN', MAX = 'ZPOPMAX'}
        local p = pop[string.upper(argv[3 + tonumber(argv[2])] or '')]
        if p then eff = {p, r[1], tostring(#r[2])} end
      end
    end
    local effs = {eff}
    if op == 'g' and type(r) == 'table' then
      effs = groupRead(argv, r)
    end
    for _, e in ipairs(effs) do
      if cls == 'o' then
        local k = e[2]
        if string.upper(e[1]) == 'XGROUP' then k = e[3] end
        if wasColl[k] or collection(k) then
          -- A hash, set or sorted set changed other than element by element: its state.
          whole(k, false)
        else
          local o = {'~o', k, stampOf(k), pxatOf(k)}
          for _, a in ipairs(e) do o[#o + 1] = a end
          record(o)
          restamp(k, stamp)
        end
      else
        record(e)
      end
    end
  end
end
if logged > 0 then
  entry[6] = tostring(logged)
  if #entry % 2 == 1 then entry[#entry + 1] = '' end
  addEntry(ob, ARGV[1], prev, entry, size)
end
if ARGV[3] == 'one' then return replies[1] end
return replies
end
`

// WriteArgs returns the KEYS and ARGV of the WRITE function for calls on one slot: form "one"
// when unit is false (one call; the reply is its reply), else "unit" (the reply is an array).
func WriteArgs(slot int, dc string, maxLen int64, unit bool, calls []Call) (keys []string, argv []any) {
	form := "one"
	if unit {
		form = "unit"
	}
	argv = []any{strconv.FormatInt(maxLen, 10), dc, form, strconv.Itoa(len(calls))}
	for _, c := range calls {
		keys = append(keys, c.Keys...)
		argv = append(argv, c.Plan, strconv.Itoa(len(c.Args)))
		for _, a := range c.Args {
			argv = append(argv, a)
		}
	}
	return append(keys, MetaKey(slot), CopyLockKey(slot), OutboxKey(slot)), argv
}

// EntryFields returns the field list of an outbox entry recording cmds from dc, in the
// format ParseEntry reads (for writes recorded outside the WRITE script, e.g. a user script
// run in MULTI next to its XADD). No commands makes a heartbeat entry.
func EntryFields(dc string, cmds [][]string) []string {
	f := []string{"dc", dc, "n", strconv.Itoa(len(cmds))}
	for _, c := range cmds {
		f = append(f, strconv.Itoa(len(c)))
		f = append(f, c...)
	}
	if len(f)%2 == 1 {
		f = append(f, "")
	}
	return f
}

// Write runs one prepared call through the WRITE function (FCALL, loading the library when
// the server does not have it) on slot's master and returns the command's reply.
func Write(ctx context.Context, c Doer, slot int, dc string, maxLen int64, call Call) *redis.Cmd {
	keys, argv := WriteArgs(slot, dc, maxLen, false, []Call{call})
	return FCall(ctx, c, WriteFunc, keys, argv...)
}

// WriteUnit runs calls as one unit (a MULTI/EXEC block or a script's writes), recorded as one
// outbox entry, and returns the array of their replies, as EXEC does.
func WriteUnit(ctx context.Context, c Doer, slot int, dc string, maxLen int64, calls []Call) *redis.Cmd {
	keys, argv := WriteArgs(slot, dc, maxLen, true, calls)
	return FCall(ctx, c, WriteFunc, keys, argv...)
}

// Entry is one outbox entry: the effects of one write or one unit, in order.
type Entry struct {
	// ID is the entry's stream ID in the origin DC's outbox.
	ID string
	// DC is the origin DC.
	DC string
	// TS is the entry's stamp ts (docs/convergence.md); "" for entries recorded without one
	// (user scripts, heartbeats, entries from before stamps).
	TS string
	// Cmds are the effects, each a command's argv.
	Cmds [][]string
}

// ParseEntry decodes an outbox entry's flat field list: "dc" <dc> "n" <count>, then per
// command its argc and argv, padded with "" to an even length.
func ParseEntry(id string, fields []string) (Entry, error) {
	bad := func(why string) (Entry, error) { return Entry{}, fmt.Errorf("xdc: entry %s: %s", id, why) }
	if len(fields) < 4 || fields[0] != "dc" {
		return bad("no dc/n header")
	}
	e := Entry{ID: id, DC: fields[1]}
	i := 2
	if fields[2] == "t" && len(fields) >= 6 {
		e.TS, i = fields[3], 4
	}
	if fields[i] != "n" {
		return bad("no dc/n header")
	}
	n, err := strconv.Atoi(fields[i+1])
	if err != nil || n < 0 {
		return bad("bad count " + fields[i+1])
	}
	e.Cmds = make([][]string, 0, n)
	i += 2
	for range n {
		if i >= len(fields) {
			return bad("truncated")
		}
		argc, err := strconv.Atoi(fields[i])
		if err != nil || argc < 1 || i+1+argc > len(fields) {
			return bad("bad argc " + fields[i])
		}
		e.Cmds = append(e.Cmds, fields[i+1:i+1+argc])
		i += 1 + argc
	}
	if rest := len(fields) - i; rest > 1 || (rest == 1 && fields[i] != "") {
		return bad("trailing fields")
	}
	return e, nil
}

// Doer sends a raw command (a *redis.Client, *redis.Conn or pipeline).
type Doer interface {
	Do(ctx context.Context, args ...any) *redis.Cmd
}

// ReadOutbox returns up to count entries of slot's outbox after the entry id after ("" or
// "0-0" from the start), in order. It reads the raw field list (duplicate field names make
// go-redis's XRANGE map lossy).
func ReadOutbox(ctx context.Context, c Doer, slot int, after string, count int64) ([]Entry, error) {
	start := "-"
	if after != "" && after != "0-0" {
		start = "(" + after
	}
	raw, err := c.Do(ctx, "XRANGE", OutboxKey(slot), start, "+", "COUNT", count).Slice()
	if err != nil {
		return nil, err
	}
	return parseRange(raw)
}

// parseRange parses an XRANGE reply, read raw (go-redis's field map would lose repeated
// fields), into entries.
func parseRange(raw []any) ([]Entry, error) {
	out := make([]Entry, 0, len(raw))
	for _, r := range raw {
		pair, ok := r.([]any)
		if !ok || len(pair) != 2 {
			return nil, fmt.Errorf("xdc: XRANGE: unexpected reply %v", r)
		}
		id, _ := pair[0].(string)
		vals, _ := pair[1].([]any)
		fields := make([]string, len(vals))
		for i, v := range vals {
			fields[i], _ = v.(string)
		}
		e, err := ParseEntry(id, fields)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// CompareIDs compares two stream IDs ("ms-seq", or "ms" meaning "ms-0") numerically: -1, 0
// or +1. Malformed parts compare as 0.
func CompareIDs(a, b string) int {
	am, as, _ := strings.Cut(a, "-")
	bm, bs, _ := strings.Cut(b, "-")
	if c := cmpUint(am, bm); c != 0 {
		return c
	}
	return cmpUint(as, bs)
}

// cmpUint compares two id parts as numbers, a malformed part (or one past 2^64-1) as 0. Parts
// as Redis writes them (decimal digits, no leading zero, under 20 digits) compare by length,
// then byte by byte, without parsing: the shipping loops compare ids per entry.
func cmpUint(a, b string) int {
	if plainUint(a) && plainUint(b) {
		if len(a) != len(b) {
			if len(a) < len(b) {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	}
	x, _ := strconv.ParseUint(a, 10, 64)
	y, _ := strconv.ParseUint(b, 10, 64)
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// plainUint reports whether s is a number of 1 to 19 decimal digits without a leading zero
// (one that fits a uint64 and compares by length).
func plainUint(s string) bool {
	if len(s) == 0 || len(s) > 19 || (s[0] == '0' && len(s) > 1) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// FixReply turns WRITE's marked replies back into what Redis answers: "+REDRAFT-INT <n>" into
// the integer n, "+REDRAFT-NULLARRAY" into a null array, at the top level and inside a unit's
// array. Any other reply is returned as it is (the common case costs one bytes.Contains).
func FixReply(reply []byte) []byte {
	if !bytes.Contains(reply, []byte("+REDRAFT-")) {
		return reply
	}
	v, rest, ok := resp.Parse(reply)
	if !ok || len(rest) != 0 {
		return reply
	}
	return fixValue(nil, v)
}

func fixValue(b []byte, v resp.Value) []byte {
	switch {
	case v.Type == '+' && bytes.HasPrefix(v.Str, []byte(replyIntMark)):
		b = append(b, ':')
		b = append(b, v.Str[len(replyIntMark):]...)
		return append(b, '\r', '\n')
	case v.Type == '+' && bytes.HasPrefix(v.Str, []byte(replyBitsMark)):
		if n, ok := bitsValue(string(v.Str[len(replyBitsMark):])); ok {
			b = append(b, ':')
			b = append(b, n...)
			return append(b, '\r', '\n')
		}
		return append(b, v.Raw...)
	case v.Type == '+' && string(v.Str) == replyNullArrayMark:
		return append(b, "*-1\r\n"...)
	case v.Type == '*' && v.Int > 0:
		b = resp.AppendArray(b, len(v.Elems))
		for _, e := range v.Elems {
			b = fixValue(b, e)
		}
		return b
	}
	return append(b, v.Raw...)
}
