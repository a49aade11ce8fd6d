package router

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/router/resp"
	"github.com/redraft/redraft/router/xdc"
)

// pipeClient returns a session of s over one end of an in-memory pipe: a batch the test
// drives by hand (setSnap, dispatch, finishBatch), whose replies stay in its c.out.
func pipeClient(t *testing.T, s *Server) *client {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return newClient(s, a)
}

// dispatchSet dispatches SET k v on c as the batch's one request and returns its reply.
func dispatchSet(c *client, k string) string {
	args := [][]byte{[]byte("SET"), []byte(k), []byte("v")}
	c.dispatch(resp.Command{Args: args, Raw: appendCommand(nil, []string{"SET", k, "v"})})
	c.finishBatch()
	return string(c.out)
}

// TestHeldBatchRoutesNoWrite: a batch read while the node held its routing (not acting on
// current state: Hold) decided on that snapshot how its writes go, and with several DCs a
// held snapshot says none goes through WRITE. When the hold ends before such a batch's
// later write is admitted (its one wait for the hold, awaitRouting, spent on an earlier
// request), the write must fail as held, not reach the master raw on the new snapshot's
// routing, applied here and never recorded for the other DCs.
func TestHeldBatchRoutesNoWrite(t *testing.T) {
	tc := startXDC(t, 1, Config{})
	s := tc.servers[0]
	c := pipeClient(t, s)
	s.Hold(errors.New("catching up (test)"))
	c.setSnap(s.snap.Load()) // the batch began while held...
	c.holdWaited = true      // ...and already waited once for the hold to end
	s.SetState(tc.st)        // the hold ends
	if got := dispatchSet(c, "held:k"); !strings.HasPrefix(got, "-CLUSTERDOWN") {
		t.Errorf("the write answered %q, want the hold's CLUSTERDOWN", got)
	}
	if n := tc.direct(0).Exists(ctxT(t), "held:k").Val(); n != 0 {
		t.Fatalf("the write reached the master outside WRITE (EXISTS %d): applied in dc1, recorded for no other DC", n)
	}
}

// TestWritePathChangedUnderABatch: a batch that decided its writes go raw (one DC) is not
// routed on a snapshot in which the cluster has a second DC (its writes must go through
// WRITE): the write answers -TRYAGAIN and reaches no master.
func TestWritePathChangedUnderABatch(t *testing.T) {
	tc := startCluster(t, 1, 1, Config{})
	s := tc.servers[0]
	c := pipeClient(t, s)
	c.setSnap(s.snap.Load()) // one DC: writes forwarded raw
	s.SetState(addDC2(t, tc.st))
	if got := dispatchSet(c, "path:k"); !strings.HasPrefix(got, "-TRYAGAIN") {
		t.Errorf("the write answered %q, want -TRYAGAIN", got)
	}
	if n := tc.direct(0).Exists(ctxT(t), "path:k").Val(); n != 0 {
		t.Fatalf("the write reached the master raw after a second DC joined (EXISTS %d)", n)
	}
}

// TestFormatRaiseUnderABatch: a raise of the data format to group logs between a batch's
// snapshot and its write changes the write path only with several DCs (outbox, then log: the
// write answers -TRYAGAIN and reaches no master); with one DC every write goes raw at any
// format, and a new cluster's raise, seconds after its start, must not fail its clients.
func TestFormatRaiseUnderABatch(t *testing.T) {
	raised := func(st *fsm.State) *fsm.State {
		st = st.Clone()
		st.DataFormat, st.Index = xdc.LogDataFormat, st.Index+1
		return st
	}
	one := startCluster(t, 1, 1, Config{})
	c := pipeClient(t, one.servers[0])
	c.setSnap(one.servers[0].snap.Load())
	one.servers[0].SetState(raised(one.st))
	if got := dispatchSet(c, "raise:k"); got != "+OK\r\n" {
		t.Errorf("one DC: the write across the raise answered %q, want +OK", got)
	}
	two := startXDC(t, 1, Config{})
	c = pipeClient(t, two.servers[0])
	c.setSnap(two.servers[0].snap.Load())
	two.servers[0].SetState(raised(two.st))
	if got := dispatchSet(c, "raise:k"); !strings.HasPrefix(got, "-TRYAGAIN") {
		t.Errorf("two DCs: the write across the raise answered %q, want -TRYAGAIN", got)
	}
	if n := two.direct(0).Exists(ctxT(t), "raise:k").Val(); n != 0 {
		t.Fatalf("two DCs: the write across the raise reached the master (EXISTS %d)", n)
	}
}

// TestRawBlockingReleasedWhenADCJoins: a blocking pop sent raw while the cluster had one DC is
// released when a second DC joins (-TRYAGAIN: sent again, it polls through WRITE); left
// blocked, it would pop a later push raw, applied here and recorded for no other DC.
func TestRawBlockingReleasedWhenADCJoins(t *testing.T) {
	tc := startCluster(t, 1, 1, Config{})
	r := dialRaw(t, tc.addrs[0])
	r.send("BLPOP join:q 0\r\n")
	waitFor(t, "BLPOP blocked on the backend", func() bool { return blockedClients(t, tc, 0) == 1 })
	tc.servers[0].SetState(addDC2(t, tc.st))
	if l := r.line(); !strings.HasPrefix(l, "-TRYAGAIN") {
		t.Fatalf("the raw BLPOP after a second DC joined answered %q, want -TRYAGAIN", l)
	}
	waitFor(t, "the backend's blocked pop ended", func() bool { return blockedClients(t, tc, 0) == 0 })
	r.send("PING\r\n")
	if l := r.line(); l != "+PONG" {
		t.Fatalf("the session after the release: %q", l)
	}
}

// TestFrozenBatchWaitsOnce: a pipeline of requests on a frozen slot waits FreezeWait once for
// the whole batch, then every request answers -TRYAGAIN. Each request used to wait a
// FreezeWait of its own: a batch of 1,024 took 34 minutes, and still went to Redis after a
// client that had long gone.
func TestFrozenBatchWaitsOnce(t *testing.T) {
	const wait = 200 * time.Millisecond
	mt := newMigTest(t, 1, Config{FreezeWait: wait})
	k := "{r1}frozen"
	slot := slotOf(k)
	mt.start(slot, slot) // frozen: no node acks
	r := dialRaw(t, mt.tc.addrs[0])
	const n = 20
	start := time.Now()
	r.send(strings.Repeat("SET "+k+" v\r\n", n))
	for i := 0; i < n; i++ {
		if l := r.line(); !strings.HasPrefix(l, "-TRYAGAIN") {
			t.Fatalf("reply %d: %q", i, l)
		}
	}
	if took := time.Since(start); took > 5*wait {
		t.Fatalf("%d held requests answered in %v: more than one FreezeWait (%v) each", n, took, wait)
	}
	if n := mt.tc.direct(0).Exists(ctxT(t), k).Val() + mt.tc.direct(1).Exists(ctxT(t), k).Val(); n != 0 {
		t.Fatal("a held write reached a master")
	}
}
