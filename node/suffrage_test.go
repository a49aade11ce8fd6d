package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/redraft/redraft/fsm"
)

// suffrageOf is id's suffrage in n's Raft configuration ("" when it is not a member).
func suffrageOf(t *testing.T, n *Node, id string) raft.ServerSuffrage {
	t.Helper()
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		t.Fatal(err)
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == id {
			return s.Suffrage
		}
	}
	return -1
}

// TestJoinerTheLeaderCannotReachIsNoVoter: a node that advertises a peer address the leader
// cannot dial (here 127.0.0.2, where nothing listens) joins through its own outbound call.
// Until session 47 it became a voter at once: a one-node cluster then needed both votes,
// nothing committed, and the leader stepped down for good. It now stays a non-voter, and the
// leader's loop does not promote it either.
func TestJoinerTheLeaderCannotReachIsNoVoter(t *testing.T) {
	c := newTestCluster(t)
	n1 := c.start("n1", "dc1")
	cfg := DefaultConfig()
	cfg.ID, cfg.DC = "n2", "dc1"
	cfg.Listen, cfg.PeerListen, cfg.AdminListen = freeAddr(t), "127.0.0.1:0", "127.0.0.1:0"
	cfg.Advertise = "127.0.0.2"
	cfg.DataDir = filepath.Join(c.dir, "n2")
	c.cfgs["n2"] = cfg
	c.launch("n2", "dc1", "n1")
	poll(t, 20*time.Second, "n2 in the cluster state", func() error {
		if n1.State().Nodes["n2"] == nil {
			return errors.New("not yet")
		}
		return nil
	})
	f := n1.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		t.Fatal(err)
	}
	n1.promote(f.Configuration().Servers)
	if s := suffrageOf(t, n1, "n2"); s != raft.Nonvoter {
		t.Fatalf("n2, unreachable, has suffrage %v; want a non-voter", s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n1.Propose(ctx, &fsm.SetSetting{Key: "max_voters", Value: "5"}); err != nil {
		t.Fatalf("the cluster no longer commits: %v", err)
	}
	if !n1.IsLeader() {
		t.Fatal("n1 stepped down")
	}
}

// TestDemotionKeepsAMajorityAnswering: five voters, two of them dead, max_voters lowered to
// three. Until session 47 the leader demoted a live voter (the lowest id of the most crowded
// DC): four voters left needing three votes, two answering, and nothing committed again. The
// dead ones go first now, and the cluster still commits with three voters.
func TestDemotionKeepsAMajorityAnswering(t *testing.T) {
	c := newTestCluster(t)
	n1 := c.start("n1", "dc1")
	for _, id := range []string{"n2", "n3", "n4", "n5"} {
		c.start(id, "dc1", "n1")
	}
	poll(t, 30*time.Second, "five voters", func() error {
		for _, id := range []string{"n1", "n2", "n3", "n4", "n5"} {
			if s := suffrageOf(t, n1, id); s != raft.Voter {
				return fmt.Errorf("%s has suffrage %v", id, s)
			}
		}
		return nil
	})
	l := c.leader()
	var dead []string
	for _, id := range []string{"n5", "n4", "n3", "n2", "n1"} {
		if id != l.ID() && len(dead) < 2 {
			c.nodes[id].Close()
			delete(c.nodes, id)
			dead = append(dead, id)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Propose(ctx, &fsm.SetSetting{Key: "max_voters", Value: "3"}); err != nil {
		t.Fatal(err)
	}
	// The leader's loop, a tick at a time, as it runs every two seconds.
	for i := 0; i < 3; i++ {
		f := l.raft.GetConfiguration()
		if err := f.Error(); err != nil {
			t.Fatal(err)
		}
		l.promote(f.Configuration().Servers)
	}
	for _, id := range dead {
		if s := suffrageOf(t, l, id); s == raft.Voter {
			t.Errorf("dead %s still votes", id)
		}
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if err := l.Propose(ctx2, &fsm.SetSetting{Key: "max_voters", Value: "4"}); err != nil {
		t.Fatalf("the cluster no longer commits: %v", err)
	}
}

// TestJoinThroughARemovedSeed: a removed node still running (its process shutting down) was a
// joiner's first seed. It answered the join with its own removal, code "removed", and the
// joiner took that for its own and stopped. It now answers not_leader: the next seed takes
// the join.
func TestJoinThroughARemovedSeed(t *testing.T) {
	c, _ := threeThenRemoveN3(t)
	n4 := c.start("n4", "dc1", "n3", "n1")
	if n4.RemovedReason() != "" {
		t.Fatalf("n4 stopped: %s", n4.RemovedReason())
	}
	if c.nodes["n1"].State().Nodes["n4"] == nil {
		t.Fatal("n4 is not a member")
	}
}

// TestNoActingBeforeItsRegistration: a node already a Raft member whose AddNode is not applied
// (a join between its two steps; here it was added to Raft by hand, and the leader refuses its
// own join: it gives n1's client address) catches up but does not act: no freeze barrier
// waits for a node the state does not list. Until session 47 it served as soon as it had
// caught up.
func TestNoActingBeforeItsRegistration(t *testing.T) {
	c := newTestCluster(t)
	n1 := c.start("n1", "dc1")
	cfg := DefaultConfig()
	cfg.ID, cfg.DC = "n2", "dc1"
	cfg.Listen, cfg.PeerListen, cfg.AdminListen = c.cfgs["n1"].Listen, "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir = filepath.Join(c.dir, "n2")
	c.cfgs["n2"] = cfg
	c.seedsFirst = map[string][]string{"n2": {freeAddr(t)}}
	n2 := c.launch("n2", "dc1")
	if err := n1.raft.AddNonvoter("n2", raft.ServerAddress(n2.PeerAddr()), 0, 10*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	if err := n1.Propose(context.Background(), &fsm.SetSetting{Key: "max_voters", Value: "5"}); err != nil {
		t.Fatal(err)
	}
	want := n1.State().Index
	poll(t, 10*time.Second, "n2 catches up", func() error {
		if n2.State().Index < want {
			return errors.New("not yet")
		}
		return nil
	})
	if _, err := n2.join(context.Background(), joinRequest{Node: n2.self(), Fresh: true}); err == nil {
		t.Fatal("n2's join with n1's client address was taken")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := n2.catchUp(ctx)
	if err == nil || !errors.Is(err, ErrNotCurrent) {
		t.Fatalf("n2, not in the state, acts: %v", err)
	}
	if acting, _ := n2.Acting(); acting {
		t.Fatal("n2 acts")
	}
}
