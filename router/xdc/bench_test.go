package xdc

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/internal/testredis"
)

// benchSet measures SET k v, plain or through WRITE (EVALSHA), in pipelines of depth
// commands (depth 1: one round trip each).
func benchSet(b *testing.B, write bool, depth int) {
	ctx := context.Background()
	c := client(b, testredis.Start(b))
	call := prepare(b, "SET {t}k v")
	if err := Write(ctx, c, slot, "dc1", 1000, call).Err(); err != nil { // loads the script
		b.Fatal(err)
	}
	keys, argv := WriteArgs(slot, "dc1", 1000, false, []Call{call})
	evalArgs := append([]any{"EVALSHA", WriteSHA, len(keys)}, toAny(keys)...)
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
