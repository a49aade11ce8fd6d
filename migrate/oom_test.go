package migrate

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redraft/redraft/internal/testredis"
)

// TestMoveSlotsFromSourceOverMaxmemory (session 43): a source at maxmemory with noeviction
// refuses every write that may grow memory (-OOM), but its keys can still be moved away: the
// source-side scripts that only write bookkeeping (the locks hash) or delete keys run with
// allow-oom. Before, the dump script's HSET of the locks hash (and the big key's lock script)
// failed with -OOM, and MoveSlots and MoveKeys failed for as long as the source stayed full.
func TestMoveSlotsFromSourceOverMaxmemory(t *testing.T) {
	e := &env{dstPass: "target-secret"}
	e.srcSrv = testredis.Start(t, testredis.WithArgs("--maxmemory", "8mb", "--maxmemory-policy", "noeviction"))
	e.dstSrv = testredis.Start(t, testredis.WithPassword(e.dstPass))
	ctx := ctxT(t, 60*time.Second)
	src, dst := e.src(t, 0), e.dst(t, 0)

	// A big hash (chunked copy under the lock script, with smallBig), a key with a TTL, then
	// strings until the source refuses writes.
	want := map[string]string{}
	fillHash(ctx, t, src, "{big}h", 3000, 10)
	want["{big}h"] = value(ctx, t, src, "{big}h")
	must(t, src.Set(ctx, "ttl", "v", time.Hour).Err())
	want["ttl"] = value(ctx, t, src, "ttl")
	pad := strings.Repeat("x", 1024)
	fill := func(prefix, v string) string {
		for i := 0; i < 200000; i++ {
			k := fmt.Sprintf("%s%d", prefix, i)
			if err := src.Set(ctx, k, v, 0).Err(); err != nil {
				if !strings.HasPrefix(err.Error(), "OOM") {
					t.Fatal(err)
				}
				return k
			}
			want[k] = "string:" + v
		}
		t.Fatal("the source never refused a write")
		return ""
	}
	// fillUp fills the source until it refuses even a small SET (again after a step freed some).
	round := 0
	fillUp := func() {
		round++
		fill(fmt.Sprintf("s%d:", round), pad)
		refused := fill(fmt.Sprintf("t%d:", round), "v") // small keys up to the last bytes
		if err := src.Set(ctx, refused, "v", 0).Err(); err == nil || !strings.HasPrefix(err.Error(), "OOM") {
			t.Fatalf("SET on the full source: %v, want -OOM", err)
		}
	}
	fillUp()
	t.Logf("source full with %d keys", len(want))

	// A run back (a cancel) of migration 1: it marks the forward run over on the full source
	// first (MoveJob), then moves, fenced by its own run.
	m := e.mover(t, func(c *Config) { smallBig(c); c.Fence = FenceField(1, true) })
	if err := m.MarkOver(ctx, FenceField(1, false)); err != nil {
		t.Fatalf("MarkOver on the full source: %v", err)
	}
	// Migrate-on-access (a client's DEL of a key in a migrating slot needs its MoveKeys first):
	// a big key (lock script, chunked copy, finish script), then small ones (batch copy).
	if moved, err := m.MoveKeys(ctx, 0, "{big}h"); err != nil || moved != 1 {
		t.Fatalf("MoveKeys of a big key on the full source = %d, %v; want 1, nil", moved, err)
	}
	fillUp()
	if moved, err := m.MoveKeys(ctx, 0, "s1:0", "ttl"); err != nil || moved != 2 {
		t.Fatalf("MoveKeys on the full source = %d, %v; want 2, nil", moved, err)
	}
	fillUp()
	slots, _ := FromRanges([2]int{0, NumSlots - 1})
	if err := m.MoveSlots(ctx, slots, MoveOptions{}); err != nil {
		t.Fatalf("MoveSlots from the full source: %v", err)
	}
	if ks := src.Keys(ctx, "*").Val(); len(ks) != 1 || ks[0] != FenceKey {
		t.Errorf("left on the source: %d keys (%.5q), want only the fence marks", len(ks), ks)
	}
	for k, v := range want {
		if got := value(ctx, t, dst, k); got != v {
			t.Fatalf("%s on the target: %.40q, want %.40q", k, got, v)
		}
	}
	if ttl := dst.PTTL(ctx, "ttl").Val(); ttl <= 0 || ttl > time.Hour {
		t.Errorf("ttl key's TTL on the target: %v", ttl)
	}
}
