package xdc

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redraft/redraft/fsm"
)

// Duties of a node that stops acting (node/current.go): its replicator then reads an empty
// state while what it planned before still runs.

// TestGroupLogsHoldWhileNotActing: once a node read a state with group logs, its replicator
// keeps to them while the node stops acting and reads an empty state (format 1): a per-slot
// loop that took that for the cluster below group logs would copy slots behind the logs.
func TestGroupLogsHoldWhileNotActing(t *testing.T) {
	n, dcs := startDCs(t, "a", "b")
	a := dcs[0]
	a.held.Store(true)
	if a.repl.groupLogs() {
		t.Fatal("a replicator that never read group logs reports them")
	}
	a.held.Store(false)
	raiseFormat(t, n, LogDataFormat)
	if !a.repl.groupLogs() {
		t.Fatal("no group logs at data format 3")
	}
	a.held.Store(true)
	defer a.held.Store(false)
	if !a.repl.groupLogs() {
		t.Fatal("group logs forgotten while the node does not act")
	}
	if l := newLoop(a.repl, loopKey{dest: "b"}, []int{1}); !l.logsOnly() {
		t.Fatal("a per-slot loop of a node that does not act would copy slots at data format 3")
	}
}

// TestNoHeartbeatWhileNotActing: a node that stops acting reads an empty state, which knows no
// migration to keep the outbox heartbeats out of (one written into a moving slot's outbox on
// the source would be moved again, over the target's): the loops planned before still run,
// and the heartbeat writes nothing until the node acts again.
func TestNoHeartbeatWhileNotActing(t *testing.T) {
	// The replicators' own beats an hour apart: the test's calls are the only heartbeats (a
	// beat of Run's that read the state before the node stopped acting would write during
	// the test's count). Run plans its loops once at its start.
	_, dcs := startDCsWith(t, func(c *Config) { c.Heartbeat = time.Hour }, "a", "b")
	a := dcs[0]
	ctx := context.Background()
	added := func() int64 {
		info, err := a.rc.XInfoStream(ctx, DirtyKey).Result()
		if err != nil && strings.Contains(err.Error(), "no such key") {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return info.EntriesAdded
	}
	waitEqual(t, dcs[:1], 10*time.Second, "loops", func(*testDC) (string, error) {
		a.repl.mu.Lock()
		defer a.repl.mu.Unlock()
		return fmt.Sprint(len(a.repl.loops) > 0), nil
	}, "true")
	before := added()
	a.repl.heartbeat(ctx)
	if added() == before {
		t.Fatal("an acting node's heartbeat wrote nothing: the test would pass without the check")
	}
	a.held.Store(true)
	defer a.held.Store(false)
	before = added()
	a.repl.heartbeat(ctx)
	if after := added(); after != before {
		t.Fatalf("a node that does not act wrote %d heartbeats into the outboxes", after-before)
	}
	a.repl.mu.Lock()
	planned := len(a.repl.loops) > 0
	a.repl.mu.Unlock()
	if !planned {
		t.Fatal("the loops were stopped: the test did not test a heartbeat over planned loops")
	}
}

// TestMigrationStepsRefuseTheEmptyState: the slot owner's handoff (Frozen) and positions'
// copy (Moved) read the state the coordinator hands them; the empty state of a node that
// stopped acting has format 1, where both have nothing to do, and answering so would let the
// freeze ack or the switch go ahead without them.
func TestMigrationStepsRefuseTheEmptyState(t *testing.T) {
	n, dcs := startDCs(t, "a", "b")
	a := dcs[0]
	raiseFormat(t, n, LogDataFormat)
	gid := n.State().DCs["a"].GroupIDs()[0]
	m := &fsm.Migration{ID: 1, DC: "a", From: gid, To: gid, Slots: []fsm.SlotRange{{From: 0, To: 9}}}
	ctx := context.Background()
	if err := a.repl.Frozen(ctx, fsm.New(), m); err == nil {
		t.Error("Frozen on the empty state did nothing and answered done")
	}
	if err := a.repl.Moved(ctx, fsm.New(), m); err == nil {
		t.Error("Moved on the empty state did nothing and answered done")
	}
	// A real state below group logs: nothing to do, and done.
	below := fsm.New()
	below.DCs["a"] = n.State().DCs["a"]
	if err := a.repl.Moved(ctx, below, m); err != nil {
		t.Errorf("Moved at format 1: %v", err)
	}
}

// TestWaitsOnOtherDCsWhileNotActing: DC_EACH_SAFE_QUORUM's wait and a flush's drain ask
// whether every other DC applied an entry; the empty state of a node that stopped acting
// knows no other DC, and they answered that nothing was left to wait for.
func TestWaitsOnOtherDCsWhileNotActing(t *testing.T) {
	for _, format := range []int{fsm.FirstDataFormat, LogDataFormat} {
		t.Run(fmt.Sprintf("format=%d", format), func(t *testing.T) {
			dcs := startDCsAt(t, format, "a", "b")
			a, b := dcs[0], dcs[1]
			ctx := context.Background()
			a.write(t, "SET", "{w}k", "1")
			waitEqual(t, dcs, 10*time.Second, "k", stateOf("{w}k"), "string 1")
			b.down.Store(true)
			defer b.down.Store(false)
			a.held.Store(true)
			defer a.held.Store(false)
			group := ""
			if format >= LogDataFormat {
				group = "g-a"
			}
			future := fmt.Sprintf("%d-0", time.Now().Add(time.Hour).UnixMilli())
			if err := a.repl.Await(ctx, 0, slotString("{w}k"), group, future, 300*time.Millisecond); err == nil {
				t.Error("DC_EACH_SAFE_QUORUM's wait answered an entry applied everywhere while its node did not act")
			}
			if err := a.repl.awaitHere(ctx, AwaitRequest{Slot: slotString("{w}k"), Group: group, ID: future, TimeoutMS: 300}); err == nil {
				t.Error("the shipping node's wait answered an entry applied everywhere while it did not act")
			}
			if err := a.repl.drainForFlush(ctx); err == nil {
				t.Error("a flush's drain answered every entry shipped while its node did not act")
			}
		})
	}
}
