package migrate

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redraft/redraft/fsm"
)

// A mover whose run is recorded over moves nothing, small keys or big, and says why; a mover
// of another run is not affected; MoveJob of a run found over returns at once, and a run back
// fences the forward run before it moves anything.
func TestFencedMoverMovesNothing(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	src, dst := e.src(t, 3), e.dst(t, 3)
	must(t, src.Set(ctx, "small", "v", 0).Err())
	for i := 0; i < 50; i++ {
		must(t, src.HSet(ctx, "big", fmt.Sprintf("f%d", i), i).Err())
	}
	stale := e.mover(t, func(c *Config) { c.Fence = FenceField(7, false); c.BigKeyElements = 10 })
	live := e.mover(t, func(c *Config) { c.Fence = FenceField(8, false); c.BigKeyElements = 10 })
	must(t, live.MarkOver(ctx, FenceField(7, false)))

	for _, key := range []string{"small", "big"} {
		if _, err := stale.MoveKeys(ctx, 3, key); !errors.Is(err, ErrRunOver) {
			t.Fatalf("stale mover on %s: %v, want ErrRunOver", key, err)
		}
		if src.Exists(ctx, key).Val() != 1 || dst.Exists(ctx, key).Val() != 0 {
			t.Fatalf("%s moved by a fenced mover", key)
		}
	}
	var slots SlotSet
	slots.Add(Slot([]byte("small")))
	if err := stale.MoveSlots(ctx, slots, MoveOptions{}); !errors.Is(err, ErrRunOver) {
		t.Fatalf("stale MoveSlots: %v", err)
	}
	// Every database is fenced, and the fence itself stays put.
	for _, db := range []int{0, 3, 15} {
		if !e.src(t, db).HExists(ctx, FenceKey, FenceField(7, false)).Val() || !e.dst(t, db).HExists(ctx, FenceKey, FenceField(7, false)).Val() {
			t.Fatalf("db %d: run not marked over on both servers", db)
		}
	}
	if n, err := live.MoveKeys(ctx, 3, "small", "big"); err != nil || n != 2 {
		t.Fatalf("live mover: moved %d, %v", n, err)
	}

	// MoveJob: a run back marks the forward run over first, then moves, then marks itself over.
	must(t, dst.Set(ctx, "back", "b", 0).Err())
	mig := &fsm.Migration{ID: 9, Cancelling: true}
	job := Job{Migration: mig, Source: fsm.Group{Master: e.dstSrv.Addr, Password: e.dstPass}, Target: fsm.Group{Master: e.srcSrv.Addr},
		Slots: SlotSetOf([]fsm.SlotRange{{From: Slot([]byte("back")), To: Slot([]byte("back"))}})}
	if err := MoveJob(ctx, job); err != nil {
		t.Fatal(err)
	}
	if src.Get(ctx, "back").Val() != "b" {
		t.Fatal("run back did not move the key")
	}
	for _, f := range []string{FenceField(9, false), FenceField(9, true)} {
		if !src.HExists(ctx, FenceKey, f).Val() || !dst.HExists(ctx, FenceKey, f).Val() {
			t.Fatalf("%s not marked over", f)
		}
	}
	// A forward job of migration 9 (a stale mover) now moves nothing and reports done, so
	// only its finish is left, which the FSM refuses for a run that is not current.
	must(t, src.Set(ctx, "fwd", "f", 0).Err())
	job.Migration = &fsm.Migration{ID: 9}
	job.Source, job.Target = job.Target, job.Source
	job.Slots = SlotSetOf([]fsm.SlotRange{{From: Slot([]byte("fwd")), To: Slot([]byte("fwd"))}})
	if err := MoveJob(ctx, job); err != nil {
		t.Fatal(err)
	}
	if src.Get(ctx, "fwd").Val() != "f" || dst.Exists(ctx, "fwd").Val() != 0 {
		t.Fatal("a stale forward job moved a key")
	}
}

// Marks an earlier cluster left on the same servers (its migration 1, with or without a nonce)
// are not this cluster's migration 1: MoveJob moves the keys, where it used to find its run
// "over" at once and report every key moved with all of them still on the source.
func TestFenceMarksOfAnotherClusterDoNotStopAMigration(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	src, dst := e.src(t, 0), e.dst(t, 0)
	must(t, src.Set(ctx, "k", "v", 0).Err())
	old := &fsm.Migration{ID: 1, Nonce: "earliercluster01"}
	for _, f := range []string{FenceField(1, false), RunFence(old, false)} {
		must(t, src.HSet(ctx, FenceKey, f, "over").Err())
		must(t, dst.HSet(ctx, FenceKey, f, "over").Err())
	}
	mig := &fsm.Migration{ID: 1, Nonce: "thiscluster00001"}
	if err := MoveJob(ctx, e.keyJob(mig, "k")); err != nil {
		t.Fatal(err)
	}
	if src.Exists(ctx, "k").Val() != 0 || dst.Get(ctx, "k").Val() != "v" {
		t.Fatalf("the key did not move: source has it %d, target %q", src.Exists(ctx, "k").Val(), dst.Get(ctx, "k").Val())
	}
	// This run is marked over under its own name, and under the old one for older builds.
	for _, f := range []string{RunFence(mig, false), FenceField(1, false)} {
		if !src.HExists(ctx, FenceKey, f).Val() || !dst.HExists(ctx, FenceKey, f).Val() {
			t.Fatalf("%s not marked over", f)
		}
	}
}

// A source that lost its run's mark (a replica promoted before the mark reached it) while the
// target kept it: the run is over, since every key had moved. MoveJob used to move again, every
// restore refused by the target's mark, and fail for good: the migration stayed migrating.
func TestRunOverOnTheTargetOnlyIsOver(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	src, dst := e.src(t, 0), e.dst(t, 0)
	must(t, src.Set(ctx, "k", "v", 0).Err())
	mig := &fsm.Migration{ID: 4, Nonce: "failedoversource"}
	job := e.keyJob(mig, "k")
	if err := MoveJob(ctx, job); err != nil {
		t.Fatal(err)
	}
	// The promoted replica: without the marks, with a copy of the key the last pass deleted.
	must(t, src.Del(ctx, FenceKey).Err())
	must(t, src.Set(ctx, "k", "v", 0).Err())
	if err := MoveJob(ctx, job); err != nil {
		t.Fatalf("MoveJob of a run over on its target: %v", err)
	}
	if !src.HExists(ctx, FenceKey, RunFence(mig, false)).Val() {
		t.Fatal("the source's mark was not set again")
	}
	if dst.Get(ctx, "k").Val() != "v" {
		t.Fatal("the target's copy changed")
	}
	// Without a nonce (an older build's migration) the target's mark may be another
	// cluster's: no shortcut, the run fails safe with every key where it was.
	must(t, dst.HSet(ctx, FenceKey, FenceField(5, false), "over").Err())
	must(t, src.Set(ctx, "k5", "v", 0).Err())
	if err := MoveJob(ctx, e.keyJob(&fsm.Migration{ID: 5}, "k5")); err == nil {
		t.Fatal("a nonce-less run over on the target only was taken for over")
	}
	if src.Get(ctx, "k5").Val() != "v" || src.HExists(ctx, FenceKey, FenceField(5, false)).Val() {
		t.Fatal("the nonce-less run changed the source")
	}
}

// keyJob is the job of migration mig moving key's slot from the env's source to its target.
func (e *env) keyJob(mig *fsm.Migration, key string) Job {
	sl := Slot([]byte(key))
	return Job{Migration: mig, Source: fsm.Group{Master: e.srcSrv.Addr},
		Target: fsm.Group{Master: e.dstSrv.Addr, Password: e.dstPass},
		Slots:  SlotSetOf([]fsm.SlotRange{{From: sl, To: sl}})}
}
