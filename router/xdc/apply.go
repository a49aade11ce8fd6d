package xdc

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redraft/redraft/router/resp"
)

// APPLY, the receiving side of replication: the scripts that apply another DC's outbox
// entries exactly once, by the rules of docs/convergence.md.

// applyDefsLua defines what both APPLY functions share (library.go): applyEntry(src, id, prev,
// ts, cmds, lockv, lock, inbox) applies one entry of DC src (a full copy re-applies this DC's
// own entries as "~<dc>") to the slot whose metadata and pull hashes are meta and pull (set by
// the caller) and whose copy lock and inbox are lock and inbox. While the copy lock is set by
// someone else than lockv (a full copy is reading or replacing the slot) it answers TRYAGAIN
// and changes nothing: an entry applied in the middle of a copy would be half in the snapshot
// or overwritten by it. An entry at or below the inbox's id for src answers "skip"; one whose
// predecessor is not the inbox's id (prev, "" not to check) answers a GAP error; otherwise each
// effect is applied (a failing one does not stop the others) and the inbox records the id in
// the same script, so a retried entry is never applied twice. Nothing goes to the outbox. It
// returns five values, "applied", errors, first error, superseded, conflicts (no table: the
// batch APPLY sums them per entry): effects older than the key's state here, and effects that
// could not be applied because the key's state here is not the one they saw (recorded in the
// pull hash); or "skip", or an error table. Its parts serve the APPLY of a group log too
// (applylog.go), which keeps no inbox per slot: admit (the copy lock), badID and effects (the
// entry's effects). readCmds(ARGV, i, n) reads n effects (argc, argv...) from ARGV at i and
// returns them and the index after them.
const applyDefsLua = `
local function num(a, b)
  -- Leading zeros stripped only where there are any (ids Redis makes have none).
  if string.byte(a) == 48 then a = (string.gsub(a, '^0+', '')) end
  if string.byte(b) == 48 then b = (string.gsub(b, '^0+', '')) end
  if #a ~= #b then return #a < #b and -1 or 1 end
  if a == b then return 0 end
  return a < b and -1 or 1
end
-- cmpid compares two stream ids (ms-seq, checked by the caller): by the lengths and bytes of
-- their parts as Redis writes them (no leading zeros), numerically where either has one.
local function cmpid(a, b)
  if a == b then return 0 end
  local ia, ib = string.find(a, '-', 1, true), string.find(b, '-', 1, true)
  if string.byte(a) == 48 or string.byte(b) == 48 or string.byte(a, ia + 1) == 48 or string.byte(b, ib + 1) == 48 then
    local c = num(string.sub(a, 1, ia - 1), string.sub(b, 1, ib - 1))
    if c ~= 0 then return c end
    return num(string.sub(a, ia + 1), string.sub(b, ib + 1))
  end
  if ia ~= ib then return ia < ib and -1 or 1 end
  local ma, mb = string.sub(a, 1, ia), string.sub(b, 1, ib)
  if ma ~= mb then return ma < mb and -1 or 1 end
  if #a ~= #b then return #a < #b and -1 or 1 end
  return a < b and -1 or 1
end
-- expireAs gives k the expiry it had at the origin after the effect (px: absolute ms; -1
-- none, -2 gone): a key that had expired here before the effect arrived, and that the effect
-- made again, expires with the origin's.
local function expireAs(k, px)
  if px and tonumber(px) and tonumber(px) > 0 then redis.call('PEXPIREAT', k, px) end
end
local function readCmds(ARGV, i, n)
  local cmds = {}
  for c = 1, n do
    local argc = tonumber(ARGV[i])
    local argv = {}
    for j = 1, argc do argv[j] = ARGV[i + j] end
    cmds[c] = argv
    i = i + 1 + argc
  end
  return cmds, i
end
-- quickSet applies argv, the most common effect: a whole string that had seen no counter (V
-- empty), of a key without element states (the caller has checked), in three or four Lua
-- calls instead of six (the stamp, counter vector and vector-seen in one HMGET; no adopt, no
-- element rebase). It answers nil, having changed nothing, when the key has a counter vector;
-- otherwise the failed effects, the first error and the superseded ones, as the full path
-- counts them.
local function quickSet(argv, stamp)
  local k = argv[2]
  local m = redis.call('HMGET', meta, 's:' .. k, 'c:' .. k, 'v:' .. k)
  if m[2] then return nil end
  stamps[k] = m[1] or ''
  if not newer(stamp, stamps[k]) then return 0, '', 1 end
  local r = putState('s', k, argv[5], argv[6])
  if m[3] then redis.call('HDEL', meta, 'v:' .. k) end
  restamp(k, stamp)
  if type(r) == 'table' and r['err'] then return 1, r['err'], 0 end
  return 0, '', 0
end
-- admit checks an entry's copy lock: nil and an error table while someone else than lockv
-- holds lock, else whether the entry may take quickSet (one whole string that had seen no
-- counter, while the caller holds no copy lock: the copy lock and the key's element hash are
-- then checked in one call, and either set takes the full path).
local function admit(cmds, lockv, lock)
  local one = cmds[1]
  local quick = lockv == '' and #cmds == 1 and one[1] == '~s' and #one == 6 and one[4] == '' and
    redis.call('EXISTS', lock, ekey(one[2])) == 0
  if not quick then
    local held = redis.call('GET', lock)
    if held and held ~= lockv then
      return nil, {err = 'TRYAGAIN redraft: the slot is being copied between DCs, retry shortly'}
    end
  end
  return quick
end
local function badID(id)
  if not string.match(id, '^%d+-%d+$') then return {err = 'ERR redraft: bad entry id ' .. id} end
end
-- effectsOf applies an admitted entry's effects (cmds) of DC src, stamped ts, and returns the
-- failed effects, the first failure, the superseded effects and the conflicts.
local function effectsOf(src, ts, cmds, quick)
  local origin = src
  if string.byte(src) == 126 then origin = string.sub(src, 2) end
  local stamp = ''
  if ts ~= '' then stamp = ts .. ':' .. origin end
  if quick then
    local nerr, first, superseded = quickSet(cmds[1], stamp)
    if nerr then return nerr, first, superseded, 0 end
  end
  local nerr, first, superseded, conflicts = 0, '', 0, 0
  -- The keys this entry restamped: its effects share one stamp, so a later effect on such a
  -- key meets its own stamp there, which is not newer, and applies all the same (a unit's
  -- SET k v and EXPIRE k 60, DEL h and HSET h f v).
  local mine, before = {}, {}
  local function own(k)
    if not mine[k] then before[k] = stampOf(k) end
    restamp(k, stamp)
    mine[k] = true
  end
  local function failed(r)
    if type(r) == 'table' and r['err'] then
      nerr = nerr + 1
      if first == '' then first = r['err'] end
    end
  end
  for _, argv in ipairs(cmds) do
    local kind, k = argv[1], argv[2]
    if kind == '~o' then
      local cur = stampOf(k)
      if cur == argv[3] then
        local cmd = {}
        for j = 5, #argv do cmd[#cmd + 1] = argv[j] end
        failed(redis.pcall(unpack(cmd)))
        expireAs(k, argv[4])
        own(k)
      elseif not newer(stamp, cur) then
        superseded = superseded + 1
      elseif src == origin then
        local p = redis.call('HGET', pull, k)
        if not p or newer(stamp, p) then redis.call('HSET', pull, k, stamp) end
        conflicts = conflicts + 1
      else
        conflicts = conflicts + 1
      end
    elseif kind == '~s' or kind == '~r' or kind == '~d' then
      if mine[k] or newer(stamp, stampOf(k)) then
        local V, E = splitV(argv[4])
        failed(putState(string.sub(kind, 2), k, argv[5], argv[6]))
        local e = adopt(k, V)
        if e then failed({err = e}) end
        own(k)
        erebase(k, stamp, E)
      else
        superseded = superseded + 1
      end
    elseif kind == '~i' then
      -- An element increment counts whatever the key's stamp (a whole state that had not
      -- seen it keeps it: erebase); where the key is another type it is only counted.
      eincr(argv[3], k, argv[4], argv[5], origin, stampOf(k), nil)
      expireAs(k, argv[6])
    elseif kind == '~a' or kind == '~x' then
      local ty, K = argv[3], stampOf(k)
      local have = redis.call('TYPE', k)['ok']
      if not mine[k] and not newer(stamp, K) then
        superseded = superseded + 1
      elseif have ~= 'none' and have ~= ty then
        -- The key is another type here than at the origin: the origin's state is newer.
        if src == origin then
          local p = redis.call('HGET', pull, k)
          if not p or newer(stamp, p) then redis.call('HSET', pull, k, stamp) end
        end
        conflicts = conflicts + 1
      elseif kind == '~a' then
        local seen = nil
        if argv[7] then seen = cmsgpack.unpack(argv[7]) end
        -- An add after a whole write of the same entry (DEL h, HSET h f v) settles against
        -- the key's stamp before the entry: at its own stamp it would not count, and the
        -- element the origin holds would go.
        eadd(ty, k, argv[4], argv[5], origin, tsOf(stamp), mine[k] and before[k] or K, nil, seen)
        expireAs(k, argv[6])
      else
        erem(ty, k, argv[4], cmsgpack.unpack(argv[5]), K, nil, origin, tsOf(stamp))
        expireAs(k, argv[6])
      end
    elseif kind == '~c' then
      local float, r = count(k, origin, argv[3], nil, argv[5] == 'f')
      if float then
        failed(r)
        expireAs(k, argv[4])
      else
        local n = vecParse(redis.call('HGET', meta, 'c:' .. k))[origin][1]
        local seen = vecParse(redis.call('HGET', meta, 'v:' .. k))[origin]
        if n > (seen and seen[1] or 0) then
          failed(redis.pcall('INCRBY', k, argv[3]))
          expireAs(k, argv[4])
        end
      end
    else
      failed(redis.pcall(unpack(argv)))
    end
  end
  return nerr, first, superseded, conflicts
end
-- effects is effectsOf with an error raised in it (an effect the Lua cannot read, from a buggy
-- or other build's peer) counted as one failed effect, as a failed command is. Raised, it
-- stopped the whole call with the position unmoved, and every retry applied the call's entries
-- before it again (a count effect counted once more each time) and never passed it.
local function effects(src, ts, cmds, quick)
  local ok, nerr, first, superseded, conflicts = pcall(effectsOf, src, ts, cmds, quick)
  if ok then return nerr, first, superseded, conflicts end
  if type(nerr) == 'table' then nerr = nerr['err'] end -- a server error, as some Redis 7 raise it
  return 1, 'ERR redraft: an entry not applied in full: ' .. tostring(nerr), 0, 0
end
local function applyEntry(src, id, prev, ts, cmds, lockv, lock, inbox)
  local quick, refused = admit(cmds, lockv, lock)
  refused = refused or badID(id)
  if refused then return refused end
  local last = redis.call('HGET', inbox, src)
  if last and cmpid(id, last) <= 0 then return 'skip' end
  if prev ~= '' and (last or '') ~= prev then
    return {err = 'GAP redraft: last applied from ' .. src .. ' is ' .. (last or 'none') .. ', entry follows ' .. prev}
  end
  local nerr, first, superseded, conflicts = effects(src, ts, cmds, quick)
  redis.call('HSET', inbox, src, id)
  return 'applied', nerr, first, superseded, conflicts
end
`

// ApplyArgs returns the KEYS and ARGV of the APPLY function for entry e on slot; prev is the id
// of the entry before e in the origin's outbox ("" not to check for a gap), lock the value of
// the slot's copy lock the caller holds ("" for none).
func ApplyArgs(slot int, e Entry, prev, lock string) (keys []string, argv []any) {
	argv = []any{e.DC, e.ID, prev, strconv.Itoa(len(e.Cmds)), lock, e.TS}
	for _, c := range e.Cmds {
		keys = append(keys, EffectKeys(c)...)
		argv = append(argv, strconv.Itoa(len(c)))
		for _, a := range c {
			argv = append(argv, a)
		}
	}
	return append(keys, MetaKey(slot), PullKey(slot), CopyLockKey(slot), InboxKey(slot)), argv
}

// Applied is the outcome of APPLY for one entry.
type Applied struct {
	// Skipped reports that the entry had been applied already; nothing ran.
	Skipped bool
	// Errors counts effects that failed (the data diverged); FirstError is the first message.
	Errors     int
	FirstError string
	// Superseded counts effects older than the state of their key here (not applied, by
	// the rules); Conflicts those whose key's state here differs from the one they saw at
	// their origin (recorded for a pull).
	Superseded, Conflicts int
}

// ErrGap is returned by Apply when the entry does not follow the last one applied from its
// DC: an entry was lost or the batch is out of order.
var ErrGap = errors.New("xdc: entry does not follow the last applied one")

// Apply applies entry e of the origin DC's outbox on slot's master in this DC (through the
// router, later), exactly once; prev is the id of the entry before e ("" not to check).
func Apply(ctx context.Context, c Doer, slot int, e Entry, prev string) (Applied, error) {
	keys, argv := ApplyArgs(slot, e, prev, "")
	r, err := FCall(ctx, c, ApplyFunc, keys, argv...).Result()
	if err != nil {
		if strings.HasPrefix(err.Error(), "GAP ") {
			return Applied{}, fmt.Errorf("%w: %s", ErrGap, err)
		}
		return Applied{}, err
	}
	if r == "skip" {
		return Applied{Skipped: true}, nil
	}
	a, ok := r.([]any)
	if !ok || len(a) != 5 {
		return Applied{}, fmt.Errorf("xdc: APPLY: unexpected reply %v", r)
	}
	n, _ := a[1].(int64)
	first, _ := a[2].(string)
	sup, _ := a[3].(int64)
	con, _ := a[4].(int64)
	return Applied{Errors: int(n), FirstError: first, Superseded: int(sup), Conflicts: int(con)}, nil
}

// ApplyBatchArgs returns the KEYS and ARGV of the batch APPLY function for batches from DC src;
// lock is the value of the copy lock the caller holds ("" for none).
func ApplyBatchArgs(src, lock string, batches []WireBatch) (keys []string, argv []any) {
	call, keys := ApplyBatchCall(src, lock, batches)
	rest := call[3+len(keys):]
	argv = make([]any, len(rest))
	for i, a := range rest {
		argv[i] = a
	}
	return keys, argv
}

// ApplyBatchCall is the whole batch APPLY call, FCALL <ApplyBatchFunc> <numkeys> KEYS ARGV,
// as the receiving node sends it, and its KEYS: one slice, sized once. (Built as ApplyBatchArgs' []any, it
// cost the receiving node an allocation per argument and a growing slice per call; with the
// command's encoding, a sixth of its CPU flat out: docs/replication.md, session 17.)
func ApplyBatchCall(src, lock string, batches []WireBatch) (call, keys []string) {
	keys = make([]string, 0, 6*len(batches))
	na := 3
	for _, b := range batches {
		na += 2
		for _, e := range b.Entries {
			na += 3
			for _, c := range e.Cmds {
				keys = append(keys, EffectKeys(c)...)
				na += 1 + len(c)
			}
		}
	}
	for _, b := range batches {
		keys = append(keys, MetaKey(b.Slot), PullKey(b.Slot), CopyLockKey(b.Slot), InboxKey(b.Slot))
	}
	call = make([]string, 0, 3+len(keys)+na)
	call = append(call, "FCALL", ApplyBatchFunc, strconv.Itoa(len(keys)))
	call = append(call, keys...)
	call = append(call, src, lock, strconv.Itoa(len(batches)))
	for _, b := range batches {
		call = append(call, b.Prev, strconv.Itoa(len(b.Entries)))
		for _, e := range b.Entries {
			call = append(call, e.ID, e.TS, strconv.Itoa(len(e.Cmds)))
			for _, c := range e.Cmds {
				call = append(call, strconv.Itoa(len(c)))
				call = append(call, c...)
			}
		}
	}
	return call, keys
}

// BatchApplied is the batch APPLY's outcome for one slot's entries.
type BatchApplied struct {
	// Done counts the entries applied or skipped (already applied), from the first.
	Done int
	// Refused is why the entry after them was not applied ("" when all were): a GAP,
	// TRYAGAIN or bad-id error.
	Refused string
	// Errors, FirstError, Superseded and Conflicts sum Applied's figures over the batch.
	Errors     int
	FirstError string
	Superseded int
	Conflicts  int
}

// ParseApplyBatch reads the batch APPLY's reply for n batches.
func ParseApplyBatch(v resp.Value, n int) ([]BatchApplied, error) {
	if v.IsError() {
		return nil, errors.New(string(v.Str))
	}
	if len(v.Elems) != n {
		return nil, fmt.Errorf("xdc: APPLY: %d results for %d batches", len(v.Elems), n)
	}
	out := make([]BatchApplied, n)
	for i, r := range v.Elems {
		if r.Type == ':' {
			out[i] = BatchApplied{Done: int(r.Int)} // all applied or skipped, nothing to report
			continue
		}
		if len(r.Elems) != 6 {
			return nil, fmt.Errorf("xdc: APPLY: unexpected result %q", r.Raw)
		}
		out[i] = BatchApplied{Done: int(r.Elems[0].Int), Refused: string(r.Elems[1].Str), Errors: int(r.Elems[2].Int),
			FirstError: string(r.Elems[3].Str), Superseded: int(r.Elems[4].Int), Conflicts: int(r.Elems[5].Int)}
	}
	return out, nil
}
