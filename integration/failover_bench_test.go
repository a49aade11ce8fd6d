package integration

import (
	"fmt"
	"os"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/redraft/redraft/node"
)

// TestBenchFailover measures, for `make bench` (REDRAFT_BENCH_FAILOVER=1; skipped otherwise),
// the time from a master's kill -9 to the first write acknowledged through every node, with
// the default master_down_after, and the write latency around planned switchovers, both under
// a DC_QUORUM load of four writers. It prints lines starting with BENCH.
func TestBenchFailover(t *testing.T) {
	if os.Getenv("REDRAFT_BENCH_FAILOVER") == "" {
		t.Skip("set REDRAFT_BENCH_FAILOVER=1 (make bench does)")
	}
	runs := 5
	e := newFailoverEnv(t, "write_consistency", "DC_QUORUM")
	l := e.startLoad(4)
	var kills []time.Duration
	for range runs {
		old := e.group().Master
		_, took := e.killMaster(l)
		kills = append(kills, took)
		if err := e.servers[old].Restart(); err != nil {
			t.Fatal(err)
		}
		e.waitGroup("the old master back as a replica", func(g node.GroupStatus) error {
			for _, v := range g.Servers {
				if v.Listed != "master" && (v.Link != "up" || v.Listed == "fenced") {
					return fmt.Errorf("%s: %s, link %q", v.Addr, v.Listed, v.Link)
				}
			}
			return nil
		})
	}
	slices.Sort(kills)
	fmt.Printf("BENCH failover (master_down_after 3s, DC_QUORUM, 4 writers): kill -9 to a write acknowledged through every node: p50 %s, max %s over %d runs\n",
		kills[len(kills)/2].Round(time.Millisecond), kills[len(kills)-1].Round(time.Millisecond), len(kills))

	// Switchovers: the latency of every write that started while one ran.
	l.mu.Lock()
	l.record = true
	l.mu.Unlock()
	refusedBefore := l.errs.Load()
	var windows [][2]time.Time
	for i := range 2 * runs {
		start := time.Now()
		e.nodes[i%3].MustCLI("group", "failover", "--dc", "dc1", "--group", "g1")
		windows = append(windows, [2]time.Time{start, time.Now()})
		time.Sleep(300 * time.Millisecond) // writes between switchovers, so each one holds some
	}
	refused := l.errs.Load() - refusedBefore
	e.finish(l) // fails the test if any acknowledged write is lost
	var during []time.Duration
	for _, w := range l.lat {
		for _, win := range windows {
			if !w.start.Before(win[0]) && w.start.Before(win[1]) {
				during = append(during, w.d)
				break
			}
		}
	}
	if len(during) == 0 {
		t.Fatal("no write overlapped a switchover")
	}
	sort.Slice(during, func(i, j int) bool { return during[i] < during[j] })
	q := func(p float64) time.Duration { return during[int(p*float64(len(during)-1))].Round(time.Millisecond) }
	fmt.Printf("BENCH switchover (DC_QUORUM, 4 writers): %d switchovers, %d writes during them: latency p50 %s, p99 %s, max %s; %d refused, none of %d acknowledged lost\n",
		len(windows), len(during), q(0.5), q(0.99), during[len(during)-1].Round(time.Millisecond), refused, len(l.acked))
}
