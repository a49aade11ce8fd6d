package xdc

import (
	"context"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testredis"
)

// handoffEntry is an entry of g2's log handing slots over after g1's log through through.
func handoffEntry(seq int, through string) LogEntry {
	e := LogEntry{}
	e.ID = strconv.Itoa(seq) + "-0"
	e.Cmds = WireCmds{{HandoffCmd, testLog.Group, through}}
	return e
}

// TestApplyLogHandoff: a receiving group does not pass a handoff entry of g2's log before it
// applied g1's log through the entry's id (a HOLD at the entry before it), and goes on once it
// has; the key written in both logs ends with g1's write first.
func TestApplyLogHandoff(t *testing.T) {
	ctx := context.Background()
	c := client(t, testredis.Start(t))
	g2 := LogID{DC: "dc1", Group: "g2"}
	// g1's log: two writes of {a}k; g2's log: a write of another slot, the handoff after g1's
	// 2-0, then {a}k's next write.
	g1w := []LogEntry{
		{Slot: 0, WireEntry: WireEntry{ID: "1-0", Cmds: WireCmds{{"RPUSH", "{a}k", "one"}}}},
		{Slot: 0, WireEntry: WireEntry{ID: "2-0", Cmds: WireCmds{{"RPUSH", "{a}k", "two"}}}},
	}
	for i := range g1w {
		g1w[i].Slot = EntrySlot(Entry{Cmds: g1w[i].Cmds})
	}
	other := incrEntry(5, "{b}x")
	three := LogEntry{WireEntry: WireEntry{ID: "7-0", Cmds: WireCmds{{"RPUSH", "{a}k", "three"}}}}
	three.Slot = EntrySlot(Entry{Cmds: three.Cmds})
	hand := handoffEntry(6, "2-0")
	if EntrySlot(Entry{Cmds: hand.Cmds}) != 0 {
		t.Fatalf("a handoff's slot: %d", EntrySlot(Entry{Cmds: hand.Cmds}))
	}
	run := []LogEntry{other, hand, three}

	// g1's log not applied at all: held before the handoff.
	got := applyLog(t, c, ApplyLogCall(g2, "", "", "7-0", run))
	if got.Position != "5-0" || !strings.HasPrefix(got.Refused, "HOLD ") {
		t.Fatalf("before g1's log: %+v", got)
	}
	// Held with the id of the log's entry before the handoff (other groups' entries between):
	// the group stands there, not at the last entry of its own.
	got = applyLog(t, c, ApplyLogCall(g2, "", "5-0", "7-0", []LogEntry{handoffBefore(hand, "5-7"), three}))
	if got.Position != "5-7" || !strings.HasPrefix(got.Refused, "HOLD ") {
		t.Fatalf("held with the entry before the handoff: %+v", got)
	}
	// g1's log through 1-0 only: still held.
	if a := applyLog(t, c, ApplyLogCall(testLog, "", "", "1-0", g1w[:1])); a.Position != "1-0" {
		t.Fatalf("g1 through 1-0: %+v", a)
	}
	got = applyLog(t, c, ApplyLogCall(g2, "", "5-7", "7-0", run[1:]))
	if got.Position != "5-7" || !strings.HasPrefix(got.Refused, "HOLD ") {
		t.Fatalf("g1 through 1-0: %+v", got)
	}
	if l := c.LRange(ctx, "{a}k", 0, -1).Val(); strings.Join(l, ",") != "one" {
		t.Fatalf("{a}k = %v while held", l)
	}
	// Through 2-0: the handoff passes, and the list is in the writes' order.
	if a := applyLog(t, c, ApplyLogCall(testLog, "", "1-0", "2-0", g1w[1:])); a.Position != "2-0" {
		t.Fatalf("g1 through 2-0: %+v", a)
	}
	got = applyLog(t, c, ApplyLogCall(g2, "", "5-7", "7-0", run[1:]))
	if got != (LogApplied{Position: "7-0"}) {
		t.Fatalf("after g1's log: %+v", got)
	}
	if l := c.LRange(ctx, "{a}k", 0, -1).Val(); strings.Join(l, ",") != "one,two,three" {
		t.Fatalf("{a}k = %v, want one,two,three", l)
	}
}

// TestMovedPositions: the slots' positions copied into the target group's inbox (movedInLua):
// a slot's field where it differs from the target's position, none where equal (a stale one
// dropped); a target without the inbox and other slots takes the lowest as its position; a
// source without the inbox gives "0-0" (nothing applied) where the target has one.
func TestMovedPositions(t *testing.T) {
	ctx := context.Background()
	c := client(t, testredis.Start(t))
	src := map[string]string{"f": "10-0", "s3": "8-0"}
	k1, k2, k3 := LogInboxKey(LogID{DC: "dc2", Group: "a"}), LogInboxKey(LogID{DC: "dc2", Group: "b"}), LogInboxKey(LogID{DC: "dc2", Group: "c"})
	c.HSet(ctx, k1, "f", "10-0", "s2", "4-0") // the target's own position equals the source's for 1 and 2
	c.HSet(ctx, k3, "f", "12-0")              // the source has no inbox for c
	argv := []any{false}                      // the target serves no other slot
	argv = append(argv, movedPositions(src, []int{1, 2, 3})...)
	argv = append(argv, movedPositions(src, []int{1, 2, 3})...) // b: the target has no inbox
	argv = append(argv, movedPositions(nil, []int{1, 2, 3})...)
	if err := c.Eval(ctx, movedInLua, []string{k1, k2, k3}, argv...).Err(); err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]string{
		k1: {"f": "10-0", "s3": "8-0"},
		k2: {"f": "8-0", "s1": "10-0", "s2": "10-0"},
		k3: {"f": "12-0", "s1": "0-0", "s2": "0-0", "s3": "0-0"},
	}
	for k, w := range want {
		got := c.HGetAll(ctx, k).Val()
		if len(got) != len(w) {
			t.Errorf("%s = %v, want %v", k, got, w)
			continue
		}
		for f, v := range w {
			if got[f] != v {
				t.Errorf("%s = %v, want %v", k, got, w)
				break
			}
		}
	}
}

// TestMovedPositionsRanges: thousands of slots, not contiguous, go as ranges per position and
// come out slot by slot as one at a time would give them: a field per slot off the target's
// position, a stale field of a moving slot dropped, a field of a slot not moving kept, and on
// a target without the inbox the lowest position as "f" with a field for every other slot.
func TestMovedPositionsRanges(t *testing.T) {
	ctx := context.Background()
	c := client(t, testredis.Start(t))
	src := map[string]string{"f": "10-0", "s5": "12-0", "s6": "12-0", "s100": "8-0", "s4000": "12-0", "s70": "9-0"}
	var slots []int
	for s := 0; s < 4096; s++ {
		if s < 50 || s > 60 {
			slots = append(slots, s)
		}
	}
	k1, k2 := LogInboxKey(LogID{DC: "dc2", Group: "a"}), LogInboxKey(LogID{DC: "dc2", Group: "b"})
	c.HSet(ctx, k1, "f", "10-0", "s7", "3-0", "s55", "9-0")
	argv := []any{false}
	argv = append(argv, movedPositions(src, slots)...)
	argv = append(argv, movedPositions(src, slots)...)
	if n := len(argv); n > 80 {
		t.Errorf("%d arguments for two logs of %d slots at four positions: not ranges", n, len(slots))
	}
	if err := c.Eval(ctx, movedInLua, []string{k1, k2}, argv...).Err(); err != nil {
		t.Fatal(err)
	}
	want1 := map[string]string{"f": "10-0", "s5": "12-0", "s6": "12-0", "s100": "8-0", "s4000": "12-0", "s70": "9-0", "s55": "9-0"}
	if got := c.HGetAll(ctx, k1).Val(); !maps.Equal(got, want1) {
		t.Errorf("%s = %v, want %v", k1, got, want1)
	}
	got2 := c.HGetAll(ctx, k2).Val()
	if got2["f"] != "8-0" || got2["s100"] != "" || got2["s5"] != "12-0" || got2["s70"] != "9-0" || got2["s0"] != "10-0" || got2["s4095"] != "10-0" || got2["s55"] != "" {
		t.Errorf("%s: f %q s100 %q s5 %q s70 %q s0 %q s4095 %q s55 %q", k2, got2["f"], got2["s100"], got2["s5"], got2["s70"], got2["s0"], got2["s4095"], got2["s55"])
	}
	if n := len(got2); n != len(slots) { // "f" and every slot but s100
		t.Errorf("%s has %d fields, want %d", k2, n, len(slots))
	}
}

// TestMovedOnTheRunBackChangesNothing: a migration of dc2 to a new group, cancelled before its
// switch: its run back calls Moved from the new group (no inbox: it served none of the slots,
// and nothing of them is applied while they migrate) into the old one, whose positions are
// still right. They must stay: until session 45 each slot's became "0-0", every other DC's
// log then answered a gap and went back to its start (a full copy of every group into dc2, or
// entries applied twice where a log was never trimmed).
func TestMovedOnTheRunBackChangesNothing(t *testing.T) {
	ctx := context.Background()
	n, dcs := startDCsWith(t, func(c *Config) { c.noLogShipping = true }, "dc1", "dc2")
	dc1, dc2 := dcs[0], dcs[1]
	raiseFormat(t, n, LogDataFormat)
	stop := func() func() { _, s := shipGroupLog(dc1, dc2); return s }()
	dc1.write(t, "SET", "{m}k", "v")
	if _, _, ok := sameDataWithin(dc1.rc, dc2.rc, 30*time.Second); !ok {
		t.Fatal("dc2 did not get dc1's write")
	}
	stop()
	inbox := LogInboxKey(LogID{DC: "dc1", Group: "g-dc1"})
	before := dc2.rc.HGetAll(ctx, inbox).Val()
	if before["f"] == "" {
		t.Fatalf("dc2's inbox of dc1's log: %v", before)
	}
	n.apply(t, &fsm.AddGroup{DC: "dc2", Group: fsm.Group{ID: "g-dc2b", Master: testredis.Start(t).Addr}})
	n.apply(t, &fsm.StartMigration{DC: "dc2", Slots: []fsm.SlotRange{{From: 100, To: 102}}, To: "g-dc2b"})
	var m *fsm.Migration
	for id := range n.State().Migrations {
		n.apply(t, &fsm.AckFreeze{ID: id, Node: dc2.node}) // the keys move
		n.apply(t, &fsm.ControlMigration{ID: id, Action: fsm.MigrationCancel})
		m = n.State().Migrations[id]
	}
	if m == nil || !m.Cancelling {
		t.Fatalf("the migration is not running back: %+v", m)
	}
	if err := dc2.repl.Moved(ctx, n.State(), m); err != nil {
		t.Fatal(err)
	}
	if after := dc2.rc.HGetAll(ctx, inbox).Val(); !maps.Equal(after, before) {
		t.Fatalf("the run back's Moved changed the old group's positions: %v, was %v", after, before)
	}
}
