package integration

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/node"
)

// The nemesis: faults injected into a running chaos cluster, each on its own (inject, hold,
// heal, wait until the cluster is whole again), while the clients and the migrator run.

// fault is one kind of fault. run injects it, holds it for hold, heals it and returns what it
// hit.
type fault struct {
	name string
	xdc  bool // only in a multi-DC run
	run  func(r *chaosRun, hold time.Duration) string
}

// faults is every fault the nemesis knows, in the order the short run injects them.
var faults = []fault{
	{name: "kill-leader", run: func(r *chaosRun, hold time.Duration) string {
		return r.killRestart(r.leader(), hold)
	}},
	{name: "kill-follower", run: func(r *chaosRun, hold time.Duration) string {
		return r.killRestart(r.follower(), hold)
	}},
	{name: "kill-mover", run: func(r *chaosRun, hold time.Duration) string {
		r.waitMoving(10 * time.Second)
		return r.killRestart(r.owner(r.migDC, r.migFirst), hold)
	}},
	{name: "stop-node", run: func(r *chaosRun, hold time.Duration) string {
		n := r.anyMember()
		_ = n.cmd.Process.Signal(syscall.SIGSTOP)
		time.Sleep(max(hold, electionTimeout*3)) // the fault's length, not synchronisation
		_ = n.cmd.Process.Signal(syscall.SIGCONT)
		return n.ID
	}},
	{name: "cut-node", run: func(r *chaosRun, hold time.Duration) string {
		n := r.anyMember()
		r.cut(n)
		time.Sleep(hold) // the fault's length
		r.x.heal()
		return n.ID
	}},
	{name: "rolling-restart", run: func(r *chaosRun, hold time.Duration) string {
		for _, n := range r.members() {
			n.Stop()
			r.restart(n)
			r.waitWhole(60 * time.Second)
		}
		return "all"
	}},
	{name: "remove-cut-node", run: (*chaosRun).removeCutNode},
	{name: "kill-shipper", xdc: true, run: func(r *chaosRun, hold time.Duration) string {
		// Every dc1 node owns slots of dc1's ring, so ships their outboxes; not the mover.
		var ns []*xdcNode
		for _, n := range r.membersOf("dc1") {
			if n.ID != r.owner(r.migDC, r.migFirst).ID {
				ns = append(ns, n)
			}
		}
		return r.killRestart(ns[r.rnd.Intn(len(ns))], hold)
	}},
	{name: "cut-dc", xdc: true, run: func(r *chaosRun, hold time.Duration) string {
		dc := r.x.dcs[1+r.rnd.Intn(len(r.x.dcs)-1)]
		r.x.cutDC(dc)
		time.Sleep(hold) // the fault's length
		r.x.heal()
		return dc
	}},
}

// electionTimeout is the nodes' Raft election timeout (node/raft.go).
const electionTimeout = time.Second

// removedGrace is how long after its removal commits a node cut off from the cluster may still
// acknowledge a keyed request; it had been cut off for removeCutFor already.
const (
	removedGrace = 2 * time.Second
	removeCutFor = 3 * time.Second
)

// killRestart kills n with SIGKILL, waits hold and restarts it with the same command line.
func (r *chaosRun) killRestart(n *xdcNode, hold time.Duration) string {
	n.Kill9()
	time.Sleep(hold) // the fault's length
	r.restart(n)
	return n.ID
}

// restart starts n again with its first command line.
func (r *chaosRun) restart(n *xdcNode) {
	n.Start(r.seeds[n.ID]...)
}

// cut cuts n's peer links both ways: its relay refuses everything, the others refuse what
// comes from its IP.
func (r *chaosRun) cut(n *xdcNode) {
	for _, o := range r.x.nodes {
		if o == n {
			o.relay.Cut(nil)
		} else {
			o.relay.Cut(func(src net.IP) bool { return src.String() == n.ip })
		}
	}
}

// removeCutNode cuts a follower off, removes it through the others, checks that it stops
// acknowledging keyed requests (the clients keep sending to it) and replaces it by a fresh node.
func (r *chaosRun) removeCutNode(hold time.Duration) string {
	n := r.follower()
	r.cut(n)
	time.Sleep(removeCutFor) // cut off for a while before the removal, as an operator would see it
	var via *xdcNode
	for _, m := range r.members() {
		if m != n {
			via = m
		}
	}
	waitFor(r.t, 45*time.Second, "node remove "+n.ID, func() error {
		// A removal waits node.RemoveGrace between Raft and the cluster state; a call cut
		// shorter starts over, its wait with it.
		ctx, cancel := context.WithTimeout(context.Background(), node.RemoveGrace+10*time.Second)
		defer cancel()
		err := via.Client().RemoveNode(ctx, n.ID)
		if err != nil && !r.isMember(via, n.ID) {
			return nil // an earlier try committed
		}
		return err
	})
	r.mu.Lock()
	r.removed[n.ID] = r.h.since()
	r.mu.Unlock()
	time.Sleep(max(hold, removedGrace+time.Second)) // clients keep trying it meanwhile
	r.x.heal()
	exited := false
	deadline := time.Now().Add(15 * time.Second)
	for !exited && time.Now().Before(deadline) {
		exited = n.Exited()
		time.Sleep(100 * time.Millisecond) // poll interval
	}
	note := n.ID + " exited after the heal"
	if !exited {
		note = n.ID + " still running 15s after the heal (killed)"
		n.Kill9()
	}
	r.retire(n)
	repl := r.replace(n)
	return note + "; replaced by " + repl.ID
}

// isMember reports whether via's state still lists id (false when via does not answer).
func (r *chaosRun) isMember(via *xdcNode, id string) bool {
	st, err := statusOf(via.proc)
	if err != nil {
		return true
	}
	for _, m := range st.Members {
		if m.ID == id {
			return true
		}
	}
	return false
}

// replace starts a fresh node (new id, IP and data dir, the removed node's tokens) in old's DC.
func (r *chaosRun) replace(old *xdcNode) *xdcNode {
	r.nextID++
	l := nodeLayout{id: fmt.Sprintf("n%d", r.nextID), dc: old.DC, ip: fmt.Sprintf("127.0.0.%d", 40+r.nextID), tokens: r.tokens[old.ID]}
	n := newRelayedNode(r.t, r.x.c, l)
	var seeds []string
	for _, m := range r.members() {
		seeds = append(seeds, m.relay.Addr())
	}
	r.mu.Lock()
	r.x.nodes = append(r.x.nodes, n)
	r.seeds[n.ID] = seeds
	r.tokens[n.ID] = l.tokens
	r.mu.Unlock()
	n.Start(seeds...)
	r.waitWhole(60 * time.Second)
	r.setTargets()
	return n
}

// statusOf asks p for the cluster status, two seconds at most.
func statusOf(p *proc) (node.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return p.Client().Status(ctx)
}

// leader returns the member the others call leader.
func (r *chaosRun) leader() *xdcNode {
	var l *xdcNode
	waitFor(r.t, 30*time.Second, "a leader", func() error {
		for _, m := range r.members() {
			st, err := statusOf(m.proc)
			if err != nil {
				continue
			}
			for _, c := range r.members() {
				if c.ID == st.Leader {
					l = c
					return nil
				}
			}
		}
		return fmt.Errorf("no member knows a leader")
	})
	return l
}

// follower returns a member other than the leader, picked at random.
func (r *chaosRun) follower() *xdcNode {
	l := r.leader()
	var fs []*xdcNode
	for _, m := range r.members() {
		if m != l {
			fs = append(fs, m)
		}
	}
	return fs[r.rnd.Intn(len(fs))]
}

// anyMember returns a member picked at random.
func (r *chaosRun) anyMember() *xdcNode {
	ms := r.members()
	return ms[r.rnd.Intn(len(ms))]
}

// owner returns the member owning slot's duties in dc (the mover of a migration starting at
// slot), from the tokens the run gave.
func (r *chaosRun) owner(dc string, slot int) *xdcNode {
	var ring []fsm.RingEntry
	for _, m := range r.membersOf(dc) {
		t, err := strconv.ParseUint(r.tokens[m.ID], 10, 32)
		if err != nil {
			r.t.Fatalf("chaos nodes need tokens: %s has %q", m.ID, r.tokens[m.ID])
		}
		ring = append(ring, fsm.RingEntry{Token: uint32(t), Node: m.ID})
	}
	id := fsm.OwnerIn(sortRing(ring), slot)
	for _, m := range r.members() {
		if m.ID == id {
			return m
		}
	}
	r.t.Fatalf("no owner of slot %d in %s", slot, dc)
	return nil
}

func sortRing(ring []fsm.RingEntry) []fsm.RingEntry {
	sort.Slice(ring, func(i, j int) bool { return ring[i].Token < ring[j].Token })
	return ring
}

// nemesis injects faults until the run's duration is over: the short run each fault once in
// the table's order, the long one faults drawn at random. Between faults the cluster is left
// whole for a quiet moment.
func (r *chaosRun) nemesis(short bool, until time.Time) {
	var pool []fault
	for _, f := range faults {
		if !f.xdc || len(r.x.dcs) > 1 {
			pool = append(pool, f)
		}
	}
	for i := 0; ; i++ {
		if short && i == len(pool) || !short && time.Now().After(until) {
			return
		}
		f := pool[i%len(pool)]
		if !short {
			f = pool[r.rnd.Intn(len(pool))]
		}
		hold := time.Duration(1500+r.rnd.Intn(2500)) * time.Millisecond
		fr := faultRun{name: f.name, start: r.h.since()}
		fr.target = f.run(r, hold)
		fr.healed = r.h.since()
		r.waitWhole(60 * time.Second)
		time.Sleep(time.Duration(500+r.rnd.Intn(1500)) * time.Millisecond) // quiet time between faults
		fr.end = r.h.since()
		r.t.Logf("fault %-16s %-40s %6.1fs..%6.1fs (healed at %.1fs)", f.name, fr.target, fr.start.Seconds(), fr.end.Seconds(), fr.healed.Seconds())
		r.mu.Lock()
		r.faults = append(r.faults, fr)
		r.mu.Unlock()
	}
}

// faultRun is one injected fault: when it started, healed and (the cluster whole again plus
// a quiet moment) ended.
type faultRun struct {
	name, target       string
	start, healed, end time.Duration
}
