package migrate

import (
	"testing"
	"time"
)

// TestMoveKeysKeepTarget: a key on both sides (the source failed over and its promoted replica
// missed the deletion of keys moved before) keeps the target's copy with KeepTarget, small or
// big, and the source's copy is deleted; keys only on the source move as usual. Without
// KeepTarget the source's copy replaces the target's (MIGRATE REPLACE).
func TestMoveKeysKeepTarget(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	src, dst := e.src(t, 0), e.dst(t, 0)
	must(t, src.Set(ctx, "both", "stale", 0).Err())
	must(t, dst.Set(ctx, "both", "written-on-target", 0).Err())
	must(t, src.Set(ctx, "only", "v", 0).Err())
	fillHash(ctx, t, src, "bigboth", 300, 10)
	must(t, dst.HSet(ctx, "bigboth", "f", "target").Err())
	m := e.mover(t, func(c *Config) { c.KeepTarget, c.BigKeyElements = true, 100 })
	moved, err := m.MoveKeys(ctx, 0, "both", "only", "bigboth")
	if err != nil || moved != 3 {
		t.Fatalf("moved %d: %v", moved, err)
	}
	if got := dst.Get(ctx, "both").Val(); got != "written-on-target" {
		t.Fatalf("target's copy replaced: %q", got)
	}
	if got := dst.Get(ctx, "only").Val(); got != "v" {
		t.Fatalf("a key only on the source did not move: %q", got)
	}
	if got := dst.HGetAll(ctx, "bigboth").Val(); len(got) != 1 || got["f"] != "target" {
		t.Fatalf("target's big key replaced: %d fields", len(got))
	}
	if n := src.Exists(ctx, "both", "only", "bigboth").Val(); n != 0 {
		t.Fatalf("%d keys still on the source", n)
	}
	// The default: the source's copy is the authoritative one.
	must(t, src.Set(ctx, "both", "source", 0).Err())
	if _, err := e.mover(t, nil).MoveKeys(ctx, 0, "both"); err != nil {
		t.Fatal(err)
	}
	if got := dst.Get(ctx, "both").Val(); got != "source" {
		t.Fatalf("without KeepTarget the target kept %q", got)
	}
}
