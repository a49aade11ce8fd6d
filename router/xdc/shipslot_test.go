package xdc

import (
	"testing"

	"github.com/redraft/redraft/fsm"
)

// TestMigrationsLeaveTheLogShipper: the node that ships a group's log is the same in every
// state a migration goes through, even one that moves the group's first slot away (with the
// first slot as the rule, each step of such a migration moved the log to the other node of a
// two-node DC, and every move started a new shipper); a group that loses every slot keeps it
// too.
func TestMigrationsLeaveTheLogShipper(t *testing.T) {
	state := func(g2From int, active bool) *fsm.State {
		st := fsm.New()
		st.Nodes["n1"] = &fsm.Node{ID: "n1", DC: "dc1"}
		st.Nodes["n2"] = &fsm.Node{ID: "n2", DC: "dc1"}
		d := &fsm.DC{Name: "dc1", Groups: map[string]*fsm.Group{}, Slots: make([]string, fsm.NumSlots)}
		for _, g := range []string{"g1", "g2"} {
			d.Groups[g] = &fsm.Group{ID: g, Master: g + ":6379"}
		}
		for s := range d.Slots {
			d.Slots[s] = "g1"
			if s >= g2From {
				d.Slots[s] = "g2"
			}
		}
		st.DCs["dc1"] = d
		if active {
			st.Migrations[1] = &fsm.Migration{ID: 1, DC: "dc1", From: "g1", To: "g2", State: fsm.MigrationMigrating,
				Slots: []fsm.SlotRange{{From: 0, To: g2From - 1}}}
		}
		return st
	}
	// g1 serves 0-8191, then a migration moves its slots to g2 in steps, 0 first, to the end.
	states := []*fsm.State{state(8192, false), state(8192, true), state(2048, true), state(0, true), state(0, false)}
	first := newGroupSlots(states[0], "dc1")
	ring := states[0].Ring("dc1")
	if fsm.OwnerIn(ring, 0) == fsm.OwnerIn(ring, 8192) {
		t.Fatalf("the test's ring gives slots 0 and 8192 one owner: it cannot tell the rules apart")
	}
	for i, st := range states {
		c := newGroupSlots(st, "dc1")
		for _, g := range []string{"g1", "g2"} {
			slot, ok := c.ship[g]
			if !ok || slot < 0 || slot >= fsm.NumSlots {
				t.Fatalf("state %d: group %s ships by slot %d (%v)", i, g, slot, ok)
			}
			if was := first.ship[g]; fsm.OwnerIn(ring, slot) != fsm.OwnerIn(ring, was) {
				t.Fatalf("state %d: %s's log moved from %s to %s", i, g,
					fsm.OwnerIn(ring, was), fsm.OwnerIn(ring, slot))
			}
		}
	}
}
