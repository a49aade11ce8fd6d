package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testredis"
	"github.com/redraft/redraft/node"
)

// migCluster is three nodes in dc1 with two groups on real redis-server. n3 holds token 0, so
// it owns slot 0's duties: the mover of any migration that starts at slot 0.
func migCluster(t *testing.T) (*Cluster, []*proc) {
	t.Helper()
	r1, r2 := testredis.Start(t), testredis.Start(t)
	c := NewCluster(t)
	n1 := c.NewNode("n1", "dc1", "--tokens", "1000")
	n1.Start()
	n1.WaitHealthy(30 * time.Second)
	n2 := c.NewNode("n2", "dc1", "--tokens", "2000000000")
	n3 := c.NewNode("n3", "dc1", "--tokens", "0")
	n2.Start(n1.Peer)
	n3.Start(n1.Peer)
	n2.WaitHealthy(30 * time.Second)
	n3.WaitHealthy(30 * time.Second)
	n1.MustCLI("group", "add", "--dc", "dc1", "--id", "g1", "--master", r1.Addr)
	n1.MustCLI("group", "add", "--dc", "dc1", "--id", "g2", "--master", r2.Addr)
	n1.MustCLI("slots", "assign", "--dc", "dc1", "--group", "g1", "0-8191")
	n1.MustCLI("slots", "assign", "--dc", "dc1", "--group", "g2", "8192-16383")
	nodes := []*proc{n1, n2, n3}
	for _, p := range nodes {
		rdb := redis.NewClient(&redis.Options{Addr: p.Listen})
		// "probe" hashes to slot 5258 (g1), "probe:a" to 9312 (g2): both assignments applied.
		waitFor(t, 10*time.Second, p.ID+" routes", func() error {
			return rdb.MSet(context.Background(), "probe", "1", "probe:a", "1").Err()
		})
		rdb.Close()
	}
	return c, nodes
}

// startMigration starts moving slots to a group and returns the migration id.
func startMigration(t *testing.T, via *proc, slots, to string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := via.Client().StartMigration(ctx, node.MigrateRequest{DC: "dc1", Slots: []string{slots}, To: to})
	if err != nil {
		t.Fatalf("start migration %s -> %s: %v", slots, to, err)
	}
	return rep.ID
}

// waitMigrated polls until migration id is migrated, asking the given nodes in turn.
func waitMigrated(t *testing.T, id uint64, d time.Duration, via ...*proc) {
	t.Helper()
	start := time.Now()
	waitFor(t, d, fmt.Sprintf("migration %d migrated", id), func() error {
		var last error
		for _, p := range via {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			m, err := p.Client().Migration(ctx, id)
			cancel()
			if err != nil {
				last = err
				continue
			}
			if m.State == fsm.MigrationDone {
				return nil
			}
			return fmt.Errorf("state %s, waiting for %v, moved %d/%d", m.State, m.WaitingFor, m.KeysMoved, m.KeysTotal)
		}
		return last
	})
	t.Logf("migration %d done in %v", id, time.Since(start).Round(time.Millisecond))
}

func checkSlotOwner(t *testing.T, p *proc, slot int, want string) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("slot %d served by %s", slot, want), func() error {
		if got := ownerGroup(p.Status(), "dc1", slot); got != want {
			return fmt.Errorf("served by %q", got)
		}
		return nil
	})
}

// loadBulk writes n plain keys through rdb, so a throttled mover has work for a while.
func loadBulk(t *testing.T, rdb *redis.Client, n int) {
	t.Helper()
	ctx := context.Background()
	pipe := rdb.Pipeline()
	for i := 0; i < n; i++ {
		pipe.Set(ctx, fmt.Sprintf("bulk:%d", i), i, 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
}

// checkBulk reads back keys written by loadBulk.
func checkBulk(t *testing.T, rdb *redis.Client, n int) {
	t.Helper()
	for i := 0; i < n; i += 97 {
		if got, err := rdb.Get(context.Background(), fmt.Sprintf("bulk:%d", i)).Int(); err != nil || got != i {
			t.Fatalf("bulk:%d = %d (%v) after the migration", i, got, err)
		}
	}
}

// startThrottled starts a migration at rate keys/s and waits until its mover has moved keys.
func startThrottled(t *testing.T, via *proc, slots, to string, rate int64) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := via.Client().StartMigration(ctx, node.MigrateRequest{DC: "dc1", Slots: []string{slots}, To: to, Rate: rate})
	if err != nil {
		t.Fatalf("start migration: %v", err)
	}
	waitFor(t, 30*time.Second, "mover at work", func() error {
		m, err := via.Client().Migration(ctx, rep.ID)
		if err != nil {
			return err
		}
		if m.State != fsm.MigrationMigrating || m.KeysMoved == 0 {
			return fmt.Errorf("state %s, %d keys moved", m.State, m.KeysMoved)
		}
		return nil
	})
	return rep.ID
}

func TestMigrationUnderWorkloadThereAndBack(t *testing.T) {
	_, nodes := migCluster(t)
	w := startWorkload(t, nodes, 2)
	w.WaitOps(2000)
	id := startMigration(t, nodes[0], "0-8191", "g2")
	waitMigrated(t, id, 90*time.Second, nodes...)
	checkSlotOwner(t, nodes[1], 100, "g2")
	w.WaitOps(2000)
	id = startMigration(t, nodes[1], "0-8191", "g1")
	waitMigrated(t, id, 90*time.Second, nodes...)
	checkSlotOwner(t, nodes[2], 100, "g1")
	w.WaitOps(1000)
	rdb := redis.NewClient(&redis.Options{Addr: nodes[0].Listen})
	defer rdb.Close()
	p99 := w.Verify(rdb)
	t.Logf("%d operations, %d TRYAGAIN answers (retried), p99 latency %v", w.ops.Load(), w.tryagain.Load(), p99)
	if p99 > 100*time.Millisecond {
		t.Errorf("p99 latency %v during migrations, want under 100ms", p99)
	}
}

func TestMigrationSurvivesLeaderKill(t *testing.T) {
	c, nodes := migCluster(t)
	leader := leaderOf(t, c, nodes[0])
	var others []*proc
	for _, p := range nodes {
		if p != leader {
			others = append(others, p)
		}
	}
	rdb := redis.NewClient(&redis.Options{Addr: others[0].Listen})
	defer rdb.Close()
	loadBulk(t, rdb, 20000)
	w := startWorkload(t, others, 2)
	w.WaitOps(1000)
	id := startThrottled(t, others[0], "0-8191", "g2", 2000)
	leader.Kill9()
	t.Logf("killed leader %s mid-migration", leader.ID)
	if _, err := others[0].Client().SetMigrationRate(context.Background(), id, 0); err != nil {
		t.Fatalf("admin change after the leader died: %v", err)
	}
	waitMigrated(t, id, 90*time.Second, others...)
	w.WaitOps(1000)
	checkBulk(t, rdb, 20000)
	p99 := w.Verify(rdb)
	t.Logf("%d operations, %d TRYAGAIN, p99 %v", w.ops.Load(), w.tryagain.Load(), p99)
}

func TestMigrationResumesAfterMoverKill(t *testing.T) {
	_, nodes := migCluster(t)
	mover := nodes[2] // token 0: owner of slot 0
	rdb := redis.NewClient(&redis.Options{Addr: nodes[0].Listen})
	defer rdb.Close()
	loadBulk(t, rdb, 20000)
	w := startWorkload(t, nodes[:2], 2)
	id := startThrottled(t, nodes[0], "0-8191", "g2", 2000)
	mover.Kill9()
	nodes[0].MustCLI("node", "remove", "n3")
	if _, err := nodes[0].Client().SetMigrationRate(context.Background(), id, 0); err != nil {
		t.Fatal(err)
	}
	waitMigrated(t, id, 120*time.Second, nodes[0], nodes[1])
	checkBulk(t, rdb, 20000)
	p99 := w.Verify(rdb)
	t.Logf("%d operations, %d TRYAGAIN, p99 %v", w.ops.Load(), w.tryagain.Load(), p99)
}
