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

// groupLogLib is the sending side of the design candidate "one log per group"
// (docs/replication.md, "Next: one log per group"), reduced to what that design could not do
// without, for a plain SET: the measured floor of its Redis CPU per write, to set against
// WRITE's (BenchmarkWriteServer). Not used by redraft. (Its receiving side is built:
// ApplyLogFunc, BenchmarkApplyLogServer.)
//
// gw (WRITE): the clock, the slot's copy lock and the key's element hash (one EXISTS), the
// key's stamp and counter vector (one HMGET), the SET, one XADD to the group's log carrying
// the slot and the effect, the new stamp (one HSET). No per-slot outbox, no feed entry, no
// outbox's last entry (the log's order is the group's; the slot rides in the entry).
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

// BenchmarkApplyLogServer is BenchmarkApplyServer for ApplyLogFunc, the receiving side of one
// log per group as built (applylog.go): the server's usec per entry, 25 entries of random
// slots to a call, each call the log's range after the last one's, 8 calls pipelined.
// `go test -run '^$' -bench 'ApplyLogServer|ApplyServer$' ./router/xdc/`.
func BenchmarkApplyLogServer(b *testing.B) {
	ctx := context.Background()
	c := client(b, testredis.Start(b))
	if err := LoadLibrary(ctx, c); err != nil {
		b.Fatal(err)
	}
	value := strings.Repeat("v", 64)
	seq, prev := 0, ""
	call := func(n int) []any {
		entries := make([]LogEntry, n)
		for i := range entries {
			seq++
			k := "key:" + strconv.Itoa(seq%20000)
			entries[i] = LogEntry{Slot: migrate.SlotString(k), WireEntry: WireEntry{ID: strconv.Itoa(seq) + "-0",
				TS: strconv.Itoa(seq * 4096), Cmds: WireCmds{{"~s", k, "", "", value, "-1"}}}}
		}
		last := entries[n-1].ID
		call := ApplyLogCall(testLog, "", prev, last, entries)
		prev = last
		return toAny(call)
	}
	for range 20000 / 25 { // every key and metadata hash exists before the measurement
		if v, err := c.Do(ctx, call(25)...).Result(); err != nil || v != prev {
			b.Fatalf("APPLY of a log: %v %v", v, err)
		}
	}
	if got := c.Get(ctx, "key:1").Val(); got != value {
		b.Fatalf("key:1 = %q", got)
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
