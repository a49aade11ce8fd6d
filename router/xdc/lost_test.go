package xdc

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/internal/testredis"
)

// TestLostEntriesCounted plays a failover on real servers: the old master's outbox had five
// entries, the destination applied them all, the promoted replica had the first three and
// took two writes of its own. The read after the destination's last id finds it missing, ships
// the two new entries, and counts the two lost ones exactly, once.
func TestLostEntriesCounted(t *testing.T) {
	ctx := context.Background()
	old := redis.NewClient(&redis.Options{Addr: testredis.Start(t).Addr})
	promoted := redis.NewClient(&redis.Options{Addr: testredis.Start(t).Addr})
	defer old.Close()
	defer promoted.Close()
	add := func(c *redis.Client, id string) string {
		t.Helper()
		vals := []any{}
		for _, f := range EntryFields("a", [][]string{{"INCR", "k"}}) {
			vals = append(vals, f)
		}
		got, err := c.XAdd(ctx, &redis.XAddArgs{Stream: OutboxKey(slot), ID: id, Values: vals}).Result()
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	var ids []string
	for i := range 5 {
		ids = append(ids, add(old, "1000-"+string(rune('1'+i))))
	}
	var book lostBook
	k := lostKey{"b", 0, slot}
	// The shipper reads all five (to the outbox's end) and the destination applies them.
	g := read(t, old, "")
	if g.missing || len(g.entries) != 5 || g.topOrd != 5 {
		t.Fatalf("first read: %+v", g)
	}
	book.shipped(k, "", ids[4], &g)
	// Caught up: a read after the last id finds it and nothing more.
	g = read(t, old, ids[4])
	if g.missing || len(g.entries) != 0 {
		t.Fatalf("caught-up read: %+v", g)
	}
	book.shipped(k, ids[4], ids[4], &g)
	// The promoted replica had three of them, then took two writes.
	for _, id := range ids[:3] {
		add(promoted, id)
	}
	n1, n2 := add(promoted, "*"), add(promoted, "*")
	g = read(t, promoted, ids[4])
	if !g.missing || len(g.entries) != 2 || g.entries[0].ID != n1 || g.entries[1].ID != n2 {
		t.Fatalf("read after the failover: %+v", g)
	}
	n, exact, report := book.missing(k, ids[4], &g)
	if n != 2 || !exact || !report {
		t.Fatalf("lost %d exact %v report %v, want 2 exact", n, exact, report)
	}
	if _, _, again := book.missing(k, ids[4], &g); again {
		t.Fatal("the same loss reported twice")
	}
	// Shipping goes on from the new entries: their ordinals are the new master's.
	book.shipped(k, ids[4], n2, &g)
	if m := book.marks[k]; m.id != n2 || m.ord != 5 {
		t.Fatalf("mark after shipping on: %+v", m)
	}
	// A node that never knew the ordinal counts one (a lower bound); no outbox at all is a loss.
	var fresh lostBook
	empty := redis.NewClient(&redis.Options{Addr: testredis.Start(t).Addr})
	defer empty.Close()
	g = read(t, empty, ids[4])
	if n, exact, _ := fresh.missing(k, ids[4], &g); !g.missing || n != 1 || exact {
		t.Fatalf("no outbox: missing %v, lost %d exact %v", g.missing, n, exact)
	}
}

func read(t *testing.T, c *redis.Client, after string) slotRead {
	t.Helper()
	got, err := readSlots(context.Background(), c, []int{slot}, []string{after}, 256)
	if err != nil || got[0].err != nil {
		t.Fatalf("read: %v %v", err, got[0].err)
	}
	return got[0]
}

// TestLostHeartbeatsAreNoWrites: the old master's outbox had three writes and then two
// heartbeats, shipped in two reads; the promoted replica had the three writes only. The
// destination applied two entries the new master lacks, both heartbeats: no write was lost
// (0, exact). Had the replica lacked the third write too, that loss is counted.
func TestLostHeartbeatsAreNoWrites(t *testing.T) {
	ctx := context.Background()
	add := func(c *redis.Client, id string, cmds [][]string) string {
		t.Helper()
		vals := []any{}
		for _, f := range EntryFields("a", cmds) {
			vals = append(vals, f)
		}
		got, err := c.XAdd(ctx, &redis.XAddArgs{Stream: OutboxKey(slot), ID: id, Values: vals}).Result()
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	old := redis.NewClient(&redis.Options{Addr: testredis.Start(t).Addr})
	defer old.Close()
	incr := [][]string{{"INCR", "k"}}
	var ids []string
	for i := range 3 {
		ids = append(ids, add(old, "1000-"+string(rune('1'+i)), incr))
	}
	var book lostBook
	k := lostKey{"b", 0, slot}
	g := read(t, old, "")
	book.shipped(k, "", ids[2], &g)
	for i := 3; i < 5; i++ {
		ids = append(ids, add(old, "1000-"+string(rune('1'+i)), nil))
	}
	g = read(t, old, ids[2])
	if len(g.entries) != 2 {
		t.Fatalf("second read: %+v", g)
	}
	book.shipped(k, ids[2], ids[4], &g)

	for _, c := range []struct {
		kept int // entries of the old master the promoted replica had
		lost int64
	}{{3, 0}, {2, 3}} {
		b := lostBook{marks: map[lostKey]ordMark{k: book.marks[k]}}
		promoted := redis.NewClient(&redis.Options{Addr: testredis.Start(t).Addr})
		for _, id := range ids[:c.kept] {
			add(promoted, id, incr)
		}
		g = read(t, promoted, ids[4])
		promoted.Close()
		n, exact, report := b.missing(k, ids[4], &g)
		if n != c.lost || !exact || !report {
			t.Errorf("replica with %d of the old master's entries: lost %d exact %v report %v, want %d exact", c.kept, n, exact, report, c.lost)
		}
	}
}
