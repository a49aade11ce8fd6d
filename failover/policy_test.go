package failover

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testredis"
)

// stateCluster is a Cluster of one node whose state the test sets; it proposes nothing.
type stateCluster struct {
	mu sync.Mutex
	st *fsm.State
}

func (c *stateCluster) State() *fsm.State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st
}
func (c *stateCluster) set(st *fsm.State) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.st = st
}
func (c *stateCluster) Propose(context.Context, fsm.Command) error { return nil }
func (c *stateCluster) ID() string                                 { return "n1" }
func (c *stateCluster) DC() string                                 { return "dc1" }
func (c *stateCluster) CallPeer(context.Context, string, string, any, any) error {
	return errors.New("no peers")
}

func policyOf(t *testing.T, c *redis.Client) string {
	t.Helper()
	v, err := c.ConfigGet(context.Background(), "maxmemory-policy").Result()
	if err != nil {
		t.Fatal(err)
	}
	return v["maxmemory-policy"]
}

// TestNoEvictionWithSeveralDCs: servers started with an evicting policy keep it while the
// cluster has one DC; once it has two, the watcher sets noeviction on the master and the
// replica, again after the master restarts with its old arguments, and then a full master
// refuses writes instead of evicting keys it acknowledged.
func TestNoEvictionWithSeveralDCs(t *testing.T) {
	lru := testredis.WithArgs("--maxmemory-policy", "allkeys-lru")
	m := testredis.Start(t, lru)
	r := testredis.Start(t, lru, testredis.WithReplicaOf(m.Addr, ""))
	g := &fsm.Group{ID: "g1", Master: m.Addr, Replicas: []string{r.Addr}}
	one := &fsm.State{DCs: map[string]*fsm.DC{"dc1": {Name: "dc1", Groups: map[string]*fsm.Group{"g1": g}}}}
	cl := &stateCluster{st: one}
	w := New(Config{Cluster: cl})
	defer w.adm.close()
	ctx := context.Background()
	mc := redis.NewClient(&redis.Options{Addr: m.Addr})
	defer mc.Close()
	rc := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rc.Close()

	// One DC: a cache may evict. Each tick probes both servers (the view says so) and leaves
	// their policy.
	for i := 0; i < 3; i++ {
		w.tick(ctx)
	}
	for _, v := range w.View() {
		if !v.Up || v.Policy != "allkeys-lru" {
			t.Fatalf("one DC, view %+v", v)
		}
	}
	if n := w.noEvicts.Load(); n != 0 || policyOf(t, mc) != "allkeys-lru" || policyOf(t, rc) != "allkeys-lru" {
		t.Fatalf("one DC: %d policies set; master %s, replica %s", n, policyOf(t, mc), policyOf(t, rc))
	}

	two := &fsm.State{DCs: map[string]*fsm.DC{"dc1": one.DCs["dc1"], "dc2": {Name: "dc2", Groups: map[string]*fsm.Group{}}}}
	cl.set(two)
	waitPolicies := func(what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for policyOf(t, mc) != NoEviction || policyOf(t, rc) != NoEviction {
			if time.Now().After(deadline) {
				t.Fatalf("%s: master %s, replica %s after 10 s", what, policyOf(t, mc), policyOf(t, rc))
			}
			w.tick(ctx)
			time.Sleep(20 * time.Millisecond) // poll interval
		}
	}
	waitPolicies("two DCs")
	if n := w.noEvicts.Load(); n != 2 {
		t.Fatalf("two DCs: %d policies set, want 2 (master and replica)", n)
	}

	// The master restarts with its arguments (allkeys-lru) and gets noeviction again.
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	if p := policyOf(t, mc); p != "allkeys-lru" {
		t.Fatalf("restarted master: %s", p)
	}
	waitPolicies("after the master's restart")
	if n := w.noEvicts.Load(); n != 3 {
		t.Fatalf("after the restart: %d policies set, want 3", n)
	}

	// Full, the master refuses writes and keeps every key it acknowledged.
	used, err := mc.Info(ctx, "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	base := infoInt(t, used, "used_memory")
	if err := mc.ConfigSet(ctx, "maxmemory", strconv.FormatInt(base+512<<10, 10)).Err(); err != nil {
		t.Fatal(err)
	}
	val := strings.Repeat("v", 1000)
	acked := 0
	for i := 0; ; i++ {
		err := mc.Set(ctx, fmt.Sprintf("k%d", i), val, 0).Err()
		if err != nil {
			if !strings.HasPrefix(err.Error(), "OOM ") {
				t.Fatalf("write %d: %v", i, err)
			}
			break
		}
		acked++
		if i > 100000 {
			t.Fatal("no OOM after 100000 writes of 1 KB over a 512 KB margin")
		}
	}
	stats, err := mc.Info(ctx, "stats").Result()
	if err != nil {
		t.Fatal(err)
	}
	n, err := mc.DBSize(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if ev := infoInt(t, stats, "evicted_keys"); ev != 0 || int(n) != acked || acked == 0 {
		t.Fatalf("full master: %d acked, %d keys, %d evicted", acked, n, ev)
	}
}

func infoInt(t *testing.T, info, field string) int64 {
	t.Helper()
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in INFO", field)
	return 0
}
