package failover

import (
	"context"
	"fmt"
	"strings"
	"sync"
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
	w.tick(ctx)
	s, ok := w.server(m.Addr)
	if !ok || s.runID == "" {
		t.Fatalf("the master was not probed: %+v", s)
	}
	f := fsm.Failover{Epoch: 1, From: m.Addr, FromRunID: s.runID, Executor: "n2"}

	// The same process answers: cancelled.
	if to, why, err := w.promote(ctx, st, g, f, time.Now()); err != errDone || to != "" {
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
	to, why, err := w.promote(ctx, st, g, f, time.Now())
	if err != nil || to != r.Addr {
		t.Fatalf("a restarted master: promote = %q, %q, %v; want %s promoted", to, why, err, r.Addr)
	}
	if role := rc.Do(ctx, "ROLE").Val().([]any)[0]; role != "master" {
		t.Fatalf("the promoted replica's role: %v", role)
	}
}

// TestStrayMasterNotTakenForPromoted: of a failed master's replicas, one that answers as a
// master without this failover having promoted it (restarted without replicaof, empty) is
// not taken for promoted: the replica that kept the data is promoted, recorded first as the
// one being promoted, and a later attempt resumes from it only as the same process.
func TestStrayMasterNotTakenForPromoted(t *testing.T) {
	ctx := context.Background()
	m := testredis.Start(t)
	r1 := testredis.Start(t, testredis.WithReplicaOf(m.Addr, ""))
	r2 := testredis.Start(t, testredis.WithReplicaOf(m.Addr, ""))
	mc := redis.NewClient(&redis.Options{Addr: m.Addr})
	defer mc.Close()
	c1 := redis.NewClient(&redis.Options{Addr: r1.Addr})
	defer c1.Close()
	c2 := redis.NewClient(&redis.Options{Addr: r2.Addr})
	defer c2.Close()
	if err := mc.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for c1.Get(ctx, "k").Val() != "v" || c2.Get(ctx, "k").Val() != "v" {
		if time.Now().After(deadline) {
			t.Fatal("the replicas never got k")
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	g := &fsm.Group{ID: "g1", Master: m.Addr, Replicas: []string{r1.Addr, r2.Addr}}
	st := &fsm.State{DCs: map[string]*fsm.DC{"dc1": {Name: "dc1", Groups: map[string]*fsm.Group{"g1": g}}}}
	cl := &recordingCluster{stateCluster: stateCluster{st: st}}
	w := New(Config{Cluster: cl})
	defer w.adm.close()
	w.tick(ctx)
	m.Stop()
	// r2 comes back as an empty master of its own.
	if err := c2.SlaveOf(ctx, "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c2.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	f := fsm.Failover{Epoch: 1, From: m.Addr, Executor: "n1"}
	to, why, err := w.promote(ctx, st, g, f, time.Now())
	if err != nil || to != r1.Addr {
		t.Fatalf("promote = %q, %q, %v; want %s (r2 answers as a stray master)", to, why, err, r1.Addr)
	}
	p := cl.promoting()
	if p == nil || p.Promoting != r1.Addr || p.PromotingRunID == "" {
		t.Fatalf("the replica being promoted was not recorded first: %+v", p)
	}
	if v := c1.Get(ctx, "k").Val(); v != "v" {
		t.Fatalf("the promoted replica holds k = %q", v)
	}
	// Resumed with the record: r1, the same process, is taken for promoted.
	f.Promoting, f.PromotingRunID = p.Promoting, p.PromotingRunID
	if to, why, err := w.promote(ctx, st, g, f, time.Now()); err != nil || to != r1.Addr {
		t.Fatalf("resumed: promote = %q, %q, %v", to, why, err)
	}
}

// recordingCluster is a stateCluster that keeps the FinishFailover steps proposed.
type recordingCluster struct {
	stateCluster
	mu    sync.Mutex
	steps []*fsm.FinishFailover
}

func (c *recordingCluster) Propose(_ context.Context, cmd fsm.Command) error {
	if f, ok := cmd.(*fsm.FinishFailover); ok {
		c.mu.Lock()
		c.steps = append(c.steps, f)
		c.mu.Unlock()
	}
	return nil
}

// promoting returns the first step that recorded a replica being promoted, or nil.
func (c *recordingCluster) promoting() *fsm.FinishFailover {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.steps {
		if f.Promoting != "" {
			return f
		}
	}
	return nil
}

// TestPromoteWaitsOutACutOffNodesLease: when a node of the DC does not confirm that it holds
// the group (cut off, maybe still reaching the old master), the executor promotes no replica
// before LeaseWait has passed since it first saw the failover, by when that node has stopped
// acting on its state.
func TestPromoteWaitsOutACutOffNodesLease(t *testing.T) {
	ctx := context.Background()
	m := testredis.Start(t)
	r := testredis.Start(t, testredis.WithReplicaOf(m.Addr, ""))
	rc := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rc.Close()
	g := &fsm.Group{ID: "g1", Master: m.Addr, Replicas: []string{r.Addr}}
	st := &fsm.State{DCs: map[string]*fsm.DC{"dc1": {Name: "dc1", Groups: map[string]*fsm.Group{"g1": g}}},
		Nodes: map[string]*fsm.Node{"n2": {ID: "n2", DC: "dc1", Peer: "cut-off:1"}}}
	const lease = 1500 * time.Millisecond
	w := New(Config{Cluster: &stateCluster{st: st}, LeaseWait: lease})
	defer w.adm.close()
	// The replica synced once: one that never did is no candidate.
	for deadline := time.Now().Add(10 * time.Second); !parseInfo(rc.Info(ctx, "replication").Val()).LinkUp; {
		if time.Now().After(deadline) {
			t.Fatal("the replica never synced")
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	w.tick(ctx)
	m.Stop()
	seen := time.Now()
	to, why, err := w.promote(ctx, st, g, fsm.Failover{Epoch: 1, From: m.Addr, Executor: "n1"}, seen)
	if err != nil || to != r.Addr {
		t.Fatalf("promote = %q, %q, %v", to, why, err)
	}
	if d := time.Since(seen); d < lease {
		t.Fatalf("promoted %v after the failover was seen, before the cut-off node's lease (%v) ran out", d, lease)
	}
}

// TestNoReplicaGroupEndsWhenTheMasterIsBack: a group without replicas has nothing to promote,
// so its master answering again ends the failover, even as a new process (restarted from its
// disk, or empty: what a restart lost is lost either way), instead of holding the group down.
func TestNoReplicaGroupEndsWhenTheMasterIsBack(t *testing.T) {
	ctx := context.Background()
	m := testredis.Start(t)
	g := &fsm.Group{ID: "g1", Master: m.Addr}
	st := &fsm.State{DCs: map[string]*fsm.DC{"dc1": {Name: "dc1", Groups: map[string]*fsm.Group{"g1": g}}}}
	w := New(Config{Cluster: &stateCluster{st: st}})
	defer w.adm.close()
	w.tick(ctx)
	s, _ := w.server(m.Addr)
	f := fsm.Failover{Epoch: 1, From: m.Addr, FromRunID: s.runID, Executor: "n2"}
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s, _ := w.server(m.Addr); s.runID == f.FromRunID || s.err != nil; s, _ = w.server(m.Addr) {
		if time.Now().After(deadline) {
			t.Fatal("the restarted master was never probed")
		}
		w.tick(ctx)
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	if to, why, err := w.promote(ctx, st, g, f, time.Now()); err != errDone || to != "" {
		t.Fatalf("promote = %q, %q, %v; want the failover ended", to, why, err)
	}
}

// TestNeverSyncedReplicaNotPromoted: a replica whose link to the master never came up (it
// started after the master died: new, or on a replaced disk) holds no data; promoted, it would
// have the old master, once back and fenced, copy its empty data set. It is not a candidate.
func TestNeverSyncedReplicaNotPromoted(t *testing.T) {
	ctx := context.Background()
	m := testredis.Start(t)
	mc := redis.NewClient(&redis.Options{Addr: m.Addr})
	defer mc.Close()
	if err := mc.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	g := &fsm.Group{ID: "g1", Master: m.Addr}
	st := &fsm.State{DCs: map[string]*fsm.DC{"dc1": {Name: "dc1", Groups: map[string]*fsm.Group{"g1": g}}}}
	w := New(Config{Cluster: &stateCluster{st: st}})
	defer w.adm.close()
	w.tick(ctx)
	m.Stop()
	r := testredis.Start(t, testredis.WithReplicaOf(m.Addr, ""))
	rc := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rc.Close()
	in := parseInfo(rc.Info(ctx, "replication").Val())
	if in.Role != "slave" || in.LinkUp || in.LinkDownSec != -1 {
		t.Fatalf("the replica's INFO: %+v; want a link down since -1", in)
	}
	g.Replicas = []string{r.Addr}
	f := fsm.Failover{Epoch: 1, From: m.Addr, Executor: "n1"}
	to, why, err := w.promote(ctx, st, g, f, time.Now())
	if err != nil || to != "" || !strings.Contains(why, "has not synced") {
		t.Fatalf("promote = %q, %q, %v; want no usable replica (it never synced)", to, why, err)
	}
	if role := rc.Do(ctx, "ROLE").Val().([]any)[0]; role != "slave" {
		t.Fatalf("the never-synced replica's role: %v", role)
	}
}

// TestStalledSwitchoverGivesUp: a planned switchover that cannot go on (no replica may take
// over; then the master dies during one) is cancelled by its executor after
// SwitchoverGiveUp, the old master recorded as the master again, instead of holding the
// group's requests, and keeping an unplanned failover from starting, for good.
func TestStalledSwitchoverGivesUp(t *testing.T) {
	ctx := context.Background()
	m := testredis.Start(t)
	r := testredis.Start(t, testredis.WithReplicaOf(m.Addr, ""))
	rc := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rc.Close()
	for _, stop := range []bool{false, true} {
		// Without --to, no candidate: the only replica has priority 0 (first case), or the
		// master does not answer (second).
		g := &fsm.Group{ID: "g1", Master: m.Addr, Replicas: []string{r.Addr}, Priority: map[string]int{r.Addr: 0}}
		if stop {
			g.Priority = nil
			m.Stop()
		}
		g.Failover = &fsm.Failover{Epoch: 1, From: m.Addr, Planned: true, Executor: "n1"}
		st := &fsm.State{DCs: map[string]*fsm.DC{"dc1": {Name: "dc1", Groups: map[string]*fsm.Group{"g1": g}}}}
		cl := &recordingCluster{stateCluster: stateCluster{st: st}}
		w := New(Config{Cluster: cl, SwitchoverGiveUp: time.Second})
		start := time.Now()
		done := make(chan struct{})
		go func() {
			w.execute(ctx, "g1", 1)
			close(done)
		}()
		// execute runs the attempts in a goroutine of its own (alone): wait for the cancel.
		var cancel *fsm.FinishFailover
		for deadline := time.Now().Add(15 * time.Second); cancel == nil; {
			if time.Now().After(deadline) {
				t.Fatalf("master stopped %v: the stalled switchover was never cancelled; steps %+v", stop, cl.steps)
			}
			cl.mu.Lock()
			for _, f := range cl.steps {
				if f.NewMaster != "" {
					cancel = f
				}
			}
			cl.mu.Unlock()
			time.Sleep(20 * time.Millisecond) // poll interval
		}
		<-done
		if cancel.NewMaster != m.Addr || time.Since(start) < time.Second {
			t.Fatalf("master stopped %v: %+v after %v; want the old master kept, after SwitchoverGiveUp", stop, cancel, time.Since(start))
		}
		if role := rc.Do(ctx, "ROLE").Val().([]any)[0]; role != "slave" {
			t.Fatalf("master stopped %v: the replica's role is %v", stop, role)
		}
		w.adm.close()
	}
}

// TestSwitchoverUndoneWhenTheOldMasterStaysMaster: the old master refuses REPLICAOF (here an
// ACL) after the target was promoted. It still answers as a master, so unpaused it would take
// writes beside the new one: the switchover is undone, the target follows it again and it is
// committed as the master. Until session 45 the switchover went on and committed the target.
func TestSwitchoverUndoneWhenTheOldMasterStaysMaster(t *testing.T) {
	ctx := context.Background()
	m := testredis.Start(t)
	r := testredis.Start(t, testredis.WithReplicaOf(m.Addr, ""))
	mc := redis.NewClient(&redis.Options{Addr: m.Addr})
	defer mc.Close()
	rc := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rc.Close()
	waitSynced(t, rc)
	if err := mc.Do(ctx, "ACL", "SETUSER", "default", "-replicaof", "-slaveof").Err(); err != nil {
		t.Fatal(err)
	}
	g := &fsm.Group{ID: "g1", Master: m.Addr, Replicas: []string{r.Addr}}
	g.Failover = &fsm.Failover{Epoch: 1, From: m.Addr, To: r.Addr, Planned: true, Executor: "n1"}
	st := &fsm.State{DCs: map[string]*fsm.DC{"dc1": {Name: "dc1", Groups: map[string]*fsm.Group{"g1": g}}}}
	cl := &recordingCluster{stateCluster: stateCluster{st: st}}
	w := New(Config{Cluster: cl})
	defer w.adm.close()
	w.execute(ctx, "g1", 1)
	fin := waitFinished(t, cl)
	if fin.NewMaster != m.Addr {
		t.Fatalf("the switchover committed %s; want the old master %s kept", fin.NewMaster, m.Addr)
	}
	if role := rc.Do(ctx, "ROLE").Val().([]any)[0]; role != "slave" {
		t.Fatalf("the target's role is %v, want slave again", role)
	}
	if role := mc.Do(ctx, "ROLE").Val().([]any)[0]; role != "master" {
		t.Fatalf("the old master's role is %v", role)
	}
	if err := mc.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("the old master does not take writes again (still paused?): %v", err)
	}
}

// TestSwitchoverCommitsItsTargetWhenTheOldMasterDies: a switchover's executor dies once the
// target is promoted and the old master follows it, and then the old master dies too. The next
// executor finds the old master gone and the target, recorded before the pause as the same
// process, a master: it commits the target once SwitchoverGiveUp has passed. Until session 45
// the switchover waited for the old master for good, holding the group's requests everywhere.
func TestSwitchoverCommitsItsTargetWhenTheOldMasterDies(t *testing.T) {
	ctx := context.Background()
	m := testredis.Start(t)
	r := testredis.Start(t, testredis.WithReplicaOf(m.Addr, ""))
	rc := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rc.Close()
	mc := redis.NewClient(&redis.Options{Addr: m.Addr})
	defer mc.Close()
	waitSynced(t, rc)
	g := &fsm.Group{ID: "g1", Master: m.Addr, Replicas: []string{r.Addr}}
	g.Failover = &fsm.Failover{Epoch: 1, From: m.Addr, To: r.Addr, Planned: true, Executor: "n1"}
	st := &fsm.State{DCs: map[string]*fsm.DC{"dc1": {Name: "dc1", Groups: map[string]*fsm.Group{"g1": g}}}}
	cl := &recordingCluster{stateCluster: stateCluster{st: st}}
	defer func(h string) { testHang = h }(testHang)
	testHang = "switched"
	w1 := New(Config{Cluster: cl})
	ctx1, die := context.WithCancel(ctx)
	w1.execute(ctx1, "g1", 1)
	for deadline := time.Now().Add(15 * time.Second); ; {
		if rc.Do(ctx, "ROLE").Val().([]any)[0] == "master" && mc.Do(ctx, "ROLE").Val().([]any)[0] == "slave" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first executor did not promote the target")
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	die()
	// testHang is written again only once w1's run is over (its end, under w1.mu, orders its
	// reads of testHang before the write).
	for deadline := time.Now().Add(10 * time.Second); ; {
		w1.mu.Lock()
		running := w1.busy["exec/g1/1"]
		w1.mu.Unlock()
		if !running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first executor's run did not end")
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
	w1.adm.close()
	testHang = ""
	// The state as Raft would have it: the target recorded before the pause.
	f := *g.Failover
	cl.mu.Lock()
	for _, s := range cl.steps {
		if s.Promoting != "" {
			f.Promoting, f.PromotingRunID = s.Promoting, s.PromotingRunID
		}
	}
	cl.mu.Unlock()
	if f.Promoting != r.Addr || f.PromotingRunID == "" {
		t.Fatalf("the switchover did not record its target before the pause: %+v", f)
	}
	m.Stop()
	g2 := *g
	g2.Failover = &f
	cl2 := &recordingCluster{stateCluster: stateCluster{st: &fsm.State{DCs: map[string]*fsm.DC{"dc1": {Name: "dc1", Groups: map[string]*fsm.Group{"g1": &g2}}}}}}
	w2 := New(Config{Cluster: cl2, SwitchoverGiveUp: time.Second})
	defer w2.adm.close()
	w2.execute(ctx, "g1", 1)
	fin := waitFinished(t, cl2)
	if fin.NewMaster != r.Addr {
		t.Fatalf("the switchover ended with %s as the master; want its target %s", fin.NewMaster, r.Addr)
	}
}

// waitSynced waits until the replica rc reports its link to its master up.
func waitSynced(t *testing.T, rc *redis.Client) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(rc.Info(context.Background(), "replication").Val(), "master_link_status:up"); {
		if time.Now().After(deadline) {
			t.Fatal("the replica did not sync")
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}

// waitFinished waits for the last FinishFailover cl recorded that names a master.
func waitFinished(t *testing.T, cl *recordingCluster) *fsm.FinishFailover {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; {
		cl.mu.Lock()
		var fin *fsm.FinishFailover
		for _, f := range cl.steps {
			if f.NewMaster != "" {
				fin = f
			}
		}
		steps := fmt.Sprintf("%+v", cl.steps)
		cl.mu.Unlock()
		if fin != nil {
			return fin
		}
		if time.Now().After(deadline) {
			t.Fatalf("the failover never finished; steps %s", steps)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}
