package xdc

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/internal/testredis"
)

// TestShipFromFeed: the entries the change feed carries ship without the source's outboxes
// being read, and those it does not carry (larger than feedDataMax, among small ones on the
// same slot) are read from the outbox in their place: the destination's list holds every push
// in order, and its keys every write, exactly once.
func TestShipFromFeed(t *testing.T) {
	_, dcs := startDCs(t, "a", "b")
	a, b := dcs[0], dcs[1]
	ctx := context.Background()
	a.write(t, "SET", "warm", "up")
	waitEqual(t, dcs, 10*time.Second, "warm", stateOf("warm"), "string up")
	xranges := func() float64 {
		return testredis.CommandStat(a.rc.Info(ctx, "commandstats").Val(), "xrange", "calls")
	}
	before := xranges()
	const n = 300
	for i := range n {
		a.write(t, "SET", fmt.Sprintf("feed:%d", i), fmt.Sprint(i))
	}
	var want []string
	for i := range 40 {
		v := fmt.Sprintf("small-%d", i)
		if i%4 == 3 {
			v = fmt.Sprintf("big-%d-%s", i, strings.Repeat("x", 2000)) // not carried
		}
		a.write(t, "RPUSH", "{l}list", v)
		want = append(want, v)
	}
	for i := range n {
		waitEqual(t, []*testDC{b}, 10*time.Second, "feed key", stateOf(fmt.Sprintf("feed:%d", i)), "string "+fmt.Sprint(i))
	}
	waitEqual(t, []*testDC{b}, 10*time.Second, "list", stateOf("{l}list"), fmt.Sprintf("list %v", want))
	// Read per slot, every write (300 slots) would cost an XRANGE; from the feed, only the
	// large pushes (10), the heartbeats (one slot every 100 ms) and what raced them do.
	if d := xranges() - before; d > n/3 {
		t.Fatalf("%v XRANGEs on the source for %d writes on %d slots: the feed's entries were not shipped", d, n+40, n+1)
	}
	if v, err := b.rc.LLen(ctx, "{l}list").Result(); err != nil || v != int64(len(want)) {
		t.Fatalf("list length in b: %d %v", v, err)
	}
}

// TestFeedEntryParse: a carried entry reads back as its outbox entry; a bare one names its
// outbox only; a carried one with a bad body still names its outbox.
func TestFeedEntryParse(t *testing.T) {
	f, err := ParseFeedEntry([]string{"o", "ob", "p", "1-1", "i", "2-0", "dc", "a", "t", "7", "n", "1", "3", "SET", "k", "v"})
	if err != nil || !f.Carried || f.Prev != "1-1" || f.Entry.ID != "2-0" || f.Entry.DC != "a" || f.Entry.TS != "7" ||
		fmt.Sprint(f.Entry.Cmds) != "[[SET k v]]" {
		t.Fatalf("carried: %+v %v", f, err)
	}
	if f, err := ParseFeedEntry([]string{"o", "ob"}); err != nil || f.Carried || f.Outbox != "ob" {
		t.Fatalf("bare: %+v %v", f, err)
	}
	if f, err := ParseFeedEntry([]string{"o", "ob", "p", "", "i", "2-0", "dc", "a", "n", "9"}); err == nil || f.Outbox != "ob" {
		t.Fatalf("bad body: %+v %v", f, err)
	}
	if _, err := ParseFeedEntry([]string{"x"}); err == nil {
		t.Fatal("no outbox: no error")
	}
}

// TestPlainSetRecordsItsValue: a plain SET records the value it set without reading it back,
// and what it records still clears the key's expiry and replaces another type, in every DC.
func TestPlainSetRecordsItsValue(t *testing.T) {
	_, dcs := startDCs(t, "a", "b")
	a, b := dcs[0], dcs[1]
	ctx := context.Background()
	ttl := func(d *testDC) (string, error) {
		v, err := d.rc.PTTL(ctx, "{p}k").Result()
		if v > 0 {
			return "expires", err
		}
		return fmt.Sprint(int64(v)), err // -1: no expiry (go-redis gives -1 as a Duration)
	}
	a.write(t, "SET", "{p}k", "v1", "PX", "600000")
	waitEqual(t, dcs, 10*time.Second, "k", stateOf("{p}k"), "string v1")
	waitEqual(t, dcs, 10*time.Second, "k's expiry", ttl, "expires")
	a.write(t, "SET", "{p}k", "v2")
	waitEqual(t, dcs, 10*time.Second, "k", stateOf("{p}k"), "string v2")
	waitEqual(t, dcs, 10*time.Second, "k's expiry", ttl, "-1")
	b.write(t, "HSET", "{p}h", "f", "1")
	waitEqual(t, dcs, 10*time.Second, "h", stateOf("{p}h"), "hash map[f:1]")
	a.write(t, "SET", "{p}h", "now a string")
	waitEqual(t, dcs, 10*time.Second, "h", stateOf("{p}h"), "string now a string")
	// The entry holds the value and no expiry (-1).
	raw, err := a.rc.Do(ctx, "XREVRANGE", OutboxKey(slotString("{p}h")), "+", "-", "COUNT", 1).Slice()
	if err != nil || len(raw) != 1 {
		t.Fatalf("outbox: %v %v", raw, err)
	}
	got, err := parseRange(raw)
	if err != nil || len(got) != 1 || len(got[0].Cmds) != 1 {
		t.Fatalf("entry: %+v %v", got, err)
	}
	c := got[0].Cmds[0]
	if c[0] != "~s" || c[1] != "{p}h" || c[len(c)-2] != "now a string" || c[len(c)-1] != "-1" {
		t.Fatalf("effect %q", c)
	}
}

// TestSetOneAsWriteOne: a plain SET through WRITE's short path (setOne) leaves the same
// reply, key, stamps, outbox entries and change feed as the general path (a unit of the same
// SET, which never takes it), for a new key, a stamped one, a counter, a hash with element
// states, a value too large for the feed and a slot under a copy lock.
func TestSetOneAsWriteOne(t *testing.T) {
	ctx := context.Background()
	fast, general := client(t, testredis.Start(t)), client(t, testredis.Start(t))
	slot := slotString("{s}")
	big := strings.Repeat("b", 2000)
	steps := []string{"SET {s}k v1", "SET {s}k v2", "INCR {s}c", "SET {s}c 5",
		"HSET {s}h f 1 g 2", "HDEL {s}h f", "SET {s}h str", "SET {s}k " + big, "SET {s}n v", "LOCK", "SET {s}k v3"}
	// Stamps, ids and msgpack (element states: they hold stamps) differ by the clock.
	norm := regexp.MustCompile(`^\d+(-\d+$|:)`)
	clean := func(e Entry) string {
		for _, c := range e.Cmds {
			for i, a := range c {
				c[i] = norm.ReplaceAllString(a, "N")
				if strings.ContainsFunc(a, func(r rune) bool { return r == utf8.RuneError }) {
					c[i] = "msgpack"
				}
			}
		}
		return fmt.Sprintf("%s %q", e.DC, e.Cmds)
	}
	state := func(c *redis.Client) string {
		var out []string
		for _, k := range []string{"{s}k", "{s}c", "{s}h", "{s}n"} {
			d, _ := c.Dump(ctx, k).Result()
			out = append(out, fmt.Sprintf("%s=%q", k, d))
		}
		m, err := c.HGetAll(ctx, MetaKey(slot)).Result()
		if err != nil {
			t.Fatal(err)
		}
		for f, v := range m {
			if strings.HasPrefix(f, "o:") {
				continue // the short path's note of the outbox's last id (TestWriteLastEntryHint)
			}
			out = append(out, f+"="+norm.ReplaceAllString(v, "N"))
		}
		raw, err := c.Do(ctx, "XRANGE", OutboxKey(slot), "-", "+").Slice()
		if err != nil {
			t.Fatal(err)
		}
		entries, err := parseRange(raw)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			out = append(out, "outbox "+clean(e))
		}
		feed, err := c.XRange(ctx, DirtyKey, "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range feed {
			f, err := ParseFeedEntry(feedFields(t, c, m.ID))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("feed %s %v %q %s", f.Outbox, f.Carried, norm.ReplaceAllString(f.Prev, "N"), clean(f.Entry)))
		}
		slices.Sort(out)
		return strings.Join(out, "\n")
	}
	for _, step := range steps {
		if step == "LOCK" {
			for _, c := range []*redis.Client{fast, general} {
				c.Set(ctx, CopyLockKey(slot), "copy", time.Minute)
			}
			continue
		}
		call := prepare(t, step)
		var a, b any
		var errA, errB error
		if strings.HasPrefix(step, "SET ") {
			a, errA = Write(ctx, fast, slot, "dc1", 1000, call).Result()
			r, err := WriteUnit(ctx, general, slot, "dc1", 1000, []Call{call}).Result()
			if errB = err; err == nil {
				b = r.([]any)[0]
			}
		} else {
			a, errA = Write(ctx, fast, slot, "dc1", 1000, call).Result()
			b, errB = Write(ctx, general, slot, "dc1", 1000, call).Result()
		}
		if fmt.Sprint(a, errA) != fmt.Sprint(b, errB) {
			t.Fatalf("%s: short path %v %v, general %v %v", step, a, errA, b, errB)
		}
		if sa, sb := state(fast), state(general); sa != sb {
			t.Fatalf("after %s:\nshort path:\n%s\ngeneral:\n%s", step, sa, sb)
		}
	}
	if got := state(fast); !strings.Contains(got, `"~s" "{s}k" "Ndc1" "" "v2" "-1"`) {
		t.Fatalf("no SET recorded over a stamp:\n%s", got)
	}
	hmget := func(c *redis.Client) float64 {
		return testredis.CommandStat(c.Info(ctx, "commandstats").Val(), "hmget", "calls")
	}
	if hmget(fast) == 0 || hmget(general) != 0 {
		t.Fatalf("HMGET calls: %v on the short path's server, %v on the general's", hmget(fast), hmget(general))
	}
}

// TestWriteLastEntryHint: the short path of WRITE finds the outbox's last entry, which its
// feed entry names as the one it follows, from the id it noted in the slot's metadata (o:<dc>)
// only while nothing follows that id in the outbox. An entry appended some other way (a
// heartbeat, a user script's record, a write on the general path), a hint that is not an id
// and another DC's hint all leave it reading the last entry itself; the feed's chain of
// entries is the outbox's, whatever wrote to it.
func TestWriteLastEntryHint(t *testing.T) {
	ctx := context.Background()
	c := client(t, testredis.Start(t))
	if err := LoadLibrary(ctx, c); err != nil {
		t.Fatal(err)
	}
	slot := slotString("{h}")
	ob, meta := OutboxKey(slot), MetaKey(slot)
	set := func(k string) {
		t.Helper()
		if err := Write(ctx, c, slot, "dc1", 1000, prepare(t, "SET "+k+" v")).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// prevOfLast: the prev the last feed entry carries, and the outbox's entry before its own.
	prevOfLast := func() (carried, want string) {
		t.Helper()
		last, err := c.XRevRangeN(ctx, DirtyKey, "+", "-", 1).Result()
		if err != nil || len(last) != 1 {
			t.Fatalf("feed: %v %v", last, err)
		}
		f, err := ParseFeedEntry(feedFields(t, c, last[0].ID))
		if err != nil {
			t.Fatal(err)
		}
		two, err := c.XRevRangeN(ctx, ob, "+", "-", 2).Result()
		if err != nil || len(two) == 0 || two[0].ID != f.Entry.ID {
			t.Fatalf("outbox's last entry %v (%v) is not the feed's %s", two, err, f.Entry.ID)
		}
		if len(two) == 2 {
			want = two[1].ID
		}
		return f.Prev, want
	}
	hint := func() string { return c.HGet(ctx, meta, "o:dc1").Val() }
	check := func(step string) {
		t.Helper()
		if got, want := prevOfLast(); got != want {
			t.Fatalf("%s: the feed entry follows %q, the outbox's entry before it is %q", step, got, want)
		}
		if last := c.XRevRangeN(ctx, ob, "+", "-", 1).Val(); hint() != last[0].ID {
			t.Fatalf("%s: hint %q, the outbox's last entry %s", step, hint(), last[0].ID)
		}
	}
	hits := func() float64 { // XREVRANGEs: each one a look after the hint
		return testredis.CommandStat(c.Info(ctx, "commandstats").Val(), "xrevrange", "calls")
	}
	set("{h}a")
	check("first write")
	x0 := hits()
	set("{h}b")
	if x := hits(); x != x0+1 {
		t.Fatalf("the short path did not look after its hint alone (%v XREVRANGEs, want %v)", x, x0+1)
	}
	check("after a write through the short path")
	// Appended without WRITE, as a heartbeat is.
	if err := c.XAdd(ctx, &redis.XAddArgs{Stream: ob, Values: []string{"dc", "dc1", "n", "0"}}).Err(); err != nil {
		t.Fatal(err)
	}
	set("{h}c")
	check("after an entry appended without WRITE")
	// The general path (an INCR) does not note its id.
	if err := Write(ctx, c, slot, "dc1", 1000, prepare(t, "INCR {h}n")).Err(); err != nil {
		t.Fatal(err)
	}
	set("{h}d")
	check("after a write through the general path")
	// A hint that is not an id is no hint.
	c.HSet(ctx, meta, "o:dc1", "junk")
	set("{h}e")
	check("after a hint that is not an id")
	// Another DC's hint is not this DC's.
	c.HSet(ctx, meta, "o:dc2", "1-0")
	set("{h}f")
	check("beside another DC's hint")
}

// feedFields reads the change feed entry id's fields in order.
func feedFields(t *testing.T, c *redis.Client, id string) []string {
	t.Helper()
	raw, err := c.Do(context.Background(), "XRANGE", DirtyKey, id, id).Slice()
	if err != nil || len(raw) != 1 {
		t.Fatalf("feed %s: %v %v", id, raw, err)
	}
	var out []string
	for _, f := range raw[0].([]any)[1].([]any) {
		out = append(out, f.(string))
	}
	return out
}

// TestResetForgetsCarriedEntries: when a destination's last applied id goes back (a full copy
// from a third DC replaced the slot there; here by hand) and the entries after it were trimmed
// from the outbox since, the shipper finds them gone by reading the outbox and copies the slot
// in full, rather than shipping a carried entry of the feed it still kept from before and then
// taking the quiet slot for caught up.
func TestResetForgetsCarriedEntries(t *testing.T) {
	a, b, slot, must := refusingSlot(t)
	ctx := context.Background()
	// k1's entry stays carried in b's shipper, unacknowledged; k2's is too large for the feed.
	big := strings.Repeat("x", 2000)
	b.write(t, "SET", "{r}k1", "v1")
	b.write(t, "SET", "{r}k2", big)
	// b's outbox loses both (trimmed past a, as if a were down); once a accepts, b copies the
	// slot to a in full.
	must(b.rc.XTrimMaxLen(ctx, OutboxKey(slot), 0).Err())
	must(a.rc.Del(ctx, CopyLockKey(slot)).Err())
	waitEqual(t, []*testDC{a}, resetWait, "k2 in a", stateOf("{r}k2"), "string "+big)
	// a shows k2 before b's call that brought it has set a's record of b's entries and
	// returned: the third DC's copy below must come after (else the record is set over it,
	// and b has no reason to copy again: seen once in CI). That call is most often the full
	// copy; when b's loop read both entries before the trim, it sends them again from what it
	// read once a accepts, and no copy is needed. Either way, b is done with the slot once it
	// copies nothing and has nothing pending toward a.
	waitEqual(t, []*testDC{b}, resetWait, "b done with the slot toward a", func(d *testDC) (string, error) {
		for _, p := range d.repl.Report().Pairs {
			if p.To == "a" {
				return fmt.Sprint(p.Copying == 0 && p.Pending == 0), nil
			}
		}
		return "no pair", nil
	}, "true")
	// A copy from a third DC replaces the slot in a (by hand: a loses the keys and its record
	// of b's entries) and a asks b to read its last applied id again.
	must(a.rc.Del(ctx, "{r}k1", "{r}k2").Err())
	must(a.rc.HDel(ctx, InboxKey(slot), "b").Err())
	_, err := b.repl.HandleReset(ctx, ResetRequest{Source: "b", Dest: "a", Slot: slot})
	must(err)
	waitEqual(t, []*testDC{a}, resetWait, "k1 in a", stateOf("{r}k1"), "string v1")
	waitEqual(t, []*testDC{a}, resetWait, "k2 in a", stateOf("{r}k2"), "string "+big)
}

// TestResetDuringCopy: a copy from a third DC replaces the slot in the destination, and the
// destination's call to read its last applied id again is handled, after the destination
// applied this DC's copy and before this DC's copy call returned. The shipper still reads the
// destination's id again after its copy, finds the slot behind, and copies it again.
func TestResetDuringCopy(t *testing.T) {
	a, b, slot, must := refusingSlot(t)
	ctx := context.Background()
	// Too large for the feed: b must read it from its outbox.
	v1 := strings.Repeat("v", 2000)
	b.write(t, "SET", "{r}k1", v1)
	must(b.rc.XTrimMaxLen(ctx, OutboxKey(slot), 0).Err()) // so b copies the slot to a
	var once sync.Once
	hooked := make(chan struct{}) // closed once the hook below has run
	a.answered.Store(func(name string) {
		if name != RPCCopy {
			return
		}
		once.Do(func() {
			defer close(hooked)
			// c's copy replaces the slot in a, and a asks b to read its id again; b's shipper
			// handles that before its copy call returns. (t.Error, not Fatal: this runs on
			// the shipper's goroutine.)
			for _, err := range []error{a.rc.Del(ctx, "{r}k1").Err(), a.rc.HDel(ctx, InboxKey(slot), "b").Err(),
				a.rc.HDel(ctx, MetaKey(slot), "s:{r}k1").Err()} {
				if err != nil {
					t.Error(err)
					return
				}
			}
			if _, err := b.repl.HandleReset(ctx, ResetRequest{Source: "b", Dest: "a", Slot: slot}); err != nil {
				t.Error(err)
				return
			}
			deadline := time.Now().Add(5 * time.Second)
			for !resetTaken(b.repl, "a", slot) {
				if time.Now().After(deadline) {
					t.Error("b's shipper did not take the reset during the copy")
					return
				}
				time.Sleep(time.Millisecond)
			}
		})
	})
	must(a.rc.Del(ctx, CopyLockKey(slot)).Err())
	// k1 is in a once the copy is applied, before the hook takes it away again: the wait for
	// k1 starts after the hook (a wait that ended in between let the hook run after the test,
	// and fail it then: seen in CI).
	select {
	case <-hooked:
	case <-time.After(resetWait):
		t.Fatal("no copy from b reached a")
	}
	waitEqual(t, []*testDC{a}, resetWait, "k1 in a", stateOf("{r}k1"), "string "+v1)
}

// resetWait bounds the waits of the reset tests: a full copy after a refused batch can take
// several of the shipper's backoffs (up to 2 s each) on a machine as loaded as CI's.
const resetWait = 30 * time.Second

// refusingSlot starts DCs a and b, has their shippers follow the change feed (a first write
// seen in both), and has a refuse b's entries for the slot of "{r}" as when another DC's copy
// holds it there (until its copy lock is deleted). must fails the test on an error.
func refusingSlot(t *testing.T) (a, b *testDC, slot int, must func(error)) {
	_, dcs := startDCs(t, "a", "b")
	a, b = dcs[0], dcs[1]
	must = func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	b.write(t, "SET", "warm", "up")
	waitEqual(t, dcs, resetWait, "warm", stateOf("warm"), "string up")
	slot = slotString("{r}")
	must(a.rc.Set(context.Background(), CopyLockKey(slot), "in:c:x", time.Minute).Err())
	return a, b, slot, must
}

// resetTaken reports whether r's shipper to dest has read slot's last applied id again since
// it was asked to.
func resetTaken(r *Replicator, dest string, slot int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, l := range r.loops {
		if k.dest == dest {
			l.mu.Lock()
			pending := l.reset[slot]
			l.mu.Unlock()
			if pending {
				return false
			}
		}
	}
	return true
}

// A per-slot loop at data format 3 whose round failed (a reset's read of the destination's
// ids while the destination was cut off) reports the pair ok once a later round finds nothing
// to ship. Its error stayed, and the status said the pair was down for good (e2e, with the
// destination DCs up and every write replicated). Fails without the recovery in round.
func TestLoopErrorClearsWithNothingToShip(t *testing.T) {
	dcs := startDCsAt(t, LogDataFormat, "a", "b")
	a, b := dcs[0], dcs[1]
	b.write(t, "SET", "warm", "up")
	waitEqual(t, dcs, 10*time.Second, "warm", stateOf("warm"), "string up")
	only := []*testDC{b}
	pair := func(d *testDC) (string, error) {
		for _, p := range d.repl.Report().Pairs {
			if p.To == "a" {
				return p.State, nil
			}
		}
		return "no pair", nil
	}
	waitEqual(t, only, 10*time.Second, "b>a", pair, "ok")
	a.down.Store(true)
	// As after a third DC's copy into a: a asks b's loop to read its id for the slot again,
	// which it cannot while a is cut off.
	if _, err := b.repl.HandleReset(context.Background(), ResetRequest{Source: "b", Dest: "a", Slot: slotString("warm")}); err != nil {
		t.Fatal(err)
	}
	waitEqual(t, only, 10*time.Second, "b's loop toward a failing", func(d *testDC) (string, error) {
		return fmt.Sprint(loopErr(d.repl, "a") != ""), nil
	}, "true")
	waitEqual(t, only, 10*time.Second, "b>a while a is cut off", pair, "down")
	a.down.Store(false)
	waitEqual(t, only, 10*time.Second, "b>a once a is back", pair, "ok")
	if e := loopErr(b.repl, "a"); e != "" {
		t.Fatalf("b's loop toward a still reports %q", e)
	}
}

// loopErr returns the last error of r's per-slot loops toward dest ("" when none has one).
func loopErr(r *Replicator, dest string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, l := range r.loops {
		if k.dest == dest {
			l.mu.Lock()
			e := l.lastErr
			l.mu.Unlock()
			if e != "" {
				return e
			}
		}
	}
	return ""
}
