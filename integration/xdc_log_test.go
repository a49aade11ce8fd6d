package integration

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/node"
)

// startXDCLog starts the cross-DC tests' cluster at data format 3, one log per group
// (REDRAFT_EXPERIMENTAL_DATA_FORMAT on every node), and waits until the cluster runs it.
func startXDCLog(t *testing.T) *xdcCluster {
	t.Setenv("REDRAFT_EXPERIMENTAL_DATA_FORMAT", "3")
	x := startXDC(t)
	waitFor(t, 60*time.Second, "data format 3", func() error {
		if f := x.node("n11").Status().DataFormat; f != 3 {
			return fmt.Errorf("the cluster runs data format %d", f)
		}
		return nil
	})
	return x
}

// dumpLogs logs, for a failed test, every master's group log (length, first and last id) and
// inboxes in database 0.
func (x *xdcCluster) dumpLogs() {
	ctx := context.Background()
	for dc, ms := range x.masters() {
		for _, m := range ms {
			c := redis.NewClient(&redis.Options{Addr: m})
			if info, err := c.XInfoStream(ctx, "__redraft:log").Result(); err == nil {
				x.t.Logf("%s %s: log length %d, first %s, last %s", dc, m, info.Length, info.FirstEntry.ID, info.LastGeneratedID)
			}
			keys, _ := c.Keys(ctx, "__redraft:lin:*").Result()
			for _, k := range keys {
				x.t.Logf("%s %s: %s = %v", dc, m, k, c.HGetAll(ctx, k).Val())
			}
			c.Close()
		}
	}
	// Every node's goroutines, into its log (printed after this).
	for _, n := range x.nodes {
		if n.cmd != nil && n.cmd.Process != nil {
			_ = n.cmd.Process.Signal(syscall.SIGQUIT)
			select {
			case <-n.done:
			case <-time.After(10 * time.Second):
			}
		}
	}
}

// migrate starts moving slots of dc to group to, throttled to rate keys/s, through via, and
// returns the migration's id.
func (x *xdcCluster) migrate(via *xdcNode, dc, slots, to string, rate int64) uint64 {
	x.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := via.Client().StartMigration(ctx, node.MigrateRequest{DC: dc, Slots: []string{slots}, To: to, Rate: rate})
	if err != nil {
		x.t.Fatalf("migrate %s %s to %s: %v", dc, slots, to, err)
	}
	return rep.ID
}

// TestXDCLogMigrations: at data format 3, slots move at once in dc1, where writes come from
// (its groups' logs hand the slots over: a handoff entry in the target's log), and in dc2,
// which receives them (the slots' positions in the other DCs' logs move with their keys),
// under a load through every DC and after a bulk of INCRs into the moving slots. Every DC ends
// with the same data and every acknowledged write in it exactly once. Then dc1 alone moves the
// slots back, so the two DCs' keys have been copied a different number of times: the copies
// keep each key's absolute expiry (they shifted it by their latency, and the DCs differed).
func TestXDCLogMigrations(t *testing.T) {
	x := startXDCLog(t)
	n11, n21 := x.node("n11"), x.node("n21")
	t.Cleanup(func() {
		if t.Failed() {
			x.dumpLogs()
		}
	})
	l := x.load(1, x.nodes...)
	var tags []string
	for i := 0; i < 600; i++ {
		tags = append(tags, fmt.Sprintf("m-%d", i))
	}
	x.bulkIncr(tags, 5, n11, n21)
	l.WaitOps(1000)
	a := x.migrate(n11, "dc1", "0-4095", "g1b", 2000)
	b := x.migrate(n21, "dc2", "0-4095", "g2b", 2000)
	waitMigrated(t, a, 120*time.Second, n11.proc)
	waitMigrated(t, b, 120*time.Second, n21.proc)
	t.Logf("both migrations done after %d writes", l.ops.Load())
	l.WaitOps(500)
	// The slots were handed over in dc1's logs (a handoff per database with a log, per move).
	handoffs := strings.Count(n11.Log(), "group log: handoff") + strings.Count(x.node("n12").Log(), "group log: handoff")
	if handoffs < 1 {
		t.Errorf("dc1's nodes logged no handoff for its migration")
	}
	back := x.migrate(n11, "dc1", "0-4095", "g1a", 2000)
	waitMigrated(t, back, 120*time.Second, n11.proc)
	t.Logf("dc1 moved the slots back after %d writes", l.ops.Load())
	l.WaitOps(500)
	if f := n11.Status().DataFormat; f != 3 {
		t.Errorf("the cluster ends at data format %d", f)
	}
	x.finish(l, 90*time.Second)
}

// TestXDCLogLevelsAndScripts: at data format 3, a DC_EACH_SAFE_QUORUM write is answered only
// once every other DC applied it (each answer is checked on the other DCs' masters at once),
// and is answered as not reached while a DC is cut off; user scripts, recorded with and
// without convergence, reach every DC exactly once; and the status reports each DC pair's
// shipping from the group logs.
func TestXDCLogLevelsAndScripts(t *testing.T) {
	x := startXDCLog(t)
	n11, n21 := x.node("n11"), x.node("n21")
	ctx := context.Background()
	t.Cleanup(func() {
		if t.Failed() {
			x.dumpLogs()
		}
	})
	masters := x.masters()
	onMasters := func(dc, key string) string {
		for _, m := range masters[dc] {
			c := redis.NewClient(&redis.Options{Addr: m})
			v, err := c.Get(ctx, key).Result()
			c.Close()
			if err == nil {
				return v
			}
		}
		return ""
	}

	each := redis.NewClient(&redis.Options{Addr: n11.Listen, PoolSize: 1, MaxRetries: -1, ReadTimeout: 30 * time.Second,
		OnConnect: func(ctx context.Context, c *redis.Conn) error {
			return c.Do(ctx, "REDRAFT", "CONSISTENCY", "DC_EACH_SAFE_QUORUM").Err()
		}})
	defer each.Close()
	for i := 0; i < 60; i++ {
		k, v := fmt.Sprintf("each:%d", i), fmt.Sprintf("v%d", i)
		if err := each.Set(ctx, k, v, 0).Err(); err != nil {
			t.Fatalf("DC_EACH_SAFE_QUORUM SET %s: %v", k, err)
		}
		for _, dc := range []string{"dc2", "dc3"} {
			if got := onMasters(dc, k); got != v {
				t.Fatalf("SET %s answered OK at DC_EACH_SAFE_QUORUM, but %s holds %q", k, dc, got)
			}
		}
	}

	// Shipping in the status: every pair from dc1 is ok, shipped entries, and has a lag.
	waitFor(t, 30*time.Second, "dc1's pairs reported from the group logs", func() error {
		reps, err := replication(n11.proc)
		if err != nil {
			return err
		}
		seen := 0
		for _, p := range reps {
			if p.From != "dc1" {
				continue
			}
			if p.State != "ok" || p.Shipped == 0 || p.LagMS > 5000 || p.Copied != 0 {
				return fmt.Errorf("pair %+v", p)
			}
			seen++
		}
		if seen != 2 {
			return fmt.Errorf("%d pairs from dc1: %+v", seen, reps)
		}
		return nil
	})

	// dc2 cut off: the level is not reached (the write ran in dc1 and reaches dc2 later).
	x.cutDC("dc2")
	err := each.Set(ctx, "each:cut", "v", 0).Err()
	if err == nil || !strings.Contains(err.Error(), "DC_EACH_SAFE_QUORUM not reached") {
		t.Fatalf("DC_EACH_SAFE_QUORUM write with dc2 cut off: %v", err)
	}
	waitFor(t, 30*time.Second, "dc1's pair to dc2 reported lagging or down", func() error {
		reps, err := replication(n11.proc)
		if err != nil {
			return err
		}
		for _, p := range reps {
			if p.From == "dc1" && p.To == "dc2" && p.State != "ok" {
				return nil
			}
		}
		return fmt.Errorf("pairs %+v", reps)
	})
	x.heal()

	// Scripts through dc2, with convergence (WRITE records the effects) and without (the
	// script itself is recorded, in the group's log).
	incr := "return redis.call('INCRBY', KEYS[1], ARGV[1])"
	run := func(via *xdcNode, key string, n int) {
		c := redis.NewClient(&redis.Options{Addr: via.Listen, MaxRetries: -1})
		defer c.Close()
		for i := 0; i < n; i++ {
			waitFor(t, 30*time.Second, "EVAL on "+key, func() error {
				err := c.Eval(ctx, incr, []string{key}, 1).Err()
				if err != nil && !notRun(err.Error()) {
					t.Fatalf("EVAL %s: %v", key, err)
				}
				return err
			})
		}
	}
	run(n21, "script:stamped", 100)
	n11.MustCLI("config", "set", "convergence", "false")
	waitFor(t, 10*time.Second, "convergence false on n21", func() error {
		if v := n21.Status().Settings["convergence"]; v != "false" {
			return fmt.Errorf("convergence %q", v)
		}
		return nil
	})
	run(n21, "script:plain", 100)
	x.waitConverged(60 * time.Second)
	for _, dc := range x.dcs {
		for _, k := range []string{"script:stamped", "script:plain"} {
			if got := onMasters(dc, k); got != "100" {
				t.Errorf("%s: %s = %q after 100 scripted INCRBYs", dc, k, got)
			}
		}
		if got := onMasters(dc, "each:cut"); got != "v" {
			t.Errorf("%s: each:cut = %q after the cut healed", dc, got)
		}
	}
	if copies := x.fullCopies(); len(copies) > 0 {
		t.Errorf("slots copied in full at data format 3: %v", copies)
	}
}
