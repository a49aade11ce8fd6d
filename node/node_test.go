package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/redraft/redraft/fsm"
)

// testCluster is a set of in-process nodes on loopback ports.
type testCluster struct {
	t     *testing.T
	dir   string
	nodes map[string]*Node
	cfgs  map[string]Config
	// builds are the data format options a node starts with (as another build would).
	builds map[string]Options
	// seedsFirst are addresses put before a node's seeds (ones that do not answer).
	seedsFirst map[string][]string
}

func newTestCluster(t *testing.T) *testCluster {
	c := &testCluster{t: t, dir: t.TempDir(), nodes: map[string]*Node{}, cfgs: map[string]Config{}, builds: map[string]Options{}}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.Close()
		}
	})
	return c
}

func quietOpts() Options {
	if testing.Verbose() {
		return Options{}
	}
	return Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), LogOutput: io.Discard}
}

// start starts (or restarts) node id and waits until it acts on the cluster state; seeds are
// node ids whose peer addresses to join through.
func (c *testCluster) start(id, dc string, seeds ...string) *Node {
	c.t.Helper()
	n := c.launch(id, dc, seeds...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		c.t.Fatal(err)
	}
	return n
}

// launch is start without the wait.
func (c *testCluster) launch(id, dc string, seeds ...string) *Node {
	c.t.Helper()
	cfg, ok := c.cfgs[id]
	if !ok {
		cfg = DefaultConfig()
		cfg.ID, cfg.DC = id, dc
		cfg.Listen, cfg.PeerListen, cfg.AdminListen = freeAddr(c.t), "127.0.0.1:0", "127.0.0.1:0"
		cfg.DataDir = filepath.Join(c.dir, id)
	}
	cfg.Seeds = append([]string(nil), c.seedsFirst[id]...)
	for _, s := range seeds {
		cfg.Seeds = append(cfg.Seeds, c.nodes[s].PeerAddr())
	}
	opts := quietOpts()
	opts.MaxDataFormat, opts.SwitchDataFormat = c.builds[id].MaxDataFormat, c.builds[id].SwitchDataFormat
	opts.logStore = c.builds[id].logStore
	// A restart binds its ports again, and another connection's ephemeral local port may hold
	// one of them for a moment (seen in CI: "bind: address already in use"): tried again
	// until a deadline.
	var n *Node
	var err error
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		n, err = Start(cfg, opts)
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		c.t.Fatalf("start %s: %v", id, err)
	}
	// A restart keeps its ports: raft knows the node by its peer address.
	cfg.PeerListen, cfg.AdminListen = n.PeerAddr(), n.AdminAddr()
	c.cfgs[id] = cfg
	c.nodes[id] = n
	return n
}

func (c *testCluster) leader() *Node {
	c.t.Helper()
	var l *Node
	poll(c.t, 10*time.Second, "leader", func() error {
		for _, n := range c.nodes {
			if n.IsLeader() {
				l = n
				return nil
			}
		}
		return errors.New("no leader")
	})
	return l
}

// freeAddr returns a loopback address nobody listens on right now (the RESP address, which
// the node only advertises).
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func poll(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s: %v", d, what, err)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

func TestThreeNodesForwardAndAgree(t *testing.T) {
	c := newTestCluster(t)
	c.start("n1", "dc1")
	c.start("n2", "dc1", "n1")
	c.start("n3", "dc1", "n1")
	var follower *Node
	for _, n := range c.nodes {
		if !n.IsLeader() {
			follower = n
		}
	}
	ctx := context.Background()
	if err := follower.Propose(ctx, &fsm.AddGroup{DC: "dc1", Group: fsm.Group{ID: "g1", Master: "127.0.0.1:7001"}}); err != nil {
		t.Fatal(err)
	}
	// The leader's validation error reaches the follower's caller with its code.
	err := follower.Propose(ctx, &fsm.AddGroup{DC: "dc1", Group: fsm.Group{ID: "g1", Master: "127.0.0.1:7002"}})
	if err == nil || errorCode(err) != "exists" || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("duplicate group: %v (code %q)", err, errorCode(err))
	}
	// A forwarded proposal answers the index it was applied at: the follower finds the group
	// in its state once it has applied that index, and not before.
	before := c.leader().State().Index
	index, err := follower.ProposeAt(ctx, &fsm.AddGroup{DC: "dc1", Group: fsm.Group{ID: "g2", Master: "127.0.0.1:7003"}})
	if err != nil || index <= before {
		t.Fatalf("ProposeAt from a follower = %d, %v; want an index past %d", index, err, before)
	}
	poll(t, 5*time.Second, "the follower applies the proposal", func() error {
		if st := follower.State(); st.Index < index {
			return fmt.Errorf("index %d", st.Index)
		}
		return nil
	})
	if follower.State().DCs["dc1"].Groups["g2"] == nil {
		t.Fatalf("the follower applied index %d without the group proposed there", index)
	}
	want := c.leader().State().Index
	for id, n := range c.nodes {
		poll(t, 5*time.Second, id+" catches up", func() error {
			st := n.State()
			if st.Index < want || st.DCs["dc1"].Groups["g1"] == nil {
				return fmt.Errorf("index %d", st.Index)
			}
			return nil
		})
	}
	st := follower.Status(ctx)
	if len(st.Members) != 3 || st.Leader == "" {
		t.Fatalf("status %+v", st)
	}
	for _, m := range st.Members {
		if m.Suffrage != "voter" || m.Role == "unreachable" {
			t.Errorf("member %s: %s %s", m.ID, m.Suffrage, m.Role)
		}
	}
}

func TestLeaderLossAndRestart(t *testing.T) {
	c := newTestCluster(t)
	c.start("n1", "dc1")
	c.start("n2", "dc1", "n1")
	c.start("n3", "dc1", "n1")
	old := c.leader()
	oldID := old.ID()
	old.Close()
	delete(c.nodes, oldID)
	start := time.Now()
	var survivor *Node
	for _, n := range c.nodes {
		survivor = n
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := survivor.Propose(ctx, &fsm.SetSetting{Key: "max_voters", Value: "3"}); err != nil {
		t.Fatalf("propose after leader loss: %v", err)
	}
	t.Logf("proposal committed %v after the leader stopped", time.Since(start))
	// The old leader restarts from its data dir with its identity and catches up.
	n := c.start(oldID, "dc1")
	poll(t, 10*time.Second, "restarted node catches up", func() error {
		if n.State().Setting("max_voters") != "3" {
			return errors.New("setting not applied yet")
		}
		return nil
	})
}

// threeThenRemoveN3 starts n1, n2 and n3, removes n3 through n1, and waits until n3 is told;
// n3 goes on running.
func threeThenRemoveN3(t *testing.T) (*testCluster, *Node) {
	t.Helper()
	c := newTestCluster(t)
	c.start("n1", "dc1")
	c.start("n2", "dc1", "n1")
	n3 := c.start("n3", "dc1", "n1")
	if err := c.nodes["n1"].Remove(context.Background(), "n3"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-n3.Removed():
	case <-time.After(10 * time.Second):
		t.Fatal("n3 not told it was removed")
	}
	return c, n3
}

func TestRemoveStopsNode(t *testing.T) {
	c, n3 := threeThenRemoveN3(t)
	if n3.RemovedReason() == "" {
		t.Fatal("no reason given")
	}
	if _, ok := c.nodes["n1"].State().Nodes["n3"]; ok {
		t.Fatal("n3 still in state")
	}
	// Removing it again contradicts the state.
	err := c.nodes["n2"].Remove(context.Background(), "n3")
	if errorCode(err) != "not_found" {
		t.Fatalf("second remove: %v", err)
	}
	// Proposals from the removed node are refused.
	if err := n3.Propose(context.Background(), &fsm.SetSetting{Key: "max_voters", Value: "4"}); !errors.Is(err, ErrRemoved) {
		t.Fatalf("removed node proposed: %v", err)
	}
}

func TestDataDirIdentity(t *testing.T) {
	dir := t.TempDir()
	if err := claimDataDir(dir, "n1", "dc1"); err != nil {
		t.Fatal(err)
	}
	if err := claimDataDir(dir, "n1", "dc1"); err != nil {
		t.Fatalf("same id refused: %v", err)
	}
	err := claimDataDir(dir, "n2", "dc1")
	if err == nil || !strings.Contains(err.Error(), `belongs to node "n1"`) {
		t.Fatalf("other id: %v", err)
	}
}

// TestJoinIndexKeptAcrossRestarts: the join index a node registered with is kept in its data
// dir, and a restart whose state is an older snapshot (listing the node under an earlier join,
// before a removal and a rejoin) keeps the later one: the replayed removal, between the two,
// is not the node's own.
func TestJoinIndexKeptAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	if err := claimDataDir(dir, "n3", "dc1"); err != nil {
		t.Fatal(err)
	}
	log := quietOpts().Logger
	if log == nil {
		log = slog.Default()
	}
	first := &Node{cfg: Config{ID: "n3", DataDir: dir}, log: log}
	first.setJoined(40) // rejoined at 40, after a removal at 30
	restarted := &Node{cfg: Config{ID: "n3", DataDir: dir}, log: log}
	restarted.setJoined(12) // the old snapshot's registration
	if restarted.joinIndex != 40 {
		t.Fatalf("join index after the restart: %d, want 40", restarted.joinIndex)
	}
	if err := claimDataDir(dir, "n3", "dc1"); err != nil {
		t.Fatalf("the identity with a join index: %v", err)
	}
}

// TestWildcardListenAdvertisesItsHost checks that a node bound to 0.0.0.0 tells Raft and the
// cluster its advertised host, so followers can reach the leader (docker-compose runs so).
func TestWildcardListenAdvertisesItsHost(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ID, cfg.DC = "w1", "dc1"
	cfg.Listen, cfg.PeerListen, cfg.AdminListen = "0.0.0.0:0", "0.0.0.0:0", "0.0.0.0:0"
	cfg.Advertise = "127.0.0.1"
	cfg.DataDir = t.TempDir()
	n, err := Start(cfg, quietOpts())
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	addr, _ := n.raft.LeaderWithID()
	if string(addr) != n.PeerAddr() || !strings.HasPrefix(n.PeerAddr(), "127.0.0.1:") {
		t.Fatalf("leader address %q, advertised peer address %q; want 127.0.0.1:PORT for both", addr, n.PeerAddr())
	}
	if got := n.State().Nodes["w1"].Peer; got != n.PeerAddr() {
		t.Fatalf("state records peer %q, want %q", got, n.PeerAddr())
	}
}

// TestVotersSpreadOverDCs has three voters of one DC meet nodes of two more DCs: the leader
// swaps voters until each DC holds one.
func TestVotersSpreadOverDCs(t *testing.T) {
	c := newTestCluster(t)
	n1 := c.start("n1", "dc1")
	if err := n1.Propose(context.Background(), &fsm.SetSetting{Key: "max_voters", Value: "3"}); err != nil {
		t.Fatal(err)
	}
	c.start("n2", "dc1", "n1")
	c.start("n3", "dc1", "n1")
	c.start("n4", "dc2", "n1")
	c.start("n5", "dc3", "n1")
	poll(t, 30*time.Second, "one voter per DC", func() error {
		st := c.leader().Status(context.Background())
		perDC := map[string]int{}
		voters := 0
		for _, m := range st.Members {
			if m.Suffrage == "voter" {
				voters++
				perDC[m.DC]++
			}
		}
		if voters != 3 || perDC["dc1"] != 1 || perDC["dc2"] != 1 || perDC["dc3"] != 1 {
			return fmt.Errorf("%d voters, per DC %v", voters, perDC)
		}
		return nil
	})
	// Lowering max_voters demotes voters until they fit; the leader stays one.
	if err := n1.Propose(context.Background(), &fsm.SetSetting{Key: "max_voters", Value: "1"}); err != nil {
		t.Fatal(err)
	}
	poll(t, 30*time.Second, "one voter, the leader", func() error {
		l := c.leader()
		voters := 0
		for _, m := range l.Status(context.Background()).Members {
			if m.Suffrage == "voter" {
				voters++
				if m.ID != l.ID() {
					return fmt.Errorf("%s still votes", m.ID)
				}
			}
		}
		if voters != 1 {
			return fmt.Errorf("%d voters", voters)
		}
		return nil
	})
}

// TestJoinPastASeedThatHangs: each seed has its own time. This node itself under another
// spelling (localhost for 127.0.0.1) answers the handshake, then its join handler waits for a
// leader until the caller gives up; with one deadline for all the seeds it used the whole of
// it, the seed after it failed at once, and the node never joined.
func TestJoinPastASeedThatHangs(t *testing.T) {
	c := newTestCluster(t)
	c.start("n1", "dc1")
	cfg := DefaultConfig()
	cfg.ID, cfg.DC = "n2", "dc1"
	cfg.Listen, cfg.PeerListen, cfg.AdminListen = freeAddr(t), freeAddr(t), "127.0.0.1:0"
	cfg.DataDir = filepath.Join(c.dir, "n2")
	c.cfgs["n2"] = cfg
	_, port, _ := net.SplitHostPort(cfg.PeerListen)
	c.seedsFirst = map[string][]string{"n2": {"localhost:" + port}}
	n2 := c.start("n2", "dc1", "n1")
	if _, ok := c.nodes["n1"].State().Nodes[n2.ID()]; !ok {
		t.Fatal("n2 is not a member")
	}
}

// A leader restarted from its data dir at a new peer address updates its own entry in the Raft
// configuration and goes on leading and acting. Until session 45 it removed its entry and
// added it again: removed, hashicorp/raft stepped it down and shut its Raft down for good, and
// the node never acted again.
func TestLeaderRestartedAtANewPeerAddress(t *testing.T) {
	c := newTestCluster(t)
	n := c.start("n1", "dc1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Propose(ctx, &fsm.SetSetting{Key: "max_voters", Value: "3"}); err != nil {
		t.Fatal(err)
	}
	old := n.PeerAddr()
	n.Close()
	delete(c.nodes, "n1")
	cfg := c.cfgs["n1"]
	cfg.PeerListen = "127.0.0.1:0" // another port
	c.cfgs["n1"] = cfg
	n = c.start("n1", "dc1")
	if n.PeerAddr() == old {
		t.Fatalf("the restart kept its peer address %s", old)
	}
	poll(t, 15*time.Second, "the Raft configuration names n1 at its new address, a voter", func() error {
		f := n.raft.GetConfiguration()
		if err := f.Error(); err != nil {
			return err
		}
		for _, s := range f.Configuration().Servers {
			if s.ID == "n1" && string(s.Address) == n.PeerAddr() && s.Suffrage == raft.Voter {
				return nil
			}
		}
		return fmt.Errorf("configuration %+v", f.Configuration().Servers)
	})
	if err := n.Propose(ctx, &fsm.SetSetting{Key: "max_voters", Value: "5"}); err != nil {
		t.Fatalf("a proposal after the restart: %v", err)
	}
	waitActing(t, n, true, 10*time.Second)
}
