package integration

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/node"
)

// The chaos suite: clients write through every node while slots migrate back and forth and a
// nemesis injects faults; a checker then judges the recorded histories and the end state.
// TestChaosShort (part of `make test`) injects each fault once with a fixed seed;
// `make chaos [SEED=] [DURATION=] [XDC=1]` runs TestChaos or TestChaosXDC for longer with
// faults drawn at random, and prints a summary per fault.

// chaosLayout is the one-DC chaos cluster: three nodes with fixed tokens (n1's token 0 makes it
// the mover of any migration starting at slot 0).
var chaosLayout = []nodeLayout{
	{"n1", "dc1", "127.0.0.41", "0"},
	{"n2", "dc1", "127.0.0.42", "1431655765"},
	{"n3", "dc1", "127.0.0.43", "2863311530"},
}

// chaosOpts is one run's parameters.
type chaosOpts struct {
	seed     int64
	short    bool          // each fault once, in order
	duration time.Duration // how long the nemesis runs (long runs)
	xdc      bool          // three DCs, replication running
}

// chaosRun is one run: the cluster, the clients' history and what the nemesis did.
type chaosRun struct {
	t    *testing.T
	x    *xdcCluster
	rnd  *rand.Rand // the nemesis's: only its goroutine draws from it
	h    *history
	keys map[string]chaosKeys

	mu      sync.Mutex
	seeds   map[string][]string      // node id -> the seeds of its first start
	tokens  map[string]string        // node id -> its --tokens
	removed map[string]time.Duration // node id -> when its removal was committed
	retired map[string]bool          // nodes clients no longer send to
	faults  []faultRun
	nextID  int

	migDC              string // the DC whose slots migrate back and forth
	migRange           string
	migFirst           int
	moving             atomic.Bool // a migration is moving keys (for kill-mover)
	migrations, migErr atomic.Int64
}

func TestChaosShort(t *testing.T) {
	runChaos(t, chaosOpts{seed: 1, short: true})
}

// TestChaos is the long one-DC run of `make chaos` (skipped unless REDRAFT_CHAOS_DURATION is set).
func TestChaos(t *testing.T) { runChaos(t, longOpts(t, false)) }

// TestChaosXDC is the long three-DC run of `make chaos XDC=1`.
func TestChaosXDC(t *testing.T) { runChaos(t, longOpts(t, true)) }

func longOpts(t *testing.T, xdc bool) chaosOpts {
	d, err := time.ParseDuration(os.Getenv("REDRAFT_CHAOS_DURATION"))
	if err != nil || d <= 0 {
		t.Skip("a long chaos run: set REDRAFT_CHAOS_DURATION (make chaos)")
	}
	seed := time.Now().UnixNano() % 1e6
	if s := os.Getenv("REDRAFT_CHAOS_SEED"); s != "" {
		if seed, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatalf("REDRAFT_CHAOS_SEED=%q: %v", s, err)
		}
	}
	return chaosOpts{seed: seed, duration: d, xdc: xdc}
}

// quietLogger drops go-redis's own log lines: chaos clients dial dead nodes all the time, and
// every outcome is in the history anyway.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

func runChaos(t *testing.T, o chaosOpts) {
	redis.SetLogger(quietLogger{})
	t.Logf("chaos seed %d (rerun with make chaos SEED=%d)", o.seed, o.seed)
	layout := chaosLayout
	if o.xdc {
		layout = xdcLayout
	}
	r := &chaosRun{t: t, x: startRelayed(t, layout), rnd: rand.New(rand.NewSource(o.seed)),
		seeds: map[string][]string{}, tokens: map[string]string{}, removed: map[string]time.Duration{},
		retired: map[string]bool{}, keys: map[string]chaosKeys{},
		migDC: "dc1", migRange: "0-4095", migFirst: 0, nextID: 3}
	if o.xdc {
		r.nextID = 50
	}
	for i, l := range layout {
		r.tokens[l.id] = l.tokens
		if i > 0 {
			r.seeds[l.id] = []string{r.x.nodes[0].relay.Addr()}
		}
	}
	// Ballast in every slot, so each migration of migRange moves ~1,000 keys for a second or two.
	ballast := redis.NewClient(&redis.Options{Addr: r.x.nodes[0].Listen})
	loadBulk(t, ballast, 4000)
	ballast.Close()

	r.h = &history{start: time.Now(), targets: &targets{nodes: map[string][]*proc{}}, stop: make(chan struct{}), opTime: 3 * time.Second}
	r.setTargets()
	perDC := 6
	if o.xdc {
		perDC = 3
	}
	for _, dc := range r.x.dcs {
		prefix := ""
		if o.xdc {
			prefix = dc + ":" // each DC writes and reads keys of its own
		}
		r.keys[dc] = newChaosKeys(prefix, 8)
	}
	r.h.startClients(o.seed, perDC, r.keys, r.x.dcs)
	migStop, migDone := make(chan struct{}), make(chan struct{})
	go r.migrator(migStop, migDone)
	t.Cleanup(func() { // a failed run must not leave them running
		r.h.stopClients()
		select {
		case <-migStop:
		default:
			close(migStop)
		}
		<-migDone
	})

	time.Sleep(2 * time.Second) // a fault-free start, so the summary has a baseline
	r.nemesis(o.short, time.Now().Add(o.duration))
	time.Sleep(2 * time.Second) // and a fault-free end

	r.h.stopClients()
	close(migStop)
	<-migDone
	all := r.finish()
	ops := r.h.all()
	vs := collapse(all)
	t.Logf("summary (seed %d, %d migrations of %s in %s, %d migration admin errors):\n%s",
		o.seed, r.migrations.Load(), r.migRange, r.migDC, r.migErr.Load(), r.summary(ops, all))
	if len(all) > 0 {
		t.Errorf("%d violations (%d after collapsing those of one kind on one key):", len(all), len(vs))
	}
	for i, v := range vs {
		if i == 40 {
			t.Errorf("... %d violations in all", len(vs))
			break
		}
		t.Errorf("violation %s", v)
	}
}

// members returns the nodes still in the cluster.
func (r *chaosRun) members() []*xdcNode {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*xdcNode
	for _, n := range r.x.nodes {
		if _, gone := r.removed[n.ID]; !gone {
			out = append(out, n)
		}
	}
	return out
}

// membersOf returns the members in dc.
func (r *chaosRun) membersOf(dc string) []*xdcNode {
	var out []*xdcNode
	for _, n := range r.members() {
		if n.DC == dc {
			out = append(out, n)
		}
	}
	return out
}

// setTargets points the clients at every node not retired, per DC (a removed node stays a
// target until it is gone: it must refuse what it is sent).
func (r *chaosRun) setTargets() {
	r.mu.Lock()
	byDC := map[string][]*proc{}
	for _, n := range r.x.nodes {
		if !r.retired[n.ID] {
			byDC[n.DC] = append(byDC[n.DC], n.proc)
		}
	}
	r.mu.Unlock()
	for _, dc := range r.x.dcs {
		r.h.targets.set(dc, byDC[dc])
	}
}

// retire stops the clients sending to n.
func (r *chaosRun) retire(n *xdcNode) {
	r.mu.Lock()
	r.retired[n.ID] = true
	r.mu.Unlock()
	r.setTargets()
}

// waitWhole waits until every member runs, knows a leader that is a member, and serves a
// keyed write.
func (r *chaosRun) waitWhole(d time.Duration) {
	r.t.Helper()
	waitFor(r.t, d, "the cluster whole again", func() error {
		ms := r.members()
		ids := map[string]bool{}
		for _, m := range ms {
			ids[m.ID] = true
		}
		for _, m := range ms {
			if m.Exited() {
				return fmt.Errorf("%s exited: %v", m.ID, m.exitErr)
			}
			st, err := statusOf(m.proc)
			if err != nil {
				return fmt.Errorf("%s: %v", m.ID, err)
			}
			if !ids[st.Leader] {
				return fmt.Errorf("%s sees leader %q", m.ID, st.Leader)
			}
			rdb := redis.NewClient(&redis.Options{Addr: m.Listen, MaxRetries: -1, ReadTimeout: 2 * time.Second})
			err = rdb.Set(context.Background(), "probe:"+m.ID, "1", 0).Err()
			rdb.Close()
			if err != nil {
				return fmt.Errorf("%s: SET answered %v", m.ID, err)
			}
		}
		return nil
	})
}

// waitMoving waits, up to d, until a migration moves keys.
func (r *chaosRun) waitMoving(d time.Duration) {
	deadline := time.Now().Add(d)
	for !r.moving.Load() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

// migrator moves migRange between the DC's two groups, back and forth, until stopped.
func (r *chaosRun) migrator(stop, done chan struct{}) {
	defer close(done)
	for {
		select {
		case <-stop:
			return
		case <-time.After(time.Duration(300+rand.Intn(700)) * time.Millisecond): // pause between migrations
		}
		if err := r.migrateOnce(stop); err != nil {
			r.migErr.Add(1)
		}
	}
}

// migrateOnce starts a migration of migRange to the group not serving it (or follows one in
// flight) and waits until it is done or stop.
func (r *chaosRun) migrateOnce(stop chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var via *xdcNode
	var st node.Status
	var err error
	for _, m := range r.membersOf(r.migDC) {
		if st, err = statusOf(m.proc); err == nil {
			via = m
			break
		}
	}
	if via == nil {
		return fmt.Errorf("no member answers: %v", err)
	}
	var id uint64
	for _, m := range st.Migrations {
		if m.DC == r.migDC && m.State != fsm.MigrationDone && m.State != fsm.MigrationCancelled {
			id = m.ID
		}
	}
	if id == 0 {
		ga, gb := "g"+r.migDC[2:]+"a", "g"+r.migDC[2:]+"b"
		to := gb
		if ownerGroup(st, r.migDC, r.migFirst) == gb {
			to = ga
		}
		rep, err := via.Client().StartMigration(ctx, node.MigrateRequest{DC: r.migDC, Slots: []string{r.migRange}, To: to, Rate: 1000})
		if err != nil {
			return err
		}
		id = rep.ID
	}
	defer r.moving.Store(false)
	for {
		select {
		case <-stop:
			return nil
		case <-time.After(100 * time.Millisecond): // poll interval
		}
		for _, m := range r.membersOf(r.migDC) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			mi, err := m.Client().Migration(ctx, id)
			cancel()
			if err != nil {
				continue
			}
			r.moving.Store(mi.State == fsm.MigrationMigrating && mi.KeysMoved > 0)
			if mi.State == fsm.MigrationDone || mi.State == fsm.MigrationCancelled {
				r.migrations.Add(1)
				return nil
			}
			break
		}
	}
}

// ownerGroup returns the group serving slot in dc according to st ("" if none).
func ownerGroup(st node.Status, dc string, slot int) string {
	for _, d := range st.DCs {
		if d.Name != dc {
			continue
		}
		for _, g := range d.Groups {
			for _, rg := range g.Ranges {
				var from, to int
				if n, _ := fmt.Sscanf(rg, "%d-%d", &from, &to); n == 1 {
					to = from
				}
				if slot >= from && slot <= to {
					return g.ID
				}
			}
		}
	}
	return ""
}
