package xdc

import (
	"context"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testredis"
)

// TestGroupCopy: dc2 is away while dc1's group log is cut past dc2's position, and both DCs
// write meanwhile (increments of the same counters, strings of their own, one string in
// both). dc1's shipper copies the group to dc2 in full; the first copy is stopped half way
// (the shipping node killed), the second runs to its end. Both DCs end with the same data:
// every increment of both DCs exactly once, dc2's own keys kept, the newer of the shared
// string's two writes, a key dc2 held outside replication gone.
func TestGroupCopy(t *testing.T) {
	ctx := context.Background()
	n, dcs := startDCsWith(t, func(c *Config) { c.noLogShipping = true }, "dc1", "dc2")
	dc1, dc2 := dcs[0], dcs[1]
	raiseFormat(t, n, LogDataFormat)
	defer func(c int) { logCopyChunk = c }(logCopyChunk)
	logCopyChunk = 64 // 256 chunks: the first copy is stopped after a few
	ship := func(from, to *testDC) func() { _, stop := shipGroupLog(from, to); return stop }
	incr := func(d *testDC, from, to int) {
		for i := from; i < to; i++ {
			d.write(t, "INCR", "{k"+strconv.Itoa(i%17)+"}c")
		}
	}
	equal := func(what string) {
		t.Helper()
		if a, b, ok := sameDataWithin(dc1.rc, dc2.rc, 60*time.Second); !ok {
			t.Fatalf("%s: the DCs still differ:\ndc1 %v\ndc2 %v", what, a, b)
		}
	}
	stop := ship(dc1, dc2)
	incr(dc1, 0, 170)
	for i := range 20 {
		dc1.write(t, "SET", "{s"+strconv.Itoa(i)+"}v", "dc1-"+strconv.Itoa(i))
	}
	equal("before the cut")
	stop()

	incr(dc1, 170, 340)
	incr(dc2, 0, 34)
	for i := range 10 {
		dc2.write(t, "SET", "{o"+strconv.Itoa(i)+"}v", "dc2-"+strconv.Itoa(i))
	}
	dc2.write(t, "SET", "{s0}v", "dc2, newer") // after dc1's: the newer write wins everywhere
	if err := dc1.rc.XTrimMaxLen(ctx, LogKey, 0).Err(); err != nil {
		t.Fatal(err)
	}
	incr(dc1, 340, 357)
	if err := dc2.rc.Set(ctx, "{k3}stale", "outside replication", 0).Err(); err != nil {
		t.Fatal(err)
	}
	inbox := LogInboxKey(LogID{DC: "dc1", Group: "g-dc1"})
	before := dc2.rc.HGet(ctx, inbox, "f").Val()

	// The first copy, stopped once some slots were replaced and before it completed.
	stop = ship(dc1, dc2)
	deadline := time.Now().Add(30 * time.Second)
	for dc2.rc.HLen(ctx, inbox).Val() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the group's copy did not begin")
		}
		time.Sleep(time.Millisecond)
	}
	stop()
	if f := dc2.rc.HGet(ctx, inbox, "f").Val(); f != before {
		t.Fatalf("the copy completed (dc2 at %s, was %s) before it was stopped: the test stops nothing half way", f, before)
	}

	// Both ways now: the copy again, in full, and dc2's log to dc1.
	stop = ship(dc1, dc2)
	defer stop()
	stop21 := ship(dc2, dc1)
	defer stop21()
	equal("after the group's full copy")
	incr(dc1, 357, 374)
	incr(dc2, 34, 51)
	equal("shipping after the copy")
	for i := range 17 {
		if got, _ := dc2.rc.Get(ctx, "{k"+strconv.Itoa(i)+"}c").Int(); got != 22+3 {
			t.Fatalf("{k%d}c = %d, want 25 (22 increments in dc1, 3 in dc2)", i, got)
		}
	}
	if got := dc1.rc.Get(ctx, "{s0}v").Val(); got != "dc2, newer" {
		t.Fatalf("{s0}v = %q, want dc2's newer write", got)
	}
	if got := dc1.rc.Get(ctx, "{o9}v").Val(); got != "dc2-9" {
		t.Fatalf("{o9}v = %q in dc1, want dc2's own write", got)
	}
	if n := dc2.rc.Exists(ctx, "{k3}stale").Val(); n != 0 {
		t.Fatal("the copy kept a key dc1 never had")
	}
	if c := dc1.repl.counter("dc2").copied.Load(); c != fsm.NumSlots {
		t.Fatalf("%d slots copied, want every slot of the group once (%d)", c, fsm.NumSlots)
	}
}

// shipGroupLog runs from's group log, shipped to to, on from's master (a test with
// noLogShipping); stop ends it.
func shipGroupLog(from, to *testDC) (g *logGroup, stop func()) {
	g = newLogGroup(from.repl, from.rc, LogID{DC: from.name, Group: "g-" + from.name}, 0, []string{to.name}, 20*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); g.run(ctx) }()
	return g, func() { cancel(); <-done }
}

// TestGroupCopyOneAtATime: while another node holds the group's copy lock toward a
// destination, a shipper does not copy the group there (their copies' chunks and starts would
// interleave); once the lock is gone it copies, and releases the lock at the end.
func TestGroupCopyOneAtATime(t *testing.T) {
	ctx := context.Background()
	n, dcs := startDCsWith(t, func(c *Config) { c.noLogShipping = true }, "dc1", "dc2")
	dc1, dc2 := dcs[0], dcs[1]
	raiseFormat(t, n, LogDataFormat)
	for i := range 20 {
		dc1.write(t, "INCR", "{k"+strconv.Itoa(i%5)+"}c")
	}
	s := newLogGroup(dc1.repl, dc1.rc, LogID{DC: "dc1", Group: "g-dc1"}, 0, []string{"dc2"}, 20*time.Millisecond).shippers[0]
	if err := dc1.rc.Set(ctx, groupCopyKey("dc2"), "group:n9:x", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.copyGroup(ctx, false); !errors.Is(err, errGroupCopying) {
		t.Fatalf("a copy while another node holds the lock: %v", err)
	}
	if n := dc2.rc.DBSize(ctx).Val(); n != 0 {
		t.Fatalf("dc2 holds %d keys after a copy that must not have run", n)
	}
	if err := dc1.rc.Del(ctx, groupCopyKey("dc2")).Err(); err != nil {
		t.Fatal(err)
	}
	at, err := s.copyGroup(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := dc2.rc.HGet(ctx, LogInboxKey(LogID{DC: "dc1", Group: "g-dc1"}), "f").Val(); got != at {
		t.Fatalf("dc2 stands at %q after the copy, want %q", got, at)
	}
	if a, b := snapshot(t, ctx, dc1.rc), snapshot(t, ctx, dc2.rc); !reflect.DeepEqual(a, b) {
		t.Fatalf("the DCs differ after the copy:\ndc1 %v\ndc2 %v", a, b)
	}
	if dc1.rc.Exists(ctx, groupCopyKey("dc2")).Val() != 0 {
		t.Fatal("the copy left its lock behind")
	}
}

// TestLogStartKeepsLoweredSlots: a group's copy from dc1 ends with LOG_START at its first
// entry. A slot field below it of a slot in the copied group was lowered since, by a copy
// from another DC that replaced the slot with its state (and its positions in dc1's log):
// LOG_START keeps it, so the entries after it come again. A field below it of a slot outside
// the group goes, as before.
func TestLogStartKeepsLoweredSlots(t *testing.T) {
	ctx := context.Background()
	c := client(t, testredis.Start(t))
	inbox := LogInboxKey(LogID{DC: "dc1", Group: "g1b"})
	if err := c.HSet(ctx, inbox, "f", "5-0", "s9000", "7-0", "s9001", "3-0", "s100", "2-0", "s9002", "12-0").Err(); err != nil {
		t.Fatal(err)
	}
	// The group holds 8192-16383; slot 100 is not its.
	if err := FCall(ctx, c, LogStartFunc, []string{inbox}, "10-0", 8192, 16383).Err(); err != nil {
		t.Fatal(err)
	}
	got := c.HGetAll(ctx, inbox).Val()
	want := map[string]string{"f": "10-0", "s9000": "7-0", "s9001": "3-0", "s9002": "12-0"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("inbox after LOG_START: %v, want %v", got, want)
	}
	// Without ranges (a node of the version before): every field below the start goes.
	if err := FCall(ctx, c, LogStartFunc, []string{inbox}, "11-0").Err(); err != nil {
		t.Fatal(err)
	}
	if got, want := c.HGetAll(ctx, inbox).Val(), map[string]string{"f": "11-0", "s9002": "12-0"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("inbox after LOG_START without ranges: %v, want %v", got, want)
	}
}

// TestGroupCopyStopsWhenAMigrationBegins: a migration that begins in the destination DC while
// a chunk of a group's copy is being replaced there (it moves keys and positions under the
// copy, which sets positions on the masters directly) stops the chunk before its next slot,
// with an error the source retries on; a copy after the migration's end completes.
func TestGroupCopyStopsWhenAMigrationBegins(t *testing.T) {
	ctx := context.Background()
	var armed atomic.Bool
	var net *testNet
	n, dcs := startDCsWith(t, func(c *Config) {
		c.noLogShipping = true
		if node := c.Local.(nodeOf); node.dc.name == "dc2" {
			net = node.net
			c.Local = onFirstBatch{Local: node, armed: &armed, run: func() {
				net.apply(t, &fsm.StartMigration{DC: "dc2", Slots: []fsm.SlotRange{{From: 0, To: 0}}, To: "g-dc2b"})
			}}
		}
	}, "dc1", "dc2")
	dc1, dc2 := dcs[0], dcs[1]
	raiseFormat(t, n, LogDataFormat)
	defer func(c int) { logCopyChunk = c }(logCopyChunk)
	logCopyChunk = fsm.NumSlots // one chunk: its slots with keys are replaced one after another
	n.apply(t, &fsm.AddGroup{DC: "dc2", Group: fsm.Group{ID: "g-dc2b", Master: testredis.Start(t).Addr}})
	tags := []string{"a", "b", "c", "d", "e"} // five slots with keys
	for _, tag := range tags {
		dc1.write(t, "SET", "{"+tag+"}k", tag)
	}
	s := newLogGroup(dc1.repl, dc1.rc, LogID{DC: "dc1", Group: "g-dc1"}, 0, []string{"dc2"}, 20*time.Millisecond).shippers[0]
	armed.Store(true)
	if _, err := s.copyGroup(ctx, false); err == nil || !strings.Contains(err.Error(), "began during the copy") {
		t.Fatalf("a copy during which a migration began: %v", err)
	}
	if got := dc2.rc.DBSize(ctx).Val(); got == 0 || got > 3 { // the first slot's key, its metadata, its inbox
		t.Fatalf("dc2 holds %d keys: the copy went on past the slot it was replacing", got)
	}
	for id, m := range n.State().Migrations {
		n.apply(t, &fsm.ControlMigration{ID: id, Action: fsm.MigrationCancel})
		if n.State().Migrations[id].Active() {
			t.Fatalf("migration %d (%s) still active once cancelled", id, m.State)
		}
	}
	if _, err := s.copyGroup(ctx, false); err != nil {
		t.Fatalf("the copy after the migration: %v", err)
	}
	for _, tag := range tags {
		if got := dc2.rc.Get(ctx, "{"+tag+"}k").Val(); got != tag {
			t.Fatalf("{%s}k = %q in dc2 after the copy", tag, got)
		}
	}
}

// onFirstBatch is a Local that runs run once, at its first InternalBatch once armed, before
// the batch.
type onFirstBatch struct {
	Local
	armed *atomic.Bool
	run   func()
}

func (o onFirstBatch) InternalBatch(ctx context.Context, db, slot int, keys []string, cmds [][]string) ([][]byte, error) {
	if o.armed.CompareAndSwap(true, false) {
		o.run()
	}
	return o.Local.InternalBatch(ctx, db, slot, keys, cmds)
}

// TestCopyWaitsForAMigrationOfTheSlot: a slot's copy into a DC is refused while a migration
// there moves the slot (its keys are listed by one scan of each group, and a key moving
// between the scans would be missed): nothing is locked or replaced, and the source tries
// again later.
func TestCopyWaitsForAMigrationOfTheSlot(t *testing.T) {
	ctx := context.Background()
	n, dcs := startDCs(t, "dc1", "dc2")
	dc2 := dcs[1]
	dc2.write(t, "SET", "{m}k", "here")
	slot := slotString("{m}k")
	n.apply(t, &fsm.AddGroup{DC: "dc2", Group: fsm.Group{ID: "g-dc2b", Master: testredis.Start(t).Addr}})
	n.apply(t, &fsm.StartMigration{DC: "dc2", Slots: []fsm.SlotRange{{From: slot, To: slot}}, To: "g-dc2b"})
	if _, err := dc2.repl.HandleCopy(ctx, CopyRequest{Source: "dc1", Slot: slot, Last: "1-0"}); err == nil || !strings.Contains(err.Error(), "moves slot") {
		t.Fatalf("a copy of a slot in a migration: %v", err)
	}
	if got := dc2.rc.Get(ctx, "{m}k").Val(); got != "here" {
		t.Fatalf("{m}k = %q after a refused copy", got)
	}
	if dc2.rc.Exists(ctx, CopyLockKey(slot)).Val() != 0 {
		t.Fatal("a refused copy left its lock")
	}
}

// TestGroupCopyTakesNoLocksOnceAMigrationBegan: a migration of the source DC that begins
// during a group's copy stops the copy before its next chunk takes locks on the master (a
// lock taken on the source after the mover moved the slot's would be moved over the target's).
func TestGroupCopyTakesNoLocksOnceAMigrationBegan(t *testing.T) {
	ctx := context.Background()
	var armed atomic.Bool
	var dc1rc func() *testDC
	n, dcs := startDCsWith(t, func(c *Config) {
		c.noLogShipping = true
		if node := c.Local.(nodeOf); node.dc.name == "dc2" {
			c.Local = onFirstBatch{Local: node, armed: &armed, run: func() {
				node.net.apply(t, &fsm.StartMigration{DC: "dc1", Slots: []fsm.SlotRange{{From: 16000, To: 16000}}, To: "g-dc1b"})
				if err := dc1rc().rc.ConfigResetStat(ctx).Err(); err != nil {
					t.Error(err)
				}
			}}
		}
	}, "dc1", "dc2")
	dc1 := dcs[0]
	dc1rc = func() *testDC { return dc1 }
	raiseFormat(t, n, LogDataFormat)
	n.apply(t, &fsm.AddGroup{DC: "dc1", Group: fsm.Group{ID: "g-dc1b", Master: testredis.Start(t).Addr}})
	k := ""
	for i := 0; k == "" || slotString(k) >= logCopyChunk; i++ {
		k = "{c" + strconv.Itoa(i) + "}k" // a key in the first chunk's slots
	}
	dc1.write(t, "SET", k, "v")
	s := newLogGroup(dc1.repl, dc1.rc, LogID{DC: "dc1", Group: "g-dc1"}, 0, []string{"dc2"}, 20*time.Millisecond).shippers[0]
	armed.Store(true)
	if _, err := s.copyGroup(ctx, false); err == nil || !strings.Contains(err.Error(), "migration began") {
		t.Fatalf("a copy during which a migration began: %v", err)
	}
	if armed.Load() {
		t.Fatal("the first chunk never reached dc2")
	}
	stats := dc1.rc.Info(ctx, "commandstats").Val()
	if strings.Contains(stats, "cmdstat_set:") {
		t.Fatalf("the copy took locks after the migration began:\n%s", stats)
	}
}

// TestOutboxesDrainedWaitsForAMigration: the check that a destination applied every entry of a
// group's outboxes, before its log ships to it, reads them on the master directly: while a
// migration of the DC moves them (an outbox already moved reads as empty) it answers that they
// are not drained and records nothing; once the migration is over it records the drain.
func TestOutboxesDrainedWaitsForAMigration(t *testing.T) {
	ctx := context.Background()
	n, dcs := startDCsWith(t, func(c *Config) { c.noLogShipping = true }, "dc1", "dc2")
	dc1 := dcs[0]
	raiseFormat(t, n, LogDataFormat)
	n.apply(t, &fsm.AddGroup{DC: "dc1", Group: fsm.Group{ID: "g-dc1b", Master: testredis.Start(t).Addr}})
	n.apply(t, &fsm.StartMigration{DC: "dc1", Slots: []fsm.SlotRange{{From: 16000, To: 16000}}, To: "g-dc1b"})
	s := newLogGroup(dc1.repl, dc1.rc, LogID{DC: "dc1", Group: "g-dc1"}, 0, []string{"dc2"}, 20*time.Millisecond).shippers[0]
	if err := s.outboxesDrained(ctx); !errors.Is(err, errOutboxesUndrained) {
		t.Fatalf("the outboxes checked during a migration: %v", err)
	}
	if dc1.rc.Exists(ctx, drainedKey("dc2")).Val() != 0 {
		t.Fatal("the drain was recorded during a migration")
	}
	if dc1.rc.Exists(ctx, OutboxesClosedKey).Val() != 1 {
		t.Fatal("the outboxes were read before they were closed")
	}
	for id := range n.State().Migrations {
		n.apply(t, &fsm.ControlMigration{ID: id, Action: fsm.MigrationCancel})
	}
	if err := s.outboxesDrained(ctx); err != nil {
		t.Fatalf("the outboxes checked once the migration was over: %v", err)
	}
	if dc1.rc.Exists(ctx, drainedKey("dc2")).Val() != 1 {
		t.Fatal("the drain was not recorded")
	}
}

// TestLateLogStartRefused: a copy's start that reaches the destination after the time it
// carries (its copy lock may have lapsed, and another node may copy the group by then) is
// refused and changes nothing; one in time sets where the destination stands.
func TestLateLogStartRefused(t *testing.T) {
	n, dcs := startDCsWith(t, func(c *Config) { c.noLogShipping = true }, "dc1", "dc2")
	raiseFormat(t, n, LogDataFormat)
	ctx := context.Background()
	log := LogID{DC: "dc1", Group: "g-dc1"}
	late := LogStartRequest{Log: log, At: "5-0", NotAfter: time.Now().Add(-time.Second).UnixMilli()}
	if _, err := dcs[1].repl.HandleLogStart(ctx, late); err == nil || !strings.Contains(err.Error(), "lock may have lapsed") {
		t.Fatalf("a late start: %v", err)
	}
	if f := dcs[1].rc.HGet(ctx, LogInboxKey(log), "f").Val(); f != "" {
		t.Fatalf("a late start moved the position to %q", f)
	}
	inTime := LogStartRequest{Log: log, At: "5-0", NotAfter: time.Now().Add(time.Minute).UnixMilli()}
	if _, err := dcs[1].repl.HandleLogStart(ctx, inTime); err != nil {
		t.Fatalf("a start in time: %v", err)
	}
	if f := dcs[1].rc.HGet(ctx, LogInboxKey(log), "f").Val(); f != "5-0" {
		t.Fatalf("position after a start in time: %q", f)
	}
}

// TestLogCopyRefusesBadPositions: a copy's positions become inbox fields every later APPLY of
// those logs compares, their names inbox keys: one that is no stream id (it stopped those logs
// here for good), a name that is no log, or a bad outbox id is refused before anything is
// written.
func TestLogCopyRefusesBadPositions(t *testing.T) {
	n, dcs := startDCsWith(t, func(c *Config) { c.noLogShipping = true }, "dc1", "dc2")
	raiseFormat(t, n, LogDataFormat)
	ctx := context.Background()
	log := LogID{DC: "dc1", Group: "g-dc1"}
	for _, cs := range []LogCopySlot{
		{Slot: 7, Last: "1-0", Positions: map[string]string{"dc3:g-dc3": "x"}},
		{Slot: 7, Last: "1-0", Positions: map[string]string{"__redraft:meta:7": "1-0"}},
		{Slot: 7, Last: "1-0", Positions: map[string]string{"dc3:g:x": "1-0"}},
		{Slot: 7, Last: "1-0", Outbox: "7"},
	} {
		_, err := dcs[1].repl.HandleLogCopy(ctx, LogCopyRequest{Log: log, Slots: []LogCopySlot{cs}})
		if err == nil || !strings.Contains(err.Error(), "bad") {
			t.Errorf("copy slot %+v: %v, want a refusal", cs, err)
		}
	}
	if keys := dcs[1].rc.Keys(ctx, "*").Val(); len(keys) != 0 {
		t.Errorf("refused copies wrote %v", keys)
	}
}

// TestGroupCopyDropsKeysTheSourceDeleted: dc2 writes a key, both DCs hold it, then dc2 stops
// getting dc1's log while dc1 deletes the key. dc1 collects the tombstone once it applied
// dc2's log past it, and then, dc1's log cut past dc2's position, copies the group to dc2 in
// full. The copy has neither the key nor its stamp; dc2's older write of it was applied in dc1
// before the delete (its stamp is below every position dc1 stood at in the other DCs' logs), so
// dc2 must drop it. Until session 45 dc2 kept it, for good: a key alive in one DC only. The
// same for a counter, whose increments must not come back through the copy's merge of dc2's
// own counts.
func TestGroupCopyDropsKeysTheSourceDeleted(t *testing.T) {
	ctx := context.Background()
	n, dcs := startDCsWith(t, func(c *Config) { c.noLogShipping = true; c.CounterMargin = time.Millisecond }, "dc1", "dc2")
	dc1, dc2 := dcs[0], dcs[1]
	raiseFormat(t, n, LogDataFormat)
	ship := func(from, to *testDC) func() { _, stop := shipGroupLog(from, to); return stop }
	equal := func(what string, within time.Duration) {
		t.Helper()
		if a, b, ok := sameDataWithin(dc1.rc, dc2.rc, within); !ok {
			t.Fatalf("%s: the DCs still differ:\ndc1 %v\ndc2 %v", what, a, b)
		}
	}
	stop12 := ship(dc1, dc2)
	stop21 := ship(dc2, dc1)
	defer stop21()
	dc2.write(t, "SET", "{d}gone", "dc2")
	dc2.write(t, "SET", "{d}kept", "dc2")
	dc2.write(t, "SET", "{d}n", "5")
	dc2.write(t, "INCR", "{d}n")
	equal("before the cut", 30*time.Second)
	stop12()

	dc1.write(t, "DEL", "{d}gone")
	dc1.write(t, "DEL", "{d}n")
	meta := MetaKey(slotString("{d}gone"))
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; dc1.rc.HExists(ctx, meta, "s:{d}gone").Val() || dc1.rc.HExists(ctx, meta, "s:{d}n").Val(); i++ {
		if time.Now().After(deadline) {
			t.Fatal("dc1 did not collect the tombstones of {d}gone and {d}n")
		}
		dc2.write(t, "SET", "{d}tick", strconv.Itoa(i)) // moves dc1's position in dc2's log
		time.Sleep(20 * time.Millisecond)               // poll interval
	}
	if dc2.rc.Exists(ctx, "{d}gone", "{d}n").Val() != 2 {
		t.Fatal("dc2 applied dc1's deletes: the test cut nothing")
	}
	if err := dc1.rc.XTrimMaxLen(ctx, LogKey, 0).Err(); err != nil {
		t.Fatal(err)
	}
	dc1.write(t, "SET", "{d}after", "dc1")
	stop12 = ship(dc1, dc2)
	defer stop12()
	equal("after the group's full copy", 30*time.Second)
	if dc2.rc.Exists(ctx, "{d}gone").Val() != 0 || dc2.rc.Get(ctx, "{d}kept").Val() != "dc2" {
		t.Fatalf("dc2 after the copy: {d}gone exists %d, {d}kept %q", dc2.rc.Exists(ctx, "{d}gone").Val(), dc2.rc.Get(ctx, "{d}kept").Val())
	}
}

// TestSlotCopyDropsKeysTheSourceDeleted is TestGroupCopyDropsKeysTheSourceDeleted at data
// format 1: the slot's copy out of a's outbox, with a's inbox for the slot as its horizon.
func TestSlotCopyDropsKeysTheSourceDeleted(t *testing.T) {
	ctx := context.Background()
	_, dcs := startDCs(t, "a", "b")
	a, b := dcs[0], dcs[1]
	b.write(t, "SET", "{d}gone", "b")
	b.write(t, "SET", "{d}kept", "b")
	waitEqual(t, dcs, 10*time.Second, "gone", stateOf("{d}gone"), "string b")
	waitEqual(t, dcs, 10*time.Second, "kept", stateOf("{d}kept"), "string b")
	b.deaf.Store("a") // a's calls to b fail: b gets nothing of a's outbox
	a.write(t, "DEL", "{d}gone")
	slot := slotString("{d}gone")
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; a.rc.HExists(ctx, MetaKey(slot), "s:{d}gone").Val(); i++ {
		if time.Now().After(deadline) {
			t.Fatal("a did not collect the tombstone of {d}gone")
		}
		b.write(t, "SET", "{d}tick", strconv.Itoa(i)) // moves a's inbox for the slot
		time.Sleep(20 * time.Millisecond)             // poll interval
	}
	if b.rc.Exists(ctx, "{d}gone").Val() != 1 {
		t.Fatal("b applied a's delete: the test cut nothing")
	}
	if err := a.rc.XTrimMaxLen(ctx, OutboxKey(slot), 0).Err(); err != nil {
		t.Fatal(err)
	}
	a.write(t, "SET", "{d}after", "a")
	b.deaf.Store("")
	waitEqual(t, []*testDC{b}, 30*time.Second, "after in b", stateOf("{d}after"), "string a")
	waitEqual(t, dcs, 30*time.Second, "gone", stateOf("{d}gone"), "none")
	waitEqual(t, dcs, 10*time.Second, "kept", stateOf("{d}kept"), "string b")
}

// TestGroupCopyCarriesPullRecords: dc1 sets a list dc3 had made while dc3 pushes to it, each
// unaware of the other: dc1, applying dc3's newer push to a key no longer in the state the
// push saw, records a pull of dc3's state, which it cannot make yet (its calls to dc3 fail).
// dc1 then copies its group in full to dc2, which stands from then on past dc3's push in dc3's
// log. dc2 must pull dc3's state as dc1 would: until session 45 the copy left dc1's pull
// records behind, and dc2 kept dc1's older state for good.
func TestGroupCopyCarriesPullRecords(t *testing.T) {
	ctx := context.Background()
	n, dcs := startDCsWith(t, func(c *Config) { c.noLogShipping = true }, "dc1", "dc2", "dc3")
	dc1, dc2, dc3 := dcs[0], dcs[1], dcs[2]
	raiseFormat(t, n, LogDataFormat)
	ship := func(from, to *testDC) func() { _, stop := shipGroupLog(from, to); return stop }
	// dc3's log to both (one shipper: each trims the log to its destinations' positions).
	g3 := newLogGroup(dc3.repl, dc3.rc, LogID{DC: "dc3", Group: "g-dc3"}, 0, []string{"dc1", "dc2"}, 20*time.Millisecond)
	gctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); g3.run(gctx) }()
	defer func() { cancel(); <-done }()
	dc3.write(t, "RPUSH", "{p}l", "a")
	waitEqual(t, []*testDC{dc1, dc2}, 10*time.Second, "the list", stateOf("{p}l"), "list [a]")
	dc2.deaf.Store("dc3") // dc2 gets nothing more of dc3's log for now
	dc3.deaf.Store("dc1") // dc1 cannot pull from dc3
	dc1.write(t, "SET", "{p}l", "x")
	later()
	dc3.write(t, "RPUSH", "{p}l", "b")
	slot := slotString("{p}l")
	deadline := time.Now().Add(10 * time.Second)
	for !dc1.rc.HExists(ctx, PullKey(slot), "{p}l").Val() {
		if time.Now().After(deadline) {
			st, _ := state(ctx, dc1.rc, "{p}l")
			t.Fatalf("dc1 recorded no pull of {p}l (it holds %s)", st)
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
	if err := dc1.rc.XTrimMaxLen(ctx, LogKey, 0).Err(); err != nil {
		t.Fatal(err)
	}
	dc1.write(t, "SET", "{p}after", "dc1")
	stop12 := ship(dc1, dc2)
	defer stop12()
	waitEqual(t, []*testDC{dc2}, 30*time.Second, "after in dc2", stateOf("{p}after"), "string dc1")
	dc2.deaf.Store("") // dc3's log goes on from where the copy left dc2 in it: past the push
	waitEqual(t, []*testDC{dc2, dc3}, 30*time.Second, "the list", stateOf("{p}l"), "list [a b]")
}
