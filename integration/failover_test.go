package integration

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testredis"
	"github.com/redraft/redraft/node"
)

const groupPassword = "group-secret"

// failoverEnv is a three-node DC with one group: a master and two replicas, real redis-server
// processes the test can kill -9 and restart.
type failoverEnv struct {
	t       *testing.T
	c       *Cluster
	nodes   []*proc
	servers map[string]*testredis.Server
	clients []*redis.Client
}

func newFailoverEnv(t *testing.T, settings ...string) *failoverEnv {
	// The servers require a password, as production ones do: a promoted replica's followers
	// and a returning old master must authenticate to the new master.
	m := testredis.Start(t, testredis.WithPassword(groupPassword))
	e := &failoverEnv{t: t, servers: map[string]*testredis.Server{m.Addr: m}}
	for range 2 {
		r := testredis.Start(t, testredis.WithPassword(groupPassword), testredis.WithReplicaOf(m.Addr, groupPassword))
		e.servers[r.Addr] = r
	}
	e.c = NewCluster(t)
	e.nodes = e.c.Start3("dc1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := e.nodes[0].Client()
	for i := 0; i+1 < len(settings); i += 2 {
		if err := cl.SetConfig(ctx, settings[i], settings[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	var replicas []string
	for a := range e.servers {
		if a != m.Addr {
			replicas = append(replicas, a)
		}
	}
	slices.Sort(replicas)
	if err := cl.AddGroup(ctx, "dc1", fsm.Group{ID: "g1", Master: m.Addr, Replicas: replicas, Password: groupPassword}); err != nil {
		t.Fatal(err)
	}
	if err := cl.AssignSlots(ctx, node.AssignRequest{DC: "dc1", Group: "g1", Slots: []string{"0-16383"}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range e.nodes {
		rc := redis.NewClient(&redis.Options{Addr: p.Listen, MaxRetries: -1, ReadTimeout: 5 * time.Second, PoolSize: 4})
		t.Cleanup(func() { rc.Close() })
		e.clients = append(e.clients, rc)
	}
	// Every node serves, and both replicas are in sync (as the watchers see them).
	for i, rc := range e.clients {
		waitFor(t, 20*time.Second, fmt.Sprintf("a write through %s", e.nodes[i].ID), func() error {
			return rc.Set(ctx, "warmup", "1", 0).Err()
		})
	}
	e.waitGroup("replicas in sync", func(g node.GroupStatus) error {
		for _, v := range g.Servers {
			if v.Listed == "replica" && (v.Link != "up" || v.MasterAddr != g.Master) {
				return fmt.Errorf("replica %s: link %q to %s", v.Addr, v.Link, v.MasterAddr)
			}
		}
		if len(g.Servers) != 3 {
			return fmt.Errorf("%d servers seen", len(g.Servers))
		}
		return nil
	})
	return e
}

// group returns g1 as n1 reports it.
func (e *failoverEnv) group() node.GroupStatus {
	st := e.nodes[0].Status()
	for _, d := range st.DCs {
		for _, g := range d.Groups {
			if g.ID == "g1" {
				return g
			}
		}
	}
	e.t.Fatal("group g1 not in the status")
	return node.GroupStatus{}
}

func (e *failoverEnv) waitGroup(what string, ok func(node.GroupStatus) error) node.GroupStatus {
	e.t.Helper()
	var g node.GroupStatus
	waitFor(e.t, 30*time.Second, what, func() error {
		g = e.group()
		return ok(g)
	})
	return g
}

// load writes unique keys through every node until stop, and records the acknowledged ones.
type load struct {
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	acked   map[string]string
	errs    atomic.Int64
	lastErr atomic.Value
	// slowest is the longest an acknowledged write took (ns), since the last reset.
	slowest atomic.Int64
	// lat, when record is set, gets every acknowledged write's start and duration.
	record bool
	lat    []writeLat
}

type writeLat struct {
	start time.Time
	d     time.Duration
}

func (e *failoverEnv) startLoad(writers int) *load {
	l := &load{stop: make(chan struct{}), acked: map[string]string{}}
	for w := range writers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			ctx := context.Background()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				rc := e.clients[(w+i)%len(e.clients)]
				k, v := fmt.Sprintf("k:%d:%d", w, i), fmt.Sprintf("v%d", i)
				t0 := time.Now()
				if err := rc.Set(ctx, k, v, 0).Err(); err != nil {
					l.errs.Add(1)
					l.lastErr.Store(err.Error())
					time.Sleep(5 * time.Millisecond) // a failing write is not retried at once
					continue
				}
				for d := int64(time.Since(t0)); ; {
					if cur := l.slowest.Load(); d <= cur || l.slowest.CompareAndSwap(cur, d) {
						break
					}
				}
				l.mu.Lock()
				l.acked[k] = v
				if l.record {
					l.lat = append(l.lat, writeLat{t0, time.Since(t0)})
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *load) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// finish stops the load and checks that every acknowledged write reads back through every node.
func (e *failoverEnv) finish(l *load) {
	e.t.Helper()
	e.finishVia(l, e.clients)
}

// finishVia is finish reading through the given clients only (the nodes still running).
func (e *failoverEnv) finishVia(l *load, clients []*redis.Client) {
	e.t.Helper()
	close(l.stop)
	l.wg.Wait()
	ctx := context.Background()
	lost := 0
	var sample []string
	for k, v := range l.acked {
		rc := clients[len(k)%len(clients)]
		got, err := rc.Get(ctx, k).Result()
		if err != nil || got != v {
			lost++
			if len(sample) < 5 {
				sample = append(sample, fmt.Sprintf("%s=%q (%v)", k, got, err))
			}
		}
	}
	e.t.Logf("load: %d writes acknowledged, %d refused (last: %v)", len(l.acked), l.errs.Load(), l.lastErr.Load())
	if lost > 0 {
		e.t.Fatalf("%d acknowledged writes lost, e.g. %s", lost, strings.Join(sample, ", "))
	}
	if len(l.acked) == 0 {
		e.t.Fatal("no write was acknowledged")
	}
}

// killMaster kills the group's master with SIGKILL and waits for a failover to replace it; it
// returns the new master and the time from the kill to the first write acknowledged through
// every node.
func (e *failoverEnv) killMaster(l *load) (string, time.Duration) {
	e.t.Helper()
	before := e.group()
	old := before.Master
	acked := l.count()
	waitFor(e.t, 10*time.Second, "writes acknowledged before the kill", func() error {
		if l.count() < acked+200 {
			return fmt.Errorf("%d so far", l.count()-acked)
		}
		return nil
	})
	killed := time.Now()
	e.servers[old].Stop() // SIGKILL, by the PID the helper tracks
	e.t.Logf("killed master %s (pid %d)", old, e.servers[old].PID())
	ctx := context.Background()
	var took time.Duration
	waitFor(e.t, 30*time.Second, "a write through every node after the failover", func() error {
		for i, rc := range e.clients {
			if err := rc.Set(ctx, "probe", i, 0).Err(); err != nil {
				return err
			}
		}
		took = time.Since(killed)
		return nil
	})
	g := e.waitGroup("the failover committed", func(g node.GroupStatus) error {
		if g.Master == old || g.Failovers != before.Failovers+1 {
			return fmt.Errorf("master %s, failovers %d", g.Master, g.Failovers)
		}
		return nil
	})
	if !slices.Contains(g.Fenced, old) || slices.Contains(g.Replicas, old) {
		e.t.Fatalf("old master %s not fenced: %+v", old, g)
	}
	lf := g.LastFailover
	if lf == nil || lf.Result != "promoted" || lf.From != old || lf.To != g.Master || !strings.Contains(lf.Reason, "not reached") {
		e.t.Fatalf("last failover: %+v", lf)
	}
	e.t.Logf("failover %s -> %s: writes through every node again %s after the kill (%s)", old, g.Master, took.Round(time.Millisecond), lf.Reason)
	return g.Master, took
}

// TestFailoverKillMasterQuorum kills the master of a group under a DC_QUORUM write load twice
// in a row: no acknowledged write is lost, every node takes writes again, and the old master
// comes back as a replica of the new one and is listed as a replica again.
func TestFailoverKillMasterQuorum(t *testing.T) {
	e := newFailoverEnv(t, "write_consistency", "DC_QUORUM", "master_down_after", "1s")
	first := e.group().Master
	l := e.startLoad(4)
	m2, _ := e.killMaster(l)

	// The old master returns (empty: no persistence): it becomes a replica of the new master
	// before any client write reaches it, and is listed as a replica once its link is up.
	if err := e.servers[first].Restart(); err != nil {
		t.Fatal(err)
	}
	e.waitGroup("the old master rejoined as a replica", func(g node.GroupStatus) error {
		if !slices.Contains(g.Replicas, first) || slices.Contains(g.Fenced, first) {
			return fmt.Errorf("replicas %v fenced %v", g.Replicas, g.Fenced)
		}
		return nil
	})
	rc := redis.NewClient(&redis.Options{Addr: first, Password: groupPassword})
	defer rc.Close()
	role, err := rc.Do(context.Background(), "ROLE").Slice()
	if err != nil || len(role) < 2 || role[0] != "slave" {
		t.Fatalf("old master's ROLE: %v %v", role, err)
	}

	// A second failover in a row: the new master dies too.
	m3, _ := e.killMaster(l)
	if m3 == m2 || m3 == "" {
		t.Fatalf("second failover promoted %q", m3)
	}
	e.finish(l)
	for _, p := range e.nodes {
		if strings.Contains(p.Log(), groupPassword) {
			t.Errorf("%s logged the group's password", p.ID)
		}
	}
	if !strings.Contains(metrics(t, e.nodes[1]), `redraft_failovers_total{datacenter="dc1",dc="dc1",group="g1",node="n2"} 2`) {
		t.Errorf("metrics do not count two failovers:\n%s", grepLines(metrics(t, e.nodes[1]), "failover"))
	}
}

// TestSwitchoverUnderLoad moves a group's master twice with 'redraft group failover' under a
// DC_QUORUM write load: no write is refused or lost, writes wait well under a second, and the
// old master is a replica of the new one at once.
func TestSwitchoverUnderLoad(t *testing.T) {
	e := newFailoverEnv(t, "write_consistency", "DC_QUORUM")
	l := e.startLoad(4)
	for round, to := range []string{"", "old"} {
		before := e.group()
		args := []string{"group", "failover", "--dc", "dc1", "--group", "g1"}
		if to == "old" {
			args = append(args, "--to", before.Replicas[len(before.Replicas)-1])
		}
		acked := l.count()
		waitFor(t, 10*time.Second, "writes before the switchover", func() error {
			if l.count() < acked+300 {
				return fmt.Errorf("%d so far", l.count()-acked)
			}
			return nil
		})
		refused := l.errs.Load()
		l.slowest.Store(0)
		start := time.Now()
		out := e.nodes[round+1].MustCLI(args...)
		took := time.Since(start)
		acked = l.count()
		waitFor(t, 10*time.Second, "writes after the switchover", func() error {
			if l.count() < acked+300 {
				return fmt.Errorf("%d so far", l.count()-acked)
			}
			return nil
		})
		g := e.group()
		if g.Master == before.Master || !strings.Contains(out, "master moved from "+before.Master+" to "+g.Master) {
			t.Fatalf("round %d: master %s -> %s; CLI said %q", round, before.Master, g.Master, out)
		}
		if to == "old" && g.Master != before.Replicas[len(before.Replicas)-1] {
			t.Fatalf("--to %s ignored: master %s", before.Replicas[len(before.Replicas)-1], g.Master)
		}
		if !slices.Contains(g.Replicas, before.Master) || len(g.Fenced) != 0 {
			t.Fatalf("old master %s not a replica: %+v", before.Master, g)
		}
		slowest := time.Duration(l.slowest.Load())
		t.Logf("switchover %d: %s -> %s, CLI took %s, slowest acknowledged write %s, writes refused %d",
			round, before.Master, g.Master, took.Round(time.Millisecond), slowest.Round(time.Millisecond), l.errs.Load()-refused)
		if n := l.errs.Load() - refused; n > 0 {
			t.Errorf("switchover %d: %d writes refused (last %v)", round, n, l.lastErr.Load())
		}
		if slowest > time.Second {
			t.Errorf("switchover %d: a write waited %s (want well under a second)", round, slowest)
		}
	}
	e.finish(l)
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestReplicaReads reads from replicas (read_from replica) while a writer counts up, and
// breaks one replica's link to its master on the way: a read never misses a write
// acknowledged longer ago than replica_max_lag, the broken replica is skipped, replicas serve
// reads, and READWRITE sends a connection's reads to the master.
func TestReplicaReads(t *testing.T) {
	const maxLag = time.Second
	e := newFailoverEnv(t, "read_from", "replica", "replica_max_lag", maxLag.String(), "master_down_after", "30s")
	ctx := context.Background()
	g := e.group()
	var mu sync.Mutex
	var acks []time.Time // acks[i]: when clock=i+1 was acknowledged
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := e.clients[0].Set(ctx, "{c}clock", i, 0).Err(); err != nil {
				t.Errorf("write %d: %v", i, err)
				return
			}
			mu.Lock()
			acks = append(acks, time.Now())
			mu.Unlock()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	var reads, stale atomic.Int64
	var worst atomic.Value
	readers := func(d time.Duration) {
		var rw sync.WaitGroup
		for _, rc := range e.clients {
			rw.Add(1)
			go func() {
				defer rw.Done()
				for end := time.Now().Add(d); time.Now().Before(end); {
					sent := time.Now()
					v, err := rc.Get(ctx, "{c}clock").Int()
					if err != nil && err != redis.Nil {
						t.Errorf("read: %v", err)
						return
					}
					mu.Lock()
					must := 0 // the last value acknowledged before sent-maxLag
					for must < len(acks) && acks[must].Before(sent.Add(-maxLag)) {
						must++
					}
					mu.Unlock()
					reads.Add(1)
					if v < must {
						stale.Add(1)
						worst.Store(fmt.Sprintf("read %d at %s, %d was acknowledged more than %s before", v, sent.Format("15:04:05.000"), must, maxLag))
					}
				}
			}()
		}
		rw.Wait()
	}
	readers(1500 * time.Millisecond)
	// Break a replica's link: it still answers, with ever older data.
	broken := g.Replicas[0]
	bc := redis.NewClient(&redis.Options{Addr: broken, Password: groupPassword})
	defer bc.Close()
	if err := bc.ConfigSet(ctx, "masterauth", "wrong").Err(); err != nil {
		t.Fatal(err)
	}
	if err := bc.Do(ctx, "CLIENT", "KILL", "TYPE", "master").Err(); err != nil {
		t.Fatal(err)
	}
	readers(3 * time.Second)
	close(stop)
	wg.Wait()
	if err := bc.ConfigSet(ctx, "masterauth", groupPassword).Err(); err != nil {
		t.Fatal(err)
	}
	old, _ := bc.Get(ctx, "{c}clock").Int()
	t.Logf("%d reads, %d stale; the broken replica stopped at %d of %d", reads.Load(), stale.Load(), old, len(acks))
	if stale.Load() > 0 {
		t.Fatalf("%d reads missed a write older than replica_max_lag, e.g. %v", stale.Load(), worst.Load())
	}
	if old >= len(acks)-100 {
		t.Fatalf("the broken replica kept up (%d of %d): the test proves nothing", old, len(acks))
	}
	// Replicas served reads, counted in /metrics.
	served := 0
	for _, a := range g.Replicas {
		rc := redis.NewClient(&redis.Options{Addr: a, Password: groupPassword})
		info, err := rc.Info(ctx, "commandstats").Result()
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(info, "cmdstat_get:") {
			served++
		}
	}
	if served == 0 || !strings.Contains(metrics(t, e.nodes[0]), "redraft_replica_reads_total") {
		t.Fatalf("no replica served a read (%d)", served)
	}
	// READWRITE: this connection's reads go to the master (its GET count grows).
	mc := redis.NewClient(&redis.Options{Addr: g.Master, Password: groupPassword})
	defer mc.Close()
	gets := func() int {
		info, _ := mc.Info(ctx, "commandstats").Result()
		for _, l := range strings.Split(info, "\n") {
			if strings.HasPrefix(l, "cmdstat_get:calls=") {
				n := 0
				fmt.Sscanf(strings.TrimPrefix(l, "cmdstat_get:calls="), "%d", &n)
				return n
			}
		}
		return 0
	}
	before := gets()
	conn := e.clients[1].Conn()
	defer conn.Close()
	if err := conn.Process(ctx, redis.NewStatusCmd(ctx, "READWRITE")); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if err := conn.Get(ctx, "{c}clock").Err(); err != nil {
			t.Fatal(err)
		}
	}
	if got := gets() - before; got < 20 {
		t.Fatalf("after READWRITE the master served %d of 20 reads", got)
	}
	// A session that watches keys reads from the master: a check-and-set that read a
	// replica's older value would commit over a write the replica had not seen.
	before = gets()
	if err := e.clients[2%len(e.clients)].Watch(ctx, func(tx *redis.Tx) error {
		for range 20 {
			if err := tx.Get(ctx, "{c}clock").Err(); err != nil {
				return err
			}
		}
		return nil
	}, "{c}clock"); err != nil {
		t.Fatal(err)
	}
	if got := gets() - before; got < 20 {
		t.Fatalf("after WATCH the master served %d of 20 reads", got)
	}
}

// TestFailoverDuringMigration kills the master of a migration's source group while its mover
// is at work under a DC_QUORUM write load: the migration pauses, resumes against the new
// master and finishes, and no acknowledged write or migrated key is lost.
func TestFailoverDuringMigration(t *testing.T) {
	e := newFailoverEnv(t, "write_consistency", "DC_QUORUM", "master_down_after", "1s")
	g2 := testredis.Start(t, testredis.WithPassword(groupPassword))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.nodes[0].Client().AddGroup(ctx, "dc1", fsm.Group{ID: "g2", Master: g2.Addr, Password: groupPassword}); err != nil {
		t.Fatal(err)
	}
	const bulk = 6000
	loadBulk(t, e.clients[0], bulk)
	id := startThrottled(t, e.nodes[0], "0-8191", "g2", 1000)
	l := e.startLoad(4)
	e.killMaster(l)
	waitMigrated(t, id, 90*time.Second, e.nodes...)
	e.finish(l)
	checkBulk(t, e.clients[1], bulk)
	if got := ownerGroup(e.nodes[2].Status(), "dc1", 0); got != "g2" {
		t.Fatalf("slot 0 served by %q after the migration", got)
	}
}

// TestFailoverLostWritesReported kills a master at DC_ONE after its replicas fell behind
// (stopped with SIGSTOP while big writes went on): writes acknowledged at DC_ONE are lost,
// and the failover reports the replication stream it lost (status, /metrics).
func TestFailoverLostWritesReported(t *testing.T) {
	e := newFailoverEnv(t, "master_down_after", "1s")
	g := e.group()
	for _, a := range g.Replicas {
		if err := syscall.Kill(e.servers[a].PID(), syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	}
	cont := func() {
		for _, a := range g.Replicas {
			_ = syscall.Kill(e.servers[a].PID(), syscall.SIGCONT)
		}
	}
	defer cont()
	ctx := context.Background()
	val := strings.Repeat("x", 8192)
	acked := map[string]bool{}
	for i := 0; len(acked) < 3000 && i < 20000; i++ {
		k := fmt.Sprintf("big:%d", i)
		if err := e.clients[i%3].Set(ctx, k, val, 0).Err(); err == nil {
			acked[k] = true
		}
	}
	// The master's offset after these writes: the failover measures what it lost from the
	// offset its probes saw last, so wait until they saw this one, then kill the master.
	mc := redis.NewClient(&redis.Options{Addr: g.Master, Password: groupPassword, MaxRetries: -1})
	info, err := mc.Info(ctx, "replication").Result()
	mc.Close()
	if err != nil {
		t.Fatal(err)
	}
	var written int64
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "master_repl_offset:"); ok {
			written, err = strconv.ParseInt(v, 10, 64)
		}
	}
	if written == 0 || err != nil {
		t.Fatalf("no master_repl_offset in the master's INFO (%v):\n%s", err, info)
	}
	// A node's status shows the servers as one node of the DC sees them (seen_by: the first,
	// in id order, that reports them): the only watcher's view the admin API shows.
	seenBy := map[string]bool{}
	for _, p := range e.nodes {
		waitFor(t, 10*time.Second, p.ID+"'s status shows the master at offset "+strconv.FormatInt(written, 10), func() error {
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			st, err := p.Client().Status(sctx)
			if err != nil {
				return err
			}
			for _, d := range st.DCs {
				for _, sg := range d.Groups {
					for _, v := range sg.Servers {
						if sg.ID == "g1" && v.Addr == g.Master && v.Listed == "master" {
							if v.Offset < written {
								return fmt.Errorf("%s sees the master at offset %d", sg.Seen, v.Offset)
							}
							seenBy[sg.Seen] = true
							return nil
						}
					}
				}
			}
			return errors.New("the master is not in the group's servers")
		})
	}
	t.Logf("the master's offset %d seen by %v", written, slices.Sorted(maps.Keys(seenBy)))
	e.servers[g.Master].Stop()
	cont()
	ng := e.waitGroup("the failover", func(ng node.GroupStatus) error {
		if ng.Master == g.Master || ng.Failovers != 1 {
			return fmt.Errorf("master %s, failovers %d, failover %+v", ng.Master, ng.Failovers, ng.Failover)
		}
		return nil
	})
	lost := 0
	for k := range acked {
		if n, err := e.clients[0].Exists(ctx, k).Result(); err != nil || n == 0 {
			lost++
		}
	}
	lf := ng.LastFailover
	t.Logf("%d of %d DC_ONE writes lost; reported lost_bytes %d (group total %d)", lost, len(acked), lf.LostBytes, ng.LostBytes)
	if lost == 0 {
		t.Fatal("no write was lost: the replicas kept up, the test proves nothing")
	}
	if lf.LostBytes < int64(lost)*8192 || ng.LostBytes != lf.LostBytes {
		t.Fatalf("lost %d writes of 8 KB but the failover reports %d bytes (group %d)", lost, lf.LostBytes, ng.LostBytes)
	}
	var reported float64
	line := grepLines(metrics(t, e.nodes[0]), `redraft_failover_lost_bytes_total{datacenter="dc1"`)
	if _, err := fmt.Sscanf(line[strings.LastIndexByte(line, ' ')+1:], "%g", &reported); err != nil || int64(reported) != lf.LostBytes {
		t.Errorf("metrics report %q, want %d lost bytes", line, lf.LostBytes)
	}
}
