package xdc

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	"github.com/redraft/redraft/internal/testredis"
)

// memoBeat and memoWrite build a heartbeat and an entry with effects (SET key v) of dc1.
func memoBeat(id string) Entry { return Entry{ID: id, DC: "dc1"} }
func memoSet(id, key string) Entry {
	return Entry{ID: id, DC: "dc1", Cmds: WireCmds{{"SET", key, "v"}}}
}

// TestLogMemo: a memo follows a destination's answers without a gap, notes the entries with
// effects applied and the entry at its position, and starts again at an answer it did not
// follow (another node shipped meanwhile) and after a gap.
func TestLogMemo(t *testing.T) {
	var ms logMemos
	k := logMemoKey{log: LogID{DC: "dc1", Group: "g"}, db: 0, dest: "dc2"}
	write := func(id string) Entry { return memoSet(id, "k") }
	check := func(what, from, pos string, writes []string, posKnown bool) {
		t.Helper()
		m := ms.m[k]
		if m == nil {
			t.Fatalf("%s: no memo", what)
		}
		var ids []string
		for _, w := range m.writes {
			ids = append(ids, w.id)
		}
		if m.from != from || m.pos != pos || !reflect.DeepEqual(ids, writes) || m.posKnown != posKnown {
			t.Errorf("%s: memo from %s pos %s writes %v posKnown %v, want %s %s %v %v", what, m.from, m.pos, ids, m.posKnown, from, pos, writes, posKnown)
		}
	}
	ms.started(k, "1-0")
	check("started", "1-0", "1-0", nil, false)
	ms.answered(k, "1-0", []Entry{memoBeat("2-0"), write("3-0"), memoBeat("4-0"), write("5-0")}, "4-0")
	check("a range applied through 4-0", "1-0", "4-0", []string{"3-0"}, true)
	if ms.differs(k, "4-0", memoBeat("4-0")) || !ms.differs(k, "4-0", write("4-0")) || ms.differs(k, "9-0", write("9-0")) {
		t.Error("differs: the entry at the memo's position is told by its contents, and only there")
	}
	ms.answered(k, "4-0", []Entry{write("5-0"), memoBeat("6-0")}, "4-0")
	check("a range held", "1-0", "4-0", []string{"3-0"}, true)
	ms.started(k, "4-0")
	check("a shipper started where the memo stands", "1-0", "4-0", []string{"3-0"}, true)
	ms.started(k, "7-0")
	check("a shipper started elsewhere", "7-0", "7-0", nil, false)
	ms.answered(k, "9-0", []Entry{memoBeat("10-0")}, "10-0")
	check("an answer after a position the memo did not follow", "9-0", "10-0", nil, true)
	ms.answered(k, "10-0", []Entry{write("11-0")}, "12-0")
	// Another node shipped past this range: the memo starts again there, knowing nothing of
	// the writes between (until session 47 it kept 9-0 and counted none of them lost).
	check("an answer past the range's entries", "12-0", "12-0", nil, false)
	ms.answered(k, "12-0", []Entry{write("13-0")}, "8-0")
	check("a gap", "8-0", "8-0", nil, false)
	// Past memoWrites writes the oldest half is dropped, and the memo knows entries only
	// from the oldest one kept.
	ms.started(k, "100-0")
	var es []Entry
	for i := 1; i <= memoWrites+1; i++ {
		es = append(es, write(fmt.Sprintf("100-%d", i)))
	}
	ms.answered(k, "100-0", es, es[len(es)-1].ID)
	if m := ms.m[k]; len(m.writes) != memoWrites/2+1 || m.from != fmt.Sprintf("100-%d", memoWrites/2+1) || m.writes[0].id != m.from {
		t.Errorf("after %d writes: from %s, %d writes kept from %s", memoWrites+1, m.from, len(m.writes), m.writes[0].id)
	}
	// At a write, the entry there is told by its digest.
	w := logMemoKey{log: k.log, dest: "dc3"}
	ms.started(w, "1-0")
	ms.answered(w, "1-0", []Entry{memoBeat("2-0"), memoSet("3-0", "a")}, "3-0")
	if ms.differs(w, "3-0", memoSet("3-0", "a")) || !ms.differs(w, "3-0", memoSet("3-0", "b")) || !ms.differs(w, "3-0", memoBeat("3-0")) {
		t.Error("differs at a write: the same write is the entry applied, another write or a heartbeat is not")
	}
	if entrySum(memoSet("1-0", "a")) != entrySum(memoSet("2-0", "a")) || entrySum(memoSet("1-0", "a")) == entrySum(memoSet("1-0", "b")) ||
		entrySum(Entry{DC: "dc1", Cmds: WireCmds{{"SET", "ab", "c"}}}) == entrySum(Entry{DC: "dc1", Cmds: WireCmds{{"SET", "a", "bc"}}}) {
		t.Error("entrySum: a digest of the contents, not of the id, with the arguments' bounds")
	}
	if got, err := idAfter("1796434627228-41"); err != nil || got != "1796434627228-42" {
		t.Errorf("idAfter = %q, %v", got, err)
	}
	if _, err := idAfter("x"); err == nil {
		t.Error("idAfter of a bad id: no error")
	}
}

// TestLogMemoLoss: after a failover, what the destination applied (a memo from 1-0: SET a at
// 2-0, a heartbeat, SET b at 4-0, a heartbeat at 5-0 where it stands) is compared with the
// promoted replica's log on a real redis-server. Heartbeats lost let the shipper ship on (a
// heartbeat after 5-0 is added); writes lost are counted once (what the log's trims cut was
// applied everywhere, and is not lost); and a write of the new master's
// own at or below 5-0, which was never shipped, sends the group to a copy, whether its id is
// new, one the destination applied with other contents, or 5-0 itself.
func TestLogMemoLoss(t *testing.T) {
	ctx := context.Background()
	c := client(t, testredis.Start(t))
	k := logMemoKey{log: LogID{DC: "dc1", Group: "g"}, db: 0, dest: "dc2"}
	applied := []Entry{memoSet("2-0", "a"), memoBeat("3-0"), memoSet("4-0", "b"), memoBeat("5-0")}
	memos := func(from string) *logMemos {
		ms := &logMemos{}
		ms.started(k, from)
		ms.answered(k, from, applied, "5-0")
		return ms
	}
	fill := func(entries ...Entry) {
		t.Helper()
		if err := c.Del(ctx, LogKey).Err(); err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			args := []any{"XADD", LogKey, e.ID}
			for _, f := range EntryFields(e.DC, e.Cmds) {
				args = append(args, f)
			}
			if err := c.Do(ctx, args...).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	last := func() string {
		t.Helper()
		m, err := c.XRevRangeN(ctx, LogKey, "+", "-", 1).Result()
		if err != nil || len(m) == 0 {
			t.Fatalf("the log's last entry: %v", err)
		}
		return m[0].ID
	}
	prefix := []Entry{memoBeat("1-0"), memoSet("2-0", "a"), memoBeat("3-0")}
	for _, tc := range []struct {
		name string
		from string
		log  []Entry
		want failoverLoss
	}{
		{"heartbeats lost", "1-0", append(prefix[:3:3], memoSet("4-0", "b")), failoverLoss{known: true}},
		{"heartbeats lost, the new master's own after them", "1-0", append(prefix[:3:3], memoSet("4-0", "b"), memoBeat("4-3")), failoverLoss{known: true}},
		{"a write lost", "1-0", prefix, failoverLoss{known: true, lost: 1, count: true}},
		{"every write lost since the memo's start", "1-0", prefix[:1], failoverLoss{known: true, lost: 2, count: true}},
		{"the new master's write below the position", "1-0", append(prefix[:3:3], memoSet("4-0", "b"), memoSet("4-5", "c")), failoverLoss{unshipped: "4-5"}},
		{"the new master's write under an id applied", "1-0", append(prefix[:3:3], memoSet("4-0", "c")), failoverLoss{unshipped: "4-0"}},
		{"the new master's write at the position", "1-0", append(prefix[:3:3], memoSet("4-0", "b"), memoSet("5-0", "c")), failoverLoss{unshipped: "5-0"}},
		{"the new master's write above the memo's start only", "1-0", []Entry{memoBeat("1-0"), memoSet("1-5", "c")}, failoverLoss{unshipped: "1-5"}},
		{"the log trimmed past every write", "1-0", []Entry{memoBeat("4-1"), memoBeat("4-2")}, failoverLoss{known: true}},
		{"the log trimmed past the first write", "1-0", []Entry{memoBeat("3-0")}, failoverLoss{known: true, lost: 1, count: true}},
		{"the log lacks the memo's start", "1-0", []Entry{memoBeat("0-5")}, failoverLoss{}},
		{"an empty log", "1-0", nil, failoverLoss{}},
		{"from nothing, no write kept", "", []Entry{memoBeat("0-5")}, failoverLoss{known: true, lost: 2, count: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fill(tc.log...)
			ms := memos(tc.from)
			got, err := ms.loss(ctx, c, k, "5-0")
			if err != nil || got != tc.want {
				t.Fatalf("loss = %+v, %v; want %+v", got, err, tc.want)
			}
			// Whatever the answer, later ids are above the position (a copy starts from a
			// position read after the check).
			if l := last(); CompareIDs(l, "5-0") <= 0 {
				t.Errorf("after the check the log's last id is %s: later ids may fall below 5-0", l)
			}
			if got.count {
				if again, _ := ms.loss(ctx, c, k, "5-0"); again.count || again.lost != got.lost {
					t.Errorf("the loss again: %+v, want it known and not counted twice", again)
				}
			}
		})
	}
	// A write that comes while the check runs (after its walk) gets an id above the position,
	// not one below it that no range after the position carries. WRITE's XADD * gives the
	// next id after the log's last when the master's clock is behind it (a failover's new
	// master, its clock behind the old one's): so the log's last id then must be above it.
	t.Run("a write during the check", func(t *testing.T) {
		fill(append(prefix[:3:3], memoSet("4-0", "b"))...)
		ms := memos("1-0")
		during := ""
		ms.walked = func() { during = last() }
		got, err := ms.loss(ctx, c, k, "5-0")
		if err != nil || !got.known || got.lost != 0 {
			t.Fatalf("loss = %+v, %v", got, err)
		}
		if CompareIDs(during, "5-0") <= 0 {
			t.Errorf("while the check ran the log's last id was %s: a write then would take an id below the position 5-0 the shipper goes on from", during)
		}
	})
	// A log walked past lossWalk entries without reaching an entry the destination applied:
	// unknown, and the group is copied.
	var beats []Entry
	beats = append(beats, prefix...)
	for i := range lossWalk + 10 {
		beats = append(beats, memoBeat(fmt.Sprintf("4-%d", i+1)))
	}
	fill(beats...)
	ms := &logMemos{}
	ms.started(k, "1-0")
	ms.answered(k, "1-0", []Entry{memoSet("2-0", "a"), memoBeat("3-0"), memoBeat("5-0")}, "5-0")
	if got, err := ms.loss(ctx, c, k, "5-0"); err != nil || got != (failoverLoss{}) {
		t.Errorf("a long walk: %+v, %v; want unknown", got, err)
	}
}
