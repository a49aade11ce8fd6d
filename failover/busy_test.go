package failover

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testredis"
)

// votingCluster is a stateCluster that keeps the down votes proposed.
type votingCluster struct {
	stateCluster
	mu    sync.Mutex
	votes []*fsm.ReportServer
}

func (c *votingCluster) Propose(_ context.Context, cmd fsm.Command) error {
	if r, ok := cmd.(*fsm.ReportServer); ok && r.Down {
		c.mu.Lock()
		c.votes = append(c.votes, r)
		c.mu.Unlock()
	}
	return nil
}

func (c *votingCluster) voted() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.votes)
}

// TestBusyMasterIsNotVotedDown: a client's script that runs longer than master_down_after
// (here 2 s against 600 ms) does not get its master voted down: the watcher lowers the
// server's busy-reply-threshold below master_down_after, and the -BUSY answers count as
// answers. Until session 43 the probes timed out for the script's first 5 s (Redis's default
// threshold) and the nodes failed the master over, losing the script's acknowledged writes.
// A master that does not answer at all is still voted down.
func TestBusyMasterIsNotVotedDown(t *testing.T) {
	ctx := context.Background()
	m := testredis.Start(t)
	mc := redis.NewClient(&redis.Options{Addr: m.Addr})
	defer mc.Close()
	g := &fsm.Group{ID: "g1", Master: m.Addr}
	st := &fsm.State{DCs: map[string]*fsm.DC{"dc1": {Name: "dc1", Groups: map[string]*fsm.Group{"g1": g}}},
		Settings: map[string]string{"master_down_after": "600ms"}}
	cl := &votingCluster{stateCluster: stateCluster{st: st}}
	w := New(Config{Cluster: cl, Interval: 50 * time.Millisecond})
	defer w.adm.close()
	for deadline := time.Now().Add(5 * time.Second); ; {
		w.tick(ctx)
		if v := mc.ConfigGet(ctx, "busy-reply-threshold").Val()["busy-reply-threshold"]; v == "200" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("busy-reply-threshold was never lowered to a third of master_down_after")
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	done := make(chan error, 1)
	go func() {
		done <- mc.Eval(ctx, "local t = redis.call('TIME') local s = t[1] * 1000 + t[2] / 1000 "+
			"while true do t = redis.call('TIME') if t[1] * 1000 + t[2] / 1000 - s > 2000 then return 1 end end", nil).Err()
	}()
	for running := false; ; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			if !running {
				t.Fatal("the script ended before the watcher saw it")
			}
			if n := cl.voted(); n != 0 {
				t.Fatalf("%d down votes for a master running a 2 s script", n)
			}
			m.Stop()
			for deadline := time.Now().Add(5 * time.Second); cl.voted() == 0; {
				if time.Now().After(deadline) {
					t.Fatal("a stopped master was never voted down")
				}
				w.tick(ctx)
				time.Sleep(20 * time.Millisecond) // poll interval
			}
			return
		default:
		}
		w.tick(ctx)
		if s, _ := w.server(m.Addr); isBusy(s.err) {
			running = true
		}
		time.Sleep(20 * time.Millisecond) // the probe interval
	}
}

// TestNoDownVoteOnTheFirstProbeAfterAGap: a node that did not act on the cluster state for
// longer than master_down_after (its watcher probes nothing then) and finds the master
// unreachable when it acts again does not vote it down on that one failed probe: the master
// must stay unreachable for master_down_after of probes first. Until session 45 it voted at
// once, and after a quorum loss every node did, so one failed probe started a failover.
func TestNoDownVoteOnTheFirstProbeAfterAGap(t *testing.T) {
	ctx := context.Background()
	m := testredis.Start(t)
	g := &fsm.Group{ID: "g1", Master: m.Addr}
	st := &fsm.State{DCs: map[string]*fsm.DC{"dc1": {Name: "dc1", Groups: map[string]*fsm.Group{"g1": g}}},
		Settings: map[string]string{"master_down_after": "600ms"}}
	cl := &votingCluster{stateCluster: stateCluster{st: st}}
	w := New(Config{Cluster: cl, Interval: 50 * time.Millisecond})
	defer w.adm.close()
	w.tick(ctx)
	if _, ok := w.server(m.Addr); !ok {
		t.Fatal("the master was not probed")
	}
	// The node stops acting: its state is empty, the watcher probes nothing.
	cl.set(fsm.New())
	for away := time.Now(); time.Since(away) < time.Second; {
		w.tick(ctx)
		time.Sleep(50 * time.Millisecond) // the node's time away: a second of ticks
	}
	m.Stop()
	cl.set(st)
	w.tick(ctx)
	w.mu.Lock()
	_, voted := w.votedAt[g.ID] // set as the vote is cast, before its proposal runs
	w.mu.Unlock()
	if voted {
		t.Fatal("a down vote on the first failed probe after the gap")
	}
	deadline := time.Now().Add(5 * time.Second)
	for cl.voted() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a master unreachable for master_down_after of probes was not voted down")
		}
		w.tick(ctx)
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

// TestMasterAnsweringAsAReplicaIsVotedDown: the group's master answers, but as a replica (a
// promoted master restarted with the replicaof line of its configuration file): every write
// to it fails with READONLY. It is voted down once it has answered so for master_down_after,
// as Sentinel takes such a master for down, not before. Until session 45 it was never voted
// down (it answered), and the group refused writes until an operator acted.
func TestMasterAnsweringAsAReplicaIsVotedDown(t *testing.T) {
	ctx := context.Background()
	m := testredis.Start(t)
	other := testredis.Start(t)
	mc := redis.NewClient(&redis.Options{Addr: m.Addr})
	defer mc.Close()
	// The other server is the group's replica (a group without one is not voted down for
	// this: its failover would have nothing to promote).
	g := &fsm.Group{ID: "g1", Master: m.Addr, Replicas: []string{other.Addr}}
	st := &fsm.State{DCs: map[string]*fsm.DC{"dc1": {Name: "dc1", Groups: map[string]*fsm.Group{"g1": g}}},
		Settings: map[string]string{"master_down_after": "600ms"}}
	cl := &votingCluster{stateCluster: stateCluster{st: st}}
	w := New(Config{Cluster: cl, Interval: 50 * time.Millisecond})
	defer w.adm.close()
	w.tick(ctx)
	host, port, _ := strings.Cut(other.Addr, ":")
	if err := mc.Do(ctx, "REPLICAOF", host, port).Err(); err != nil {
		t.Fatal(err)
	}
	since := time.Now()
	votedAt := func() (time.Time, bool) {
		w.mu.Lock()
		defer w.mu.Unlock()
		at, ok := w.votedAt[g.ID]
		return at, ok
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		w.tick(ctx)
		if at, ok := votedAt(); ok {
			if d := at.Sub(since); d < 600*time.Millisecond {
				t.Fatalf("voted down %v after it began answering as a replica, before master_down_after", d)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a master answering as a replica was never voted down")
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}
