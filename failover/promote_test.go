package failover

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testredis"
)

// TestRestartedMasterDoesNotCancel: a failover whose old master comes back as a new process
// (restarted, here empty: no persistence) goes on and promotes the replica, although the
// watcher's probes have seen the new process since: only the run id the failover recorded at
// its start cancels it (the replica may have copied the empty master meanwhile: that loss is
// Redis's, docs/failover.md); the same master process answering again cancels.
func TestRestartedMasterDoesNotCancel(t *testing.T) {
	ctx := context.Background()
	m := testredis.Start(t)
	r := testredis.Start(t, testredis.WithReplicaOf(m.Addr, ""))
	mc := redis.NewClient(&redis.Options{Addr: m.Addr})
	defer mc.Close()
	rc := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rc.Close()
	if err := mc.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for rc.Get(ctx, "k").Val() != "v" {
		if time.Now().After(deadline) {
			t.Fatal("the replica never got k")
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	g := &fsm.Group{ID: "g1", Master: m.Addr, Replicas: []string{r.Addr}}
	st := &fsm.State{DCs: map[string]*fsm.DC{"dc1": {Name: "dc1", Groups: map[string]*fsm.Group{"g1": g}}}}
	w := New(Config{Cluster: &stateCluster{st: st}})
	defer w.adm.close()
	w.started = time.Now()
	w.tick(ctx)
	s, ok := w.server(m.Addr)
	if !ok || s.runID == "" {
		t.Fatalf("the master was not probed: %+v", s)
	}
	f := fsm.Failover{Epoch: 1, From: m.Addr, FromRunID: s.runID, Executor: "n2"}

	// The same process answers: cancelled.
	if to, why, err := w.promote(ctx, st, g, f); err != errDone || to != "" {
		t.Fatalf("the same master answering: promote = %q, %q, %v; want cancelled", to, why, err)
	}

	// A new process (restarted empty) answers, and the probes have seen it: promoted.
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	for s, _ := w.server(m.Addr); s.runID == f.FromRunID || s.err != nil; s, _ = w.server(m.Addr) {
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatal("the restarted master was never probed")
		}
		w.tick(ctx)
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	to, why, err := w.promote(ctx, st, g, f)
	if err != nil || to != r.Addr {
		t.Fatalf("a restarted master: promote = %q, %q, %v; want %s promoted", to, why, err, r.Addr)
	}
	if role := rc.Do(ctx, "ROLE").Val().([]any)[0]; role != "master" {
		t.Fatalf("the promoted replica's role: %v", role)
	}
}
