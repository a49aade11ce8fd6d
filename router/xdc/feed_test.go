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
