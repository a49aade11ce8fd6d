package xdc

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

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
