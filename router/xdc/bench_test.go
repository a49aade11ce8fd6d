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

// benchWriteServer measures what WRITE costs the server per write (usec of FCALL in INFO
// commandstats over the writes: the script's own CPU, without the network) for one-SET
// writes on keys of different slots, pipelined 64 calls at a time.
// `go test -run '^$' -bench WriteServer ./router/xdc/`.
func BenchmarkWriteServer(b *testing.B) {
	ctx := context.Background()
	c := client(b, testredis.Start(b))
	if err := LoadLibrary(ctx, c); err != nil {
		b.Fatal(err)
	}
	value := strings.Repeat("v", 64)
	args := func(i int) [2][]any {
		k := "key:" + strconv.Itoa(i)
		keys, argv := WriteArgs(migrate.SlotString(k), "dc1", 1000, false, []Call{prepare(b, "SET "+k+" "+value)})
		return [2][]any{toAny(keys), argv}
	}
	for i := range 20000 { // every outbox exists before the measurement: creating streams is not the steady state
		a := args(-1 - i)
		c.FCall(ctx, WriteFunc, toStrings(a[0]), a[1]...)
	}
	c.ConfigResetStat(ctx)
	b.ResetTimer()
	p := c.Pipeline()
	for i := 0; i < b.N; i++ {
		a := args(i % 20000)
		p.FCall(ctx, WriteFunc, toStrings(a[0]), a[1]...)
		if p.Len() == 64 {
			if _, err := p.Exec(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if _, err := p.Exec(ctx); err != nil && p.Len() > 0 {
		b.Fatal(err)
	}
	b.StopTimer()
	usec := testredis.CommandStat(c.Info(ctx, "commandstats").Val(), "fcall", "usec")
	b.ReportMetric(usec/float64(b.N), "server-us/write")
}

func toStrings(a []any) []string {
	out := make([]string, len(a))
	for i, x := range a {
		out[i] = x.(string)
	}
	return out
}
