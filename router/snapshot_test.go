package router

import (
	"testing"
	"time"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testredis"
)

// TestSetStateSwapsRoutes reuses unchanged pools, follows a new master, and closes the pools
// of changed and removed groups.
func TestSetStateSwapsRoutes(t *testing.T) {
	tc := startCluster(t, 2, 1, Config{})
	ctx := ctxT(t)
	s := tc.servers[0]
	c := tc.client(0)
	k1, k2 := keyIn("ss", 0, 2), keyIn("ss", 1, 2)
	if err := c.Set(ctx, k2, "old", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, k1, "g1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	before := s.snap.Load()
	s.SetState(tc.st)
	after := s.snap.Load()
	if before == after || before.groups[0].pool != after.groups[0].pool || before.groups[1].pool != after.groups[1].pool {
		t.Fatal("an unchanged state must swap the snapshot but keep the pools")
	}
	// Fail g2 over to a new master.
	r3 := testredis.Start(t)
	st, err := fsm.ApplyCommand(tc.st, 50, &fsm.UpdateGroup{DC: "dc1", Group: fsm.Group{ID: "g2", Master: r3.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	s.SetState(st)
	if s.snap.Load().groups[1].pool == after.groups[1].pool {
		t.Fatal("a new master must get a new pool")
	}
	if err := c.Set(ctx, k2, "new", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v := tc.direct(1).Get(ctx, k2).Val(); v != "old" {
		t.Fatalf("old master has %q", v)
	}
	waitFor(t, "old g2 pool closed", func() bool { return s.Stats().BackendConns == 2 })
	// Move every slot to g1 and remove g2.
	st, err = fsm.ApplyCommand(st, 51, &fsm.AssignSlots{DC: "dc1", Group: "g1", Ranges: []fsm.SlotRange{{From: 0, To: fsm.NumSlots - 1}}, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	st, err = fsm.ApplyCommand(st, 52, &fsm.RemoveGroup{DC: "dc1", ID: "g2"})
	if err != nil {
		t.Fatal(err)
	}
	s.SetState(st)
	if len(s.snap.Load().groups) != 1 {
		t.Fatal("removed group still routed")
	}
	if err := c.Set(ctx, k2, "moved", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v := tc.direct(0).Get(ctx, k2).Val(); v != "moved" {
		t.Fatalf("g1 has %q after reassignment", v)
	}
	waitFor(t, "removed g2 pool closed", func() bool { return s.Stats().BackendConns == 1 })
}

// TestUnassignedSlots answers CLUSTERDOWN for a slot no group serves, and before any state.
func TestUnassignedSlots(t *testing.T) {
	r := testredis.Start(t)
	st := fsm.New()
	st, _ = fsm.ApplyCommand(st, 1, &fsm.AddGroup{DC: "dc1", Group: fsm.Group{ID: "g1", Master: r.Addr}})
	st, _ = fsm.ApplyCommand(st, 2, &fsm.AssignSlots{DC: "dc1", Group: "g1", Ranges: []fsm.SlotRange{{From: 0, To: 100}}})
	tc := &testCluster{t: t, st: st}
	tc.addNode(Config{})
	ctx := ctxT(t)
	c := tc.client(0)
	if err := c.Get(ctx, "foo").Err(); err == nil || err.Error() != "CLUSTERDOWN Hash slot not served" {
		t.Fatalf("GET foo (slot 12182): %v", err)
	}
	empty := New(Config{DC: "dc1"})
	defer empty.Close()
	if empty.snap.Load() != nil {
		t.Fatal("snapshot before SetState")
	}
}

// waitFor polls cond until it holds or five seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling an asynchronous counter
	}
}

// TestOwnerTable: the one-byte owner of a slot names its group, and is 0 (read the slot
// entry) for every slot a migration covers, so no request on such a slot skips enter.
func TestOwnerTable(t *testing.T) {
	s := New(Config{DC: "dc1"})
	defer s.Close()
	// Backends are never dialled: nothing is sent.
	st := newState(t, []string{"127.0.0.1:1", "127.0.0.1:2"}, nil)
	s.SetState(st)
	snap := s.snap.Load()
	for _, sl := range []int{0, 8191, 8192, fsm.NumSlots - 1} {
		k := snap.owner[sl]
		if k == 0 || snap.groups[k-1] != snap.slots[sl].g {
			t.Fatalf("slot %d: owner %d, slot entry group %v", sl, k, snap.slots[sl].g)
		}
	}
	if snap.groups[snap.owner[0]-1].id != "g1" || snap.groups[snap.owner[fsm.NumSlots-1]-1].id != "g2" {
		t.Fatal("owners do not follow the slot table")
	}
	st, err := fsm.ApplyCommand(st, 100, &fsm.StartMigration{DC: "dc1", Slots: []fsm.SlotRange{{From: 100, To: 199}}, To: "g2"})
	if err != nil {
		t.Fatal(err)
	}
	s.SetState(st)
	snap = s.snap.Load()
	for sl := 100; sl <= 199; sl++ {
		if snap.slots[sl].m == nil || snap.owner[sl] != 0 {
			t.Fatalf("slot %d is frozen for the migration: entry %v, owner %d", sl, snap.slots[sl].m, snap.owner[sl])
		}
	}
	if snap.owner[99] == 0 || snap.owner[200] == 0 {
		t.Fatal("slots outside the migration lost their owner")
	}
}
