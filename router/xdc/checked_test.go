package xdc

import (
	"context"
	"strings"
	"testing"
	"time"
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
		if ok, err := checkedHere(ctx, d.rc, map[string]string{"dc1": "dc2", "dc2": "dc1"}[d.name]); err != nil || !ok {
			t.Fatalf("%s: checked record %v (%v)", d.name, ok, err)
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
	waitSameData(t, dc1.rc, dc2.rc, "after both copies")
	for _, d := range dcs {
		if got, _ := d.rc.Get(ctx, "{c}n").Int(); got != 30 {
			t.Fatalf("%s: {c}n = %d, want 30 (20 kept, 10 after the failover; the 50 lost)", d.name, got)
		}
		if got, _ := d.rc.Get(ctx, "{d}n").Int(); got != 10 {
			t.Fatalf("%s: {d}n = %d, want dc2's 10", d.name, got)
		}
	}
	if got := dc1.repl.counter("dc2").lost.Load(); got != 50 {
		t.Errorf("%d entries counted lost, want 50", got)
	}
	// Once dc1's shipper checked the new master, a copy from dc2 is taken again.
	deadline = time.Now().Add(30 * time.Second)
	for ok, _ := checkedHere(ctx, dc1.rc, "dc2"); !ok; ok, _ = checkedHere(ctx, dc1.rc, "dc2") {
		if time.Now().After(deadline) {
			t.Fatal("dc1's shipper did not record its check of dc2 on the new master")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestUncheckedRefusesCopies: a full copy into a group whose master's check record names
// another master is refused; a missing record, a matching one, or both sides unchecked with
// the source's name first let it in.
func TestUncheckedRefusesCopies(t *testing.T) {
	ctx := context.Background()
	n, dcs := startDCsWith(t, func(c *Config) { c.noLogShipping = true }, "a", "b")
	raiseFormat(t, n, LogDataFormat)
	a, b := dcs[0], dcs[1]
	req := func(from *testDC, unchecked bool) LogCopyRequest {
		return LogCopyRequest{Log: LogID{DC: from.name, Group: "g-" + from.name}, Unchecked: unchecked,
			Slots: []LogCopySlot{{Slot: 7, Last: "1-0"}}}
	}
	try := func(to, from *testDC, unchecked bool) error {
		return to.repl.refuseUnchecked(ctx, n.State().DCs[to.name], req(from, unchecked))
	}
	for _, d := range dcs {
		if err := try(d, dcs[1-map[string]int{"a": 0, "b": 1}[d.name]], false); err != nil {
			t.Fatalf("%s refused a copy with no record: %v", d.name, err)
		}
	}
	stale := strings.Repeat("0", 40)
	for _, d := range dcs {
		if err := d.rc.Set(ctx, checkedKey(map[string]string{"a": "b", "b": "a"}[d.name]), stale, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := try(a, b, false); err == nil || !strings.Contains(err.Error(), "has not checked") {
		t.Fatalf("a took b's copy over a stale record: %v", err)
	}
	if err := try(a, b, true); err == nil {
		t.Fatal("a took b's unchecked copy: b's name sorts after a's")
	}
	if err := try(b, a, true); err != nil {
		t.Fatalf("b refused a's unchecked copy (a sorts first): %v", err)
	}
	if err := try(b, a, false); err == nil {
		t.Fatal("b took a's checked copy over its own stale record")
	}
	id, err := runID(ctx, a.rc)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.rc.Set(ctx, checkedKey("b"), id, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := try(a, b, false); err != nil {
		t.Fatalf("a refused a copy with its record current: %v", err)
	}
}
