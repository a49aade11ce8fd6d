package migrate

import (
	"testing"
	"time"
)

// Movers of one run share the keys known off the source: MoveKeys of a key another mover of the
// run moved asks the source nothing; a mover of another run does ask; the set goes with the
// run's last Mover.
func TestKnownKeysSharedByTheRun(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 20*time.Second)
	src := e.src(t, 0)
	slots, _ := FromRanges([2]int{0, NumSlots - 1})
	in, _ := seedKeys(t, src, "k:", 500, 8, &slots)
	run := func(c *Config) { c.Fence = "m7:fwd" }
	owner := e.mover(t, run)
	access := e.mover(t, run)
	if err := owner.MoveSlots(ctx, slots, MoveOptions{}); err != nil {
		t.Fatal(err)
	}
	scripts := func() int { return commandStats(ctx, t, src)["evalsha"].calls }
	before := scripts()
	for k := range in {
		if moved, err := access.MoveKeys(ctx, 0, k, k); err != nil || moved != 0 {
			t.Fatalf("MoveKeys(%s) = %d, %v", k, moved, err)
		}
	}
	if n := scripts() - before; n != 0 {
		t.Fatalf("%d scripts on the source for keys the run's mover had moved", n)
	}
	// Another run (another fence) knows nothing and asks.
	other := e.mover(t, func(c *Config) { c.Fence = "m8:fwd" })
	for k := range in {
		if _, err := other.MoveKeys(ctx, 0, k); err != nil {
			t.Fatal(err)
		}
		break
	}
	if n := scripts() - before; n == 0 {
		t.Fatal("a mover of another run did not ask the source")
	}
	// A key found missing is known too (it cannot come back during the run).
	before = scripts()
	for range 2 {
		if _, err := access.MoveKeys(ctx, 0, "never-there"); err != nil {
			t.Fatal(err)
		}
	}
	if n := scripts() - before; n != 1 {
		t.Fatalf("%d scripts for a missing key asked twice, want 1", n)
	}
	if !access.KnownOff(0, "never-there") || access.KnownOff(0, "k:unseen") || access.KnownOff(3, "never-there") {
		t.Fatal("KnownOff disagrees with what the run's movers found")
	}
	owner.Close()
	if access.known(0).has("never-there") == false {
		t.Fatal("the set went while a Mover of the run was still open")
	}
	access.Close()
	// Asking a closed Mover (a router request racing its retirement) creates no set.
	if access.KnownOff(5, "x") {
		t.Fatal("a closed Mover knows a key of a db it never saw")
	}
	knownRuns.mu.Lock()
	n := len(knownRuns.sets)
	for k := range knownRuns.sets {
		if k.fence == "m7:fwd" {
			t.Errorf("the run's set outlived its Movers: %+v", k)
		}
	}
	knownRuns.mu.Unlock()
	t.Logf("%d sets left (other runs)", n)
}
