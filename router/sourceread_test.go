package router

import (
	"slices"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/migrate"
)

// TestMigratingReadsOnTheSource: while a slot migrates, a read whose keys are all on the
// source is answered there and moves nothing, even when the target holds a stale copy; a key
// that left the source (moved and written, or created on the target) is read on the target,
// also with the moved-keys caches off, so the source's answer decides. Over RESP2 and RESP3.
func TestMigratingReadsOnTheSource(t *testing.T) {
	mt := newMigTest(t, 1, Config{Mover: migrate.Config{KnownKeys: -1}, MovedKeysCache: -1})
	ctx := ctxT(t)
	s := mt.tc.servers[0]
	g1, g2 := mt.tc.direct(0), mt.tc.direct(1)
	ks := keysIn("sr", 0, 1023, 8)
	for i, k := range ks {
		g1.Set(ctx, k, "v"+itoa(i), 0)
	}
	g2.Set(ctx, ks[1], "stale", 0) // a leftover on the target: the source's copy is the latest
	// A key of a slot g1 keeps, and one of g2's.
	out1, out2 := keysIn("out", 2000, 8000, 1)[0], keysIn("out", 9000, 16000, 1)[0]
	g1.Set(ctx, out1, "o1", 0)
	g2.Set(ctx, out2, "o2", 0)
	tag := "{" + ks[7] + "}" // keys of ks[7]'s slot
	g1.RPush(ctx, tag+"l", "a", "b", "c")
	g1.SAdd(ctx, tag+"s1", "x", "y")
	g1.SAdd(ctx, tag+"s2", "y", "z")
	id := mt.start(0, 1023)
	mt.ack(id)

	for _, proto := range []int{2, 3} {
		c := mt.tc.client(0, func(o *redis.Options) { o.Protocol = proto })
		before := s.Stats().MigrationSourceReads
		for i, k := range ks[:3] {
			if v, err := c.Get(ctx, k).Result(); v != "v"+itoa(i) || err != nil {
				t.Fatalf("RESP%d: GET %s = %q, %v", proto, k, v, err)
			}
		}
		if v := c.LRange(ctx, tag+"l", 0, -1).Val(); !slices.Equal(v, []string{"a", "b", "c"}) {
			t.Fatalf("RESP%d: LRANGE = %v", proto, v)
		}
		if v := c.SUnion(ctx, tag+"s1", tag+"s2").Val(); len(v) != 3 {
			t.Fatalf("RESP%d: SUNION = %v", proto, v)
		}
		if v := c.Type(ctx, tag+"s1").Val(); v != "set" {
			t.Fatalf("RESP%d: TYPE = %q", proto, v)
		}
		if err := c.Get(ctx, tag+"l").Err(); err == nil || err == redis.Nil {
			t.Fatalf("RESP%d: GET of a list: %v, want WRONGTYPE", proto, err)
		}
		// MGET of keys all on g1, migrating or not: g1 answers it whole.
		if v := c.MGet(ctx, ks[0], out1, ks[1], ks[0]).Val(); len(v) != 4 || v[0] != "v0" || v[1] != "o1" || v[2] != "v1" || v[3] != "v0" {
			t.Fatalf("RESP%d: MGET = %v", proto, v)
		}
		if n := s.Stats().MigrationSourceReads - before; n != 8 {
			t.Fatalf("RESP%d: %d reads answered by the source, want 8", proto, n)
		}
		if n := g1.Exists(ctx, ks[0], ks[1], ks[2], tag+"l", tag+"s1", tag+"s2").Val(); n != 6 {
			t.Fatalf("RESP%d: reads moved keys: %d of 6 left on the source", proto, n)
		}
	}
	if v := g2.Get(ctx, ks[1]).Val(); v != "stale" {
		t.Fatalf("the target's leftover = %q", v)
	}

	c := mt.tc.client(0)
	// Written on the target: the source no longer has the key, so reads go there.
	if err := c.Set(ctx, ks[3], "new", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, "{"+ks[4]+"}fresh", "created", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.SAdd(ctx, tag+"s2", "w").Err(); err != nil {
		t.Fatal(err)
	}
	before := s.Stats().MigrationSourceReads
	if v := c.Get(ctx, ks[3]).Val(); v != "new" {
		t.Fatalf("GET after SET = %q", v)
	}
	if v := c.Get(ctx, "{"+ks[4]+"}fresh").Val(); v != "created" {
		t.Fatalf("GET of a key created on the target = %q", v)
	}
	if err := c.Get(ctx, "{"+ks[4]+"}never").Err(); err != redis.Nil {
		t.Fatalf("GET of a missing key: %v", err)
	}
	// An MGET with a key on the target: split as usual (its g1 keys move).
	if v := c.MGet(ctx, ks[3], ks[5], out2).Val(); len(v) != 3 || v[0] != "new" || v[1] != "v5" || v[2] != "o2" {
		t.Fatalf("MGET of a moved key and another = %v", v)
	}
	onlyOn(t, mt.tc, ks[5], 0, 1, "v5")
	// All of g1's, one of them moved already: EXISTS counts one of two, the usual path serves it.
	if v := c.MGet(ctx, ks[3], ks[6]).Val(); len(v) != 2 || v[0] != "new" || v[1] != "v6" {
		t.Fatalf("MGET of a moved key and one on the source = %v", v)
	}
	onlyOn(t, mt.tc, ks[6], 0, 1, "v6")
	// One key moved, one not: the read moves the other one and runs on the target.
	if v := c.SUnion(ctx, tag+"s1", tag+"s2").Val(); len(v) != 4 {
		t.Fatalf("SUNION of a moved and a not moved set = %v", v)
	}
	if n := s.Stats().MigrationSourceReads - before; n != 0 {
		t.Fatalf("%d reads of keys off the source answered by the source", n)
	}
	onlyOn(t, mt.tc, tag+"s1", 0, 1, "")
	if err := mt.moveRest(ctx, id); err != nil {
		t.Fatal(err)
	}
	mt.apply(&fsm.FinishMigration{ID: id})
	for i, want := range []string{"v0", "v1", "v2", "new", "v4", "v5"} {
		if v, err := c.Get(ctx, ks[i]).Result(); v != want {
			t.Fatalf("after the switch: GET %s = %q (%v), want %q", ks[i], v, err, want)
		}
		onlyOn(t, mt.tc, ks[i], 0, 1, want)
	}
}
