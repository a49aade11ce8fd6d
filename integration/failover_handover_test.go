package integration

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testredis"
	"github.com/redraft/redraft/migrate"
	"github.com/redraft/redraft/node"
)

// TestFailoverExecutorDies kills -9 a failover's executor at three points of its run (right
// after the failover's start is committed; right after it promoted a replica with REPLICAOF NO
// ONE, before committing it; in a planned switchover, right after the old master was made a
// replica of the new one, before the commit), under a DC_QUORUM write load: another node of
// the DC takes the failover over through Raft and finishes it (with the replica already
// promoted, in the last two cases), writes are accepted again through both surviving nodes,
// and no acknowledged write is lost. The executor stops at the point through a test hook
// (REDRAFT_FAILOVER_TEST_HANG), which only a failover's first executor obeys.
func TestFailoverExecutorDies(t *testing.T) {
	for _, at := range []string{"started", "promoted", "switched"} {
		t.Run(at, func(t *testing.T) { testExecutorDies(t, at) })
	}
}

var hookLine = regexp.MustCompile(`test hook: failover executor stops here.*detail=(\S*)`)

func testExecutorDies(t *testing.T, at string) {
	t.Setenv("REDRAFT_FAILOVER_TEST_HANG", at)
	e := newFailoverEnv(t, "write_consistency", "DC_QUORUM", "master_down_after", "1s")
	before := e.group()
	old := before.Master
	l := e.startLoad(4)
	waitFor(t, 10*time.Second, "writes before the kill", func() error {
		if n := l.count(); n < 300 {
			return fmt.Errorf("%d so far", n)
		}
		return nil
	})
	killed := time.Now()
	cli := make(chan struct{})
	if at == "switched" {
		go func() {
			defer close(cli)
			_, _ = e.nodes[1].CLI("group", "failover", "--dc", "dc1", "--group", "g1") // fails: n2 is killed
		}()
	} else {
		close(cli)
		e.servers[old].Stop()
	}
	defer func() { <-cli }()
	// The executor reaches the hook and stops there; kill -9 it.
	dead, promoted := -1, ""
	waitFor(t, 20*time.Second, "the executor at the hook", func() error {
		for i, p := range e.nodes {
			if m := hookLine.FindStringSubmatch(p.Log()); m != nil {
				dead, promoted = i, strings.Trim(m[1], `"`)
				return nil
			}
		}
		return fmt.Errorf("no node logged the hook; group %+v", e.group().Failover)
	})
	f := e.group().Failover
	if f == nil || f.Executor != e.nodes[dead].ID {
		t.Fatalf("failover %+v, but %s logged the hook", f, e.nodes[dead].ID)
	}
	e.nodes[dead].Kill9()
	t.Logf("master %s killed (or switched over); executor %s killed at %q (promoted %q) %s later", old, e.nodes[dead].ID, at,
		promoted, time.Since(killed).Round(time.Millisecond))
	if at != "started" && promoted == "" {
		t.Fatal("the hook did not say which replica was promoted")
	}
	var alive []*proc
	var clients []*redis.Client
	for i, p := range e.nodes {
		if i != dead {
			alive, clients = append(alive, p), append(clients, e.clients[i])
		}
	}
	status := func() node.GroupStatus { return groupOf(t, alive[0], "g1") }
	ctx := context.Background()
	var took time.Duration
	waitFor(t, 30*time.Second, "a write through every surviving node", func() error {
		for i, rc := range clients {
			if err := rc.Set(ctx, "probe", i, 0).Err(); err != nil {
				return fmt.Errorf("%s: %w (failover %+v)", alive[i].ID, err, status().Failover)
			}
		}
		took = time.Since(killed)
		return nil
	})
	var g node.GroupStatus
	waitFor(t, 30*time.Second, "the failover committed", func() error {
		g = status()
		if g.Master == old || g.Failovers != before.Failovers+1 {
			return fmt.Errorf("master %s, failovers %d, failover %+v", g.Master, g.Failovers, g.Failover)
		}
		return nil
	})
	lf := g.LastFailover
	if lf == nil || lf.Result != "promoted" || lf.TakeOvers != 1 || lf.Executor == e.nodes[dead].ID ||
		!strings.Contains(lf.TakenOver, "took over from "+e.nodes[dead].ID) {
		t.Fatalf("last failover: %+v", lf)
	}
	if at != "started" && g.Master != promoted {
		t.Fatalf("the dead executor promoted %s but %s was committed", promoted, g.Master)
	}
	if at == "switched" && (!lf.Planned || !slices.Contains(g.Replicas, old)) {
		t.Fatalf("switchover: old master %s not a replica: %+v, last failover %+v", old, g, lf)
	}
	if at != "switched" && !slices.Contains(g.Fenced, old) {
		t.Fatalf("old master %s not fenced: %+v", old, g)
	}
	acked := l.count()
	waitFor(t, 10*time.Second, "writes acknowledged after the failover", func() error {
		if n := l.count() - acked; n < 200 {
			return fmt.Errorf("%d so far", n)
		}
		return nil
	})
	t.Logf("failover %s -> %s by %s (%s); writes through every surviving node %s after the start",
		old, g.Master, lf.Executor, lf.TakenOver, took.Round(time.Millisecond))
	e.finishVia(l, clients)
}

// groupOf returns the group id of the first DC that has it, as p reports it.
func groupOf(t *testing.T, p *proc, id string) node.GroupStatus {
	t.Helper()
	for _, d := range p.Status().DCs {
		for _, g := range d.Groups {
			if g.ID == id {
				return g
			}
		}
	}
	t.Fatalf("group %s not in %s's status", id, p.ID)
	return node.GroupStatus{}
}

// TestFailoverKeepsKeysMovedBeforeTheKill: a key the migration moved to the target (and a
// client then wrote there) just before the source master died is still on the promoted
// replica, which never got its deletion (both replicas' links were broken). After the
// failover the migration keeps the target's copy: the client's write is not overwritten by
// the stale copy, through every node, during and after the migration.
func TestFailoverKeepsKeysMovedBeforeTheKill(t *testing.T) {
	e := newFailoverEnv(t, "master_down_after", "1s")
	g2 := testredis.Start(t, testredis.WithPassword(groupPassword))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := e.nodes[0].Client().AddGroup(ctx, "dc1", fsm.Group{ID: "g2", Master: g2.Addr, Password: groupPassword}); err != nil {
		t.Fatal(err)
	}
	const bulk = 6000
	loadBulk(t, e.clients[0], bulk)
	key := ""
	for i := 0; key == ""; i++ {
		if k := fmt.Sprintf("keep:%d", i); migrate.SlotString(k) < 8192 {
			key = k
		}
	}
	if err := e.clients[0].Set(ctx, key, "before", 0).Err(); err != nil {
		t.Fatal(err)
	}
	g := e.group()
	var replicas []*redis.Client
	for _, a := range g.Replicas {
		rc := redis.NewClient(&redis.Options{Addr: a, Password: groupPassword})
		defer rc.Close()
		replicas = append(replicas, rc)
		waitFor(t, 10*time.Second, "the key on replica "+a, func() error {
			if v, err := rc.Get(ctx, key).Result(); v != "before" {
				return fmt.Errorf("%q (%v)", v, err)
			}
			return nil
		})
	}
	// From now on the replicas get nothing: every key moved from here on stays on them.
	for _, rc := range replicas {
		for _, args := range [][]any{{"CONFIG", "SET", "masterauth", "wrong"}, {"CLIENT", "KILL", "TYPE", "master"}} {
			if err := rc.Do(ctx, args...).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	id := startThrottled(t, e.nodes[0], "0-8191", "g2", 500)
	// The write moves the key to g2 first, then lands there.
	if err := e.clients[1].Set(ctx, key, "written-on-target", 0).Err(); err != nil {
		t.Fatal(err)
	}
	target := redis.NewClient(&redis.Options{Addr: g2.Addr, Password: groupPassword})
	defer target.Close()
	if v, _ := target.Get(ctx, key).Result(); v != "written-on-target" {
		t.Fatalf("the write is not on the target: %q", v)
	}
	old := g.Master
	e.servers[old].Stop()
	ng := e.waitGroup("the failover", func(ng node.GroupStatus) error {
		if ng.Master == old || ng.Failovers != 1 {
			return fmt.Errorf("master %s, failovers %d, failover %+v", ng.Master, ng.Failovers, ng.Failover)
		}
		return nil
	})
	promoted := redis.NewClient(&redis.Options{Addr: ng.Master, Password: groupPassword})
	defer promoted.Close()
	if v, _ := promoted.Get(ctx, key).Result(); v != "before" {
		t.Logf("the promoted replica has %q (its stale copy may be gone already)", v)
	}
	for i, rc := range e.clients {
		waitFor(t, 20*time.Second, "the key through "+e.nodes[i].ID, func() error {
			v, err := rc.Get(ctx, key).Result()
			if err != nil {
				return err
			}
			if v != "written-on-target" {
				t.Fatalf("%s reads %q: the stale copy of the failed-over source replaced the write", e.nodes[i].ID, v)
			}
			return nil
		})
	}
	waitMigrated(t, id, 90*time.Second, e.nodes...)
	checkBulk(t, e.clients[2], bulk)
	if v, err := e.clients[2].Get(ctx, key).Result(); v != "written-on-target" {
		t.Fatalf("after the migration: %q (%v)", v, err)
	}
	if n, _ := promoted.Exists(ctx, key).Result(); n != 0 {
		t.Fatalf("the stale copy is still on the source")
	}
}
