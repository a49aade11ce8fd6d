package xdc

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/internal/testredis"
	"github.com/redraft/redraft/migrate"
)

// groupLogLib is the server side of the design candidate "one log per group"
// (docs/replication.md, "Next: one log per group"), reduced to what that design could not do
// without, for a plain SET: the measured floor of its Redis CPU per write, to set against
// WRITE's and the batch APPLY's (BenchmarkWriteServer, BenchmarkApplyServer). Not used by
// redraft.
//
// gw (WRITE): the clock, the slot's copy lock and the key's element hash (one EXISTS), the
// key's stamp and counter vector (one HMGET), the SET, one XADD to the group's log carrying
// the slot and the effect, the new stamp (one HSET). No per-slot outbox, no feed entry, no
// outbox's last entry (the log's order is the group's; the slot rides in the entry).
//
// ga (APPLY): one call per run of one source group's log: the last applied id of that log
// (one HGET) and the gap check once per call; per entry the slot's copy lock and the key's
// element hash (one EXISTS), the key's stamp (one HMGET), the SET when newer, the new stamp
// (one HSET); the last applied id once per call (one HSET).
//
// gas is ga with the receiving side docs/replication.md, session 23, worked out: the inbox
// (one hash per source DC) read whole once per call, a field per source log and one per
// recently moved-in slot ("<log>/<slot>", what this group's migration copied from the slot's
// old group), and each entry skipped when at or below its slot's field; ids are compared as
// Redis writes them, by length then bytes.
const groupLogLib = `#!lua name=grouplog
local function tsOf(s) return tonumber(string.match(s, '^%d+')) or 0 end
redis.register_function('gw', function(KEYS, ARGV)
  local t = redis.call('TIME')
  local ts = (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)) * 4096
  local k, meta, lock, log = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
  local dc, v, slot = ARGV[1], ARGV[2], ARGV[3]
  if redis.call('EXISTS', lock, '__redraft:e:' .. k) ~= 0 then return nil end
  local m = redis.call('HMGET', meta, 's:' .. k, 'c:' .. k)
  if m[2] then return nil end
  local prior = m[1] or ''
  local x = tsOf(prior)
  if x >= ts then ts = x + 1 end
  local tss = string.format('%.0f', ts)
  local r = redis.pcall('SET', k, v)
  redis.call('XADD', log, 'MAXLEN', '~', 100000, '*', 's', slot, 'dc', dc, 't', tss, 'n', '1', '6', '~s', k, prior, '', v, '-1', '')
  redis.call('HSET', meta, 's:' .. k, tss .. ':' .. dc)
  return r
end)
redis.register_function('ga', function(KEYS, ARGV)
  local n, inbox = tonumber(ARGV[4]), KEYS[#KEYS]
  if (redis.call('HGET', inbox, ARGV[1]) or '') ~= ARGV[2] then
    return redis.error_reply('GAP')
  end
  for i = 1, n do
    local k, meta, lock = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
    local stamp, v = ARGV[3 + 2 * i], ARGV[4 + 2 * i]
    if redis.call('EXISTS', lock, '__redraft:e:' .. k) == 0 then
      local m = redis.call('HMGET', meta, 's:' .. k, 'c:' .. k, 'v:' .. k)
      if not m[1] or tsOf(m[1]) < tsOf(stamp) then
        redis.call('SET', k, v)
        redis.call('HSET', meta, 's:' .. k, stamp)
      end
    end
  end
  redis.call('HSET', inbox, ARGV[1], ARGV[3])
  return n
end)
redis.register_function('gas', function(KEYS, ARGV)
  local n, inbox = tonumber(ARGV[4]), KEYS[#KEYS]
  local f = redis.call('HGETALL', inbox)
  local at = {}
  for i = 1, #f, 2 do at[f[i]] = f[i + 1] end
  if (at[ARGV[1]] or '') ~= ARGV[2] then
    return redis.error_reply('GAP')
  end
  local applied = 0
  for i = 1, n do
    local k, meta, lock = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
    local slot, id, stamp, v = ARGV[1 + 4 * i], ARGV[2 + 4 * i], ARGV[3 + 4 * i], ARGV[4 + 4 * i]
    local w = at[ARGV[1] .. '/' .. slot]
    if not w or #id > #w or (#id == #w and id > w) then
      if redis.call('EXISTS', lock, '__redraft:e:' .. k) == 0 then
        local m = redis.call('HMGET', meta, 's:' .. k, 'c:' .. k, 'v:' .. k)
        if not m[1] or tsOf(m[1]) < tsOf(stamp) then
          redis.call('SET', k, v)
          redis.call('HSET', meta, 's:' .. k, stamp)
        end
      end
      applied = applied + 1
    end
  end
  redis.call('HSET', inbox, ARGV[1], ARGV[3])
  return applied
end)
`

// BenchmarkGroupLogWrite is BenchmarkWriteServer for groupLogLib's gw: the server's usec per
// one-SET write, pipelined 64 calls at a time, keys of different slots.
// `go test -run '^$' -bench 'GroupLog|WriteServer$|ApplyServer$' ./router/xdc/`.
func BenchmarkGroupLogWrite(b *testing.B) {
	ctx := context.Background()
	c := groupLogServer(b)
	value := strings.Repeat("v", 64)
	call := func(i int) []any {
		k := "key:" + strconv.Itoa(i)
		s := migrate.SlotString(k)
		return []any{"FCALL", "gw", 4, k, MetaKey(s), CopyLockKey(s), "log", "dc1", value, strconv.Itoa(s)}
	}
	for i := range 20000 { // every key and metadata hash exists before the measurement
		if err := c.Do(ctx, call(-1-i)...).Err(); err != nil {
			b.Fatal(err)
		}
	}
	runFCalls(b, c, "server-us/write", func(i, _ int) []any { return call(i % 20000) }, 1, 64, 0)
}

// BenchmarkGroupLogApply is BenchmarkApplyServer for groupLogLib's ga: the server's usec per
// entry, 25 entries of random slots to a call, 8 calls pipelined.
func BenchmarkGroupLogApply(b *testing.B) {
	value := strings.Repeat("v", 64)
	benchGroupLogApply(b, groupLogServer(b), "ga", func(seq, _ int) []any {
		return []any{strconv.Itoa(seq*4096) + ":dc2", value}
	})
}

// BenchmarkGroupLogApplyMovedIn is BenchmarkGroupLogApply for gas, the inbox read once per
// call with 64 moved-in slots' fields beside the source log's (a receiving group just after
// migrations): every entry's id is compared with a slot's field (its slot's block of 256
// shares the field of the block's first slot).
func BenchmarkGroupLogApplyMovedIn(b *testing.B) {
	c := groupLogServer(b)
	const block = migrate.NumSlots / 64
	for s := 0; s < migrate.NumSlots; s += block {
		if err := c.HSet(context.Background(), "inbox", "dc1/"+strconv.Itoa(s), "1-0").Err(); err != nil {
			b.Fatal(err)
		}
	}
	value := strings.Repeat("v", 64)
	benchGroupLogApply(b, c, "gas", func(seq, slot int) []any {
		return []any{strconv.Itoa(slot - slot%block), strconv.Itoa(seq) + "-0", strconv.Itoa(seq*4096) + ":dc2", value}
	})
}

// benchGroupLogApply runs groupLogLib's fn from source DC dc1 as BenchmarkApplyServer runs
// APPLY, each call's entries following the last one's; entry(seq, slot) is the ARGV of entry
// seq, whose key is of slot.
func benchGroupLogApply(b *testing.B, c *redis.Client, fn string, entry func(seq, slot int) []any) {
	seq, last := 0, ""
	call := func(n int) []any {
		keys := make([]any, 0, 3*n+1)
		argv := []any{"dc1", last, "", strconv.Itoa(n)}
		for range n {
			seq++
			k := "key:" + strconv.Itoa(seq%20000)
			s := migrate.SlotString(k)
			keys = append(keys, k, MetaKey(s), CopyLockKey(s))
			argv = append(argv, entry(seq, s)...)
		}
		last = strconv.Itoa(seq) + "-0"
		argv[2] = last
		keys = append(keys, "inbox")
		return append(append([]any{"FCALL", fn, len(keys)}, keys...), argv...)
	}
	for range 20000 / 25 { // every key and metadata hash exists before the measurement
		if err := c.Do(context.Background(), call(25)...).Err(); err != nil {
			b.Fatal(err)
		}
	}
	runFCalls(b, c, "server-us/entry", func(_, n int) []any { return call(n) }, 25, 8, 0)
}

// groupLogServer starts a redis-server with groupLogLib loaded and returns a client of it.
func groupLogServer(b *testing.B) *redis.Client {
	c := client(b, testredis.Start(b))
	if err := c.Do(context.Background(), "FUNCTION", "LOAD", "REPLACE", groupLogLib).Err(); err != nil {
		b.Fatal(err)
	}
	return c
}
