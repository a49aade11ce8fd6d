package migrate

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redraft/redraft/fsm"
)

// coordCluster is a node as the coordinator sees it: the state it acts on, of which only the
// first real reads are served (the node then stops acting and reads an empty state), and the
// freeze acks it proposed, with the handoffs made before each.
type coordCluster struct {
	st   *fsm.State
	real atomic.Int64 // reads served the state before it reads empty
	h    *handoffs
	mu   sync.Mutex
	acks []int64 // per AckFreeze proposed, the handoffs made before it
}

func (c *coordCluster) State() *fsm.State {
	if c.real.Add(-1) < 0 {
		return fsm.New()
	}
	return c.st
}

func (c *coordCluster) Propose(_ context.Context, cmd fsm.Command) error {
	if _, ok := cmd.(*fsm.AckFreeze); ok {
		c.mu.Lock()
		c.acks = append(c.acks, c.h.frozen.Load())
		c.mu.Unlock()
	}
	return nil
}

func (c *coordCluster) ID() string { return "n1" }
func (c *coordCluster) DC() string { return "dc1" }

func (c *coordCluster) acked() []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int64(nil), c.acks...)
}

// handoffs is the replication side of the test: it answers AckLast as router/xdc does (data
// format 3) and counts the handoffs.
type handoffs struct{ frozen atomic.Int64 }

func (h *handoffs) AckLast(st *fsm.State) bool { return st.Format() >= 3 }
func (h *handoffs) Frozen(_ context.Context, st *fsm.State, _ *fsm.Migration) error {
	if st.DCs["dc1"] == nil {
		return context.Canceled
	}
	h.frozen.Add(1)
	return nil
}
func (h *handoffs) Moved(context.Context, *fsm.State, *fsm.Migration) error { return nil }

type idleGate struct{}

func (idleGate) WaitIdle(context.Context, *SlotSet) error { return nil }

// TestSlotOwnerAcksAfterItsHandoff: at data format 3 the slot owner acks a freeze last, after
// its handoff (Frozen). Whether it acks last is decided on the state that showed the freeze:
// the node may stop acting right after, and the empty state it then reads has format 1, where
// the owner acks without a handoff; the ack would then let writes reach the target group
// before the other DCs know to apply the source group's log first.
func TestSlotOwnerAcksAfterItsHandoff(t *testing.T) {
	st := fsm.New()
	apply := func(c fsm.Command) {
		var err error
		if st, err = fsm.ApplyCommand(st, st.Index+1, c); err != nil {
			t.Fatal(err)
		}
	}
	apply(&fsm.AddNode{Node: fsm.Node{ID: "n1", DC: "dc1", Peer: "p1", Listen: "l1", Admin: "a1", MaxFormat: 3}})
	apply(&fsm.AddGroup{DC: "dc1", Group: fsm.Group{ID: "g1", Master: "127.0.0.1:1"}})
	apply(&fsm.AddGroup{DC: "dc1", Group: fsm.Group{ID: "g2", Master: "127.0.0.1:2"}})
	apply(&fsm.AssignSlots{DC: "dc1", Group: "g1", Ranges: []fsm.SlotRange{{From: 0, To: fsm.NumSlots - 1}}})
	for f := st.Format() + 1; f <= 3; f++ {
		apply(&fsm.AckDataFormat{Node: "n1", Format: f - 1})
		apply(&fsm.RaiseDataFormat{To: f})
	}
	apply(&fsm.StartMigration{DC: "dc1", Slots: []fsm.SlotRange{{From: 0, To: 9}}, To: "g2"})
	h := &handoffs{}
	cl := &coordCluster{st: st, h: h}
	c := NewCoordinator(cl, idleGate{}, func(context.Context, Job) error { return nil }, slog.Default())
	c.SetReplication(h)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The reconcile reads the state once and sees the freeze; the node stops acting then.
	cl.real.Store(1)
	c.reconcile(ctx)
	waitIdle := func() {
		for deadline := time.Now().Add(5 * time.Second); ; {
			c.mu.Lock()
			busy := len(c.acking) > 0
			c.mu.Unlock()
			if !busy {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("the freeze ack still runs after 5 s")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitIdle()
	if got := cl.acked(); len(got) != 0 {
		t.Fatalf("the slot owner acked the freeze while it did not act, after %d handoffs", got[0])
	}
	// Acting again: the handoff, then the ack.
	cl.real.Store(1 << 20)
	c.reconcile(ctx)
	waitIdle()
	got := cl.acked()
	if len(got) != 1 || got[0] != 1 {
		t.Fatalf("acks proposed after %v handoffs, want one after one", got)
	}
}
