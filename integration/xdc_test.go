package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testredis"
	"github.com/redraft/redraft/node"
)

// The cross-DC tests run three DCs on this machine: dc1 with nodes n11 and n12, dc2 with n21,
// dc3 with n31, each DC with two groups (one redis-server each) serving all 16384 slots. Every
// node has its own loopback IP (127.0.0.<DC><i>) for its three ports and advertises its peer
// address through a relay on 127.0.1.<DC><i> (same port), so a test can cut a DC's peer
// traffic: the relays in front of its nodes cut everything, the others cut what comes from its
// nodes' IPs (nodes dial their peers from their peer listen IP).

// xdcNode is a node with the relay in front of its peer port.
type xdcNode struct {
	*proc
	ip    string // its own loopback IP
	relay *relay
}

// xdcCluster is the three-DC cluster of a test and every write its loads were acknowledged.
type xdcCluster struct {
	t     *testing.T
	c     *Cluster
	nodes []*xdcNode
	dcs   []string

	workers []*xdcWorker // of every load, for the final check (touched by the test goroutine only)
	// failovers is set by tests that kill masters: a write answered "is unavailable" (its
	// master died) has an unknown outcome, expected then; it stays out of the exact checks.
	failovers bool
}

// xdcCut is how long TestXDCCutDC3 cuts dc3 off: 30 s, 5 s with REDRAFT_XDC_SHORT=1.
func xdcCut() time.Duration {
	if os.Getenv("REDRAFT_XDC_SHORT") == "1" {
		return 5 * time.Second
	}
	return 30 * time.Second
}

// nodeLayout is one node of a relayed cluster: its id, DC, own loopback IP and ring tokens
// ("" lets the ring spread it).
type nodeLayout struct {
	id, dc, ip, tokens string
}

// xdcLayout is the three-DC cluster of the cross-DC tests.
var xdcLayout = []nodeLayout{
	{"n11", "dc1", "127.0.0.11", "0"},
	{"n12", "dc1", "127.0.0.12", "2147483648"},
	{"n21", "dc2", "127.0.0.21", ""},
	{"n31", "dc3", "127.0.0.31", ""},
}

// startXDC starts the three DCs and waits until every node runs the data format they settle on
// and routes writes.
func startXDC(t *testing.T) *xdcCluster { return startRelayed(t, xdcLayout) }

// newRelayedNode prepares (does not start) a node on its own loopback IP whose peer address is
// advertised through a relay on 127.0.1.<last byte of ip>, same port.
func newRelayedNode(t *testing.T, c *Cluster, l nodeLayout) *xdcNode {
	relayIP := "127.0.1." + strings.TrimPrefix(l.ip, "127.0.0.")
	args := []string{"--advertise", relayIP, "--max-voters", "3"}
	if l.tokens != "" {
		args = append(args, "--tokens", l.tokens)
	}
	p := c.NewNodeOn(l.ip, l.id, l.dc, args...)
	// The relay listens on the node's peer port at the relay IP: the port must be free on both.
	p.Peer = net.JoinHostPort(l.ip, strconv.Itoa(freePortOn(t, l.ip, relayIP)))
	_, port, _ := net.SplitHostPort(p.Peer)
	return &xdcNode{proc: p, ip: l.ip, relay: startRelay(t, net.JoinHostPort(relayIP, port), p.Peer)}
}

// startRelayed starts the nodes of layout (the first bootstraps, the others join through its
// relay), waits until they run the data format they settle on (waitSettledFormat: this
// build's latest unless the test set REDRAFT_MAX_DATA_FORMAT), gives each DC two groups (one
// redis-server each, slots 0-8191 and 8192-16383) and waits until every node routes writes.
func startRelayed(t *testing.T, layout []nodeLayout) *xdcCluster {
	t.Helper()
	return startRelayedWith(t, layout, func(dc string) []fsm.Group {
		a, b := testredis.Start(t), testredis.Start(t)
		return []fsm.Group{{ID: "g" + dc[2:] + "a", Master: a.Addr}, {ID: "g" + dc[2:] + "b", Master: b.Addr}}
	})
}

// startRelayedWith is startRelayed with the groups groups(dc) gives each DC (one or two): one
// serves every slot, two share them as startRelayed's do.
func startRelayedWith(t *testing.T, layout []nodeLayout, groups func(dc string) []fsm.Group) *xdcCluster {
	t.Helper()
	start := time.Now()
	x := &xdcCluster{t: t, c: NewCluster(t)}
	for _, l := range layout {
		if !slices.Contains(x.dcs, l.dc) {
			x.dcs = append(x.dcs, l.dc)
		}
		x.nodes = append(x.nodes, newRelayedNode(t, x.c, l))
	}
	first := x.nodes[0]
	first.Start()
	first.WaitHealthy(30 * time.Second)
	for _, n := range x.nodes[1:] {
		n.Start(first.relay.Addr())
	}
	for _, n := range x.nodes[1:] {
		n.WaitHealthy(30 * time.Second)
	}
	// The format the nodes settle on before any group: no write straddles a raise.
	procs := make([]*proc, len(x.nodes))
	for i, n := range x.nodes {
		procs[i] = n.proc
	}
	format := waitSettledFormat(t, procs...)
	// Through the admin API rather than the CLI: a CLI built with -race sleeps 1 s on exit.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := first.Client()
	for _, dc := range x.dcs {
		gs := groups(dc)
		ranges := []string{"0-8191", "8192-16383"}
		if len(gs) == 1 {
			ranges = []string{"0-16383"}
		}
		var errs []error
		for i, g := range gs {
			errs = append(errs, admin.AddGroup(ctx, dc, g),
				admin.AssignSlots(ctx, node.AssignRequest{DC: dc, Group: g.ID, Slots: []string{ranges[i]}}))
		}
		for _, err := range errs {
			// A proposal retried after a slow first try that did commit answers "already exists".
			if err != nil && !strings.Contains(err.Error(), "already exists") {
				t.Fatalf("groups of %s: %v", dc, err)
			}
		}
	}
	for _, n := range x.nodes {
		rdb := redis.NewClient(&redis.Options{Addr: n.Listen})
		waitFor(t, 20*time.Second, n.ID+" routes", func() error {
			return rdb.Set(context.Background(), "probe:"+n.ID, n.ID, 0).Err()
		})
		rdb.Close()
	}
	t.Logf("%d nodes in %d DCs up at data format %d in %v", len(x.nodes), len(x.dcs), format, time.Since(start).Round(time.Millisecond))
	return x
}

// node returns the node with id.
func (x *xdcCluster) node(id string) *xdcNode {
	for _, n := range x.nodes {
		if n.ID == id {
			return n
		}
	}
	x.t.Fatalf("no node %s", id)
	return nil
}

// inDC returns the nodes of dc.
func (x *xdcCluster) inDC(dc string) []*xdcNode {
	var out []*xdcNode
	for _, n := range x.nodes {
		if n.DC == dc {
			out = append(out, n)
		}
	}
	return out
}

// live returns a running node of dc (nil if none).
func (x *xdcCluster) live(dc string) *xdcNode {
	for _, n := range x.inDC(dc) {
		if !n.Exited() {
			return n
		}
	}
	return nil
}

// cutDC cuts dc's peer traffic: the relays in front of its nodes refuse everything, the others
// refuse connections from its nodes' IPs.
func (x *xdcCluster) cutDC(dc string) {
	ips := map[string]bool{}
	for _, n := range x.inDC(dc) {
		ips[n.ip] = true
	}
	for _, n := range x.nodes {
		if n.DC == dc {
			n.relay.Cut(nil)
		} else {
			n.relay.Cut(func(src net.IP) bool { return ips[src.String()] })
		}
	}
}

// heal lets all peer traffic through again.
func (x *xdcCluster) heal() {
	for _, n := range x.nodes {
		n.relay.Heal()
	}
}

// masters returns each DC's group masters, from the cluster status of a running node.
func (x *xdcCluster) masters() map[string][]string {
	x.t.Helper()
	var via *xdcNode
	for _, dc := range x.dcs {
		if via = x.live(dc); via != nil {
			break
		}
	}
	out := map[string][]string{}
	for _, d := range via.Status().DCs {
		for _, g := range d.Groups {
			out[d.Name] = append(out[d.Name], g.Master)
		}
	}
	return out
}

// waitConverged polls, up to d, until every DC holds the same data, slot by slot.
func (x *xdcCluster) waitConverged(d time.Duration) {
	x.t.Helper()
	start := time.Now()
	masters := x.masters()
	var keys int
	deadline := time.Now().Add(d)
	nextNote := time.Now().Add(10 * time.Second)
	for {
		var err error
		if keys, err = x.differences(masters); err == nil {
			break
		}
		if time.Now().After(deadline) {
			x.explainReplication()
			x.t.Fatalf("waited %s for every DC holding the same data: %v", d, err)
		}
		if time.Now().After(nextNote) { // a slow convergence says where it stands
			nextNote = time.Now().Add(10 * time.Second)
			for _, n := range x.nodes {
				reps, rerr := replication(n.proc)
				x.t.Logf("not converged after %v; %s replication: %+v %v", time.Since(start).Round(time.Second), n.ID, reps, rerr)
			}
		}
		time.Sleep(100 * time.Millisecond) // poll interval, not synchronisation
	}
	x.t.Logf("every DC holds the same %d keys (converged in %v)", keys, time.Since(start).Round(time.Millisecond))
}

// explainReplication logs, for a failed convergence, each node's replication pairs and the
// lines of its log about copies, gaps and shipping, ahead of the full logs (which CI cuts).
func (x *xdcCluster) explainReplication() {
	for _, n := range x.nodes {
		if reps, err := replication(n.proc); err == nil {
			x.t.Logf("%s replication: %+v", n.ID, reps)
		} else {
			x.t.Logf("%s replication: %v", n.ID, err)
			x.t.Logf("%s does not answer: its goroutines, by top redraft frame:\n%s", n.ID, n.proc.goroutines())
		}
		var lines []string
		for _, line := range strings.Split(n.Log(), "\n") {
			for _, w := range []string{"cop", "GAP", "gap", "shipping", "behind", "apply", "acting", "migrat"} {
				if strings.Contains(line, w) {
					lines = append(lines, line)
					break
				}
			}
		}
		if len(lines) > 40 {
			lines = append(lines[:20], append([]string{"..."}, lines[len(lines)-20:]...)...)
		}
		x.t.Logf("%s log, replication lines:\n%s", n.ID, strings.Join(lines, "\n"))
	}
}

// differences digests every DC's masters and returns how many keys the first DC holds, or
// an error that shows the first slots that differ.
func (x *xdcCluster) differences(masters map[string][]string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ref, err := digestDC(ctx, masters[x.dcs[0]])
	if err != nil {
		return 0, err
	}
	var msgs []string
	for _, dc := range x.dcs[1:] {
		other, err := digestDC(ctx, masters[dc])
		if err != nil {
			return 0, err
		}
		diffs := diffDigests(ref, other)
		for i, df := range diffs {
			if i == 3 {
				msgs = append(msgs, fmt.Sprintf("  ... %d slots differ in all", len(diffs)))
				break
			}
			msgs = append(msgs, fmt.Sprintf("  %s vs %s: %s", x.dcs[0], dc, df))
		}
	}
	if len(msgs) > 0 {
		return 0, fmt.Errorf("DCs differ:\n%s", strings.Join(msgs, "\n"))
	}
	return ref.keys, nil
}

// fullCopies returns the log lines of the nodes that received a slot copied in full.
func (x *xdcCluster) fullCopies() []string {
	var out []string
	for _, n := range x.nodes {
		for _, line := range strings.Split(n.Log(), "\n") {
			if strings.Contains(line, "slot replaced by a full copy") {
				out = append(out, n.ID+": "+line)
			}
		}
	}
	return out
}

// replication returns the `replication` array of `redraft status --json` asked of p.
func replication(p *proc) ([]node.ReplicationPair, error) {
	out, err := p.CLI("--json", "status")
	if err != nil {
		return nil, fmt.Errorf("redraft status: %v: %s", err, out)
	}
	var st node.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return nil, fmt.Errorf("status --json: %v", err)
	}
	return st.Replication, nil
}

// xdcWorker writes its own keys through one node and keeps what it was acknowledged.
type xdcWorker struct {
	name string // prefix of its keys, unique in the test
	rdb  *redis.Client

	counters  map[string]int64            // INCR
	hashes    map[string]map[string]int64 // HINCRBY
	strs      map[string]string           // SET
	withTTL   map[string]bool             // SET ... EX
	sets      map[string]map[string]bool  // SADD
	lists     map[string][]string         // RPUSH
	uncertain map[string]string           // key -> error of a write whose outcome is unknown
	errs      []string
}

func newWorker(name string, rdb *redis.Client) *xdcWorker {
	return &xdcWorker{
		name: name, rdb: rdb,
		counters: map[string]int64{}, hashes: map[string]map[string]int64{}, strs: map[string]string{},
		withTTL: map[string]bool{}, sets: map[string]map[string]bool{}, lists: map[string][]string{},
		uncertain: map[string]string{},
	}
}

// xdcLoad runs workers until stopped.
type xdcLoad struct {
	x        *xdcCluster
	stop     chan struct{}
	wg       sync.WaitGroup
	ops      atomic.Int64
	tryagain atomic.Int64
}

const xdcKeys = 25 // keys of each kind per worker

// load starts perNode workers on each of nodes; each writes only its own keys.
func (x *xdcCluster) load(perNode int, nodes ...*xdcNode) *xdcLoad {
	l := &xdcLoad{x: x, stop: make(chan struct{})}
	for _, n := range nodes {
		for i := 0; i < perNode; i++ {
			name := fmt.Sprintf("w%d-%s-%s", len(x.workers), n.DC, n.ID)
			wk := newWorker(name, redis.NewClient(&redis.Options{Addr: n.Listen, MaxRetries: -1, PoolSize: 2, ReadTimeout: 10 * time.Second}))
			x.workers = append(x.workers, wk)
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				defer wk.rdb.Close()
				l.run(wk)
			}()
		}
	}
	x.t.Cleanup(l.Stop)
	return l
}

// Stop ends the load and waits for its workers.
func (l *xdcLoad) Stop() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// WaitOps waits until n more writes were answered.
func (l *xdcLoad) WaitOps(n int64) {
	l.x.t.Helper()
	target := l.ops.Load() + n
	waitFor(l.x.t, 60*time.Second, fmt.Sprintf("%d more writes", n), func() error {
		if got := l.ops.Load(); got < target {
			return fmt.Errorf("%d of %d", got, target)
		}
		return nil
	})
}

// do runs op for key, retrying while the cluster answers TRYAGAIN (the command did not run);
// any other error leaves the key's outcome unknown.
func (l *xdcLoad) do(wk *xdcWorker, key string, op func(ctx context.Context) error) bool {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		err := op(ctx)
		cancel()
		l.ops.Add(1)
		if err == nil {
			return wk.uncertain[key] == ""
		}
		if notRun(err.Error()) {
			l.tryagain.Add(1)
			select {
			case <-l.stop:
				return false
			case <-time.After(5 * time.Millisecond):
			}
			continue
		}
		wk.errs = append(wk.errs, fmt.Sprintf("%s: %v", key, err))
		wk.uncertain[key] = err.Error()
		return false
	}
}

func (l *xdcLoad) run(wk *xdcWorker) {
	for seq := int64(1); ; seq++ {
		select {
		case <-l.stop:
			return
		default:
		}
		k := seq % xdcKeys
		v := strconv.FormatInt(seq, 10)
		key := func(kind string) string { return fmt.Sprintf("%s:%s:%d", wk.name, kind, k) }

		ctr := key("ctr")
		var got int64
		if l.do(wk, ctr, func(ctx context.Context) (err error) { got, err = wk.rdb.Incr(ctx, ctr).Result(); return }) {
			wk.counters[ctr]++
			if got != wk.counters[ctr] {
				wk.errs = append(wk.errs, fmt.Sprintf("INCR %s answered %d after %d acknowledged INCRs", ctr, got, wk.counters[ctr]))
				wk.counters[ctr] = got
			}
		}
		h, f := key("hash"), "f"+strconv.FormatInt(seq%3, 10)
		if l.do(wk, h, func(ctx context.Context) error { return wk.rdb.HIncrBy(ctx, h, f, 2).Err() }) {
			if wk.hashes[h] == nil {
				wk.hashes[h] = map[string]int64{}
			}
			wk.hashes[h][f] += 2
		}
		set := key("set")
		if l.do(wk, set, func(ctx context.Context) error { return wk.rdb.SAdd(ctx, set, v).Err() }) {
			if wk.sets[set] == nil {
				wk.sets[set] = map[string]bool{}
			}
			wk.sets[set][v] = true
		}
		lst := key("list")
		if l.do(wk, lst, func(ctx context.Context) error { return wk.rdb.RPush(ctx, lst, v).Err() }) {
			wk.lists[lst] = append(wk.lists[lst], v)
		}
		str := key("str")
		ttl := time.Duration(0)
		if k%3 == 0 {
			ttl = time.Hour // recorded as an absolute PXAT: both DCs expire it at the same ms
		}
		if l.do(wk, str, func(ctx context.Context) error { return wk.rdb.Set(ctx, str, "v"+v, ttl).Err() }) {
			wk.strs[str], wk.withTTL[str] = "v"+v, ttl > 0
		}
		if seq%10 == 0 { // short-lived keys: only the digests see them (gone everywhere, in the end)
			tmp := key("tmp")
			l.do(wk, tmp, func(ctx context.Context) error { return wk.rdb.Set(ctx, tmp, v, time.Second).Err() })
		}
	}
}

// verify checks, through a running node of every DC, that every acknowledged write is there
// exactly once (counters exact) and that the loads met no error.
func (x *xdcCluster) verify() {
	x.t.Helper()
	uncertain := 0
	for _, wk := range x.workers {
		errs := wk.errs
		if x.failovers {
			errs = slices.DeleteFunc(slices.Clone(errs), func(e string) bool { return strings.Contains(e, "is unavailable") })
			if n := len(wk.errs) - len(errs); n > 0 {
				x.t.Logf("worker %s: %d writes to a dead master of unknown outcome, e.g. %s", wk.name, n, wk.errs[0])
			}
		}
		for i, e := range errs {
			if i == 5 {
				x.t.Errorf("worker %s: ... %d errors in all", wk.name, len(errs))
				break
			}
			x.t.Errorf("worker %s: %s", wk.name, e)
		}
		uncertain += len(wk.uncertain)
	}
	for _, dc := range x.dcs {
		n := x.live(dc)
		rdb := redis.NewClient(&redis.Options{Addr: n.Listen, ReadTimeout: 10 * time.Second})
		bad := 0
		report := func(format string, args ...any) {
			if bad++; bad <= 10 {
				x.t.Errorf("%s (via %s): %s", dc, n.ID, fmt.Sprintf(format, args...))
			}
		}
		checked := 0
		for _, wk := range x.workers {
			checked += checkWorkerServed(rdb, wk, report)
		}
		rdb.Close()
		if bad > 10 {
			x.t.Errorf("%s: %d wrong keys in all", dc, bad)
		}
		x.t.Logf("%s: %d acknowledged keys checked, %d wrong", dc, checked, bad)
	}
	for _, c := range x.fullCopies() {
		x.t.Logf("full copy: %s", c)
	}
	if x.t.Failed() {
		x.applyCounts()
	}
	if uncertain > 0 {
		x.t.Logf("%d keys had a write of unknown outcome: left out of the exact checks", uncertain)
	}
}

// applyCounts logs, for a failed check, what each live node's receivers counted as they
// applied other DCs' writes: effects skipped as superseded (their key's stamp here was not
// the one they followed), conflicts pulled, effects that failed. A write missing in a DC
// whose positions passed it was either never shipped or skipped here; these tell which.
func (x *xdcCluster) applyCounts() {
	for _, n := range x.nodes {
		if n.Exited() {
			continue
		}
		resp, err := http.Get("http://" + n.Admin + "/metrics")
		if err != nil {
			x.t.Logf("%s: metrics: %v", n.ID, err)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var got []string
		for _, l := range strings.Split(string(b), "\n") {
			for _, name := range []string{"superseded_effects_total", "conflicting_effects_total", "diverged_effects_total"} {
				if strings.HasPrefix(l, "redraft_replication_"+name) {
					got = append(got, strings.TrimPrefix(l, "redraft_replication_"))
				}
			}
		}
		x.t.Logf("%s: %s", n.ID, strings.Join(got, "; "))
	}
}

// checkWorkerServed is checkWorker, again while the node answers a read that it does not
// serve it now (CLUSTERDOWN while it has not heard from the Raft leader, TRYAGAIN): such an
// answer says nothing of the data. The last pass's findings are reported, within 30 s.
func checkWorkerServed(rdb *redis.Client, wk *xdcWorker, report func(string, ...any)) int {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var found []string
		n := checkWorker(context.Background(), rdb, wk, func(format string, args ...any) {
			found = append(found, fmt.Sprintf(format, args...))
		})
		served := !slices.ContainsFunc(found, func(m string) bool {
			return strings.Contains(m, "CLUSTERDOWN") || strings.Contains(m, "TRYAGAIN")
		})
		if served || time.Now().After(deadline) {
			for _, m := range found {
				report("%s", m)
			}
			return n
		}
		time.Sleep(100 * time.Millisecond) // poll interval: the node acts again within seconds
	}
}

// checkWorker compares what wk was acknowledged with what rdb reads; it returns the keys checked.
func checkWorker(ctx context.Context, rdb *redis.Client, wk *xdcWorker, report func(string, ...any)) int {
	pipe := rdb.Pipeline()
	var checks []func()
	sure := func(k string) bool { return wk.uncertain[k] == "" }
	for k, want := range wk.counters {
		if !sure(k) {
			continue
		}
		c := pipe.Get(ctx, k)
		checks = append(checks, func() {
			if got, err := c.Int64(); err != nil || got != want {
				report("counter %s = %d (%v), acknowledged INCRs %d", k, got, err, want)
			}
		})
	}
	for k, want := range wk.hashes {
		if !sure(k) {
			continue
		}
		c := pipe.HGetAll(ctx, k)
		checks = append(checks, func() {
			got, err := c.Result()
			for f, n := range want {
				if got[f] != strconv.FormatInt(n, 10) || err != nil {
					report("hash %s field %s = %q (%v), acknowledged HINCRBYs sum to %d", k, f, got[f], err, n)
					return
				}
			}
			if len(got) != len(want) {
				report("hash %s has %d fields, acknowledged %d", k, len(got), len(want))
			}
		})
	}
	for k, want := range wk.strs {
		if !sure(k) {
			continue
		}
		c, ttl := pipe.Get(ctx, k), pipe.PTTL(ctx, k)
		withTTL := wk.withTTL[k]
		checks = append(checks, func() {
			got, err := c.Result()
			if err != nil || got != want || (ttl.Val() > 0) != withTTL {
				report("string %s = %q ttl %v (%v), acknowledged %q with TTL %v", k, got, ttl.Val(), err, want, withTTL)
			}
		})
	}
	for k, want := range wk.sets {
		if !sure(k) {
			continue
		}
		c := pipe.SMembers(ctx, k)
		checks = append(checks, func() {
			got, err := c.Result()
			ok := err == nil && len(got) == len(want)
			for _, m := range got {
				ok = ok && want[m]
			}
			if !ok {
				report("set %s has %d members (%v), acknowledged %d", k, len(got), err, len(want))
			}
		})
	}
	for k, want := range wk.lists {
		if !sure(k) {
			continue
		}
		c := pipe.LRange(ctx, k, 0, -1)
		checks = append(checks, func() {
			got, err := c.Result()
			if err != nil || strings.Join(got, ",") != strings.Join(want, ",") {
				report("list %s has %d elements (%v), acknowledged RPUSHes %d", k, len(got), err, len(want))
			}
		})
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		report("reading %s's keys: %v", wk.name, err)
	}
	for _, c := range checks {
		c()
	}
	return len(checks)
}

// bulkIncr runs, through each of vias at the same time, n INCRs per tag, pipelined, over the
// keys {tag}:<via's DC>:c:0..9 (one slot per tag, each key written from one DC), retrying
// those answered TRYAGAIN; it records them as workers', so the final check covers them.
func (x *xdcCluster) bulkIncr(tags []string, n int, vias ...*xdcNode) {
	x.t.Helper()
	var wg sync.WaitGroup
	for _, via := range vias {
		wk := newWorker(fmt.Sprintf("bulk%d-%s", len(x.workers), via.ID), nil)
		x.workers = append(x.workers, wk)
		var todo []string
		for _, tag := range tags {
			for i := 0; i < n; i++ {
				todo = append(todo, fmt.Sprintf("{%s}:%s:c:%d", tag, via.DC, i%10))
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			retried := incrAll(via, wk, todo)
			x.t.Logf("%d INCRs through %s (%d answered TRYAGAIN and were retried)", len(todo), via.ID, retried)
		}()
	}
	wg.Wait()
}

// incrAll runs INCR on every key of todo through via, 200 to a pipeline, retrying those
// answered TRYAGAIN, and records them in wk; it returns how many it retried.
func incrAll(via *xdcNode, wk *xdcWorker, todo []string) (retried int) {
	rdb := redis.NewClient(&redis.Options{Addr: via.Listen, MaxRetries: -1, ReadTimeout: 30 * time.Second})
	defer rdb.Close()
	ctx := context.Background()
	highest := map[string]int64{} // the largest INCR answer per key
	for len(todo) > 0 {
		batch := todo[:min(200, len(todo))]
		todo = todo[len(batch):]
		pipe := rdb.Pipeline()
		cmds := make([]*redis.IntCmd, len(batch))
		for i, k := range batch {
			cmds[i] = pipe.Incr(ctx, k)
		}
		_, _ = pipe.Exec(ctx)
		again := false
		for i, c := range cmds {
			k := batch[i]
			got, err := c.Result()
			switch {
			case err == nil:
				wk.counters[k]++
				highest[k] = max(highest[k], got)
			case notRun(err.Error()): // not run: again, later
				todo, again = append(todo, k), true
				retried++
			default:
				wk.errs = append(wk.errs, fmt.Sprintf("%s: %v", k, err))
				wk.uncertain[k] = err.Error()
			}
		}
		if again {
			time.Sleep(10 * time.Millisecond) // back off while the slot is locked
		}
	}
	for k, n := range wk.counters {
		if highest[k] != n && wk.uncertain[k] == "" {
			wk.errs = append(wk.errs, fmt.Sprintf("INCR %s answered at most %d after %d acknowledged INCRs", k, highest[k], n))
		}
	}
	return retried
}

// finish stops l, waits (up to d) until every DC holds the same data and checks every
// acknowledged write.
func (x *xdcCluster) finish(l *xdcLoad, d time.Duration) {
	x.t.Helper()
	l.Stop()
	x.t.Logf("%d writes, %d TRYAGAIN (retried)", l.ops.Load(), l.tryagain.Load())
	x.waitConverged(d)
	x.verify()
}

// TestXDCSteadyState: writes through every DC for a few seconds, each key from one DC only;
// every DC ends with the same data, every acknowledged write in it exactly once.
func TestXDCSteadyState(t *testing.T) {
	x := startXDC(t)
	l := x.load(1, x.nodes...)
	l.WaitOps(4000)
	x.finish(l, 60*time.Second)
}

// TestXDCCutDC3: at data format 1 (per-slot outboxes: REDRAFT_MAX_DATA_FORMAT is 1), dc3's
// peer traffic is cut for 30 s under load, then healed. During the cut the status shows the
// replication toward dc3 lagging by more than 5 s; after it every DC converges.
func TestXDCCutDC3(t *testing.T) {
	t.Setenv(maxDataFormatEnv, "1")
	cutDC3(t, startXDC(t))
}

// TestXDCLogCutDC3 is TestXDCCutDC3 at data format 3: the lag and state in the status come from
// the group logs' shippers, and the logs catch dc3 up.
func TestXDCLogCutDC3(t *testing.T) { cutDC3(t, startXDCLog(t)) }

func cutDC3(t *testing.T, x *xdcCluster) {
	l := x.load(1, x.nodes...)
	l.WaitOps(2000)
	cut := xdcCut()
	want := 5 * time.Second
	if cut < 3*want {
		want = cut / 2
	}
	x.cutDC("dc3")
	t.Logf("dc3 cut off for %v", cut)
	end := time.Now().Add(cut)
	var worst node.ReplicationPair
	for time.Now().Before(end) {
		for _, via := range []*proc{x.node("n11").proc, x.node("n21").proc} {
			reps, err := replication(via)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range reps {
				if p.To == "dc3" && p.LagMS > worst.LagMS {
					worst = p
				}
			}
		}
		time.Sleep(500 * time.Millisecond) // status poll interval; the cut's length is the timer
	}
	opsDuringCut := l.ops.Load()
	x.heal()
	t.Logf("healed after %d writes; largest lag toward dc3 seen during the cut: %+v", opsDuringCut, worst)
	if worst.LagMS <= float64(want.Milliseconds()) {
		t.Errorf("largest replication lag toward dc3 in redraft status during a %v cut: %.0f ms, want > %v", cut, worst.LagMS, want)
	}
	l.WaitOps(2000)
	x.finish(l, 90*time.Second)
	// Once caught up, the status says so.
	waitFor(t, 30*time.Second, "replication toward dc3 reported caught up", func() error {
		reps, err := replication(x.node("n11").proc)
		if err != nil {
			return err
		}
		for _, p := range reps {
			if p.To == "dc3" && (p.State != "ok" || p.LagMS > float64(want.Milliseconds())) {
				return fmt.Errorf("%+v", p)
			}
		}
		return nil
	})
}

// TestXDCKillShipper: at data format 1 (per-slot outboxes: REDRAFT_MAX_DATA_FORMAT is 1), n11,
// which ships and receives half of dc1's slots, is killed with SIGKILL under load (through
// n12, n21 and n31), restarted, and every DC converges.
func TestXDCKillShipper(t *testing.T) {
	t.Setenv(maxDataFormatEnv, "1")
	killShipper(t, startXDC(t))
}

// TestXDCLogKillShipper is TestXDCKillShipper at data format 3: a group's log is shipped by the
// live owner of the slot of its id (g1b's is n11's), so a log n11 shipped moves to n12 while
// n11 is down and back after (the shippers' memos of the destinations' positions die with
// n11); the positions on the masters carry the shipping on, every write exactly once.
func TestXDCLogKillShipper(t *testing.T) { killShipper(t, startXDCLog(t)) }

func killShipper(t *testing.T, x *xdcCluster) {
	n11, n12 := x.node("n11"), x.node("n12")
	l := x.load(2, n12, x.node("n21"), x.node("n31"))
	for _, d := range n11.Status().DCs {
		if d.Name == "dc1" && d.Owners["n11"] == 0 {
			t.Fatalf("n11 owns no slot of dc1 (%v): killing it would stop no shipping", d.Owners)
		}
	}
	l.WaitOps(2000)
	n11.Kill9()
	t.Logf("killed n11 mid-stream")
	l.WaitOps(2000)
	n11.Start(n12.relay.Addr())
	n11.WaitHealthy(30 * time.Second)
	l.WaitOps(2000)
	x.finish(l, 90*time.Second)
}

// TestXDCMigrateInReceivingDC: dc2 moves slots 0-4095 from group g2a to g2b, throttled, while
// writes from dc1 (a bulk of 5,000 INCRs, and a load through every DC) replicate into them;
// every DC converges.
func TestXDCMigrateInReceivingDC(t *testing.T) {
	x := startXDC(t)
	n21 := x.node("n21")
	l := x.load(1, x.nodes...)
	// Keys over 1000 slots written in dc1, so the mover in dc2 has work while they (and the
	// load) replicate into the moving slots.
	var tags []string
	for i := 0; i < 1000; i++ {
		tags = append(tags, fmt.Sprintf("d-%d", i))
	}
	x.bulkIncr(tags, 5, x.node("n11"))
	l.WaitOps(1000)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Throttled, so the replicated writes meet the slots while they move for a few seconds.
	rep, err := n21.Client().StartMigration(ctx, node.MigrateRequest{DC: "dc2", Slots: []string{"0-4095"}, To: "g2b", Rate: 1000})
	if err != nil {
		t.Fatalf("start migration in dc2: %v", err)
	}
	waitMigrated(t, rep.ID, 120*time.Second, n21.proc)
	if m, err := n21.Client().Migration(ctx, rep.ID); err == nil {
		t.Logf("the migration moved %d keys", m.KeysMoved)
	}
	for _, d := range n21.Status().DCs {
		for _, g := range d.Groups {
			if d.Name == "dc2" && g.ID == "g2b" && g.Slots != 4096+8192 {
				t.Errorf("after the migration g2b serves %v, want 0-4095 and 8192-16383", g.Ranges)
			}
		}
	}
	l.WaitOps(2000)
	x.finish(l, 90*time.Second)
}

// TestXDCOutboxOverflowCopies: at data format 1 (per-slot outboxes: REDRAFT_MAX_DATA_FORMAT is
// 1), dc3 is down while dc1 and dc2 both write 9000 entries into the same three slots (their
// own keys) with the outbox bound at its minimum (1000), so dc3 falls behind the outboxes (and
// dc1 and dc2 behind each other's); restarted, it is brought back by full slot copies (the
// test fails unless the status shows one toward dc3) and every DC converges, counters exact.
func TestXDCOutboxOverflowCopies(t *testing.T) {
	t.Setenv(maxDataFormatEnv, "1")
	outboxOverflowCopies(t, startXDC(t), 3000)
}

// TestXDCLogOutboxOverflowCopies is TestXDCOutboxOverflowCopies at data format 3: while dc3 is
// down, its position falls out of dc1's and dc2's group logs (cut at ten times the outbox
// bound by WRITE), and the shippers copy their groups to dc3 in full when it is back.
func TestXDCLogOutboxOverflowCopies(t *testing.T) {
	outboxOverflowCopies(t, startXDCLog(t), 6000)
}

// outboxOverflowCopies writes perTag increments to each of three tags from dc1 and dc2 while
// dc3 is down, with the outbox bound at its minimum, and fails unless the status showed a copy
// toward dc3.
func outboxOverflowCopies(t *testing.T, x *xdcCluster, perTag int) {
	n11, n21, n31 := x.node("n11"), x.node("n21"), x.node("n31")
	l := x.load(1, x.nodes...)
	l.WaitOps(2000)
	l.Stop()
	n31.Stop()
	n11.MustCLI("config", "set", "outbox_max_entries", "1000")
	for _, p := range x.nodes[:3] {
		waitFor(t, 10*time.Second, p.ID+" applies outbox_max_entries 1000", func() error {
			if v := p.Status().Settings["outbox_max_entries"]; v != "1000" {
				return fmt.Errorf("outbox_max_entries %q", v)
			}
			return nil
		})
	}
	// The outboxes are cut past a DC only once its shipping has failed for two heartbeats
	// (router/xdc: the pair is down): wait for that, so the writes below overflow the bound
	// with dc3 down and leave it behind what the outboxes (or logs) hold.
	waitFor(t, 30*time.Second, "shipping toward dc3 down from dc1 and dc2", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := n11.Client().Status(ctx)
		if err != nil {
			return err
		}
		down := map[string]bool{}
		for _, p := range st.Replication {
			if p.To == "dc3" && p.State == "down" {
				down[p.From] = true
			}
		}
		if !down["dc1"] || !down["dc2"] {
			return fmt.Errorf("pairs %+v", st.Replication)
		}
		return nil
	})
	l = x.load(1, x.nodes[:3]...)
	// The same three slots from both DCs at once (different keys): copies then replace slots
	// that also hold the receiving DC's own keys.
	x.bulkIncr([]string{"e-a", "e-b", "e-c"}, perTag, n11, n21)
	l.WaitOps(1000)

	// Watch the status for copies toward dc3 from the restart until the end, on every node
	// that may ship toward it (either of dc1's ships a given log).
	var seenMu sync.Mutex
	seen := ""
	look := func() {
		for _, via := range []*proc{n11.proc, x.node("n12").proc, n21.proc} {
			reps, _ := replication(via)
			for _, p := range reps {
				if p.To == "dc3" && (p.State == "copying" || p.Copying > 0 || p.Copied > 0) {
					seenMu.Lock()
					seen = fmt.Sprintf("%+v", p)
					seenMu.Unlock()
				}
			}
		}
	}
	stopWatch, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		for {
			look()
			select {
			case <-stopWatch:
				return
			case <-time.After(200 * time.Millisecond): // poll interval
			}
		}
	}()
	n31.Start(n11.relay.Addr())
	n31.WaitHealthy(30 * time.Second)
	l.WaitOps(2000)
	x.finish(l, 90*time.Second)
	close(stopWatch)
	<-watched
	if seen == "" {
		// The DCs can agree before a copy's last answer is back, and only then is it counted.
		waitFor(t, 30*time.Second, "a copy toward dc3 in the status", func() error {
			if look(); seen == "" {
				return errors.New("none yet")
			}
			return nil
		})
	}
	t.Logf("copying toward dc3 observed in the status: %s", seen)
}

// TestXDCCollectsTombstones: a tombstone in dc1 is collected once dc2 and dc3 wrote the slot
// again past the margin for the masters' clocks, by the collector's script, which runs through
// the router only while no migration or failover concerns the slot (router/xdc/gc.go).
func TestXDCCollectsTombstones(t *testing.T) {
	x := startXDC(t)
	ctx := context.Background()
	via := func(dc string) *redis.Client {
		rdb := redis.NewClient(&redis.Options{Addr: x.live(dc).Listen})
		t.Cleanup(func() { rdb.Close() })
		return rdb
	}
	dc1 := via("dc1")
	if err := dc1.Set(ctx, "{tomb}k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := dc1.Del(ctx, "{tomb}k").Err(); err != nil {
		t.Fatal(err)
	}
	others := []*redis.Client{via("dc2"), via("dc3")}
	collected := func() (float64, error) {
		sum := 0.0
		for _, n := range x.inDC("dc1") {
			v, err := nodeMetric(n.proc, "redraft_replication_tombstones_collected_total")
			if err != nil {
				return 0, err
			}
			sum += v
		}
		return sum, nil
	}
	// The other DCs write the slot until dc1 collected: their entries after the tombstone's
	// stamp plus 5 s are what lets it go.
	i := 0
	waitFor(t, 60*time.Second, "dc1 collects the tombstone", func() error {
		i++
		for j, c := range others {
			if err := c.Set(ctx, fmt.Sprintf("{tomb}by-%d", j), i, 0).Err(); err != nil {
				return err
			}
		}
		if n, err := collected(); err != nil || n == 0 {
			return fmt.Errorf("%v tombstones collected (%v)", n, err)
		}
		return nil
	})
}
