package xdc

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/redraft/redraft/router/resp"
)

// applyLogLua is the APPLY function for a run of one source log (library.go):
//
//	KEYS: every effect's key, then per slot of the call its metadata hash, pull hash and copy
//	      lock, then the log's inbox (LogInboxKey)
//	ARGV: source DC, the copy lock's value this caller holds, prev, last, the number of slots,
//	      the slots, the number of entries, then per entry its slot's index among the slots
//	      (from 1), id, stamp ts, number of effects and effects (argc, argv...); a handoff
//	      entry has slot index 0 and one effect, HandoffCmd, the named group's inbox key
//	      (among KEYS, with the effects'), the id and the id of the entry before it in the
//	      log ("" when unknown), where a group held at the handoff then stands
//
// The call covers the log from after prev ("" for its start) through last, and holds the
// entries of that range whose slots this group serves, in the log's order; a group with no
// entry in the range gets the call all the same, so that every group's position advances with
// the log. The group's position is the lowest of its fields; below prev the call answers a
// GAP (entries this group applied were lost, with a failover here, or never came), with the
// position. Otherwise each entry above its slot's field (the slot's "s<slot>" when it has one,
// else "f") is admitted and applied as APPLY's (applyEntry), the others skipped, until one is
// refused (another's copy lock, a bad id, the last entry past last, a handoff whose group's
// log this group has not applied through its id: a HOLD); then every field moves up to
// what the call passed, and a slot's field that reached "f" is dropped (one below it still
// lags, one above it is ahead: a slot moved in from a group further on). It answers the
// group's position after the call (a bulk string: the common case), or, when there is more
// to say, {position, refusal, failed effects, first failure, superseded, conflicts}.
//
// The order of the entries is the caller's to check (HandleLog, checkRange): each after the
// one before it, the first after prev. Compared here per entry, it cost a tenth of the call's
// instructions (two id comparisons of string operations per entry); the form of each id is
// still checked, so that no comparison of an entry's id with a slot's field can fail half way.
const applyLogLua = `
redis.register_function('@apply_log', function(KEYS, ARGV)
  beginApply()
  local src, lockv, prev, last, ns = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
  local inbox, kb = KEYS[#KEYS], #KEYS - 1 - 3 * ns
  local bad = badID(last) or (prev ~= '' and badID(prev))
  if bad then return bad end
  local function read(key)
    local h = redis.call('HGETALL', key)
    local f, sf = nil, {}
    for j = 1, #h, 2 do
      if h[j] == 'f' then f = h[j + 1] else sf[string.sub(h[j], 2)] = h[j + 1] end
    end
    return f, sf
  end
  local f, sf = read(inbox)
  local function position(f, sf)
    local pos = f
    for _, v in pairs(sf) do
      if pos and cmpid(v, pos) < 0 then pos = v end
    end
    return pos
  end
  local pos = position(f, sf)
  if prev ~= '' and (not pos or cmpid(pos, prev) < 0) then
    return {pos or '', 'GAP redraft: applied ' .. src .. "'s log through " .. (pos or 'none') .. ', the entries follow ' .. prev, 0, '', 0, 0}
  end
  if pos and cmpid(pos, last) >= 0 then return pos end
  local slots = {}
  for j = 1, ns do slots[j] = ARGV[5 + j] end
  -- Each entry is compared with its slot's field only where that can skip it: when the group
  -- has slots' fields or stands past prev (a range sent again). Otherwise every entry, after
  -- prev in the log, is above the group's position.
  local compare = next(sf) ~= nil or (f and (prev == '' or cmpid(f, prev) > 0))
  local i, ne = 7 + ns, tonumber(ARGV[6 + ns])
  local passed, refused, nerr, first, sup, con = prev, '', 0, '', 0, 0
  for n = 1, ne do
    local si, id, ts, nc = tonumber(ARGV[i]), ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
    local cmds
    cmds, i = readCmds(ARGV, i + 4, nc)
    if refused == '' then
      local bad = badID(id)
      if bad then
        refused = bad.err
      elseif n == ne and cmpid(id, last) > 0 then
        refused = 'ERR redraft: entry ' .. id .. ' past the range, through ' .. last
      elseif si == 0 then
        -- A handoff (HandoffCmd, its group's inbox key, an id): passed once this group applied
        -- that group's log through the id.
        local hp = position(read(cmds[1][2]))
        if not hp or cmpid(hp, cmds[1][3]) < 0 then
          refused = 'HOLD redraft: entry ' .. id .. ' waits until ' .. cmds[1][2] .. ' reaches ' .. cmds[1][3] .. ' (at ' .. (hp or 'none') .. ')'
          -- The group stands at the entry before the handoff in the log (its fourth argument,
          -- when given): the range's entries between are other groups'.
          local b = cmds[1][4]
          if b and b ~= '' and cmpid(b, id) < 0 and (passed == '' or cmpid(b, passed) > 0) then passed = b end
        else
          passed = id
        end
      else
        local thr = compare and (sf[slots[si]] or f)
        if not thr or cmpid(id, thr) > 0 then
          meta, pull = KEYS[kb + 3 * si - 2], KEYS[kb + 3 * si - 1]
          local quick, no = admit(cmds, lockv, KEYS[kb + 3 * si])
          if no then
            refused = no.err
          else
            local ne, fe, su, co = effects(src, ts, cmds, quick)
            nerr, sup, con = nerr + ne, sup + su, con + co
            if first == '' then first = fe end
          end
        end
        if refused == '' then passed = id end
      end
    end
  end
  if refused == '' then passed = last end
  if passed ~= '' then
    if not f or cmpid(passed, f) > 0 then
      f = passed
      redis.call('HSET', inbox, 'f', f)
    end
    for s, v in pairs(sf) do
      if cmpid(v, passed) < 0 then v = passed end
      if cmpid(v, f) == 0 then
        redis.call('HDEL', inbox, 's' .. s)
        sf[s] = nil
      elseif v ~= sf[s] then
        redis.call('HSET', inbox, 's' .. s, v)
        sf[s] = v
      end
    end
  end
  pos = position(f, sf) or ''
  if refused == '' and nerr == 0 and sup == 0 and con == 0 then return pos end
  return {pos, refused, nerr, first, sup, con}
end)
-- LOG_START: after a full copy of a source group (groupcopy.go), this group stands at ARGV[1]
-- in the log whose inbox is KEYS[1]: field f becomes it, and a slot's field below it goes
-- (the copy set each of its slots' fields at or above it), unless the slot is in one of the
-- source group's ranges, ARGV[2..] (from, to pairs): such a field was lowered after the copy
-- replaced the slot, by a copy from another DC that replaced it again with its own state
-- and its own positions in this log, and the entries after it must come again. It answers
-- ARGV[1].
redis.register_function('@log_start', function(KEYS, ARGV)
  local at = ARGV[1]
  local bad = badID(at)
  if bad then return bad end
  local function copied(slot)
    local n = tonumber(slot)
    if not n then return false end
    for j = 2, #ARGV - 1, 2 do
      if n >= tonumber(ARGV[j]) and n <= tonumber(ARGV[j + 1]) then return true end
    end
    return false
  end
  local h = redis.call('HGETALL', KEYS[1])
  for j = 1, #h, 2 do
    if h[j] ~= 'f' and cmpid(h[j + 1], at) < 0 and not copied(string.sub(h[j], 2)) then
      redis.call('HDEL', KEYS[1], h[j])
    end
  end
  redis.call('HSET', KEYS[1], 'f', at)
  return at
end)
`

// ApplyLogFunc is the APPLY function for a run of one source log (applyLogLua).
var ApplyLogFunc = libraryName + "_apply_log"

// LogStartFunc sets where a receiving group stands in a source log after a full copy of the
// source's group (applyLogLua).
var LogStartFunc = libraryName + "_log_start"

// ApplyLogCall is the whole call of ApplyLogFunc, FCALL <ApplyLogFunc> <numkeys> KEYS ARGV,
// for a receiving group: the entries of source log l after prev through last that this group's
// slots hold (none is a call too: it advances the group's position); lock is the value of the
// copy lock the caller holds ("" for none).
func ApplyLogCall(l LogID, lock, prev, last string, entries []LogEntry) []string {
	index := make(map[int]int) // slot -> its index in the call, from 1
	var slots []int
	na, nk := 0, 1
	for _, e := range entries {
		na += 4
		if _, _, ok := IsHandoff(e.Cmds); ok {
			nk++
			na += 5
			continue
		}
		if _, ok := index[e.Slot]; !ok {
			slots = append(slots, e.Slot)
			index[e.Slot] = len(slots)
		}
		for _, c := range e.Cmds {
			nk += len(EffectKeys(c))
			na += 1 + len(c)
		}
	}
	nk += 3 * len(slots)
	call := make([]string, 0, 3+nk+7+len(slots)+na)
	call = append(call, "FCALL", ApplyLogFunc, strconv.Itoa(nk))
	for _, e := range entries {
		if g, _, ok := IsHandoff(e.Cmds); ok {
			call = append(call, LogInboxKey(LogID{DC: l.DC, Group: g}))
			continue
		}
		for _, c := range e.Cmds {
			call = append(call, EffectKeys(c)...)
		}
	}
	for _, s := range slots {
		call = append(call, MetaKey(s), PullKey(s), CopyLockKey(s))
	}
	call = append(call, LogInboxKey(l), l.DC, lock, prev, last, strconv.Itoa(len(slots)))
	for _, s := range slots {
		call = append(call, strconv.Itoa(s))
	}
	call = append(call, strconv.Itoa(len(entries)))
	for _, e := range entries {
		if g, through, ok := IsHandoff(e.Cmds); ok {
			before := ""
			if c := e.Cmds[0]; len(c) == 4 {
				before = c[3]
			}
			call = append(call, "0", e.ID, e.TS, "1", "4", HandoffCmd, LogInboxKey(LogID{DC: l.DC, Group: g}), through, before)
			continue
		}
		call = append(call, strconv.Itoa(index[e.Slot]), e.ID, e.TS, strconv.Itoa(len(e.Cmds)))
		for _, c := range e.Cmds {
			call = append(call, strconv.Itoa(len(c)))
			call = append(call, c...)
		}
	}
	return call
}

// LogApplied is ApplyLogFunc's outcome for one receiving group.
type LogApplied struct {
	// Position is where the group stands in the log after the call: every entry of its slots
	// through it is applied ("" for none).
	Position string
	// Refused is why the call stopped before its end ("" when it did not): a GAP (the group's
	// position is below the call's prev), TRYAGAIN, a bad id or an entry out of order.
	Refused string
	// Errors, FirstError, Superseded and Conflicts sum Applied's figures over the call.
	Errors     int
	FirstError string
	Superseded int
	Conflicts  int
}

// Gap reports whether the call was refused because the group's position is below its prev.
func (a LogApplied) Gap() bool { return len(a.Refused) >= 4 && a.Refused[:4] == "GAP " }

// ParseApplyLog reads ApplyLogFunc's reply.
func ParseApplyLog(v resp.Value) (LogApplied, error) {
	switch {
	case v.IsError():
		return LogApplied{}, errors.New(string(v.Str))
	case v.Type == '$':
		return LogApplied{Position: string(v.Str)}, nil
	case len(v.Elems) == 6:
		e := v.Elems
		return LogApplied{Position: string(e[0].Str), Refused: string(e[1].Str), Errors: int(e[2].Int),
			FirstError: string(e[3].Str), Superseded: int(e[4].Int), Conflicts: int(e[5].Int)}, nil
	}
	return LogApplied{}, fmt.Errorf("xdc: APPLY of a log: unexpected reply %q", v.Raw)
}
