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
