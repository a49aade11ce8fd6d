package migrate

import (
	"context"
	"fmt"
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
	// reportGate, when set, holds every ReportMigration proposal until it is closed;
	// proposed lists the proposals made, in order.
	reportGate chan struct{}
	proposed   []fsm.Command
}

func (c *coordCluster) State() *fsm.State {
	if c.real.Add(-1) < 0 {
		return fsm.New()
	}
	return c.st
}

func (c *coordCluster) Propose(_ context.Context, cmd fsm.Command) error {
	if _, ok := cmd.(*fsm.ReportMigration); ok && c.reportGate != nil {
		<-c.reportGate // a Raft that does not answer, whatever the caller's deadline
	}
	c.mu.Lock()
	c.proposed = append(c.proposed, cmd)
	c.mu.Unlock()
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
	st := frozenState(t)
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
	// The ack names the run whose barrier it is for, so that a late one cannot pass a cancel's.
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for _, cmd := range cl.proposed {
		if a, ok := cmd.(*fsm.AckFreeze); ok && a.Run != "fwd" {
			t.Fatalf("ack proposed for run %q, want fwd", a.Run)
		}
	}
}

// frozenState is a one-node DC at data format 3 with migration 1 (slots 0-9, g1 to g2) frozen.
func frozenState(t *testing.T) *fsm.State {
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
	return st
}

// TestMoverDoesNotWaitOnItsReports: the mover reports its progress under its own lock, and a
// proposal waits on Raft; with Raft not answering, the mover must still go on, and its last
// report must reach the state before the switch, after which reports are refused.
func TestMoverDoesNotWaitOnItsReports(t *testing.T) {
	st, err := fsm.ApplyCommand(frozenState(t), 0, &fsm.AckFreeze{ID: 1, Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	if m := st.Migrations[1]; m.State != fsm.MigrationMigrating {
		t.Fatalf("migration %s, want migrating", m.State)
	}
	gate := make(chan struct{})
	cl := &coordCluster{st: st, reportGate: gate}
	cl.real.Store(1 << 30)
	reported := make(chan struct{})
	mover := func(_ context.Context, job Job) error {
		job.Progress(Progress{KeysMoved: 1})
		job.Progress(Progress{KeysMoved: 2}) // within the second: not reported
		job.Progress(Progress{KeysMoved: 3, Done: true})
		close(reported)
		return nil
	}
	c := NewCoordinator(cl, idleGate{}, mover, slog.Default())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.reconcile(ctx)
	select {
	case <-reported:
	case <-time.After(10 * time.Second):
		close(gate)
		t.Fatal("the mover waited for its progress report's proposal")
	}
	close(gate)
	var got []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		cl.mu.Lock()
		got = got[:0]
		for _, p := range cl.proposed {
			switch p := p.(type) {
			case *fsm.ReportMigration:
				got = append(got, fmt.Sprintf("report %d", p.KeysMoved))
			case *fsm.FinishMigration:
				got = append(got, "finish")
			}
		}
		cl.mu.Unlock()
		if len(got) > 0 && got[len(got)-1] == "finish" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no switch proposed after %v", got)
		}
	}
	// The first report may be replaced by the last before it goes (only the latest counts).
	if g := fmt.Sprint(got); g != "[report 1 report 3 finish]" && g != "[report 3 finish]" {
		t.Fatalf("proposed %v, want the last report, then the switch", got)
	}
}

// TestMoverStartedAgainAddsToTheCounts: a mover started again (after its node lost its lease,
// or on another node) counts from zero; what it reports adds to the keys the migration's
// earlier runs moved, as the state holds them, instead of replacing them.
func TestMoverStartedAgainAddsToTheCounts(t *testing.T) {
	st, err := fsm.ApplyCommand(frozenState(t), 0, &fsm.AckFreeze{ID: 1, Node: "n1"})
	if err == nil {
		st, err = fsm.ApplyCommand(st, 0, &fsm.ReportMigration{ID: 1, KeysMoved: 1846, BytesMoved: 100000, KeysTotal: 1846})
	}
	if err != nil {
		t.Fatal(err)
	}
	cl := &coordCluster{st: st}
	cl.real.Store(1 << 30)
	mover := func(_ context.Context, job Job) error {
		job.Progress(Progress{KeysMoved: 4, BytesMoved: 200, KeysTotal: 4, Done: true})
		return nil
	}
	c := NewCoordinator(cl, idleGate{}, mover, slog.Default())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.reconcile(ctx)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		cl.mu.Lock()
		var last *fsm.ReportMigration
		finished := false
		for _, p := range cl.proposed {
			switch p := p.(type) {
			case *fsm.ReportMigration:
				last = p
			case *fsm.FinishMigration:
				finished = true
			}
		}
		cl.mu.Unlock()
		if finished {
			if last == nil || last.KeysMoved != 1850 || last.BytesMoved != 100200 || last.KeysTotal != 1850 {
				t.Fatalf("the run started again reported %+v, want 1850 keys (1846 before it), 100200 bytes", last)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no switch proposed")
		}
	}
}

// TestNoMoverAfterItsSwitch: once this node's mover committed the switch, a state that still
// shows the migration migrating (Raft applies the commit here after the proposal returns)
// starts no mover again; a state that shows it over forgets it.
func TestNoMoverAfterItsSwitch(t *testing.T) {
	st, err := fsm.ApplyCommand(frozenState(t), 0, &fsm.AckFreeze{ID: 1, Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	cl := &coordCluster{st: st}
	cl.real.Store(1 << 30)
	var runs atomic.Int32
	mover := func(context.Context, Job) error { runs.Add(1); return nil }
	c := NewCoordinator(cl, idleGate{}, mover, slog.Default())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.reconcile(ctx)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		c.mu.Lock()
		ended := len(c.running) == 0 && c.switched[1]
		c.mu.Unlock()
		if ended {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the mover did not commit the switch")
		}
	}
	c.reconcile(ctx) // the state still shows the migration migrating
	c.mu.Lock()
	again := len(c.running)
	c.mu.Unlock()
	if again != 0 || runs.Load() != 1 {
		t.Fatalf("a mover started again after the switch (%d running, %d runs)", again, runs.Load())
	}
	done, err := fsm.ApplyCommand(st, 0, &fsm.FinishMigration{ID: 1, Run: st.Migrations[1].Run()})
	if err != nil {
		t.Fatal(err)
	}
	cl.st = done
	c.reconcile(ctx)
	c.mu.Lock()
	kept := len(c.switched)
	c.mu.Unlock()
	if kept != 0 {
		t.Fatal("a migration the state shows over is still remembered as switched")
	}
}
