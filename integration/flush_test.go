package integration

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/router/xdc"
)

// The flush tests (docs/commands.md, "Flushing"): FLUSHALL and FLUSHDB through one node of a
// three-DC cluster under writes from every DC, checked against the history of what the
// writers were told.

// flushWrite is one write of a flush test's history: a SET of a key written once.
type flushWrite struct {
	key         string
	via         string
	sent, acked time.Time
	ok          bool // acknowledged; false: outcome unknown
}

// flushLoad writes fresh keys of one database through some nodes and records every write.
type flushLoad struct {
	t    *testing.T
	stop chan struct{}
	wg   sync.WaitGroup
	ops  atomic.Int64

	mu   sync.Mutex
	hist []flushWrite
}

// flushLoad starts one writer per node of nodes on database db.
func (x *xdcCluster) flushLoad(db int, nodes ...*xdcNode) *flushLoad {
	l := &flushLoad{t: x.t, stop: make(chan struct{})}
	for _, n := range nodes {
		rdb := redis.NewClient(&redis.Options{Addr: n.Listen, DB: db, MaxRetries: -1, PoolSize: 1, ReadTimeout: 10 * time.Second})
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer rdb.Close()
			l.run(rdb, n.ID, db)
		}()
	}
	x.t.Cleanup(l.Stop)
	return l
}

func (l *flushLoad) run(rdb *redis.Client, via string, db int) {
	for seq := 0; ; seq++ {
		w := flushWrite{key: fmt.Sprintf("fl:%s:%d:%d", via, db, seq), via: via}
		for {
			select {
			case <-l.stop:
				return
			default:
			}
			w.sent = time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			err := rdb.Set(ctx, w.key, seq, 0).Err()
			cancel()
			w.acked, w.ok = time.Now(), err == nil
			l.ops.Add(1)
			if err == nil || !notRun(err.Error()) {
				break
			}
			select { // not run (held by the flush, then TRYAGAIN): again
			case <-l.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
		l.mu.Lock()
		l.hist = append(l.hist, w)
		l.mu.Unlock()
	}
}

// Stop ends the writers and waits for them.
func (l *flushLoad) Stop() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// WaitOps waits until n more writes were answered.
func (l *flushLoad) WaitOps(n int64) {
	l.t.Helper()
	target := l.ops.Load() + n
	waitFor(l.t, 60*time.Second, fmt.Sprintf("%d more writes", n), func() error {
		if got := l.ops.Load(); got < target {
			return fmt.Errorf("%d of %d", got, target)
		}
		return nil
	})
}

// history returns the writes recorded so far.
func (l *flushLoad) history() []flushWrite {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]flushWrite(nil), l.hist...)
}

// checkFlushHistory reads, through a live node of every DC, the keys of hist on database db:
// every write acknowledged before sent (the FLUSHALL's send) must be gone, and every write
// sent after ok (its +OK; zero: none) and acknowledged must be there. It returns the problems
// found and how many keys each rule covered.
func (x *xdcCluster) checkFlushHistory(db int, hist []flushWrite, sent, ok time.Time) (problems []string, before, after int) {
	for _, dc := range x.dcs {
		n := x.live(dc)
		rdb := redis.NewClient(&redis.Options{Addr: n.Listen, DB: db, ReadTimeout: 10 * time.Second, MaxRetries: -1})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		pipe := rdb.Pipeline()
		type check struct {
			w    flushWrite
			want bool
			c    *redis.IntCmd
		}
		var checks []check
		for _, w := range hist {
			switch {
			case w.ok && w.acked.Before(sent):
				checks = append(checks, check{w, false, pipe.Exists(ctx, w.key)})
			case w.ok && !ok.IsZero() && w.sent.After(ok):
				checks = append(checks, check{w, true, pipe.Exists(ctx, w.key)})
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			problems = append(problems, fmt.Sprintf("%s: reading keys: %v", dc, err))
		}
		cancel()
		rdb.Close()
		before, after = 0, 0
		for _, c := range checks {
			if c.want {
				after++
			} else {
				before++
			}
			if got := c.c.Val() == 1; got != c.want && len(problems) < 10 {
				problems = append(problems, fmt.Sprintf("%s (via %s): key %s written through %s (sent %s, acked %s) exists=%v, want %v",
					dc, n.ID, c.w.key, c.w.via, c.w.sent.Format("15:04:05.000"), c.w.acked.Format("15:04:05.000"), got, c.want))
			}
		}
	}
	return problems, before, after
}

// copiedInFull sums the slots copied in full over the replication status of every live node
// and the log lines of copies received.
func (x *xdcCluster) copiedInFull() (int64, []string) {
	var n int64
	for _, p := range x.nodes {
		if p.Exited() {
			continue
		}
		reps, err := replication(p.proc)
		if err != nil {
			x.t.Fatalf("replication status of %s: %v", p.ID, err)
		}
		for _, r := range reps {
			n += r.Copied
		}
	}
	return n, x.fullCopies()
}

// logFlushLines logs what the nodes logged about flushes.
func (x *xdcCluster) logFlushLines() {
	for _, n := range x.nodes {
		for _, line := range strings.Split(n.Log(), "\n") {
			if strings.Contains(line, "flush") || strings.Contains(line, "restarted") || strings.Contains(line, "full copy") || strings.Contains(line, "behind") {
				x.t.Logf("%s: %s", n.ID, line)
			}
		}
	}
}

// internalKeys counts, per DC, the outbox and inbox keys of database 0 on its masters (the
// test's backends have no password: the harness connects as the default user).
func (x *xdcCluster) internalKeys() map[string]int {
	x.t.Helper()
	out := map[string]int{}
	ctx := context.Background()
	for dc, masters := range x.masters() {
		for _, m := range masters {
			rdb := redis.NewClient(&redis.Options{Addr: m})
			for _, pattern := range []string{"__redraft:ob:*", "__redraft:in:*"} {
				iter := rdb.Scan(ctx, 0, pattern, 1000).Iterator()
				for iter.Next(ctx) {
					out[dc]++
				}
				if err := iter.Err(); err != nil {
					x.t.Fatalf("scan %s: %v", m, err)
				}
			}
			rdb.Close()
		}
	}
	return out
}

// mustSet writes key through c, retrying what the cluster answers it did not run (a flush's
// or a failover's TRYAGAIN).
func mustSet(t *testing.T, c *redis.Client, key string, v any) {
	t.Helper()
	waitFor(t, 30*time.Second, "SET "+key, func() error {
		err := c.Set(context.Background(), key, v, 0).Err()
		if err != nil && !notRun(err.Error()) {
			t.Fatalf("SET %s: %v", key, err)
		}
		return err
	})
}

// flushOf returns the cluster's current or last flush as p sees it (nil: none yet).
func flushOf(p *xdcNode) (*fsm.Flush, uint64) {
	st := p.Status()
	return st.Flush, st.Flushes
}

// stayConverged checks, for d, that the DCs keep holding the same data and the keys of before
// stay gone: nothing is copied back after a flush.
func (x *xdcCluster) stayConverged(d time.Duration, hist []flushWrite, sent time.Time) {
	x.t.Helper()
	masters := x.masters()
	t := time.NewTicker(250 * time.Millisecond) // poll interval
	defer t.Stop()
	end := time.Now().Add(d)
	rounds := 0
	for time.Now().Before(end) {
		if _, err := x.differences(masters); err != nil {
			x.t.Fatalf("after %d polls the DCs differ again: %v", rounds, err)
		}
		if problems, _, _ := x.checkFlushHistory(0, hist, sent, time.Time{}); len(problems) > 0 {
			x.t.Fatalf("after %d polls flushed keys are back:\n%s", rounds, strings.Join(problems, "\n"))
		}
		rounds++
		<-t.C
	}
	x.t.Logf("the DCs stayed converged, flushed keys gone, over %d polls in %v", rounds, d)
}

// TestFlushAllThreeDCs: at data format 1 (per-slot outboxes: REDRAFT_MAX_DATA_FORMAT is 1),
// FLUSHALL through a dc1 node under writes from all three DCs. Every write acknowledged before
// it was sent is gone from every DC, every write acknowledged after its +OK is in every DC, no
// slot is copied, and the DCs converge and stay converged. Then FLUSHDB flushes only its
// database, and with flush_enabled=false both are refused.
func TestFlushAllThreeDCs(t *testing.T) {
	t.Setenv(maxDataFormatEnv, "1")
	flushAllThreeDCs(t, startXDC(t))
}

// TestXDCLogFlushAll is TestFlushAllThreeDCs at data format 3: the flush drains the group logs.
func TestXDCLogFlushAll(t *testing.T) { flushAllThreeDCs(t, startXDCLog(t)) }

func flushAllThreeDCs(t *testing.T, x *xdcCluster) {
	n11, n21, n31 := x.node("n11"), x.node("n21"), x.node("n31")
	ctx := context.Background()
	db1 := redis.NewClient(&redis.Options{Addr: n21.Listen, DB: 1})
	defer db1.Close()
	for i := 0; i < 200; i++ {
		mustSet(t, db1, fmt.Sprintf("db1:%d", i), i)
	}
	l := x.flushLoad(0, x.nodes...)
	l.WaitOps(2000)

	rdb := redis.NewClient(&redis.Options{Addr: n11.Listen, ReadTimeout: 2 * time.Minute, MaxRetries: -1})
	defer rdb.Close()
	internal := x.internalKeys()
	// Copies before the flush (a DC that joined while a heartbeat-only outbox was trimmed,
	// docs/replication.md) are not the flush's: only those after it count.
	copied0, copyLogs0 := x.copiedInFull()
	sent := time.Now()
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatalf("FLUSHALL: %v", err)
	}
	okAt := time.Now()
	t.Logf("FLUSHALL under writes from three DCs took %v", okAt.Sub(sent).Round(time.Millisecond))
	defer x.logFlushLines()
	l.WaitOps(2000)
	l.Stop()
	// The replication positions stay: no outbox or inbox key is deleted (there may be new ones).
	for dc, n := range x.internalKeys() {
		if n < internal[dc] {
			t.Errorf("%s: %d outbox and inbox keys after the flush, %d before", dc, n, internal[dc])
		}
	}
	f, flushes := flushOf(n31)
	if f == nil || f.Phase != fsm.FlushDone || flushes != 1 || f.DB != fsm.FlushAllDBs {
		t.Fatalf("flush as n31 sees it: %+v (flushes %d)", f, flushes)
	}
	x.waitConverged(60 * time.Second)
	hist := l.history()
	problems, before, after := x.checkFlushHistory(0, hist, sent, okAt)
	if len(problems) > 0 {
		t.Fatalf("history check:\n%s", strings.Join(problems, "\n"))
	}
	if before == 0 || after == 0 {
		t.Fatalf("the history covers %d writes before the FLUSHALL and %d after its +OK: too few to tell", before, after)
	}
	t.Logf("history: %d writes acknowledged before FLUSHALL gone, %d written after its +OK present, in every DC", before, after)
	for _, dc := range x.dcs {
		c := redis.NewClient(&redis.Options{Addr: x.live(dc).Listen, DB: 1})
		if n, err := c.DBSize(ctx).Result(); err != nil || n != 0 {
			t.Errorf("%s: database 1 holds %d keys (%v) after FLUSHALL", dc, n, err)
		}
		c.Close()
	}
	// Every database of every master holds the flush's fence, the empty ones too: a node whose
	// delete pass is late must not delete writes made after the +OK in a database that was
	// empty when the others passed (session 43).
	for dc, addrs := range x.masters() {
		for _, addr := range addrs {
			for db := range 16 {
				c := redis.NewClient(&redis.Options{Addr: addr, DB: db})
				n, err := c.Exists(ctx, xdc.FlushFenceKey).Result()
				c.Close()
				if err != nil || n != 1 {
					t.Fatalf("%s master %s, database %d: fence %d (%v) after FLUSHALL", dc, addr, db, n, err)
				}
			}
		}
	}
	x.stayConverged(3*time.Second, hist, sent)
	if n, logs := x.copiedInFull(); n != copied0 || len(logs) > len(copyLogs0) {
		t.Fatalf("%d slots copied in full after the flush (%d before it): %v", n-copied0, copied0, logs)
	}

	// FLUSHDB 1 through dc3 empties database 1 everywhere and leaves database 0 alone.
	d0 := redis.NewClient(&redis.Options{Addr: n21.Listen})
	defer d0.Close()
	for i := 0; i < 100; i++ {
		mustSet(t, db1, fmt.Sprintf("db1:%d", i), i)
		mustSet(t, d0, fmt.Sprintf("db0:%d", i), i)
	}
	x.waitConverged(60 * time.Second)
	f3 := redis.NewClient(&redis.Options{Addr: n31.Listen, DB: 1, ReadTimeout: time.Minute})
	defer f3.Close()
	if err := f3.FlushDB(ctx).Err(); err != nil {
		t.Fatalf("FLUSHDB 1: %v", err)
	}
	for _, dc := range x.dcs {
		via := x.live(dc)
		c0 := redis.NewClient(&redis.Options{Addr: via.Listen})
		c1 := redis.NewClient(&redis.Options{Addr: via.Listen, DB: 1})
		n1, err1 := c1.DBSize(ctx).Result()
		n0, err0 := c0.Exists(ctx, "db0:0", "db0:50", "db0:99").Result()
		c0.Close()
		c1.Close()
		if err1 != nil || n1 != 0 {
			t.Errorf("%s: database 1 holds %d keys (%v) after FLUSHDB 1", dc, n1, err1)
		}
		if err0 != nil || n0 != 3 {
			t.Errorf("%s: %d of 3 database 0 keys left (%v) after FLUSHDB 1", dc, n0, err0)
		}
	}

	// flush_enabled=false refuses both, and deletes nothing.
	n11.MustCLI("config", "set", "flush_enabled", "false")
	waitFor(t, 10*time.Second, "flush_enabled false on n21", func() error {
		if v := n21.Status().Settings["flush_enabled"]; v != "false" {
			return fmt.Errorf("flush_enabled %q", v)
		}
		return nil
	})
	for _, err := range []error{d0.FlushAll(ctx).Err(), d0.FlushDB(ctx).Err()} {
		if err == nil || !strings.Contains(err.Error(), "flush_enabled") {
			t.Errorf("flush with flush_enabled=false: %v", err)
		}
	}
	if n, err := d0.Exists(ctx, "db0:0").Result(); err != nil || n != 1 {
		t.Errorf("db0:0 after refused flushes: %d (%v)", n, err)
	}
}

// TestFlushKillMidFlush: a FLUSHALL through n11 under writes; n11 (the receiving node) is
// killed with SIGKILL while the flush is frozen, and n21 (the only dc2 node, which deletes in
// dc2) once the next flush is deleting; both are restarted. Each flush completes or fails
// cleanly (all deleted or nothing deleted, checked against the writers' history), and the
// cluster is not left frozen: writes go through every node afterwards.
func TestFlushKillMidFlush(t *testing.T) {
	x := startXDC(t)
	n11, n12, n21 := x.node("n11"), x.node("n12"), x.node("n21")
	ctx := context.Background()
	defer x.logFlushLines()

	killDuring := func(victim *xdcNode, via *xdcNode, phase fsm.FlushPhase, seen uint64) {
		t.Helper()
		l := x.flushLoad(0, n12, x.node("n31"))
		l.WaitOps(1500)
		sent := time.Now()
		done := make(chan error, 1)
		go func() {
			c := redis.NewClient(&redis.Options{Addr: via.Listen, ReadTimeout: 2 * time.Minute, MaxRetries: -1})
			defer c.Close()
			done <- c.FlushAll(ctx).Err()
		}()
		// Polled faster than waitFor does: the deleting phase may last well under 100 ms.
		for deadline := time.Now().Add(30 * time.Second); ; {
			f, _ := flushOf(n12)
			if f != nil && f.ID > seen && (f.Phase == phase || !f.Active()) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no flush %s within 30s: %+v", phase, f)
			}
			time.Sleep(2 * time.Millisecond) // poll interval
		}
		victim.Kill9()
		f, _ := flushOf(n12)
		t.Logf("killed %s with the flush %s", victim.ID, f.Phase)
		victim.Start(n12.relay.Addr())
		victim.WaitHealthy(30 * time.Second)
		waitFor(t, 90*time.Second, "the flush ended", func() error {
			if f, _ := flushOf(n12); f.Active() {
				return fmt.Errorf("%s, waiting for %v", f, n12.Status().FlushWaiting)
			}
			return nil
		})
		err := <-done
		l.WaitOps(1000) // not stuck frozen: writes go on
		l.Stop()
		f, _ = flushOf(n12)
		t.Logf("%s ended %s (%s); its client got %v", f, f.Phase, f.Reason, err)
		x.waitConverged(60 * time.Second)
		hist := l.history()
		switch f.Phase {
		case fsm.FlushDone:
			if problems, before, _ := x.checkFlushHistory(0, hist, sent, time.Time{}); len(problems) > 0 || before == 0 {
				t.Fatalf("flush done, but (%d writes checked):\n%s", before, strings.Join(problems, "\n"))
			}
		case fsm.FlushFailed:
			// Nothing deleted: every write acknowledged before the flush is still there.
			if problems, _, after := x.checkFlushHistory(0, hist, time.Time{}, sent.Add(-time.Hour)); len(problems) > 0 || after == 0 {
				t.Fatalf("flush failed, but (%d writes checked):\n%s", after, strings.Join(problems, "\n"))
			}
			if err == nil {
				t.Fatalf("the client was told OK for a flush that failed")
			}
		}
		for _, n := range x.nodes {
			c := redis.NewClient(&redis.Options{Addr: n.Listen, MaxRetries: -1})
			waitFor(t, 20*time.Second, n.ID+" serves writes", func() error { return c.Set(ctx, "after:"+n.ID, 1, 0).Err() })
			c.Close()
		}
	}
	killDuring(n11, n11, fsm.FlushFrozen, 0)
	f, _ := flushOf(n12)
	killDuring(n21, n11, fsm.FlushDeleting, f.ID)
	// A restarted shipper may have slots copied in full (the shipping handover, not the
	// flush); the history checks above show no copy brought flushed data back.
	if n, logs := x.copiedInFull(); n != 0 {
		t.Logf("%d slots copied in full after the restarts: %v", n, logs)
	}
}

// TestFlushDCDownFails: with dc3 cut off, a FLUSHALL cannot drain its replication toward dc3
// nor get dc3's ack: after flush_timeout it fails with a clear error, nothing is deleted in
// any DC, and once dc3 is back the cluster serves writes and converges.
func TestFlushDCDownFails(t *testing.T) {
	x := startXDC(t)
	n11, n12 := x.node("n11"), x.node("n12")
	ctx := context.Background()
	n11.MustCLI("config", "set", "flush_timeout", "3s")
	l := x.flushLoad(0, n11, n12, x.node("n21"))
	l.WaitOps(1000)
	x.cutDC("dc3")
	l.WaitOps(500)
	rdb := redis.NewClient(&redis.Options{Addr: n12.Listen, ReadTimeout: time.Minute, MaxRetries: -1})
	defer rdb.Close()
	sent := time.Now()
	err := rdb.FlushAll(ctx).Err()
	took := time.Since(sent)
	if err == nil || !strings.Contains(err.Error(), "nothing was deleted") || !strings.Contains(err.Error(), "n31") {
		t.Fatalf("FLUSHALL with dc3 cut off: %v", err)
	}
	t.Logf("FLUSHALL with dc3 cut off failed after %v: %v", took.Round(time.Millisecond), err)
	l.WaitOps(500) // unfrozen: writes go on in dc1 and dc2
	x.heal()
	l.WaitOps(500)
	l.Stop()
	x.waitConverged(90 * time.Second)
	// Nothing deleted: every acknowledged write is in every DC.
	if problems, _, after := x.checkFlushHistory(0, l.history(), time.Time{}, sent.Add(-time.Hour)); len(problems) > 0 || after == 0 {
		t.Fatalf("after the failed flush (%d writes checked):\n%s", after, strings.Join(problems, "\n"))
	}
	if f, flushes := flushOf(n11); f == nil || f.Phase != fsm.FlushFailed || flushes != 0 {
		t.Fatalf("flush as n11 sees it: %+v (flushes %d)", f, flushes)
	}
}
