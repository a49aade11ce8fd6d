package node

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/redraft/redraft/fsm"
)

// seen records what a node's gate hands its subscribers.
type seen struct {
	mu     sync.Mutex
	states []uint64 // indexes of the states handed over
	holds  []string
}

func (s *seen) on(st *fsm.State, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.holds = append(s.holds, err.Error())
		return
	}
	s.states = append(s.states, st.Index)
}

func (s *seen) snapshot() ([]uint64, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint64(nil), s.states...), append([]string(nil), s.holds...)
}

func waitActing(t *testing.T, n *Node, want bool, d time.Duration) {
	t.Helper()
	poll(t, d, fmt.Sprintf("%s acting=%v", n.ID(), want), func() error {
		if acting, why := n.Acting(); acting != want {
			return fmt.Errorf("acting=%v (%v)", acting, why)
		}
		return nil
	})
}

// A node restarted behind the cluster hands its subscribers no state older than the leader's
// at the restart: not its replayed log, not the states in between.
func TestActsOnlyOnCaughtUpState(t *testing.T) {
	c := newTestCluster(t)
	c.start("n1", "dc1")
	c.start("n2", "dc1", "n1")
	c.start("n3", "dc1", "n1")
	ctx := context.Background()
	set := func(i int) {
		t.Helper()
		if err := c.leader().Propose(ctx, &fsm.SetSetting{Key: "outbox_max_entries", Value: strconv.Itoa(1000 + i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 100; i++ {
		set(i)
	}
	victim := "n3"
	if c.nodes[victim].IsLeader() {
		victim = "n2"
	}
	c.nodes[victim].Close()
	delete(c.nodes, victim)
	for i := 100; i < 400; i++ {
		set(i)
	}
	target := c.leader().State().Index

	n := c.start(victim, "dc1")
	var s seen
	n.OnCurrent(s.on)
	waitActing(t, n, true, 15*time.Second)
	if got := n.Current().Setting("outbox_max_entries"); got != "1399" {
		t.Fatalf("acting on a state with outbox_max_entries %s, want 1399", got)
	}
	states, holds := s.snapshot()
	if len(states) == 0 {
		t.Fatal("no state handed over")
	}
	for _, idx := range states {
		if idx < target {
			t.Fatalf("handed state %d over, older than the leader's %d at the restart (all: %v)", idx, target, states)
		}
	}
	t.Logf("restarted %s: first state handed over %d (leader was at %d), holds before: %q", victim, states[0], target, holds)
}

// A follower that hears from no leader stops acting once its lease lapses, tells its
// subscribers why, and acts again once it has caught up with a leader.
func TestLeaseLapsesWithoutLeader(t *testing.T) {
	c := newTestCluster(t)
	c.start("n1", "dc1")
	c.start("n2", "dc1", "n1")
	c.start("n3", "dc1", "n1")
	var keep *Node
	for _, n := range c.nodes {
		if !n.IsLeader() {
			keep = n
		}
	}
	waitActing(t, keep, true, 10*time.Second)
	var s seen
	keep.OnCurrent(s.on)
	var others []string
	for id, n := range c.nodes {
		if n != keep {
			n.Close()
			others = append(others, id)
		}
	}
	for _, id := range others {
		delete(c.nodes, id)
	}
	lost := time.Now()
	waitActing(t, keep, false, LeaseTimeout+5*time.Second)
	t.Logf("stopped acting %v after the others stopped", time.Since(lost).Round(time.Millisecond))
	if len(keep.Current().DCs) != 0 || len(keep.Current().Nodes) != 0 {
		t.Fatal("Current is not empty while not acting")
	}
	_, why := keep.Acting()
	if !errors.Is(why, ErrNotCurrent) || !strings.HasPrefix(why.Error(), "CLUSTERDOWN ") || !strings.Contains(why.Error(), "leader") {
		t.Fatalf("reason %v", why)
	}
	_, holds := s.snapshot()
	if len(holds) == 0 {
		t.Fatal("subscriber not told to hold")
	}
	for _, id := range others {
		c.start(id, "dc1")
	}
	waitActing(t, keep, true, 20*time.Second)
	if len(keep.Current().Nodes) != 3 {
		t.Fatalf("acting on %d nodes", len(keep.Current().Nodes))
	}
}

// refusingLogs is a Raft log store whose writes fail while refuse is set (a full disk).
type refusingLogs struct {
	raft.LogStore
	refuse *atomic.Bool
}

func (l refusingLogs) StoreLog(g *raft.Log) error { return l.StoreLogs([]*raft.Log{g}) }

func (l refusingLogs) StoreLogs(gs []*raft.Log) error {
	if l.refuse.Load() {
		return errors.New("no space left on device")
	}
	return l.LogStore.StoreLogs(gs)
}

// A follower whose log appends fail (a full disk) still hears the leader's heartbeats, which
// renew its contact: it stops acting all the same once an index the leader had applied stays
// unapplied here for LeaseTimeout, and acts again once its log takes writes and it caught up.
// Until session 45 it went on acting on its last state for as long as the disk stayed full.
func TestLeaseLapsesWhenTheLogDoesNotKeepUp(t *testing.T) {
	c := newTestCluster(t)
	refuse := map[string]*atomic.Bool{}
	for _, id := range []string{"n1", "n2", "n3"} {
		refuse[id] = &atomic.Bool{}
		c.builds[id] = Options{logStore: func(s raft.LogStore) raft.LogStore { return refusingLogs{s, refuse[id]} }}
	}
	c.start("n1", "dc1")
	c.start("n2", "dc1", "n1")
	c.start("n3", "dc1", "n1")
	var victim *Node
	for _, n := range c.nodes {
		if !n.IsLeader() {
			victim = n
		}
	}
	waitActing(t, victim, true, 10*time.Second)
	refuse[victim.ID()].Store(true)
	ctx := context.Background()
	if err := c.leader().Propose(ctx, &fsm.SetSetting{Key: "outbox_max_entries", Value: "4321"}); err != nil {
		t.Fatal(err)
	}
	stuck := time.Now()
	waitActing(t, victim, false, LeaseTimeout+10*time.Second)
	t.Logf("stopped acting %v after its log stopped taking writes", time.Since(stuck).Round(time.Millisecond))
	if _, why := victim.Acting(); !strings.Contains(why.Error(), "does not keep up") {
		t.Fatalf("reason %v, want the log's", why)
	}
	if d := time.Since(victim.raft.LastContact()); d >= LeaseTimeout {
		t.Fatalf("the victim's last contact is %v old: the test meant heartbeats to go on", d)
	}
	refuse[victim.ID()].Store(false)
	waitActing(t, victim, true, 20*time.Second)
	if got := victim.Current().Setting("outbox_max_entries"); got != "4321" {
		t.Fatalf("acting again on a state with outbox_max_entries %q, want 4321", got)
	}
}
