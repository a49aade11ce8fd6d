package router

import (
	"github.com/redraft/redraft/fsm"
)

// Failovers in the data path (docs/failover.md). While a group of the node's DC fails over
// (fsm.Group.Failover is set, from the step that starts it until the one that commits the new
// master), the routing snapshot holds every slot the group serves, and every slot of a
// migration from or to it, as a migration's freeze holds them: keyed requests wait for the
// next snapshot, at most FreezeWait, then answer -TRYAGAIN. The step that commits the new
// master builds a pool to it, and the held requests go there. So a planned switchover can
// drain the group (WaitIdle) and lose no write, and during an unplanned failover clients wait
// instead of failing against a dead master.

// markFailovers puts a hold entry on the slots of every group of dc that is failing over.
func markFailovers(dc *fsm.DC, snap *snapshot) {
	held := map[string]*migEntry{}
	for _, id := range dc.GroupIDs() {
		if g := dc.Groups[id]; g.Failover != nil {
			held[id] = &migEntry{state: migFrozen, failover: id}
		}
	}
	if len(held) == 0 {
		return
	}
	for sl := range snap.slots {
		e := &snap.slots[sl]
		h := held[dc.Slots[sl]]
		if h == nil && e.m != nil && e.m.src != nil && e.m.dst != nil {
			if h = held[e.m.src.id]; h == nil {
				h = held[e.m.dst.id]
			}
		}
		if h == nil {
			continue
		}
		if e.m == nil {
			snap.migrating++
		}
		e.m = h
	}
}

// errHeld is the answer to a request that waited FreezeWait on a held slot.
func errHeld(snap *snapshot, slot int) error {
	if m := snap.slots[slot].m; m != nil && m.failover != "" {
		return errorf("TRYAGAIN group %s is failing over (slot %d), try again", m.failover, slot)
	}
	return errFrozen(slot)
}
