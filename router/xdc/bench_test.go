package xdc

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/internal/testredis"
	"github.com/redraft/redraft/migrate"
)

// benchSet measures SET k v, plain or through WRITE (FCALL), in pipelines of depth
// commands (depth 1: one round trip each).
func benchSet(b *testing.B, write bool, depth int) {
	ctx := context.Background()
	c := client(b, testredis.Start(b))
	call := prepare(b, "SET {t}k v")
	if err := Write(ctx, c, slot, "dc1", 1000, call).Err(); err != nil { // loads the script
		b.Fatal(err)
	}
	keys, argv := WriteArgs(slot, "dc1", 1000, false, []Call{call})
	evalArgs := append([]any{"FCALL", WriteFunc, len(keys)}, toAny(keys)...)
	evalArgs = append(evalArgs, argv...)
	b.ResetTimer()
	for i := 0; i < b.N; i += depth {
		p := c.Pipeline()
		for range depth {
			if write {
				p.Do(ctx, evalArgs...)
			} else {
				p.Set(ctx, "{t}k", "v", 0)
			}
		}
		if _, err := p.Exec(ctx); err != nil && err != redis.Nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

func BenchmarkSetPlain(b *testing.B)          { benchSet(b, false, 1) }
func BenchmarkSetWrite(b *testing.B)          { benchSet(b, true, 1) }
func BenchmarkSetPlainPipelined(b *testing.B) { benchSet(b, false, 64) }
func BenchmarkSetWritePipelined(b *testing.B) { benchSet(b, true, 64) }

// BenchmarkWriteServer measures what WRITE costs the server per write (usec of FCALL in INFO
// commandstats over the writes: the script's own CPU, without the network) for one-SET
// writes on keys of different slots, pipelined 64 calls at a time;
// BenchmarkWriteServerIdle the same one call at a time, a millisecond apart, as at a low
// write rate: each call then runs on caches other work has taken (docs/replication.md,
// session 18). `go test -run '^$' -bench WriteServer ./router/xdc/`.
// BenchmarkWriteServerLog is BenchmarkWriteServer for WRITE in its log mode (WriteLogArgs:
// one log per group, no outbox, no change feed).
func BenchmarkWriteServer(b *testing.B)     { benchWriteServer(b, 64, 0, WriteArgs) }
func BenchmarkWriteServerIdle(b *testing.B) { benchWriteServer(b, 1, time.Millisecond, WriteArgs) }
func BenchmarkWriteServerLog(b *testing.B)  { benchWriteServer(b, 64, 0, WriteLogArgs) }

// benchWriteServer sends the calls, whose keys and arguments build makes, depth at a time,
// with pause after each send.
func benchWriteServer(b *testing.B, depth int, pause time.Duration, build func(int, string, int64, bool, []Call) ([]string, []any)) {
	ctx := context.Background()
	c := client(b, testredis.Start(b))
	if err := LoadLibrary(ctx, c); err != nil {
		b.Fatal(err)
	}
	value := strings.Repeat("v", 64)
	args := func(i int) [2][]any {
		k := "key:" + strconv.Itoa(i)
		keys, argv := build(migrate.SlotString(k), "dc1", 1000, false, []Call{prepare(b, "SET "+k+" "+value)})
		return [2][]any{toAny(keys), argv}
	}
	for i := range 20000 { // every outbox exists before the measurement: creating streams is not the steady state
		a := args(-1 - i)
		c.FCall(ctx, WriteFunc, toStrings(a[0]), a[1]...)
	}
	runFCalls(b, c, "server-us/write", func(i, _ int) []any {
		a := args(i % 20000)
		return append(append([]any{"FCALL", WriteFunc, len(a[0])}, a[0]...), a[1]...)
	}, 1, depth, pause)
}

// runFCalls measures b.N writes or entries, per to a call (call(i, n): the call of the n
// writes or entries from the i-th), depth calls to a pipeline with pause after each send, and
// reports the server's FCALL usec per write or entry (INFO commandstats) as unit.
func runFCalls(b *testing.B, c *redis.Client, unit string, call func(i, n int) []any, per, depth int, pause time.Duration) {
	ctx := context.Background()
	c.ConfigResetStat(ctx)
	b.ResetTimer()
	p := c.Pipeline()
	for i := 0; i < b.N; i += per {
		p.Do(ctx, call(i, min(per, b.N-i))...)
		if p.Len() == depth {
			if _, err := p.Exec(ctx); err != nil {
				b.Fatal(err)
			}
			time.Sleep(pause)
		}
	}
	if p.Len() > 0 {
		if _, err := p.Exec(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	usec := testredis.CommandStat(c.Info(ctx, "commandstats").Val(), "fcall", "usec")
	b.ReportMetric(usec/float64(b.N), unit)
}

func toStrings(a []any) []string {
	out := make([]string, len(a))
	for i, x := range a {
		out[i] = x.(string)
	}
	return out
}

// BenchmarkApplyServer measures what the batch APPLY costs the server per entry (usec of
// FCALL in INFO commandstats over the entries) for entries of one plain SET each, on keys of
// different slots, 25 slots' batches of one entry to a call, as a receiving node sends them
// under random-key load, 8 calls pipelined; BenchmarkApplyServerHotSlot the same with every
// key in one slot (one batch of 25 entries to a call); BenchmarkApplyServerIdle one entry to
// a call, one call at a time a millisecond apart, as at a low write rate.
// `go test -run '^$' -bench ApplyServer ./router/xdc/`.
func BenchmarkApplyServer(b *testing.B)        { benchApplyServer(b, "", 25, 8, 0) }
func BenchmarkApplyServerHotSlot(b *testing.B) { benchApplyServer(b, "{hot}", 25, 8, 0) }
func BenchmarkApplyServerIdle(b *testing.B)    { benchApplyServer(b, "", 1, 1, time.Millisecond) }

// benchApplyServer sends calls of entries entries, depth calls at a time, with pause after
// each send.
func benchApplyServer(b *testing.B, tag string, entries, depth int, pause time.Duration) {
	ctx := context.Background()
	c := client(b, testredis.Start(b))
	if err := LoadLibrary(ctx, c); err != nil {
		b.Fatal(err)
	}
	value := strings.Repeat("v", 64)
	seq := 0
	call := func(n int) []any {
		batches := make([]WireBatch, 0, 25)
		for range n {
			seq++
			k := tag + "key:" + strconv.Itoa(seq%20000)
			e := WireEntry{ID: strconv.Itoa(seq) + "-0", TS: strconv.Itoa(seq * 4096), Cmds: WireCmds{{"~s", k, "", "", value, "-1"}}}
			if slot := migrate.SlotString(k); len(batches) > 0 && batches[len(batches)-1].Slot == slot {
				batches[len(batches)-1].Entries = append(batches[len(batches)-1].Entries, e)
			} else {
				batches = append(batches, WireBatch{Slot: slot, Entries: []WireEntry{e}})
			}
		}
		keys, argv := ApplyBatchArgs("dc1", "", batches)
		return append(append([]any{"FCALL", ApplyBatchFunc, len(keys)}, toAny(keys)...), argv...)
	}
	for range 20000 / 25 { // every key and inbox exists before the measurement
		v, err := c.Do(ctx, call(25)...).Slice()
		if x, refused := v[0].([]any); err != nil || (refused && x[1] != "") {
			b.Fatalf("APPLY: %v %v", v, err)
		}
	}
	if got := c.Get(ctx, tag+"key:1").Val(); got != value {
		b.Fatalf("key:1 = %q", got)
	}
	runFCalls(b, c, "server-us/entry", func(_, n int) []any { return call(n) }, entries, depth, pause)
}

// BenchmarkPrepareSet is Prepare of a plain SET, the node's share of a replicated write
// before the WRITE call is encoded (its fast path: 2 allocations where the general path made
// 12, 76 against 600 ns).
func BenchmarkPrepareSet(b *testing.B) {
	argv := []string{"SET", "key:000123456", strings.Repeat("v", 64)}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Prepare(argv); err != nil {
			b.Fatal(err)
		}
	}
}
