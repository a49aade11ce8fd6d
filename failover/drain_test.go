package failover

import (
	"context"
	"testing"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/migrate"
)

// recordingGate records the slots a drain waits for.
type recordingGate struct{ slots *migrate.SlotSet }

func (g *recordingGate) WaitIdle(_ context.Context, s *migrate.SlotSet) error {
	g.slots = s
	return nil
}

// A failover's drain waits for the slots of every migration from or to the group, as the
// router's hold covers them: while a migration runs, its slots still belong to its source in
// the slot table, but requests on them reach the target. Until session 46 a failover of the
// target did not wait for those, and promoted a replica without a write a client was told
// was done.
func TestDrainCoversMigratingSlots(t *testing.T) {
	st := fsm.New()
	for i, c := range []fsm.Command{
		&fsm.AddNode{Node: fsm.Node{ID: "n1", DC: "dc1", Peer: "127.0.0.1:1"}},
		&fsm.AddGroup{DC: "dc1", Group: fsm.Group{ID: "g1", Master: "127.0.0.1:7001"}},
		&fsm.AddGroup{DC: "dc1", Group: fsm.Group{ID: "g2", Master: "127.0.0.1:7002"}},
		&fsm.AddGroup{DC: "dc1", Group: fsm.Group{ID: "g3", Master: "127.0.0.1:7003"}},
		&fsm.AssignSlots{DC: "dc1", Group: "g1", Ranges: []fsm.SlotRange{{From: 0, To: 8191}}},
		&fsm.AssignSlots{DC: "dc1", Group: "g2", Ranges: []fsm.SlotRange{{From: 8192, To: 12287}}},
		&fsm.AssignSlots{DC: "dc1", Group: "g3", Ranges: []fsm.SlotRange{{From: 12288, To: 16383}}},
		&fsm.StartMigration{DC: "dc1", Slots: []fsm.SlotRange{{From: 0, To: 99}}, To: "g2"},
		&fsm.AckFreeze{ID: 1, Node: "n1"},
	} {
		var err error
		if st, err = fsm.ApplyCommand(st, uint64(i+1), c); err != nil {
			t.Fatalf("%s: %v", c.Name(), err)
		}
	}
	if st.Migrations[1].State != fsm.MigrationMigrating {
		t.Fatalf("migration %s", st.Migrations[1].State)
	}
	for _, tc := range []struct {
		group   string
		in, out []int
	}{
		{"g2", []int{0, 99, 8192, 12287}, []int{100, 12288}}, // the target
		{"g1", []int{0, 99, 100, 8191}, []int{8192}},         // the source
		{"g3", []int{12288, 16383}, []int{0, 99}},            // not concerned
	} {
		// The group failing over, in a copy of the state (as StartFailover or a vote leaves it).
		g := *st.DCs["dc1"].Groups[tc.group]
		g.Failover = &fsm.Failover{Epoch: g.Epoch + 1}
		cp, dc := *st, *st.DCs["dc1"]
		dc.Groups = map[string]*fsm.Group{}
		for id, gr := range st.DCs["dc1"].Groups {
			dc.Groups[id] = gr
		}
		dc.Groups[tc.group] = &g
		cp.DCs = map[string]*fsm.DC{"dc1": &dc}
		gate := &recordingGate{}
		w := New(Config{Cluster: &stateCluster{st: &cp}, Gate: gate})
		if err := w.drainLocal(context.Background(), drainRequest{Group: tc.group, Epoch: g.Epoch + 1}); err != nil {
			t.Fatalf("%s: drain: %v", tc.group, err)
		}
		for _, s := range tc.in {
			if gate.slots == nil || !gate.slots.Contains(s) {
				t.Errorf("a failover of %s does not wait for slot %d", tc.group, s)
			}
		}
		for _, s := range tc.out {
			if gate.slots != nil && gate.slots.Contains(s) {
				t.Errorf("a failover of %s waits for slot %d", tc.group, s)
			}
		}
	}
}
