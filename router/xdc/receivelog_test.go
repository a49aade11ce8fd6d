package xdc

import (
	"context"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testredis"
)

// raiseFormat registers every node of n as running data formats up to to and raises the
// cluster's format to it, step by step, as the leader does once each node acts on the last.
func raiseFormat(t *testing.T, n *testNet, to int) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	apply := func(c fsm.Command) {
		st, err := fsm.ApplyCommand(n.st, n.st.Index+1, c)
		if err != nil {
			t.Fatal(err)
		}
		n.st = st
	}
	for _, id := range n.st.NodeIDs() {
		node := *n.st.Nodes[id]
		node.MaxFormat = to
		apply(&fsm.AddNode{Node: node})
	}
	for f := n.st.Format() + 1; f <= to; f++ {
		for _, id := range n.st.NodeIDs() {
			apply(&fsm.AckDataFormat{Node: id, Format: f - 1})
		}
		apply(&fsm.RaiseDataFormat{To: f})
	}
	if n.st.Format() != to {
		t.Fatalf("the cluster's format is %d, want %d", n.st.Format(), to)
	}
}

// TestHandleLog ships dc1's group log to dc2 through the peer call in ranges, as a shipping
// loop would go on from each answer: a range sent twice applies once, and when dc2's group
// fails over to a copy that missed two ranges (data and positions lost together) the next
// range answers a gap with the position to go back to, from which the DCs end up equal, every
// counter exact. Below the data format that writes logs, the call is refused.
func TestHandleLog(t *testing.T) {
	ctx := context.Background()
	n, dcs := startDCsWith(t, func(c *Config) { c.noLogShipping = true }, "dc1", "dc2")
	dc1, dc2 := dcs[0], dcs[1]
	peer := nodeOf{net: n, dc: dc1}
	var res LogResponse
	if err := peer.CallPeer(ctx, "peer-2", RPCLog, LogRequest{Log: testLog, Last: "1-0"}, &res); err == nil ||
		!strings.Contains(err.Error(), "data format") {
		t.Fatalf("a range below the log format: %+v %v", res, err)
	}
	raiseFormat(t, n, LogDataFormat)

	for i := range 300 {
		k := "{k" + strconv.Itoa(i%23) + "}c"
		cmd := "INCR " + k
		if i%5 == 0 {
			cmd = "SET {s" + strconv.Itoa(i%7) + "}v " + strconv.Itoa(i)
		}
		c := prepare(t, cmd)
		keys, argv := WriteLogArgs(slotString(c.Keys[0]), "dc1", 1000, false, []Call{c})
		if err := FCall(ctx, dc1.rc, WriteFunc, keys, argv...).Err(); err != nil && err != redis.Nil {
			t.Fatal(err)
		}
	}
	entries := logEntries(t, dc1.rc)
	log := LogID{DC: "dc1", Group: "g-dc1"}
	ship := func(prev string, from, to int) LogResponse {
		t.Helper()
		req := LogRequest{Log: log, Prev: prev, Last: entries[to-1].ID}
		for _, e := range entries[from:to] {
			req.Entries = append(req.Entries, LogEntry{Slot: EntrySlot(e), WireEntry: WireEntry{ID: e.ID, TS: e.TS, Cmds: e.Cmds}})
		}
		var res LogResponse
		if err := peer.CallPeer(ctx, "peer-2", RPCLog, req, &res); err != nil {
			t.Fatal(err)
		}
		return res
	}
	index := func(id string) int {
		for i, e := range entries {
			if e.ID == id {
				return i + 1
			}
		}
		t.Fatalf("position %q is no entry of the log", id)
		return 0
	}
	var snap map[string]dumped
	pos, gaps := "", 0
	for step := 0; pos != entries[len(entries)-1].ID; step++ {
		if step > 200 {
			t.Fatalf("dc2 stands at %q after %d ranges", pos, step)
		}
		from := 0
		if pos != "" {
			from = index(pos)
		}
		to := min(len(entries), from+40)
		if step == 2 {
			snap = dumpAll(t, dc2.rc)
		}
		res := ship(pos, from, to)
		if step == 1 { // the same range again: skipped
			if again := ship(pos, from, to); again.Position != res.Position || again.Gap {
				t.Fatalf("a range sent twice: %+v, then %+v", res, again)
			}
		}
		if res.Held != "" || res.Errors != 0 {
			t.Fatalf("step %d: %+v", step, res)
		}
		if res.Gap {
			gaps++
		} else if res.Position != entries[to-1].ID {
			t.Fatalf("step %d: position %q, want %q", step, res.Position, entries[to-1].ID)
		}
		pos = res.Position
		if step == 3 { // dc2's group fails over to the copy taken before step 2
			restoreAll(t, dc2.rc, snap)
		}
	}
	if gaps != 1 {
		t.Fatalf("%d gaps, want 1 (after the failover)", gaps)
	}
	if a, b := snapshot(t, ctx, dc1.rc), snapshot(t, ctx, dc2.rc); !reflect.DeepEqual(a, b) {
		t.Fatalf("the DCs differ:\ndc1 %v\ndc2 %v", a, b)
	}
	if _, err := dc2.repl.HandleLog(ctx, LogRequest{Log: log, Last: "1-0", Entries: []LogEntry{{Slot: fsm.NumSlots}}}); err == nil {
		t.Fatal("an entry of a slot out of range was taken")
	}
	// Ranges out of the log's order are refused before any group applies any of their entries
	// (the APPLY function checks each id's form, not the order): the next entries of the log
	// (not applied yet) sent out of order, after prev, past last, or with a bad id.
	before := snapshot(t, ctx, dc2.rc)
	for i := 0; i < 3; i++ {
		c := prepare(t, "INCR {k1}c")
		keys, argv := WriteLogArgs(slotString(c.Keys[0]), "dc1", 1000, false, []Call{c})
		if err := FCall(ctx, dc1.rc, WriteFunc, keys, argv...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	more := logEntries(t, dc1.rc)[len(entries):]
	if len(more) != 3 {
		t.Fatalf("%d new entries, want 3", len(more))
	}
	wire := func(es ...LogEntry) []LogEntry { return es }
	le := func(i int) LogEntry {
		e := more[i]
		return LogEntry{Slot: EntrySlot(e), WireEntry: WireEntry{ID: e.ID, TS: e.TS, Cmds: e.Cmds}}
	}
	bad := le(1)
	bad.ID = "x-1"
	// A handoff between them whose id is no stream id: APPLY compares it, and stopped there
	// having applied the entry before it.
	badHandoff := LogEntry{WireEntry: WireEntry{ID: more[1].ID, Cmds: WireCmds{{HandoffCmd, "g9", "x"}}}}
	// An entry sent for another slot than its key's: APPLY takes the slot as given (its
	// metadata, copy lock, migration hold), and wrote the key where its slot's state is not.
	misplaced := le(1)
	misplaced.Slot = (misplaced.Slot + 1) % fsm.NumSlots
	top, end := pos, more[2].ID
	for _, req := range []LogRequest{
		{Log: log, Prev: top, Last: end, Entries: wire(le(0), misplaced, le(2))},    // a key outside its entry's slot
		{Log: log, Prev: top, Last: end, Entries: wire(le(0), le(2), le(1))},        // out of order
		{Log: log, Prev: top, Last: end, Entries: wire(le(1), le(0), le(2))},        // the first before the second
		{Log: log, Prev: more[1].ID, Last: end, Entries: wire(le(0), le(2))},        // an entry at or before prev
		{Log: log, Prev: top, Last: more[1].ID, Entries: wire(le(0), le(1), le(2))}, // past last
		{Log: log, Prev: top, Last: end, Entries: wire(le(0), bad, le(2))},          // not a stream id
		{Log: log, Prev: "7", Last: end, Entries: wire(le(0), le(1), le(2))},        // prev not a stream id
		{Log: log, Prev: top, Last: end, Entries: wire(le(0), badHandoff, le(2))},   // a handoff's id not a stream id
	} {
		if res, err := dc2.repl.HandleLog(ctx, req); err == nil {
			t.Fatalf("a range out of order was taken: %+v", res)
		}
	}
	if after := snapshot(t, ctx, dc2.rc); !reflect.DeepEqual(before, after) {
		t.Fatalf("a refused range changed dc2:\nbefore %v\nafter %v", before, after)
	}
	// In order, the same entries apply.
	res, err := dc2.repl.HandleLog(ctx, LogRequest{Log: log, Prev: top, Last: end, Entries: wire(le(0), le(1), le(2))})
	if err != nil || res.Position != end {
		t.Fatalf("the range in order: %+v %v", res, err)
	}
	if a, b := snapshot(t, ctx, dc1.rc), snapshot(t, ctx, dc2.rc); !reflect.DeepEqual(a, b) {
		t.Fatalf("the DCs differ:\ndc1 %v\ndc2 %v", a, b)
	}
}

// dumped is a key's DUMP and time to live (0: none), as a replica would hold it.
type dumped struct {
	dump string
	ttl  time.Duration
}

// dumpAll returns every key of c's database, its DUMP and its time to live.
func dumpAll(t *testing.T, c *redis.Client) map[string]dumped {
	t.Helper()
	out := map[string]dumped{}
	for _, k := range c.Keys(context.Background(), "*").Val() {
		d := dumped{dump: c.Dump(context.Background(), k).Val()}
		if ttl := c.PTTL(context.Background(), k).Val(); ttl > 0 {
			d.ttl = ttl
		}
		out[k] = d
	}
	return out
}

// restoreAll makes c's database hold exactly snap (dumpAll's), each key with its time to
// live (a lock a copy held on the old master expires on the new one too).
func restoreAll(t *testing.T, c *redis.Client, snap map[string]dumped) {
	t.Helper()
	ctx := context.Background()
	if err := c.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	for k, v := range snap {
		if err := c.Restore(ctx, k, v.ttl, v.dump).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLogCut: a range ends before the first entry of a slot left out (a migration or failover
// here), with the id before it as its last; a heartbeat or a handoff (slot 0, no key) ends
// nothing.
// TestHandleLogHeldAtItsStart: a range from the log's start whose first entry's slot is in a
// migration or failover here is held, not failed (with nothing applied there is no id to stand
// at, and APPLY refused the empty one as an error), and applied once the slot is served again.
func TestHandleLogHeldAtItsStart(t *testing.T) {
	ctx := context.Background()
	slot := slotString("{h}k")
	var held atomic.Bool
	var skipped atomic.Int32
	held.Store(true)
	n, dcs := startDCsWith(t, func(c *Config) {
		c.noLogShipping = true
		if node := c.Local.(nodeOf); node.dc.name == "dc2" {
			c.Local = heldSlot{Local: node, slot: slot, held: &held, skipped: &skipped}
		}
	}, "dc1", "dc2")
	dc1, dc2 := dcs[0], dcs[1]
	raiseFormat(t, n, LogDataFormat)
	c := prepare(t, "SET {h}k v")
	keys, argv := WriteLogArgs(slot, "dc1", 1000, false, []Call{c})
	if err := FCall(ctx, dc1.rc, WriteFunc, keys, argv...).Err(); err != nil {
		t.Fatal(err)
	}
	entries := logEntries(t, dc1.rc)
	e := entries[len(entries)-1]
	req := LogRequest{Log: LogID{DC: "dc1", Group: "g-dc1"}, Last: e.ID,
		Entries: []LogEntry{{Slot: EntrySlot(e), WireEntry: WireEntry{ID: e.ID, TS: e.TS, Cmds: e.Cmds}}}}
	peer := nodeOf{net: n, dc: dc1}
	var res LogResponse
	if err := peer.CallPeer(ctx, "peer-2", RPCLog, req, &res); err != nil {
		t.Fatalf("a range held at its first entry: %v", err)
	}
	if res.Held == "" || res.Position != "" || skipped.Load() == 0 {
		t.Fatalf("a range held at its first entry: %+v (held %d times)", res, skipped.Load())
	}
	if dc2.rc.Exists(ctx, "{h}k").Val() != 0 {
		t.Fatal("the held entry was applied")
	}
	held.Store(false)
	res = LogResponse{}
	if err := peer.CallPeer(ctx, "peer-2", RPCLog, req, &res); err != nil || res.Held != "" || res.Position != e.ID {
		t.Fatalf("the range again, the slot served: %+v, %v", res, err)
	}
	if v := dc2.rc.Get(ctx, "{h}k").Val(); v != "v" {
		t.Fatalf("dc2 {h}k = %q", v)
	}
}

func TestLogCut(t *testing.T) {
	set := WireCmds{{"SET", "k", "v"}}
	req := LogRequest{Prev: "1-0", Last: "9-0", Entries: []LogEntry{
		{Slot: 5, WireEntry: WireEntry{ID: "2-0", Cmds: set}}, {Slot: 7, WireEntry: WireEntry{ID: "3-0", Cmds: set}}, {Slot: 5, WireEntry: WireEntry{ID: "4-0", Cmds: set}}}}
	slots := []int{5, 7}
	if last, es, why := logCut(req, slots, nil); last != "9-0" || len(es) != 3 || why != "" {
		t.Fatalf("nothing left out: %s %v %q", last, es, why)
	}
	if last, es, why := logCut(req, slots, []int{1}); last != "2-0" || len(es) != 1 || why == "" {
		t.Fatalf("slot 7 left out: %s %v %q", last, es, why)
	}
	if last, es, _ := logCut(req, slots, []int{0}); last != "1-0" || len(es) != 0 {
		t.Fatalf("slot 5 left out: %s %v", last, es)
	}
	// Slot 0 left out: its heartbeat and handoff entries (slot 0 too) pass, its write does not.
	req.Entries = []LogEntry{{WireEntry: WireEntry{ID: "2-0"}}, {WireEntry: WireEntry{ID: "3-0", Cmds: WireCmds{{HandoffCmd, "g2", "1-5"}}}},
		{WireEntry: WireEntry{ID: "4-0", Cmds: set}}}
	if last, es, _ := logCut(req, []int{0}, []int{0}); last != "3-0" || len(es) != 2 {
		t.Fatalf("slot 0 left out: %s %v", last, es)
	}
}

// TestLogShipping runs dc1's group log shipper to dc2 while dc1 writes through WRITE's log
// mode: through dc2 being unreachable for a while, and the shipper stopped and started again
// (it learns dc2's position from dc2), dc2 ends equal to dc1 with every counter exact, and
// the log is trimmed to what dc2 applied. A log trimmed past dc2's position is not shipped
// from: the shipper reports that it is behind.
func TestLogShipping(t *testing.T) {
	ctx := context.Background()
	n, dcs := startDCsWith(t, func(c *Config) { c.noLogShipping = true }, "dc1", "dc2")
	dc1, dc2 := dcs[0], dcs[1]
	raiseFormat(t, n, LogDataFormat)
	start := func() (*logGroup, func()) {
		g := newLogGroup(dc1.repl, dc1.rc, LogID{DC: "dc1", Group: "g-dc1"}, 0, []string{"dc2"}, 20*time.Millisecond)
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); g.run(cctx) }()
		return g, func() { cancel(); <-done }
	}
	write := func(from, to int) {
		for i := from; i < to; i++ {
			writeLogRetrying(t, dc1.rc, "dc1", prepare(t, "INCR {k"+strconv.Itoa(i%17)+"}c"))
		}
	}
	equal := func(what string) { t.Helper(); waitSameData(t, dc1.rc, dc2.rc, what) }
	_, stop := start()
	write(0, 200)
	equal("shipping")
	dc2.down.Store(true)
	write(200, 400)
	dc2.down.Store(false)
	equal("after dc2 was unreachable")
	stop()
	write(400, 600)
	_, stop = start()
	equal("after the shipper started again")
	for i := range 17 { // 600 increments over 17 counters, each exactly once
		want := 600 / 17
		if i < 600%17 {
			want++
		}
		if got, _ := dc2.rc.Get(ctx, "{k"+strconv.Itoa(i)+"}c").Int(); got != want {
			t.Fatalf("{k%d}c = %d in dc2, want %d", i, got, want)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for dc1.rc.XLen(ctx, LogKey).Val() > 20 { // trimmed to dc2's position, heartbeats since
		if time.Now().After(deadline) {
			t.Fatalf("the log holds %d entries after dc2 applied them", dc1.rc.XLen(ctx, LogKey).Val())
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()

	// dc2 is away while the log is cut short past its position: the group is copied to it
	// in full (groupcopy.go), and shipping goes on from there.
	dc2.down.Store(true)
	g, stop := start()
	defer stop()
	write(600, 650)
	if err := dc1.rc.XTrimMaxLen(ctx, LogKey, 0).Err(); err != nil {
		t.Fatal(err)
	}
	write(650, 660)
	if err := dc2.rc.Set(ctx, "{k3}stale", "only in dc2", 0).Err(); err != nil { // not in dc1: the copy removes it
		t.Fatal(err)
	}
	dc2.down.Store(false)
	equal("after the group's full copy")
	write(660, 700)
	equal("shipping after the copy")
	for i := range 17 {
		want := 700 / 17
		if i < 700%17 {
			want++
		}
		if got, _ := dc2.rc.Get(ctx, "{k"+strconv.Itoa(i)+"}c").Int(); got != want {
			t.Fatalf("{k%d}c = %d in dc2, want %d", i, got, want)
		}
	}
	if c := dc1.repl.counter("dc2").copied.Load(); c != fsm.NumSlots {
		t.Fatalf("%d slots copied, want every slot of the group (%d)", c, fsm.NumSlots)
	}
	if g.shippers[0].behind.Load() {
		t.Fatal("the shipper still finds dc2 behind the log")
	}
}

// TestRunShipsGroupLogs: at the data format with group logs, Run ships each group's log (the
// node owning the group's shipping slot does), so writes recorded there reach the other DC.
func TestRunShipsGroupLogs(t *testing.T) {
	ctx := context.Background()
	n, dcs := startDCs(t, "dc1", "dc2")
	dc1, dc2 := dcs[0], dcs[1]
	raiseFormat(t, n, LogDataFormat)
	for _, d := range dcs {
		d.repl.Notify(n.State())
	}
	for i := range 100 {
		c := prepare(t, "INCR {k"+strconv.Itoa(i%9)+"}c")
		keys, argv := WriteLogArgs(slotString(c.Keys[0]), "dc1", 1000, false, []Call{c})
		if err := FCall(ctx, dc1.rc, WriteFunc, keys, argv...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	waitSameData(t, dc1.rc, dc2.rc, "after 100 writes")
	if a := snapshot(t, ctx, dc1.rc); len(a) != 9 {
		t.Fatalf("dc1 holds %d keys, want 9: %v", len(a), a)
	}
}

// TestLogToADCWithUnassignedSlots: a receiving DC whose slots are not all assigned yet (a DC
// being set up, slots given out a range at a time) applies the ranges of the slots it serves.
// Its unassigned slots made HandleLog take them for a group it could not reach, and hold
// every range of every log at its start.
func TestLogToADCWithUnassignedSlots(t *testing.T) {
	ctx := context.Background()
	n, dcs := startDCs(t, "dc1", "dc2")
	dc1, dc2 := dcs[0], dcs[1]
	raiseFormat(t, n, LogDataFormat)
	n.mu.Lock()
	st := n.st.Clone()
	st.Index++
	for s := fsm.NumSlots / 2; s < fsm.NumSlots; s++ {
		st.DCs["dc2"].Slots[s] = ""
	}
	n.st = st
	n.mu.Unlock()
	for _, d := range dcs {
		d.repl.Notify(n.State())
	}
	var keys []string
	for i := 0; len(keys) < 20; i++ {
		if k := "{u" + strconv.Itoa(i) + "}c"; slotString(k) < fsm.NumSlots/2 {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		c := prepare(t, "INCR "+k)
		wk, argv := WriteLogArgs(slotString(k), "dc1", 1000, false, []Call{c})
		if err := FCall(ctx, dc1.rc, WriteFunc, wk, argv...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range keys {
		waitEqual(t, []*testDC{dc2}, 10*time.Second, k, stateOf(k), "string 1")
	}
	// The data alone does not tell: a range held at its start is sent again and applied once.
	// dc2 must answer past the last write, or the log is never trimmed and DC_EACH_SAFE_QUORUM
	// never answered.
	last, err := dc1.rc.XRevRangeN(ctx, LogKey, "+", "-", 1).Result()
	if err != nil || len(last) != 1 {
		t.Fatalf("dc1's log: %v %v", last, err)
	}
	if err := dc1.repl.Await(ctx, 0, slotString(keys[len(keys)-1]), "g-dc1", last[0].ID, 10*time.Second); err != nil {
		t.Fatalf("dc2 never answered past the last write: %v", err)
	}
}

// TestLogRequestBinary: a LogRequest survives its binary form (binary-safe effects, heartbeats
// without effects), and a truncated one is refused.
func TestLogRequestBinary(t *testing.T) {
	req := LogRequest{Log: LogID{DC: "dc1", Group: "g1"}, DB: 3, Prev: "1-0", Last: "9-2", Entries: []LogEntry{
		{Slot: 12, WireEntry: WireEntry{ID: "2-0", TS: "8192", Cmds: WireCmds{{"~s", "k", "", "", "v\x00\xff", "-1"}}}},
		{Slot: 0, WireEntry: WireEntry{ID: "9-2"}},
	}}
	bin := EncodeLog(req)
	got, err := DecodeLog(bin)
	if err != nil || !reflect.DeepEqual(got, req) {
		t.Fatalf("decoded %+v %v, want %+v", got, err, req)
	}
	for i := range len(bin) - 1 {
		if _, err := DecodeLog(bin[:i]); err == nil {
			t.Fatalf("a request cut at %d bytes was decoded", i)
		}
	}
}

// TestLogCallsChunked: a group's run longer than applyChunk goes as calls of applyChunk
// entries, each from the last one's end; applied in order they are the range, and a call
// refused (another's copy lock) is the group's answer, not the gaps of the calls after it.
func TestLogCallsChunked(t *testing.T) {
	ctx := context.Background()
	c := client(t, testredis.Start(t))
	if err := LoadLibrary(ctx, c); err != nil {
		t.Fatal(err)
	}
	var run []LogEntry
	for i := 1; i <= 2*applyChunk+5; i++ {
		run = append(run, incrEntry(i, "{a}x"))
	}
	run[applyChunk+3] = incrEntry(applyChunk+4, "{b}x")
	lock := CopyLockKey(run[applyChunk+3].Slot)
	c.Set(ctx, lock, "in:dc3:other", time.Minute)
	send := func(prev string) LogApplied {
		calls := logCalls(testLog, prev, "999-0", run)
		if len(calls) != 3 {
			t.Fatalf("%d calls for %d entries", len(calls), len(run))
		}
		var replies [][]byte
		for _, call := range calls {
			v, err := c.Do(ctx, toAny(call)...).Result()
			if err != nil {
				t.Fatal(err)
			}
			replies = append(replies, encodeReply(nil, v))
		}
		a, err := groupAnswer(replies)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	a := send("")
	if a.Gap() || !strings.HasPrefix(a.Refused, "TRYAGAIN") || a.Position != run[applyChunk+2].ID {
		t.Fatalf("a chunk under a copy lock: %+v", a)
	}
	c.Del(ctx, lock)
	if a = send(""); a.Refused != "" || a.Position != "999-0" {
		t.Fatalf("sent again: %+v", a)
	}
	if got, _ := c.Get(ctx, "{a}x").Int(); got != len(run)-1 || c.Get(ctx, "{b}x").Val() != "1" {
		t.Fatalf("{a}x = %d, {b}x = %s", got, c.Get(ctx, "{b}x").Val())
	}
}

// TestEntrySlot: an entry of a group log is shipped with the slot of its keys.
func TestEntrySlot(t *testing.T) {
	for _, c := range []struct {
		cmds WireCmds
		want int
	}{
		{WireCmds{{"~s", "{u}k", "", "", "v", "-1"}}, slotString("{u}")},
		{WireCmds{{"~c", "{v}k", "1", "-1"}, {"~s", "{v}j", "", "", "v", "-1"}}, slotString("{v}")},
		{WireCmds{{"LPUSH", "{w}l", "a"}}, slotString("{w}")},
		{WireCmds{{"EVAL", "return 1", "1", "{x}k"}}, slotString("{x}")},
		{nil, 0}, // a heartbeat
	} {
		if got := EntrySlot(Entry{Cmds: c.cmds}); got != c.want {
			t.Errorf("EntrySlot(%q) = %d, want %d", c.cmds, got, c.want)
		}
	}
}

// TestLogShippingAcrossSourceFailover: when dc1's group fails over to a replica that had
// received everything dc2 applied, shipping goes on from the new master's log (the old log
// through dc2's position, then the new master's writes): dc2 ends equal, every counter
// exact; also when the replica lacks heartbeats dc2 applied, and nothing else. When it fails
// over to a replica that lacks entries dc2 applied, the new master's log does not hold dc2's
// position: the shipper counts the writes lost and copies the group to dc2 in full, which
// then holds what dc1 holds.
func TestLogShippingAcrossSourceFailover(t *testing.T) {
	ctx := context.Background()
	n, dcs := startDCsWith(t, func(c *Config) { c.noLogShipping = true }, "dc1", "dc2")
	dc1, dc2 := dcs[0], dcs[1]
	raiseFormat(t, n, LogDataFormat)
	start := func(c *redis.Client) (*logGroup, func()) {
		g := newLogGroup(dc1.repl, c, LogID{DC: "dc1", Group: "g-dc1"}, 0, []string{"dc2"}, 20*time.Millisecond)
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); g.run(cctx) }()
		return g, func() { cancel(); <-done }
	}
	write := func(c *redis.Client, from, to int) {
		for i := from; i < to; i++ {
			call := prepare(t, "INCR {k"+strconv.Itoa(i%7)+"}c")
			keys, argv := WriteLogArgs(slotString(call.Keys[0]), "dc1", 1000, false, []Call{call})
			err := FCall(ctx, c, WriteFunc, keys, argv...).Err()
			for err != nil && strings.HasPrefix(err.Error(), "TRYAGAIN") { // the slot is being copied to dc2
				time.Sleep(time.Millisecond)
				err = FCall(ctx, c, WriteFunc, keys, argv...).Err()
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	equal := func(src *redis.Client, what string) {
		t.Helper()
		waitSameData(t, src, dc2.rc, what)
	}
	counters := func(c *redis.Client) string {
		var out []string
		for i := range 7 {
			out = append(out, c.Get(ctx, "{k"+strconv.Itoa(i)+"}c").Val())
		}
		return strings.Join(out, ",")
	}
	_, stop := start(dc1.rc)
	write(dc1.rc, 0, 100)
	equal(dc1.rc, "before the failover")
	// A replica with everything: the promoted master's log goes on after the old one's. (The
	// old master stops first: a heartbeat it logged and shipped after the copy would be an
	// entry dc2 applied that the replica lacks, which the shipper must not ship past.)
	stop()
	replica := client(t, testredis.Start(t))
	restoreAll(t, replica, dumpAll(t, dc1.rc))
	_, stop = start(replica)
	write(replica, 100, 200)
	equal(replica, "after a failover that lost nothing")
	if got, want := counters(dc2.rc), strings.Repeat("29,", 4)+"28,28,28"; got != want {
		t.Fatalf("dc2's counters %s, want %s", got, want)
	}
	// A replica that lacks only heartbeats dc2 applied (the old master logged and shipped
	// them after the replica's last sync): nothing was lost, and shipping goes on.
	beats := client(t, testredis.Start(t))
	restoreAll(t, beats, dumpAll(t, replica))
	copied, err := beats.XInfoStream(ctx, LogKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	inbox := LogInboxKey(LogID{DC: "dc1", Group: "g-dc1"})
	deadline := time.Now().Add(10 * time.Second)
	for CompareIDs(dc2.rc.HGet(ctx, inbox, "f").Val(), copied.LastGeneratedID) <= 0 {
		if time.Now().After(deadline) {
			t.Fatal("dc2 applied no heartbeat after the replica's copy")
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	stop()
	g, stop := start(beats)
	write(beats, 200, 300)
	equal(beats, "after a failover that lost heartbeats only")
	if got, want := counters(dc2.rc), strings.Repeat("43,", 6)+"42"; got != want || g.shippers[0].behind.Load() {
		t.Fatalf("dc2's counters %s, want %s; shipper behind: %v", got, want, g.shippers[0].behind.Load())
	}
	// A replica that missed the last 50 writes, which dc2 applied (and a string's newer value:
	// its stamp in dc2 is then newer than the new master's, but the write is dc1's, lost).
	setString := func(c *redis.Client, v string) {
		call := prepare(t, "SET {s}v "+v)
		keys, argv := WriteLogArgs(slotString("{s}v"), "dc1", 1000, false, []Call{call})
		if err := FCall(ctx, c, WriteFunc, keys, argv...).Err(); err != nil && !errors.Is(err, redis.Nil) {
			t.Fatal(err)
		}
	}
	setString(beats, "kept")
	late := client(t, testredis.Start(t))
	restoreAll(t, late, dumpAll(t, beats))
	setString(beats, "lost")
	write(beats, 300, 350)
	equal(beats, "before the third failover")
	before := counters(dc2.rc)
	stop()
	g, stop = start(late)
	defer stop()
	write(late, 350, 360)
	// The shipper finds dc2's position missing from the new master's log and copies the group
	// to dc2 in full: dc2 ends equal to the new master, the 50 lost writes lost in both DCs.
	equal(late, "after a failover that lost entries dc2 applied")
	if got := counters(dc2.rc); got == before {
		t.Fatalf("dc2's counters stayed at %s: the 50 writes the new master lost were kept in dc2", got)
	}
	write(late, 360, 400)
	equal(late, "shipping after the copy")
	if g.shippers[0].behind.Load() {
		t.Fatal("the shipper still finds dc2 behind the log after the copy")
	}
	// The 51 writes dc2 applied that the new master lacks are counted, once.
	if n := dc1.repl.counter("dc2").lost.Load(); n != 51 {
		t.Errorf("%d entries counted lost on the failover, want 51", n)
	}
}

// TestLogWaitsForTheOutboxes: when the format is raised to group logs while a destination is
// away and the slots' outboxes hold writes it has not applied, the log's later writes of the
// same list reach it only after those: at every moment the destination's list is a prefix of
// the source's (writes recorded as commands, without convergence, so order is all there is).
func TestLogWaitsForTheOutboxes(t *testing.T) {
	ctx := context.Background()
	n, dcs := startDCs(t, "dc1", "dc2")
	dc1, dc2 := dcs[0], dcs[1]
	push := func(from, to int) {
		for i := from; i <= to; i++ {
			c := prepare(t, "RPUSH {l}l "+strconv.Itoa(i))
			c.Plan, _, _ = strings.Cut(c.Plan, "/") // convergence off: the command as it is
			if err := dc1.writeCmd(slotString("{l}l"), c).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	dc2.down.Store(true)
	push(1, 30)
	raiseFormat(t, n, LogDataFormat)
	for _, d := range dcs {
		d.repl.Notify(n.State())
	}
	push(31, 60)
	if n, err := dc1.rc.XLen(ctx, LogKey).Result(); err != nil || n < 30 {
		t.Fatalf("the log holds %d entries (%v): the later writes did not go to it", n, err)
	}
	dc2.down.Store(false)
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := dc2.rc.LRange(ctx, "{l}l", 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range got {
			if v != strconv.Itoa(i+1) {
				t.Fatalf("dc2's list %v is not a prefix of dc1's 1..60", got)
			}
		}
		if len(got) == 60 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dc2's list has %d of 60 elements", len(got))
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
	if n, err := dc1.rc.Exists(ctx, drainedKey("dc2")).Result(); err != nil || n != 1 {
		t.Errorf("no record that dc2 applied dc1's outboxes (%d, %v)", n, err)
	}
}

// TestStoppedLogHoldsNoLock: a group log stopped while its shipper is in a call that ignores
// its context (a destination taking seconds to answer) does not hold the replicator's lock
// until the call ends: the status report answers at once. The log started in its place waits
// for the old one to end (never two calls of one log to a DC at once), then ships.
func TestStoppedLogHoldsNoLock(t *testing.T) {
	ctx := context.Background()
	n, dcs := startDCs(t, "dc1", "dc2")
	dc1, dc2 := dcs[0], dcs[1]
	raiseFormat(t, n, LogDataFormat)
	get := func(d *testDC) (string, error) { return d.rc.Get(ctx, "{a}k").Result() }
	dc1.write(t, "SET", "{a}k", "1")
	waitEqual(t, dcs, 10*time.Second, "{a}k", get, "1")

	held, release := make(chan struct{}), make(chan struct{})
	var inFlight, most atomic.Int32
	var once sync.Once
	dc2.answered.Store(func(name string) {
		if name == RPCLog {
			if c := inFlight.Add(1); c > most.Load() {
				most.Store(c)
			}
			once.Do(func() { close(held) })
			<-release
			inFlight.Add(-1)
		}
	})
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	dc1.write(t, "SET", "{a}k", "2")
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("dc1's shipper made no call to dc2")
	}
	// A third DC: every log's destinations change, so dc1's log is stopped and started again.
	n.mu.Lock()
	for _, c := range []fsm.Command{
		&fsm.AddNode{Node: fsm.Node{ID: "n9", DC: "dc3", Peer: "peer-9", Listen: "lpeer-9", Admin: "apeer-9", MaxFormat: LogDataFormat}},
		&fsm.AddGroup{DC: "dc3", Group: fsm.Group{ID: "g-dc3", Master: "127.0.0.1:1"}},
	} {
		st, err := fsm.ApplyCommand(n.st, n.st.Index+1, c)
		if err != nil {
			n.mu.Unlock()
			t.Fatal(err)
		}
		n.st = st
	}
	n.mu.Unlock()
	dc1.repl.Notify(nil)
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
		done := make(chan struct{})
		go func() { defer close(done); dc1.repl.Report() }()
		select {
		case <-done:
		case <-time.After(time.Second):
			t.Fatal("the status report waited more than a second for the stopped log's call")
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	released = true
	close(release)
	dc1.write(t, "SET", "{a}k", "3")
	waitEqual(t, dcs, 10*time.Second, "{a}k after the log started again", get, "3")
	if m := most.Load(); m != 1 {
		t.Fatalf("%d calls of dc1's log to dc2 at once, want 1", m)
	}
}

// TestTwoShippersOfOneLog: two nodes of dc1 ship the same group log to dc2 for a while (the
// ring's owner of the group's shipping slot moves while pings fail). One of them cannot reach
// dc2 while the other ships on and trims the log past the position the first one last had
// answered. Back, the first finds dc2's real position in the log and ships on from there: no
// full copy of the group (before, it took the trimmed position for dc2 being behind the log
// and copied the group, again and again, while the other node kept trimming). Every
// increment is in dc2 exactly once.
func TestTwoShippersOfOneLog(t *testing.T) {
	ctx := context.Background()
	n, dcs := startDCsWith(t, func(c *Config) { c.noLogShipping = true }, "dc1", "dc2")
	dc1, dc2 := dcs[0], dcs[1]
	raiseFormat(t, n, LogDataFormat)
	// The second node of dc1: its own replicator over the same cluster and masters, and its
	// own link to dc2 (down cuts its calls only).
	other := &testDC{name: "dc1", node: "n1b", redis: dc1.redis, rc: dc1.rc}
	c := nodeOf{net: n, dc: other}
	other.repl = New(Config{Cluster: c, Peers: c, Local: c, Heartbeat: 100 * time.Millisecond, Block: 200 * time.Millisecond,
		OutboxScan: 200 * time.Millisecond, CollectEvery: 100 * time.Millisecond, TombstoneMargin: time.Millisecond,
		noLogShipping: true, Logger: testLogger.With("dc", "dc1", "node", "n1b")})
	log := LogID{DC: "dc1", Group: "g-dc1"}
	// Whether a shipper ever took dc2 for behind the log (it copies the group then).
	var behind atomic.Bool
	ship := func(r *Replicator) {
		g := newLogGroup(r, dc1.rc, log, 0, []string{"dc2"}, 20*time.Millisecond)
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); g.run(cctx) }()
		go func() {
			for cctx.Err() == nil {
				if g.shippers[0].behind.Load() {
					behind.Store(true)
				}
				time.Sleep(time.Millisecond) // poll interval
			}
		}()
		t.Cleanup(func() { cancel(); <-done })
	}
	total := 0
	write := func(n int) {
		for i := 0; i < n; i++ {
			writeLogRetrying(t, dc1.rc, "dc1", prepare(t, "INCR {k"+strconv.Itoa(total%13)+"}c"))
			total++
		}
	}
	converged := func(what string) { t.Helper(); waitSameData(t, dc1.rc, dc2.rc, what) }
	ship(dc1.repl)
	ship(other.repl)
	write(100)
	converged("both nodes shipping")
	other.down.Store(true)
	// dc2's inbox before the writes that only the first node ships: the position the second
	// node last had answered is at or below it.
	stale := dc2.rc.HGet(ctx, LogInboxKey(log), "f").Val()
	write(300)
	converged("one node shipping")
	deadline := time.Now().Add(10 * time.Second)
	for len(dc1.rc.XRangeN(ctx, LogKey, stale, stale, 1).Val()) != 0 { // trimmed past it
		if time.Now().After(deadline) {
			t.Fatalf("the log still holds %s after dc2 applied past it", stale)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	before := other.repl.counter("dc2").shipped.Load()
	other.down.Store(false)
	write(100)
	converged("both nodes shipping again")
	// The second node's shipper is past its check once it has shipped a range again.
	deadline = time.Now().Add(10 * time.Second)
	for other.repl.counter("dc2").shipped.Load() == before {
		if time.Now().After(deadline) {
			t.Fatal("the second node ships nothing to dc2 any more")
		}
		write(1)
		time.Sleep(20 * time.Millisecond) // poll interval
	}
	converged("after the second node shipped again")
	if behind.Load() {
		t.Errorf("a shipper took dc2 for behind the log and copied the group in full, while dc2 never was")
	}
	for i := range 13 {
		want := total / 13
		if i < total%13 {
			want++
		}
		if got, _ := dc2.rc.Get(ctx, "{k"+strconv.Itoa(i)+"}c").Int(); got != want {
			t.Fatalf("{k%d}c = %d in dc2, want %d", i, got, want)
		}
	}
}

// waitSameData polls until servers a and b hold the same data (keys, values, expiries; not
// redraft's own keys), failing the test after 20 s. A key that goes between a listing and its
// read (a full copy replacing the slot) makes that poll a miss, not a failure.
func waitSameData(t *testing.T, a, b *redis.Client, what string) {
	t.Helper()
	if da, db, ok := sameDataWithin(a, b, 20*time.Second); !ok {
		t.Fatalf("%s: the DCs still differ:\ndc1 %v\ndc2 %v", what, da, db)
	}
}

// sameDataWithin polls until servers a and b hold the same data, for at most d; it returns
// their last reads and whether they were the same.
func sameDataWithin(a, b *redis.Client, d time.Duration) (da, db map[string]string, ok bool) {
	ctx := context.Background()
	deadline := time.Now().Add(d)
	for {
		da, aerr := snapshotNow(ctx, a)
		db, berr := snapshotNow(ctx, b)
		if aerr == nil && berr == nil && reflect.DeepEqual(da, db) {
			return da, db, true
		}
		if time.Now().After(deadline) {
			return da, db, false
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}

// writeLogRetrying runs c through WRITE into the group's log on c's server in DC dc, again
// while it answers TRYAGAIN (a full copy holds the slot's copy lock), as the router does for
// a client; it fails the test on any other error or after 30 s of TRYAGAIN.
func writeLogRetrying(t *testing.T, rc *redis.Client, dc string, c Call) {
	t.Helper()
	keys, argv := WriteLogArgs(slotString(c.Keys[0]), dc, 1000, false, []Call{c})
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := FCall(context.Background(), rc, WriteFunc, keys, argv...).Err()
		if err == nil {
			return
		}
		if !strings.HasPrefix(err.Error(), "TRYAGAIN") || time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond) // the router's retry pace, not synchronisation
	}
}
