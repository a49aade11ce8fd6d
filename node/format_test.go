package node

import (
	"context"
	"fmt"
	"github.com/hashicorp/raft"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redraft/redraft/fsm"
)

// formatHistory records every state each node applied, across restarts.
type formatHistory struct {
	mu     sync.Mutex
	states []*fsm.State
}

func (h *formatHistory) watch(n *Node) {
	n.OnState(func(st *fsm.State) {
		h.mu.Lock()
		h.states = append(h.states, st)
		h.mu.Unlock()
	})
}

// check asserts the raise rule on every state any node applied: the format only rises, and a
// state at format f > 1 has every member acting on f-1 at least (the leader raised only then).
func (h *formatHistory) check(t *testing.T) {
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := map[int]bool{}
	for _, st := range h.states {
		seen[st.Format()] = true
		if st.Format() == fsm.FirstDataFormat {
			continue
		}
		for id, n := range st.Nodes {
			if n.ActsOn() < st.Format()-1 {
				t.Errorf("state at index %d has data format %d while node %s acts on %d", st.Index, st.Format(), id, n.ActsOn())
			}
		}
	}
	for f := 1; f <= 3; f++ {
		if !seen[f] {
			t.Errorf("no node applied a state at data format %d", f)
		}
	}
}

// writeHistory commits n entries and has every node take a snapshot, so restarts replay both.
func writeHistory(t *testing.T, c *testCluster, n int) {
	t.Helper()
	l := c.leader()
	for i := 0; i < n; i++ {
		if err := l.Propose(context.Background(), &fsm.SetSetting{Key: "replica_max_lag", Value: fmt.Sprintf("%ds", 1+i%5)}); err != nil {
			t.Fatal(err)
		}
	}
	want := l.State().Index
	for id, nd := range c.nodes {
		poll(t, 10*time.Second, id+" applies the history", func() error {
			if got := nd.State().Index; got < want {
				return fmt.Errorf("applied %d of %d", got, want)
			}
			return nil
		})
		if err := nd.raft.Snapshot().Error(); err != nil {
			t.Fatalf("snapshot on %s: %v", id, err)
		}
	}
}

// waitFormat polls until every node's applied state satisfies ok.
func waitFormat(t *testing.T, c *testCluster, what string, ok func(st *fsm.State) error) {
	t.Helper()
	for id, n := range c.nodes {
		poll(t, 20*time.Second, id+": "+what, func() error { return ok(n.State()) })
	}
}

func TestDataFormatRollingUpgrade(t *testing.T) {
	c := newTestCluster(t)
	hist := &formatHistory{}
	for _, id := range []string{"n1", "n2", "n3"} { // a build that runs format 1 only
		c.builds[id] = Options{MaxDataFormat: 1}
	}
	c.start("n1", "dc1")
	c.start("n2", "dc1", "n1")
	c.start("n3", "dc1", "n1")
	for _, n := range c.nodes {
		hist.watch(n)
	}
	writeHistory(t, c, 40)
	if f := c.leader().State().Format(); f != fsm.FirstDataFormat {
		t.Fatalf("a new cluster writes data format %d", f)
	}

	// A rolling upgrade to a build that runs format 3; n3's data plane takes its time to switch.
	release := make(chan struct{})
	var mu sync.Mutex
	var switched []int
	c.builds["n1"] = Options{MaxDataFormat: 3}
	c.builds["n2"] = Options{MaxDataFormat: 3}
	c.builds["n3"] = Options{MaxDataFormat: 3, SwitchDataFormat: func(ctx context.Context, f int) error {
		mu.Lock()
		switched = append(switched, f)
		mu.Unlock()
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
	restart := func(id string) {
		c.nodes[id].Close()
		hist.watch(c.start(id, "dc1"))
	}
	restart("n1")
	restart("n2")
	waitFormat(t, c, "n1 and n2 run format 3", func(st *fsm.State) error {
		if st.Nodes["n1"].MaxDataFormat() != 3 || st.Nodes["n2"].MaxDataFormat() != 3 {
			return fmt.Errorf("n1 runs %d, n2 %d", st.Nodes["n1"].MaxDataFormat(), st.Nodes["n2"].MaxDataFormat())
		}
		return nil
	})
	// One member on the old build holds the whole cluster at the old format.
	st := c.leader().State()
	if to, why := st.NextDataFormat(); st.Format() != 1 || to != 0 || why != "node n3 runs data formats up to 1" {
		t.Fatalf("with n3 not upgraded: format %d, next %d (%q)", st.Format(), to, why)
	}
	writeHistory(t, c, 20)

	restart("n3")
	waitFormat(t, c, "format 2, n1 and n2 acting on it", func(st *fsm.State) error {
		if st.Format() != 2 || st.Nodes["n1"].ActsOn() != 2 || st.Nodes["n2"].ActsOn() != 2 {
			return fmt.Errorf("format %d, n1 acts on %d, n2 on %d", st.Format(), st.Nodes["n1"].ActsOn(), st.Nodes["n2"].ActsOn())
		}
		return nil
	})
	poll(t, 10*time.Second, "n3's data plane is asked to switch", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(switched) == 0 {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	// While n3 has not switched, the cluster stays at format 2, and the status says why.
	st = c.leader().State()
	if to, why := st.NextDataFormat(); st.Format() != 2 || to != 0 || why != "node n3 has not reported acting on data format 2" {
		t.Fatalf("with n3 switching: format %d, next %d (%q)", st.Format(), to, why)
	}
	if s := c.leader().Status(context.Background()); s.DataFormat != 2 || s.DataFormatWaiting != "node n3 has not reported acting on data format 2" {
		t.Errorf("status: data_format %d, waiting %q", s.DataFormat, s.DataFormatWaiting)
	}
	close(release)
	waitFormat(t, c, "format 3, every node acting on it", func(st *fsm.State) error {
		for _, id := range st.NodeIDs() {
			if st.Format() != 3 || st.Nodes[id].ActsOn() != 3 {
				return fmt.Errorf("format %d, %s acts on %d", st.Format(), id, st.Nodes[id].ActsOn())
			}
		}
		return nil
	})
	mu.Lock()
	if fmt.Sprint(switched) != "[2 3]" {
		t.Errorf("n3's data plane was asked to switch to %v, want [2 3]", switched)
	}
	mu.Unlock()
	if s := c.leader().Status(context.Background()); s.DataFormat != 3 || s.DataFormatWaiting != "" {
		t.Errorf("status: data_format %d, waiting %q", s.DataFormat, s.DataFormatWaiting)
	}

	// A new node on an older build is refused before it becomes a Raft member.
	before := len(c.leader().raft.GetConfiguration().Configuration().Servers)
	_, err := c.nodes["n1"].join(context.Background(), joinRequest{Fresh: true,
		Node: fsm.Node{ID: "n4", DC: "dc1", Peer: "127.0.0.1:1", Listen: "127.0.0.1:2", MaxFormat: 2}})
	if err == nil || !strings.Contains(err.Error(), "node n4 runs data formats up to 2, and the cluster writes format 3") {
		t.Errorf("join of an older build: %v", err)
	}
	if after := len(c.leader().raft.GetConfiguration().Configuration().Servers); after != before {
		t.Errorf("the refused joiner changed the Raft configuration: %d servers, were %d", after, before)
	}

	// A node restarted on an older build does not act on the cluster state, and cannot
	// register as running less.
	c.nodes["n2"].Close()
	c.builds["n2"] = Options{MaxDataFormat: 2}
	old := c.launch("n2", "dc1")
	poll(t, 20*time.Second, "the old build holds", func() error {
		acting, why := old.Acting()
		if acting || why == nil || !strings.Contains(why.Error(), "CLUSTERDOWN the cluster writes data format 3 and this node's build runs formats up to 2") {
			return fmt.Errorf("acting %v: %v", acting, why)
		}
		if old.State().Format() != 3 {
			return fmt.Errorf("applied format %d", old.State().Format())
		}
		return nil
	})
	if len(old.Current().Nodes) != 0 || old.Current().Format() != 1 {
		t.Errorf("the old build hands its duties a state: %d nodes", len(old.Current().Nodes))
	}
	if n2 := c.leader().State().Nodes["n2"]; n2.MaxDataFormat() != 3 || n2.ActsOn() != 3 {
		t.Errorf("n2's record after the old build's registration: runs %d, acts on %d", n2.MaxDataFormat(), n2.ActsOn())
	}
	// Back on the new build, it acts again.
	old.Close()
	c.builds["n2"] = Options{MaxDataFormat: 3}
	restart("n2")
	writeHistory(t, c, 20)
	for id := range c.nodes {
		restart(id)
	}
	waitFormat(t, c, "format 3 after restarts", func(st *fsm.State) error {
		if st.Format() != 3 {
			return fmt.Errorf("format %d", st.Format())
		}
		return nil
	})
	hist.check(t)
}

// TestNoFormatRaiseDuringAJoin: a Raft member the cluster state does not know yet (a join
// between its Raft step and its AddNode) holds the data format: raised between the two, the
// joiner's older build would be refused by AddNode and stay a voter the state never knows.
func TestNoFormatRaiseDuringAJoin(t *testing.T) {
	c := newTestCluster(t)
	c.builds["n1"] = Options{MaxDataFormat: 1}
	n := c.start("n1", "dc1")
	// The joiner's Raft step, its AddNode not yet applied: a non-voter nobody runs.
	if err := n.raft.AddNonvoter("ghost", raft.ServerAddress(freeAddr(t)), 0, 10*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	// Nor is it promoted (fewer voters than max_voters): unreachable, it would take the
	// majority, and nothing could commit.
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		t.Fatal(err)
	}
	n.promote(f.Configuration().Servers)
	if f = n.raft.GetConfiguration(); f.Error() != nil || len(f.Configuration().Servers) != 2 || f.Configuration().Servers[1].Suffrage != raft.Nonvoter {
		t.Fatalf("a non-voter the state does not know was promoted: %+v", f.Configuration().Servers)
	}
	n.Close()
	c.builds["n1"] = Options{MaxDataFormat: 3}
	n = c.start("n1", "dc1")
	poll(t, 20*time.Second, "n1 reports format 3", func() error {
		st := n.State()
		if to, why := st.NextDataFormat(); to != 2 {
			return fmt.Errorf("next format %d: %s", to, why)
		}
		return nil
	})
	n.raiseDataFormat()
	if f := n.State().Format(); f != 1 {
		t.Fatalf("the format was raised to %d with a Raft member the state does not know", f)
	}
	if err := n.raft.RemoveServer("ghost", 0, 10*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	waitFormat(t, c, "format 3 once the member is gone", func(st *fsm.State) error {
		if st.Format() != 3 {
			return fmt.Errorf("format %d", st.Format())
		}
		return nil
	})
}
