package integration

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/migrate"
	"github.com/redraft/redraft/router/xdc"
)

// The test that converges for real (issue 15, point 4; docs/convergence.md): three DCs,
// clients writing the same keys of every family through every DC with random pauses, while a
// DC is cut off or a node killed and restarted. It runs in rounds: after each, every fault is
// healed and replication drained (a marker written in each DC to each slot of the workload has
// reached every other DC: replication is in order per slot), so every operation of a round
// was observed everywhere before any of the next; then every DC must hold the same data, and
// the checker must explain each key's state from the state before the round and the round's
// operations. At the end every DC holds the same keys, values and expiries (read from the
// redis-servers directly) and redraft_replication_diverged_effects_total reads 0 on every node.
//
// TestConverge is the short version (part of `make test`); TestConvergeLong runs rounds with
// faults drawn at random for REDRAFT_CHAOS_DURATION (`make chaos XDC=1` or `make chaos CONVERGE=1`).

// convFault is what the nemesis does during one round.
type convFault struct {
	cut  string // the DC whose peer traffic is cut ("" none)
	kill string // the node killed with SIGKILL and restarted ("" none)
}

func (f convFault) String() string {
	var s []string
	if f.cut != "" {
		s = append(s, "cut "+f.cut)
	}
	if f.kill != "" {
		s = append(s, "kill "+f.kill)
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, " + ")
}

// convOpts is one run's parameters.
type convOpts struct {
	seed      int64
	plan      []convFault   // the short run's rounds
	duration  time.Duration // the long run: rounds with random faults until it passed
	roundLen  time.Duration
	perDC     int // clients per DC
	perFamily int // keys per family and tag
	settle    time.Duration
}

func TestConverge(t *testing.T) {
	runConverge(t, convOpts{seed: 1, roundLen: 3 * time.Second, perDC: 2, perFamily: 2, settle: 15 * time.Second,
		plan: []convFault{{}, {cut: "dc3"}, {kill: "n21"}, {cut: "dc2", kill: "n11"}}})
}

// TestConvergeLong is the long run of `make chaos XDC=1` (skipped unless REDRAFT_CHAOS_DURATION
// is set).
func TestConvergeLong(t *testing.T) {
	o := longOpts(t, true)
	runConverge(t, convOpts{seed: o.seed, duration: o.duration, roundLen: 5 * time.Second, perDC: 3, perFamily: 4, settle: 30 * time.Second})
}

// convRun is one run: the cluster, the workload and what the rounds found.
type convRun struct {
	t      *testing.T
	x      *xdcCluster
	w      *convWorkload
	o      convOpts
	rnd    *rand.Rand
	agreed map[string]*keyState // the state every DC held after the last round (nil: they differed)
	stats  map[string]*convStats
	perKey map[string]*convStats
	bad    []string // violations
}

// verdicts is one line per key: how many rounds were checked, differed and broke a rule.
func (r *convRun) verdicts() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, k := range r.w.keys {
		v := r.perKey[k]
		verdict := "ok"
		if v.differs+v.violations > 0 {
			verdict = "FAIL"
		}
		fmt.Fprintf(tw, "  %s\t%s\tchecked %d\tdiffer %d\tviolations %d\n", k, verdict, v.checked, v.differs, v.violations)
	}
	tw.Flush()
	return b.String()
}

// convStats is a family's summary.
type convStats struct {
	keys                         map[string]bool
	ok, failed, unknown          int
	checked, violations, differs int
}

func runConverge(t *testing.T, o convOpts) {
	redis.SetLogger(quietLogger{})
	t.Logf("converge seed %d (rerun the long run with make chaos XDC=1 SEED=%d)", o.seed, o.seed)
	r := &convRun{t: t, x: startXDC(t), o: o, rnd: rand.New(rand.NewSource(o.seed)),
		w: newConvWorkload(convTags(2), o.perFamily), agreed: map[string]*keyState{}, stats: map[string]*convStats{}, perKey: map[string]*convStats{}}
	for _, k := range r.w.keys {
		r.agreed[k] = &keyState{typ: "none"}
		r.family(k).keys[k] = true
		r.perKey[k] = &convStats{}
	}
	r.w.addClients(r.x, o.perDC, o.seed)
	defer r.w.close()
	for i := 1; ; i++ {
		var f convFault
		switch {
		case o.plan != nil && i > len(o.plan), o.plan == nil && r.w.since() > o.duration:
			r.finish(i - 1)
			return
		case o.plan != nil:
			f = o.plan[i-1]
		default:
			f = r.drawFault()
		}
		ops := r.round(i, f)
		r.drain(i)
		r.check(i, ops)
	}
}

func (r *convRun) family(key string) *convStats {
	fam := family(key)
	if r.stats[fam] == nil {
		r.stats[fam] = &convStats{keys: map[string]bool{}}
	}
	return r.stats[fam]
}

// drawFault picks a long run's round fault: none, a DC cut, a node killed, or both (the node
// killed outside the DC cut, so that it can rejoin).
func (r *convRun) drawFault() convFault {
	var f convFault
	switch r.rnd.Intn(4) {
	case 1:
		f.cut = r.x.dcs[r.rnd.Intn(len(r.x.dcs))]
	case 2:
		f.kill = r.x.nodes[r.rnd.Intn(len(r.x.nodes))].ID
	case 3:
		f.cut = r.x.dcs[r.rnd.Intn(len(r.x.dcs))]
		for f.kill == "" || r.x.node(f.kill).DC == f.cut {
			f.kill = r.x.nodes[r.rnd.Intn(len(r.x.nodes))].ID
		}
	}
	return f
}

// round runs the workload for a round while the nemesis applies f: the cut and the kill come
// 15-35 % into the round, the killed node restarts at 60 %; the cut is healed once the
// clients stopped.
func (r *convRun) round(i int, f convFault) []*convOp {
	d := r.o.roundLen
	at := time.Duration(15+r.rnd.Intn(20)) * d / 100
	restart := 60 * d / 100
	done := make(chan []*convOp)
	start := r.w.since()
	go func() { done <- r.w.round(d) }()
	time.Sleep(at) // the fault's schedule, not synchronisation
	if f.cut != "" {
		r.x.cutDC(f.cut)
	}
	var killed *xdcNode
	if f.kill != "" {
		killed = r.x.node(f.kill)
		killed.Kill9()
		time.Sleep(restart - at) // the fault's schedule
		killed.Start(r.seedsFor(killed)...)
	}
	ops := <-done
	r.x.heal()
	if killed != nil {
		killed.WaitHealthy(60 * time.Second)
	}
	r.t.Logf("round %d (%.1fs..%.1fs): fault %s, %d operations", i, start.Seconds(), r.w.since().Seconds(), f, len(ops))
	return ops
}

// seedsFor is every other node's peer address (through its relay), for a restart.
func (r *convRun) seedsFor(n *xdcNode) []string {
	var out []string
	for _, m := range r.x.nodes {
		if m != n {
			out = append(out, m.relay.Addr())
		}
	}
	return out
}

// drain waits until every node serves writes again and every DC has applied every write the
// others took in this round: per tag (slot) and DC a marker is written, and waited for in
// every other DC (replication is in order per slot).
func (r *convRun) drain(i int) {
	start := time.Now()
	mark := strconv.Itoa(i)
	clients := map[string]*redis.Client{}
	for _, n := range r.x.nodes {
		clients[n.ID] = redis.NewClient(&redis.Options{Addr: n.Listen, MaxRetries: -1, ReadTimeout: 5 * time.Second})
		defer clients[n.ID].Close()
	}
	ctx := context.Background()
	for _, n := range r.x.nodes {
		waitFor(r.t, 60*time.Second, n.ID+" serves writes", func() error {
			return clients[n.ID].Set(ctx, "probe:"+n.ID, mark, 0).Err()
		})
	}
	for _, tag := range r.w.tags {
		for _, dc := range r.x.dcs {
			via := r.x.inDC(dc)[0]
			waitFor(r.t, 30*time.Second, "marker through "+via.ID, func() error {
				return clients[via.ID].Set(ctx, fmt.Sprintf("{%s}:mark:%s", tag, dc), mark, 0).Err()
			})
		}
	}
	waitFor(r.t, 120*time.Second, "every DC applied the others' markers of round "+mark, func() error {
		for _, tag := range r.w.tags {
			for _, dc := range r.x.dcs {
				for _, n := range r.x.nodes {
					key := fmt.Sprintf("{%s}:mark:%s", tag, dc)
					if got, err := clients[n.ID].Get(ctx, key).Result(); err != nil || got != mark {
						return fmt.Errorf("%s reads %s = %q (%v)", n.ID, key, got, err)
					}
				}
			}
		}
		return nil
	})
	r.t.Logf("round %d drained in %v", i, time.Since(start).Round(time.Millisecond))
}

// states reads every workload key in every DC, polling up to settle until all DCs agree
// (lists and streams may wait for anti-entropy); it returns the last reads.
func (r *convRun) states() (map[string]map[string]keyState, bool) {
	masters := r.x.masters()
	deadline := time.Now().Add(r.o.settle)
	for {
		out := map[string]map[string]keyState{}
		for _, dc := range r.x.dcs {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			s, err := readConvStates(ctx, masters[dc], r.w.keys)
			cancel()
			if err != nil {
				r.t.Fatalf("reading %s: %v", dc, err)
			}
			out[dc] = s
		}
		same := true
		for _, k := range r.w.keys {
			for _, dc := range r.x.dcs[1:] {
				same = same && out[dc][k].String() == out[r.x.dcs[0]][k].String()
			}
		}
		if same || time.Now().After(deadline) {
			return out, same
		}
		time.Sleep(200 * time.Millisecond) // poll interval
	}
}

// check compares the DCs and runs the checker on every key of round i.
func (r *convRun) check(i int, ops []*convOp) {
	start := time.Now()
	states, same := r.states()
	byKey := map[string][]*convOp{}
	for _, o := range ops {
		byKey[o.key] = append(byKey[o.key], o)
		st := r.family(o.key)
		switch o.out {
		case outOK:
			st.ok++
		case outFailed:
			st.failed++
		default:
			st.unknown++
		}
	}
	if !same {
		r.t.Logf("round %d: DCs still differ %v after the drain", i, r.o.settle)
	} else {
		r.t.Logf("round %d: every DC agrees (%v after the drain)", i, time.Since(start).Round(time.Millisecond))
	}
	for _, k := range r.w.keys {
		st := r.family(k)
		distinct := map[string][]string{} // state -> DCs
		var order []string
		for _, dc := range r.x.dcs {
			s := states[dc][k].String()
			if distinct[s] == nil {
				order = append(order, s)
			}
			distinct[s] = append(distinct[s], dc)
		}
		pk := r.perKey[k]
		if len(order) > 1 {
			st.differs++
			pk.differs++
			var parts []string
			for _, s := range order {
				parts = append(parts, fmt.Sprintf("%v: %s", distinct[s], clip(s)))
			}
			parts = append(parts, r.metaOf(k)...)
			r.violation(nil, "round %d: DCs differ on %s:\n    %s", i, k, strings.Join(parts, "\n    "))
		}
		before := r.agreed[k]
		if before != nil {
			st.checked++
			pk.checked++
			for _, s := range order {
				for _, v := range checkConvRound(k, *before, states[distinct[s][0]][k], byKey[k]) {
					pk.violations++
					r.violation(&st.violations, "round %d, %v: %s", i, distinct[s], v)
				}
			}
		}
		if len(order) == 1 {
			s := states[r.x.dcs[0]][k]
			r.agreed[k] = &s
		} else {
			r.agreed[k] = nil // unknown: the next round's rules cannot start from it
		}
	}
}

// metaOf reads the convergence metadata of key k in every DC (its stamp, counter vectors
// and float base), to show why DCs differ on it.
func (r *convRun) metaOf(k string) []string {
	var out []string
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	meta := xdc.MetaKey(migrate.SlotString(k))
	for dc, ms := range r.x.masters() {
		for _, m := range ms {
			c := redis.NewClient(&redis.Options{Addr: m})
			v, err := c.HMGet(ctx, meta, "s:"+k, "c:"+k, "v:"+k, "b:"+k).Result()
			c.Close()
			if err == nil && v[0] != nil {
				out = append(out, fmt.Sprintf("%s meta of %s: s=%v c=%q v=%q b=%v", dc, k, v[0], v[1], v[2], v[3]))
			}
		}
	}
	sort.Strings(out)
	return out
}

// violation reports a failure (the first 30 at once, all in the summary) and counts it in
// count, when not nil.
func (r *convRun) violation(count *int, format string, args ...any) {
	if count != nil {
		*count++
	}
	msg := fmt.Sprintf(format, args...)
	r.bad = append(r.bad, msg)
	if len(r.bad) <= 30 {
		r.t.Errorf("%s", msg)
	} else if len(r.bad) == 31 {
		r.t.Errorf("... more violations: counted in the summary")
	}
}

// finish checks the end state (every DC the same keys, values and expiries, read from the
// servers; no diverged effect counted) and prints the summary.
func (r *convRun) finish(rounds int) {
	masters := r.x.masters()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ref, err := ttlPresence(ctx, masters[r.x.dcs[0]])
	if err != nil {
		r.t.Fatalf("%s: %v", r.x.dcs[0], err)
	}
	for _, dc := range r.x.dcs[1:] {
		other, err := ttlPresence(ctx, masters[dc])
		if err != nil {
			r.t.Fatalf("%s: %v", dc, err)
		}
		if diffs := diffRecords(ref, other); len(diffs) > 0 {
			r.t.Errorf("at the end %s and %s differ on %d keys, e.g.:\n  %s", r.x.dcs[0], dc, len(diffs), strings.Join(diffs[:min(5, len(diffs))], "\n  "))
		}
	}
	r.t.Logf("at the end every DC was compared over %d keys (values and expiry presence)", len(ref))
	collected := 0.0 // the collector runs its script through the router, as a client's
	for _, n := range r.x.nodes {
		if v, err := nodeMetric(n.proc, "redraft_replication_diverged_effects_total"); err != nil || v != 0 {
			r.t.Errorf("%s: redraft_replication_diverged_effects_total = %v (%v), want 0", n.ID, v, err)
		}
		v, err := nodeMetric(n.proc, "redraft_replication_tombstones_collected_total")
		if err != nil {
			r.t.Errorf("%s: %v", n.ID, err)
		}
		collected += v
	}
	r.t.Logf("tombstones collected, all nodes: %.0f", collected)
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "family\tkeys\tacknowledged\tfailed\tunknown\tkey-rounds checked\tDCs differ\tviolations\t")
	for _, fam := range convFamilies {
		s := r.stats[fam]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", fam, len(s.keys), s.ok, s.failed, s.unknown, s.checked, s.differs, s.violations)
	}
	tw.Flush()
	r.t.Logf("verdict per key (rounds checked, rounds the DCs differed, violations):\n%s", r.verdicts())
	r.t.Logf("summary (seed %d, %d rounds of %v, %d clients):\n%s", r.o.seed, rounds, r.o.roundLen, len(r.w.clients), b.String())
	if len(r.bad) > 0 {
		r.t.Errorf("%d failures: keys the DCs held differently after a round, and states the rules do not explain", len(r.bad))
	}
}

// ttlPresence reads every user key of a DC's masters (digestDC) as type, expiry presence and
// value: expiries are compared as present or not.
func ttlPresence(ctx context.Context, masters []string) (map[string]string, error) {
	d, err := digestDC(ctx, masters)
	if err != nil {
		return nil, err
	}
	px := regexp.MustCompile(`px=(-?\d+)`)
	out := map[string]string{}
	for _, recs := range d.slots {
		for k, rec := range recs {
			out[k] = px.ReplaceAllStringFunc(rec, func(m string) string {
				return "ttl=" + strconv.FormatBool(m != "px=-1")
			})
		}
	}
	return out, nil
}

// diffRecords lists the keys whose records differ between a and b.
func diffRecords(a, b map[string]string) []string {
	var out []string
	for k, va := range a {
		if vb, ok := b[k]; !ok || va != vb {
			out = append(out, fmt.Sprintf("%s: %s | %s", k, clip(va), clip(orAbsent(vb, ok))))
		}
	}
	for k, vb := range b {
		if _, ok := a[k]; !ok {
			out = append(out, fmt.Sprintf("%s: <absent> | %s", k, clip(vb)))
		}
	}
	sort.Strings(out)
	return out
}

func orAbsent(s string, ok bool) string {
	if !ok {
		return "<absent>"
	}
	return s
}

// nodeMetric reads the value of a metric without labels from p's /metrics.
func nodeMetric(p *proc, name string) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+p.Admin+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("/metrics: %v", err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("/metrics: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == name {
			return strconv.ParseFloat(f[1], 64)
		}
	}
	return 0, fmt.Errorf("no %s in /metrics", name)
}
