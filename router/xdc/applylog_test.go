package xdc

import (
	"context"
	"math/big"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/internal/testredis"
	"github.com/redraft/redraft/migrate"
	"github.com/redraft/redraft/router/resp"
)

// applyLog runs one ApplyLogFunc call on c and parses its reply.
func applyLog(t *testing.T, c *redis.Client, call []string) LogApplied {
	t.Helper()
	ctx := context.Background()
	if err := LoadLibrary(ctx, c); err != nil {
		t.Fatal(err)
	}
	v, err := c.Do(ctx, toAny(call)...).Result()
	if err != nil {
		t.Fatalf("APPLY of a log: %v", err)
	}
	pv, _, ok := resp.Parse(encodeReply(nil, v))
	if !ok {
		t.Fatalf("unparsable reply %v", v)
	}
	a, err := ParseApplyLog(pv)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// testLog is dc1's log of group g1 in these tests.
var testLog = LogID{DC: "dc1", Group: "g1"}

// incrEntry is log entry seq incrementing key by one (verbatim: applied twice, it counts twice).
func incrEntry(seq int, key string) LogEntry {
	return LogEntry{Slot: migrate.SlotString(key), WireEntry: WireEntry{ID: strconv.Itoa(seq) + "-0", Cmds: WireCmds{{"INCRBY", key, "1"}}}}
}

// TestApplyLogRefusals: a call stops at an entry under another's copy lock, with a bad id or
// past the call's last, and answers the position it reached; the rest applies when the call is
// sent again. A call whose prev is above the group's position is a GAP and changes nothing.
// (Entries out of order are refused before any call: TestHandleLog.)
func TestApplyLogRefusals(t *testing.T) {
	ctx := context.Background()
	c := client(t, testredis.Start(t))
	a, b := incrEntry(1, "{a}x"), incrEntry(2, "{b}x")
	a2 := incrEntry(3, "{a}x")
	c.Set(ctx, CopyLockKey(b.Slot), "in:dc3:other", time.Minute)

	got := applyLog(t, c, ApplyLogCall(testLog, "", "", "3-0", []LogEntry{a, b, a2}))
	if got.Position != "1-0" || !strings.HasPrefix(got.Refused, "TRYAGAIN") {
		t.Fatalf("under a copy lock: %+v", got)
	}
	if v := c.Get(ctx, "{a}x").Val(); v != "1" {
		t.Fatalf("{a}x = %q after the refused call, want 1", v)
	}
	// Past the group's position: a gap, nothing changes.
	got = applyLog(t, c, ApplyLogCall(testLog, "", "2-0", "3-0", []LogEntry{a2}))
	if got.Position != "1-0" || !got.Gap() {
		t.Fatalf("after a gap: %+v", got)
	}
	c.Del(ctx, CopyLockKey(b.Slot))
	got = applyLog(t, c, ApplyLogCall(testLog, "", "1-0", "3-0", []LogEntry{b, a2}))
	if got != (LogApplied{Position: "3-0"}) {
		t.Fatalf("sent again: %+v", got)
	}
	// The same range once more: all skipped.
	got = applyLog(t, c, ApplyLogCall(testLog, "", "", "3-0", []LogEntry{a, b, a2}))
	if got.Position != "3-0" || c.Get(ctx, "{a}x").Val() != "2" || c.Get(ctx, "{b}x").Val() != "1" {
		t.Fatalf("a range applied twice: %+v, {a}x %s, {b}x %s", got, c.Get(ctx, "{a}x").Val(), c.Get(ctx, "{b}x").Val())
	}
	for _, bad := range [][]LogEntry{
		{incrEntry(5, "{a}x"), incrEntry(9, "{a}x")}, // past last
		{{Slot: a.Slot, WireEntry: WireEntry{ID: "x", Cmds: a.Cmds}}},
	} {
		got = applyLog(t, c, ApplyLogCall(testLog, "", "3-0", "8-0", bad))
		if got.Refused == "" || c.Get(ctx, "{a}x").Val() != strconv.Itoa(2+len(bad)-1) {
			t.Fatalf("%v: %+v, {a}x %s", bad, got, c.Get(ctx, "{a}x").Val())
		}
		c.Set(ctx, "{a}x", 2, 0)
	}
}

// TestApplyLogExactlyOnce ships one source log to a receiving DC of two groups (two databases)
// the way a shipping loop would: each call covers the next range of the log after the
// position the receiving DC answered (the lowest of its groups'), and goes to both groups
// with the entries of each one's slots. Meanwhile calls to a group are lost (the range is
// sent again), a group fails over to a copy that missed its last call (its entries and
// positions gone together, as with a promoted replica), and slots move between the groups as
// the receiving DC's migration moves them: the keys, and the slot's position in the log copied
// under the barrier. After every call, every key must hold exactly the increments of the log
// through its slot's position in its group, and at the end every increment of the log.
func TestApplyLogExactlyOnce(t *testing.T) {
	ctx := context.Background()
	s := testredis.Start(t)
	groups := []*redis.Client{client(t, s), redis.NewClient(&redis.Options{Addr: s.Addr, Protocol: 2, MaxRetries: -1, DB: 1})}
	t.Cleanup(func() { _ = groups[1].Close() })
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(11, seed))
	t.Logf("seed %d", seed)

	var keys []string
	owner := map[int]int{} // slot -> group
	for i, tag := range []string{"a", "b", "c", "d", "e", "f"} {
		keys = append(keys, "{"+tag+"}1", "{"+tag+"}2")
		owner[migrate.SlotString("{"+tag+"}")] = i % 2
	}
	var log []LogEntry
	for seq := 1; seq <= 1200; seq++ {
		log = append(log, incrEntry(seq, keys[rng.IntN(len(keys))]))
	}
	idx := func(id string) int { // the log's entries through id
		if id == "" {
			return 0
		}
		n, _ := strconv.Atoi(strings.TrimSuffix(id, "-0"))
		return n
	}
	inbox := LogInboxKey(testLog)
	threshold := func(g, slot int) string { // where group g stands in the log for slot
		f := groups[g].HMGet(ctx, inbox, "s"+strconv.Itoa(slot), "f").Val()
		for _, v := range f {
			if v != nil {
				return v.(string)
			}
		}
		return ""
	}
	check := func(step int) {
		t.Helper()
		for _, k := range keys {
			sl := migrate.SlotString(k)
			g := owner[sl]
			want := 0
			for _, e := range log[:idx(threshold(g, sl))] {
				if e.Cmds[0][1] == k {
					want++
				}
			}
			got, _ := groups[g].Get(ctx, k).Int()
			if got != want {
				t.Fatalf("step %d: %s in group %d holds %d increments, the log has %d through %q", step, k, g, got, want, threshold(g, sl))
			}
			if n := groups[1-g].Exists(ctx, k).Val(); n != 0 {
				t.Fatalf("step %d: %s is in group %d too", step, k, 1-g)
			}
		}
	}
	pos, gaps, lost, failovers, moves := "", 0, 0, 0, 0
	snaps := make([]map[string]dumped, 2) // per group, a copy to fail over to
	// Until a call after the log's end finds both groups there (a group that failed over
	// after the sender passed the end answers a GAP too).
	for step, settled := 0, false; !settled && step < 2000; step++ {
		from := idx(pos)
		to := min(len(log), from+1+rng.IntN(40))
		last := log[to-1].ID
		settled = from == len(log)
		answers := make([]LogApplied, 2)
		sent := true
		for g, c := range groups {
			var mine []LogEntry
			for _, e := range log[from:to] {
				if owner[e.Slot] == g {
					mine = append(mine, e)
				}
			}
			if rng.IntN(8) == 0 { // the call is lost on its way
				sent, settled = false, false
				lost++
				continue
			}
			answers[g] = applyLog(t, c, ApplyLogCall(testLog, "", pos, last, mine))
			settled = settled && !answers[g].Gap()
			if answers[g].Refused != "" && !answers[g].Gap() {
				t.Fatalf("step %d: group %d refused: %+v", step, g, answers[g])
			}
		}
		check(step)
		if sent {
			next := last
			for _, a := range answers {
				if a.Gap() {
					gaps++
				}
				if idx(a.Position) < idx(next) {
					next = a.Position
				}
			}
			pos = next
		}
		if settled {
			break
		}
		// A group fails over to a copy taken a few calls ago (its replica had missed them):
		// its entries and positions since are gone together, and its next call is a GAP.
		for g, c := range groups {
			if snaps[g] != nil && rng.IntN(6) == 0 {
				restoreAll(t, c, snaps[g])
				snaps[g] = nil
				failovers++
				check(step)
			} else if snaps[g] == nil && rng.IntN(4) == 0 {
				snaps[g] = dumpAll(t, c)
			}
		}
		if rng.IntN(10) == 0 { // the receiving DC moves a slot between its groups
			var slots []int
			for sl := range owner {
				slots = append(slots, sl)
			}
			sl := slots[rng.IntN(len(slots))]
			src, dst := owner[sl], 1-owner[sl]
			at := threshold(src, sl)
			if at == "" {
				at = "0-0"
			}
			for _, k := range append(keys, MetaKey(sl)) {
				if k == MetaKey(sl) || migrate.SlotString(k) == sl {
					groups[src].Move(ctx, k, dst)
				}
			}
			groups[src].HDel(ctx, inbox, "s"+strconv.Itoa(sl))
			if groups[dst].HGet(ctx, inbox, "f").Val() != at {
				groups[dst].HSet(ctx, inbox, "s"+strconv.Itoa(sl), at)
			}
			owner[sl] = dst
			snaps = make([]map[string]dumped, 2) // a failover after a migration is another test's
			moves++
			check(step)
		}
	}
	if idx(pos) != len(log) {
		t.Fatalf("the receiving DC stands at %q of %d entries", pos, len(log))
	}
	check(-1)
	for _, k := range keys {
		want := 0
		for _, e := range log {
			if e.Cmds[0][1] == k {
				want++
			}
		}
		if got, _ := groups[owner[migrate.SlotString(k)]].Get(ctx, k).Int(); got != want {
			t.Fatalf("%s = %d, want %d", k, got, want)
		}
	}
	if gaps == 0 || lost == 0 || failovers == 0 || moves == 0 {
		t.Fatalf("the history lacked a case: %d gaps, %d lost calls, %d failovers, %d moves", gaps, lost, failovers, moves)
	}
	t.Logf("%d gaps, %d lost calls, %d failovers, %d slot moves", gaps, lost, failovers, moves)
}

// TestLuaComparesIDsNumerically: the library's id comparison (cmpid, which APPLY's skip rests
// on) orders ids as numbers, with parts of different lengths, leading zeros and the full
// 64-bit range: an entry is skipped exactly when its id is at or below the inbox's.
func TestLuaComparesIDsNumerically(t *testing.T) {
	ctx := context.Background()
	c := client(t, testredis.Start(t))
	rng := rand.New(rand.NewPCG(5, uint64(time.Now().UnixNano())))
	part := func() string {
		switch rng.IntN(6) {
		case 0:
			return "0"
		case 1:
			return "18446744073709551615"
		case 2:
			return "00" + strconv.Itoa(rng.IntN(100))
		case 3:
			return strconv.FormatUint(rng.Uint64(), 10)
		}
		return strconv.Itoa(rng.IntN(1000))
	}
	num := func(s string) *big.Int { n, _ := new(big.Int).SetString(s, 10); return n }
	for range 300 {
		a := part() + "-" + part()
		b := part() + "-" + part()
		if rng.IntN(8) == 0 {
			b = a
		}
		am, as, _ := strings.Cut(a, "-")
		bm, bs, _ := strings.Cut(b, "-")
		want := num(bm).Cmp(num(am))
		if want == 0 {
			want = num(bs).Cmp(num(as))
		}
		c.HSet(ctx, InboxKey(slot), "dc2", a)
		res := applyBatch(t, c, "dc2", "", []WireBatch{{Slot: slot, Entries: []WireEntry{{ID: b, Cmds: WireCmds{{"SET", "{t}k", b}}}}}})
		applied := c.Get(ctx, "{t}k").Val() == b
		if applied != (want > 0) || res[0].Done != 1 {
			t.Fatalf("inbox at %s, entry %s: applied %v (%+v), want applied %v", a, b, applied, res[0], want > 0)
		}
		c.Del(ctx, "{t}k")
	}
}

// TestWriteLogThenApplyLog: WRITE in its log mode answers every write as Redis does and
// records it in the group's log (no outbox, no change feed); the log applied through
// ApplyLogFunc, in ranges, one of them sent twice, makes an identical copy.
func TestWriteLogThenApplyLog(t *testing.T) {
	ctx := context.Background()
	a, b, c := client(t, testredis.Start(t)), client(t, testredis.Start(t)), client(t, testredis.Start(t))
	runWrites(t, ctx, a, c, WriteLogArgs)
	if n := a.Exists(ctx, OutboxKey(slot), DirtyKey).Val(); n != 0 {
		t.Fatalf("WRITE in log mode wrote %d outbox or feed streams", n)
	}
	entries := logEntries(t, a)
	if len(entries) < 20 {
		t.Fatalf("the log holds %d entries", len(entries))
	}
	prev := ""
	for i := 0; i < len(entries); i += 7 {
		to := min(len(entries), i+7)
		var run []LogEntry
		for _, e := range entries[i:to] {
			run = append(run, LogEntry{Slot: slot, WireEntry: WireEntry{ID: e.ID, TS: e.TS, Cmds: e.Cmds}})
		}
		last := entries[to-1].ID
		for range 1 + i%2 { // every other range twice
			if got := applyLog(t, b, ApplyLogCall(testLog, "", prev, last, run)); got != (LogApplied{Position: last}) {
				t.Fatalf("range %d-%d: %+v", i, to, got)
			}
		}
		prev = last
	}
	if sa, sb := snapshot(t, ctx, a), snapshot(t, ctx, b); !reflect.DeepEqual(sa, sb) {
		t.Fatalf("A and B differ:\nA %v\nB %v", sa, sb)
	}
}

// logEntries returns every entry of the group log on c's server, in order.
func logEntries(t *testing.T, c *redis.Client) []Entry {
	t.Helper()
	raw, err := c.Do(context.Background(), "XRANGE", LogKey, "-", "+").Slice()
	if err != nil {
		t.Fatal(err)
	}
	entries, err := parseRange(raw)
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

// TestApplyLogMalformedEffect: an entry whose effect the Lua cannot read (a whole state whose
// expiry is no number, from a buggy or other build's peer) is counted as a failed effect and
// passed. Until session 47 its Lua error stopped the whole call with the position unmoved, and
// every retry applied the entries before it again (an increment once more each time) and never
// passed it.
func TestApplyLogMalformedEffect(t *testing.T) {
	ctx := context.Background()
	c := client(t, testredis.Start(t))
	a, b := incrEntry(1, "{a}x"), incrEntry(3, "{b}x")
	bad := LogEntry{Slot: migrate.SlotString("{a}k"), WireEntry: WireEntry{ID: "2-0", TS: "1700000000000",
		Cmds: WireCmds{{"~s", "{a}k", "", "", "v", "x"}}}}
	for try := 0; try < 2; try++ {
		got := applyLog(t, c, ApplyLogCall(testLog, "", "", "3-0", []LogEntry{a, bad, b}))
		if got.Position != "3-0" || got.Refused != "" {
			t.Fatalf("try %d: %+v", try, got)
		}
		if try == 0 && (got.Errors != 1 || !strings.Contains(got.FirstError, "not applied in full")) {
			t.Fatalf("the malformed entry is not reported: %+v", got)
		}
		if x, y := c.Get(ctx, "{a}x").Val(), c.Get(ctx, "{b}x").Val(); x != "1" || y != "1" {
			t.Fatalf("try %d: {a}x %s, {b}x %s; want each applied once", try, x, y)
		}
	}
}
