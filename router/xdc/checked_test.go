package xdc

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testredis"
	"github.com/redraft/redraft/migrate"
)

// TestCrossingCopiesAfterAFailoverLoss: dc1's master fails over to a replica that lacks 50
// increments dc2 applied, while dc2 wrote too, so that dc2's log was trimmed past where the
// replica stands in it. Two full copies then start: dc1's group to dc2 (the loss), dc2's to
// dc1 (dc1 behind its log). dc2's starts first. The loss's copy must land first: the counter
// ends at what dc1 kept plus what it took after the failover, in both DCs. Fails when dc1
// takes dc2's copy first (each DC's highest contribution wins the merge: 70, not 30).
func TestCrossingCopiesAfterAFailoverLoss(t *testing.T) {
	ctx := context.Background()
	n, dcs := startDCsWith(t, func(c *Config) { c.noLogShipping = true }, "dc1", "dc2")
	dc1, dc2 := dcs[0], dcs[1]
	raiseFormat(t, n, LogDataFormat)
	incr := func(d *testDC, key string, times int) {
		for range times {
			d.write(t, "INCR", key)
		}
	}
	_, stop12 := shipGroupLog(dc1, dc2)
	_, stop21 := shipGroupLog(dc2, dc1)
	incr(dc1, "{c}n", 20)
	incr(dc2, "{d}n", 5)
	waitSameData(t, dc1.rc, dc2.rc, "before the failover")
	// Each shipper recorded that it checked its destination on this master.
	for _, d := range []*testDC{dc1, dc2} {
		if state, err := checkedHere(ctx, d.rc, map[string]string{"dc1": "dc2", "dc2": "dc1"}[d.name]); err != nil || state != checkedNow {
			t.Fatalf("%s: checked record %v (%v)", d.name, state, err)
		}
		if d.rc.Exists(ctx, checkedKey(map[string]string{"dc1": "dc2", "dc2": "dc1"}[d.name])).Val() != 1 {
			t.Fatalf("%s: no checked record", d.name)
		}
	}
	replica := dumpAll(t, dc1.rc)
	dc2Log := LogInboxKey(LogID{DC: "dc2", Group: "g-dc2"})
	replicaAt := dc1.rc.HGet(ctx, dc2Log, "f").Val()
	// The replica's link breaks: 50 more increments reach dc2 only, and dc2's writes are
	// applied by dc1's old master until dc2's log is trimmed past the replica's position.
	incr(dc1, "{c}n", 50)
	incr(dc2, "{d}n", 5)
	waitSameData(t, dc1.rc, dc2.rc, "before the master dies")
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := dc2.rc.XInfoStream(ctx, LogKey).Result()
		if err == nil && CompareIDs(info.FirstEntry.ID, replicaAt) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dc2's log was not trimmed past %s: %+v %v", replicaAt, info, err)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	stop12()
	stop21()
	// The failover: dc1's master holds the replica's data, its record of the check made on the
	// old master (another run_id), and takes 10 increments.
	restoreAll(t, dc1.rc, replica)
	if err := dc1.rc.Set(ctx, checkedKey("dc2"), strings.Repeat("0", 40), 0).Err(); err != nil {
		t.Fatal(err)
	}
	incr(dc1, "{c}n", 10)
	// dc2's shipper first: it finds dc1 behind and tries to copy its group into dc1.
	g21, stop21 := shipGroupLog(dc2, dc1)
	defer stop21()
	for deadline := time.Now().Add(30 * time.Second); !g21.shippers[0].behind.Load(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("dc2's shipper did not find dc1 behind its log")
		}
	}
	_, stop12 = shipGroupLog(dc1, dc2)
	defer stop12()
	// Both copies done: the DCs hold the same data, and the counters are right. (The same
	// data alone can be a moment in the middle of a copy: CI once read {d}n = 5 in both.)
	counters := func() string {
		out := ""
		for _, d := range dcs {
			c, _ := d.rc.Get(ctx, "{c}n").Int()
			dn, _ := d.rc.Get(ctx, "{d}n").Int()
			out += fmt.Sprintf("%s: {c}n = %d, {d}n = %d; ", d.name, c, dn)
		}
		return out
	}
	want := "dc1: {c}n = 30, {d}n = 10; dc2: {c}n = 30, {d}n = 10; " // 20 kept, 10 after the failover, the 50 lost; dc2's 10
	deadline = time.Now().Add(30 * time.Second)
	for {
		got := counters()
		_, _, same := sameDataWithin(dc1.rc, dc2.rc, 0)
		if got == want && same {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after both copies: %s the same data: %v; want %s", got, same, want)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	if got := dc1.repl.counter("dc2").lost.Load(); got != 50 {
		t.Errorf("%d entries counted lost, want 50", got)
	}
	// Once dc1's shipper checked the new master, a copy from dc2 is taken again.
	deadline = time.Now().Add(30 * time.Second)
	for state, _ := checkedHere(ctx, dc1.rc, "dc2"); state != checkedNow; state, _ = checkedHere(ctx, dc1.rc, "dc2") {
		if time.Now().After(deadline) {
			t.Fatal("dc1's shipper did not record its check of dc2 on the new master")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestUncheckedRefusesCopies: a full copy into a group whose master's check record names
// another process, or a loss's copy under way, is refused, but for the ways out when the
// source's master changed too (a loss's copy into a group with no loss recorded; the name
// that sorts first); a missing or current record lets every copy in.
func TestUncheckedRefusesCopies(t *testing.T) {
	ctx := context.Background()
	n, dcs := startDCsWith(t, func(c *Config) { c.noLogShipping = true }, "a", "b")
	raiseFormat(t, n, LogDataFormat)
	a, b := dcs[0], dcs[1]
	admitted := func(to, from *testDC, unchecked, loss bool) bool {
		req := LogCopyRequest{Log: LogID{DC: from.name, Group: "g-" + from.name}, Unchecked: unchecked, Loss: loss,
			Slots: []LogCopySlot{{Slot: 7, Last: "1-0"}}}
		err := to.repl.refuseUnchecked(ctx, n.State().DCs[to.name], req)
		if err != nil && !strings.HasPrefix(err.Error(), uncheckedRefusal) {
			t.Fatalf("%s: %v", to.name, err)
		}
		return err == nil
	}
	record := func(d *testDC, toward, v string) {
		if err := d.rc.Set(ctx, checkedKey(toward), v, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	type kind struct{ unchecked, loss bool }
	kinds := []kind{{false, false}, {true, false}, {true, true}}
	// want[i]: whether a copy of kinds[i] is taken.
	check := func(what string, to, from *testDC, want ...bool) {
		t.Helper()
		for i, k := range kinds {
			if got := admitted(to, from, k.unchecked, k.loss); got != want[i] {
				t.Errorf("%s, copy %s->%s unchecked=%v loss=%v: taken %v, want %v", what, from.name, to.name, k.unchecked, k.loss, got, want[i])
			}
		}
	}
	check("no record", a, b, true, true, true)
	check("no record", b, a, true, true, true)
	id, err := checkedProcess(ctx, a.rc)
	if err != nil {
		t.Fatal(err)
	}
	record(a, "b", id)
	check("current record", a, b, true, true, true)
	record(a, "b", "0:0")
	check("stale record", a, b, false, false, true) // b sorts after a
	record(b, "a", "0:0")
	check("stale record", b, a, false, true, true) // a sorts first
	record(a, "b", lossRecord)
	check("loss under way", a, b, false, false, false)
	record(b, "a", lossRecord)
	check("loss under way", b, a, false, false, true)
	// The process is the replication id too: a promotion changes it, the run_id stays.
	record(a, "b", id)
	if err := a.rc.Do(ctx, "REPLICAOF", "127.0.0.1", "1").Err(); err != nil {
		t.Fatal(err)
	}
	if err := a.rc.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	check("after a promotion", a, b, false, false, true)
}

// TestRestartedMasterCheckedAgain: a master restarted with its data (and the record of the
// check made on the process before) is checked again and recorded, though shipping toward the
// destination never failed; until then a full copy from there would be refused. Fails when
// only a failed call sets the check.
func TestRestartedMasterCheckedAgain(t *testing.T) {
	ctx := context.Background()
	dcs := startDCsAt(t, LogDataFormat, "a", "b")
	a, b := dcs[0], dcs[1]
	a.write(t, "SET", "{k}x", "1")
	waitSameData(t, a.rc, b.rc, "before the restart")
	current := func() (bool, string) {
		id, err := checkedProcess(ctx, a.rc)
		rec := a.rc.Get(ctx, checkedKey("b")).Val()
		return err == nil && rec == id, rec
	}
	deadline := time.Now().Add(20 * time.Second)
	for ok, rec := current(); !ok; ok, rec = current() {
		if time.Now().After(deadline) {
			t.Fatalf("a's record toward b is %q, not a's master", rec)
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
	before, _ := checkedProcess(ctx, a.rc)
	if err := a.rc.Save(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := a.redis.Restart(); err != nil {
		t.Fatal(err)
	}
	// The record survived the restart (the old process's), unless the node already checked
	// the new process (then it is the new one's, which the loop below wants anyway).
	if got := a.rc.Get(ctx, checkedKey("b")).Val(); got != before {
		if now, err := checkedProcess(ctx, a.rc); err != nil || got != now {
			t.Fatalf("the restarted master holds record %q, want the old process's %q or the new one's: the test restarts nothing", got, before)
		}
	}
	deadline = time.Now().Add(20 * time.Second)
	for ok, rec := current(); !ok; ok, rec = current() {
		if time.Now().After(deadline) {
			t.Fatalf("a's record toward b is still %q after the restart: the new process was never checked", rec)
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
	a.write(t, "SET", "{k}x", "2")
	waitSameData(t, a.rc, b.rc, "after the restart")
}

// TestLossCopyKeepsItsPriority: a loss's copy tried again (the shipper's memo counts a loss
// once) or by another node is still the loss's while the group's record says so, and keeps
// its way in when both masters changed. Fails when the copy carries only what the caller
// knew (Loss false on the retry: both DCs refuse each other's copies for good).
func TestLossCopyKeepsItsPriority(t *testing.T) {
	ctx := context.Background()
	n, dcs := startDCsWith(t, func(c *Config) { c.noLogShipping = true }, "a", "b")
	raiseFormat(t, n, LogDataFormat)
	a, b := dcs[0], dcs[1]
	a.write(t, "SET", "{k}x", "1")
	for _, rec := range []struct {
		d      *testDC
		toward string
	}{{a, "b"}, {b, "a"}} {
		if err := rec.d.rc.Set(ctx, checkedKey(rec.toward), lossRecord, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	s := newLogGroup(a.repl, a.rc, LogID{DC: "a", Group: "g-a"}, 0, []string{"b"}, 20*time.Millisecond).shippers[0]
	if _, err := s.copyGroup(ctx, false); err != nil {
		t.Fatalf("a's loss copy, tried again, into b (both recording a loss; a sorts first): %v", err)
	}
	if got := b.rc.Get(ctx, "{k}x").Val(); got != "1" {
		t.Fatalf("{k}x = %q in b after the copy", got)
	}
}

// TestMigrationDatabasesOfBothGroups: a migration's databases are those either group uses:
// where the source holds only the marks and the target has positions, Moved must still give
// the moved slots "0-0". Fails when only the source's databases count.
func TestMigrationDatabasesOfBothGroups(t *testing.T) {
	ctx := context.Background()
	n, dcs := startDCs(t, "dc1", "dc2")
	dc2 := dcs[1]
	target := testredis.Start(t)
	n.apply(t, &fsm.AddGroup{DC: "dc2", Group: fsm.Group{ID: "g-dc2b", Master: target.Addr}})
	raiseFormat(t, n, LogDataFormat)
	for db, addr := range map[int]string{3: dc2.redis.Addr, 5: target.Addr} {
		c := redis.NewClient(&redis.Options{Addr: addr, DB: db})
		if err := c.HSet(ctx, migrate.FenceKey, "m1:fwd", "over").Err(); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	tc := redis.NewClient(&redis.Options{Addr: target.Addr, DB: 3})
	defer tc.Close()
	if err := tc.HSet(ctx, LogInboxKey(LogID{DC: "dc1", Group: "g-dc1"}), "f", "5-0").Err(); err != nil {
		t.Fatal(err)
	}
	n.apply(t, &fsm.StartMigration{DC: "dc2", Slots: []fsm.SlotRange{{From: 0, To: 0}}, To: "g-dc2b"})
	st := n.State()
	var m *fsm.Migration
	for _, mm := range st.Migrations {
		m = mm
	}
	_, _, dbs, err := dc2.repl.migrationServers(ctx, st, m)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(dbs); got != "[0 3]" {
		t.Fatalf("the migration's databases: %s, want [0 3] (the target's positions in 3; only marks in 5)", got)
	}
}
