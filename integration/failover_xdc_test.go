package integration

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testredis"
	"github.com/redraft/redraft/migrate"
	"github.com/redraft/redraft/node"
)

// xdcFailoverLayout is two DCs for the failover tests: dc1 with two nodes (both must vote its
// master down), dc2 with one.
var xdcFailoverLayout = []nodeLayout{
	{"n11", "dc1", "127.0.0.11", "0"},
	{"n12", "dc1", "127.0.0.12", "2147483648"},
	{"n21", "dc2", "127.0.0.21", ""},
}

// startXDCFailover starts two DCs, each with one group serving every slot, a master and a
// replica (real redis-server processes, by address in servers), with the settings given
// (master_down_after 1s unless set), and waits until the replicas are in sync.
func startXDCFailover(t *testing.T, settings ...string) (*xdcCluster, map[string]*testredis.Server) {
	t.Helper()
	servers := map[string]*testredis.Server{}
	x := startRelayedWith(t, xdcFailoverLayout, func(dc string) []fsm.Group {
		m := testredis.Start(t)
		r := testredis.Start(t, testredis.WithReplicaOf(m.Addr, ""))
		servers[m.Addr], servers[r.Addr] = m, r
		return []fsm.Group{{ID: "g" + dc[2:], Master: m.Addr, Replicas: []string{r.Addr}}}
	})
	x.failovers = true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	settings = append([]string{"master_down_after", "1s"}, settings...)
	for i := 0; i+1 < len(settings); i += 2 {
		if err := x.nodes[0].Client().SetConfig(ctx, settings[i], settings[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	for _, dc := range x.dcs {
		x.waitGroup(dc, "replica in sync", func(g node.GroupStatus) error {
			for _, v := range g.Servers {
				if v.Listed == "replica" && v.Link != "up" {
					return fmt.Errorf("replica %s: link %q", v.Addr, v.Link)
				}
			}
			if len(g.Servers) != 2 {
				return fmt.Errorf("%d servers seen", len(g.Servers))
			}
			return nil
		})
	}
	return x, servers
}

// waitGroup polls the only group of dc, as a running node of dc reports it, until ok accepts it.
func (x *xdcCluster) waitGroup(dc, what string, ok func(node.GroupStatus) error) node.GroupStatus {
	x.t.Helper()
	var g node.GroupStatus
	waitFor(x.t, 30*time.Second, dc+": "+what, func() error {
		g = groupOf(x.t, x.live(dc).proc, "g"+dc[2:])
		return ok(g)
	})
	return g
}

// killMaster kills dc's group master with SIGKILL and waits until a failover promoted its
// replica; it returns the group after the failover.
func (x *xdcCluster) killMaster(dc string, servers map[string]*testredis.Server) node.GroupStatus {
	x.t.Helper()
	before := x.waitGroup(dc, "the group", func(node.GroupStatus) error { return nil })
	servers[before.Master].Stop()
	x.t.Logf("%s: killed master %s", dc, before.Master)
	return x.waitGroup(dc, "the failover", func(g node.GroupStatus) error {
		if g.Master == before.Master || g.Failovers != before.Failovers+1 {
			return fmt.Errorf("master %s, failovers %d, failover %+v", g.Master, g.Failovers, g.Failover)
		}
		return nil
	})
}

// incrVia runs n INCRs of key through p, retrying those not run (TRYAGAIN, CLUSTERDOWN while
// held), and fails the test on any other error.
func incrVia(t *testing.T, p *proc, key string, n int) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: p.Listen, MaxRetries: -1, ReadTimeout: 10 * time.Second})
	defer rdb.Close()
	for i := 0; i < n; i++ {
		for {
			err := rdb.Incr(context.Background(), key).Err()
			if err == nil {
				break
			}
			if !notRun(err.Error()) {
				t.Fatalf("INCR %s through %s: %v", key, p.ID, err)
			}
			time.Sleep(10 * time.Millisecond) // the group is held or down: try again shortly
		}
	}
}

// getVia reads key through p ("" when missing).
func getVia(p *proc, key string) (string, error) {
	rdb := redis.NewClient(&redis.Options{Addr: p.Listen, MaxRetries: -1})
	defer rdb.Close()
	v, err := rdb.Get(context.Background(), key).Result()
	if err == redis.Nil {
		return "", nil
	}
	return v, err
}

var lostLine = regexp.MustCompile(`lost with a failed-over master.*slot=(\d+) .*lost_entries=(\d+) exact=(\w+)`)

// lostLogLine is lostLine at data format 3: the count is per group log, not per slot.
var lostLogLine = regexp.MustCompile(`group log: the destination applied writes that the failed-over master lost.* lost=(\d+)`)

// TestXDCFailoverSourceLostEntries, at data format 1 (per-slot outboxes:
// REDRAFT_MAX_DATA_FORMAT is 1): dc1's master ships 200 INCRs (DC_ONE) to dc2 that its replica
// never got (its link broken), then dies. After the failover dc1's outbox lacks entries dc2
// applied: the shipper counts exactly 200 lost entries (log line with the slot, /status,
// /metrics), shipping does not stall, nothing is applied twice, and the slot is copied in full
// so both DCs end with the same data: the counter is what dc1 kept plus what it took after the
// failover, in both DCs.
func TestXDCFailoverSourceLostEntries(t *testing.T) {
	t.Setenv(maxDataFormatEnv, "1") // per-slot outboxes: the log line counts one slot's losses
	x, servers := startXDCFailover(t)
	sourceLostEntries(t, x, servers, false)
}

// TestXDCLogFailoverSourceLostEntries is TestXDCFailoverSourceLostEntries at data format 3:
// the group's log lacks dc2's position after the failover, the shipper counts the 200 writes
// lost (one log line for the group) and copies the group to dc2 in full.
func TestXDCLogFailoverSourceLostEntries(t *testing.T) {
	x, servers := startXDCFailover(t)
	if f := x.node("n11").Status().DataFormat; f != 3 {
		t.Fatalf("the cluster runs data format %d, want 3 (is %s set?)", f, maxDataFormatEnv)
	}
	sourceLostEntries(t, x, servers, true)
}

func sourceLostEntries(t *testing.T, x *xdcCluster, servers map[string]*testredis.Server, logs bool) {
	n11, n12, n21 := x.node("n11"), x.node("n12"), x.node("n21")
	const key = "{lost}:ctr"
	slot := migrate.SlotString(key)
	g := x.waitGroup("dc1", "the group", func(node.GroupStatus) error { return nil })
	replica := redis.NewClient(&redis.Options{Addr: g.Replicas[0]})
	defer replica.Close()
	ctx := context.Background()
	// At format 3 dc2 writes first too: its group's log exists from then on, and dc1's
	// promoted replica will stand behind it (see below). Not at format 1, whose limits this
	// would reach instead (docs/replication.md, "Limits"): two copies of a slot both DCs wrote
	// can cross, and a slot whose entries dc1's failover lost is found behind only at its
	// next write.
	const dc2Key = "{dc2}:n"
	if logs {
		incrVia(t, n21.proc, dc2Key, 5)
	}
	// 20 INCRs reach both the replica and dc2.
	incrVia(t, n11.proc, key, 20)
	waitFor(t, 20*time.Second, "20 on dc1's replica and in dc2", func() error {
		r, _ := replica.Get(ctx, key).Result()
		d2, err := getVia(n21.proc, key)
		if r != "20" || d2 != "20" {
			return fmt.Errorf("replica %q, dc2 %q (%v)", r, d2, err)
		}
		return nil
	})
	// Break the replica's link (it cannot authenticate to its master any more), then 200 more
	// INCRs, acknowledged at DC_ONE and shipped to dc2.
	for _, args := range [][]any{{"CONFIG", "SET", "masteruser", "nobody"}, {"CONFIG", "SET", "masterauth", "wrong"},
		{"CLIENT", "KILL", "TYPE", "master"}} {
		if err := replica.Do(ctx, args...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	incrVia(t, n11.proc, key, 200)
	// dc2 writes meanwhile: dc1's master applies them and dc2's log is trimmed past where
	// dc1's replica stands in it.
	if logs {
		incrVia(t, n21.proc, dc2Key, 5)
	}
	waitFor(t, 20*time.Second, "220 in dc2", func() error {
		d2, err := getVia(n21.proc, key)
		if d2 != "220" {
			return fmt.Errorf("dc2 %q (%v)", d2, err)
		}
		return nil
	})
	if r, _ := replica.Get(ctx, key).Result(); r != "20" {
		t.Fatalf("dc1's replica has %q: its link was not broken, the test proves nothing", r)
	}
	ng := x.killMaster("dc1", servers)
	if ng.Master != g.Replicas[0] {
		t.Fatalf("promoted %s, want the replica %s", ng.Master, g.Replicas[0])
	}
	// dc1 kept 20; 30 more through each node of dc1, 10 writes of dc2's own.
	incrVia(t, n12.proc, key, 30)
	incrVia(t, n11.proc, key, 30)
	incrVia(t, n21.proc, "{lost}:dc2", 10)
	for _, p := range []*proc{n11.proc, n12.proc, n21.proc} {
		waitFor(t, 30*time.Second, "the counter at 80 through "+p.ID, func() error {
			v, err := getVia(p, key)
			if v != "80" {
				return fmt.Errorf("%q (%v)", v, err)
			}
			return nil
		})
	}
	x.waitConverged(60 * time.Second)
	// The loss is reported: the log line with the slot and the exact count, /status, /metrics.
	// (The keys can agree before the shipper finds the loss: the copy of the slot follows.)
	var line []string
	for wait := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		for _, n := range x.inDC("dc1") {
			if logs {
				for _, m := range lostLogLine.FindAllStringSubmatch(n.Log(), -1) {
					line = []string{m[0], strconv.Itoa(slot), m[1], "true"} // a group's count, exact
				}
				continue
			}
			for _, m := range lostLine.FindAllStringSubmatch(n.Log(), -1) {
				if m[1] == strconv.Itoa(slot) {
					line = m
				}
			}
		}
		if line != nil || time.Now().After(wait) {
			break
		}
	}
	if line == nil || line[2] != "200" || line[3] != "true" {
		t.Fatalf("no log line counting 200 lost entries of slot %d: %v", slot, line)
	}
	// The status (dc2's view) and the metrics (dc1's nodes) count the same losses; another
	// slot's loss (a heartbeat entry the killed master had not passed on) may reach one a
	// moment before the other, so they are read until they agree.
	var reported, metric int64
	deadline := time.Now().Add(10 * time.Second)
	for {
		pairs, err := replication(n21.proc)
		if err != nil {
			t.Fatal(err)
		}
		reported = -1
		for _, p := range pairs {
			if p.From == "dc1" && p.To == "dc2" {
				reported = p.LostOnFailover
			}
		}
		if reported < 200 {
			t.Fatalf("status reports %d entries lost on failover dc1->dc2, want at least 200: %+v", reported, pairs)
		}
		metric = 0
		for _, n := range x.inDC("dc1") {
			l := grepLines(metrics(t, n.proc), `redraft_replication_lost_on_failover_entries_total{`)
			if i := strings.LastIndexByte(l, ' '); i > 0 {
				v, _ := strconv.ParseFloat(l[i+1:], 64)
				metric += int64(v)
			}
		}
		if metric == reported {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics count %d lost entries, status %d", metric, reported)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("lost on failover: slot %d, %s entries (exact %s); reported dc1->dc2 %d", slot, line[2], line[3], reported)
	// Once both directions ship again with no copy under way, both DCs still read 80: at
	// format 3 dc2 also copied its group into dc1 (dc1's promoted replica stood behind dc2's
	// trimmed log), and taken before dc1's copy it brought back the 200 lost increments in
	// both DCs (220: each DC's highest contribution wins the counters' merge).
	waitFor(t, 60*time.Second, "both directions shipping, no copy under way", func() error {
		pairs, err := replication(n21.proc)
		if err != nil {
			return err
		}
		if len(pairs) != 2 {
			return fmt.Errorf("%d pairs: %+v", len(pairs), pairs)
		}
		for _, p := range pairs {
			if p.State != "ok" || p.Copying != 0 {
				return fmt.Errorf("%s->%s: %s, %d slots copying (%s)", p.From, p.To, p.State, p.Copying, p.Error)
			}
		}
		return nil
	})
	for _, p := range []*proc{n11.proc, n12.proc, n21.proc} {
		if v, err := getVia(p, key); v != "80" {
			t.Fatalf("the counter through %s once shipping settled: %q (%v), want 80", p.ID, v, err)
		}
	}
}

// TestXDCFailoverUnderLoad fails over the receiving group (dc2's) while dc1 ships INCRs into
// it, then dc1's group, with writes in both DCs at DC_QUORUM all along: every DC converges,
// every acknowledged write is in both DCs, and every counter is exact (no shipped entry applied
// twice, none lost); no node logs writes lost with a failed-over master, per slot (data format
// 1) or per group log (format 3, the default).
func TestXDCFailoverUnderLoad(t *testing.T) {
	x, servers := startXDCFailover(t, "write_consistency", "DC_QUORUM")
	l := x.load(1, x.nodes...)
	l.WaitOps(1000)
	// Rounds of INCRs from dc1, shipped into dc2, until dc2's failover is over (new keys each
	// round: a key is counted by one worker only).
	first := len(x.workers)
	stop, done := make(chan struct{}), make(chan int)
	go func() {
		round := 0
		for ; ; round++ {
			select {
			case <-stop:
				done <- round
				return
			default:
			}
			var tags []string
			for i := range 4 {
				tags = append(tags, fmt.Sprintf("r%d-%d", round, i))
			}
			x.bulkIncr(tags, 100, x.node("n11"))
		}
	}()
	l.WaitOps(300)
	x.killMaster("dc2", servers)
	l.WaitOps(300)
	close(stop)
	rounds := <-done
	bulk := x.workers[first:]
	for _, wk := range bulk {
		if len(wk.uncertain) > 0 || len(wk.errs) > 0 {
			t.Fatalf("INCRs from dc1 failed while dc2 failed over: %v", wk.errs)
		}
	}
	t.Logf("%d rounds of 400 INCRs shipped from dc1 into dc2 across its failover", rounds)
	// Then dc1's master, the load still writing in both DCs.
	x.killMaster("dc1", servers)
	l.WaitOps(500)
	x.finish(l, 90*time.Second)
	for _, n := range x.nodes {
		// A slot's outbox (format 1) or a group's log (format 3) counted as lost.
		if log := n.Log(); lostLine.MatchString(log) || lostLogLine.MatchString(log) {
			t.Errorf("%s reports entries lost at DC_QUORUM", n.ID)
		}
	}
}
