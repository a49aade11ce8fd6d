package xdc

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/internal/testredis"
)

// TestWriteFeedsTheChangeFeed: a WRITE that records an entry names its outbox in the feed, one
// that records nothing does not, and feedPos is the feed's last id.
func TestWriteFeedsTheChangeFeed(t *testing.T) {
	c := client(t, testredis.Start(t))
	ctx := context.Background()
	if pos, err := feedPos(ctx, c); err != nil || pos != "0-0" {
		t.Fatalf("feedPos of no feed: %q, %v", pos, err)
	}
	for _, argv := range [][]string{{"SET", "k", "v"}, {"DEL", "absent"}, {"INCR", "n"}} {
		call, err := Prepare(argv)
		if err != nil {
			t.Fatal(err)
		}
		if err := Write(ctx, c, slotString(argv[1]), "dc1", 1000, call).Err(); err != nil && err != redis.Nil {
			t.Fatal(err)
		}
	}
	msgs, err := c.XRange(ctx, DirtyKey, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{OutboxKey(slotString("k")), OutboxKey(slotString("n"))}
	if len(msgs) != len(want) {
		t.Fatalf("feed %v, want entries for %v (nothing for a DEL that deleted nothing)", msgs, want)
	}
	for i, m := range msgs {
		if m.Values["o"] != want[i] {
			t.Errorf("feed entry %d names %v, want %s", i, m.Values["o"], want[i])
		}
	}
	if pos, _ := feedPos(ctx, c); pos != msgs[1].ID {
		t.Errorf("feedPos %s, want %s", pos, msgs[1].ID)
	}
}

// TestFeedTrimmedAfter: a loop that read up to an id learns whether entries after it were
// trimmed before it could read them.
func TestFeedTrimmedAfter(t *testing.T) {
	c := client(t, testredis.Start(t))
	ctx := context.Background()
	var ids []string
	for i := 0; i < 10; i++ {
		id, err := c.XAdd(ctx, &redis.XAddArgs{Stream: DirtyKey, Values: DirtyFields(i)}).Result()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	l := &loop{}
	if l.feedTrimmedAfter(ctx, c, ids[2]) {
		t.Fatal("nothing trimmed yet, but feedTrimmedAfter says so")
	}
	if err := c.XTrimMaxLen(ctx, DirtyKey, 4).Err(); err != nil { // drops ids[0..5]
		t.Fatal(err)
	}
	if !l.feedTrimmedAfter(ctx, c, ids[2]) {
		t.Error("ids[3..5] were trimmed unread, but feedTrimmedAfter(ids[2]) says no")
	}
	if l.feedTrimmedAfter(ctx, c, ids[6]) {
		t.Error("a reader at ids[6] (the first entry kept) lost nothing, but feedTrimmedAfter says it did")
	}
}

// TestLoopShipsWithoutHints: writes that no hint announces (made on the master directly) are
// shipped by following the feed, within a bound, with no sweep over the outboxes.
func TestLoopShipsWithoutHints(t *testing.T) {
	_, dcs := startDCs(t, "a", "b")
	a := dcs[0]
	call, err := Prepare([]string{"INCR", "{nohint}n"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		if err := Write(context.Background(), a.rc, slotString("{nohint}n"), a.name, 1000, call).Err(); err != nil {
			t.Fatal(err)
		}
	}
	waitEqual(t, dcs, 10*time.Second, "counter", func(d *testDC) (string, error) {
		return d.rc.Get(context.Background(), "{nohint}n").Result()
	}, "50")
}
