package router

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestCommandFamilies runs each data-command family through the router with keys in both
// groups and checks every key landed on the group that owns its slot.
func TestCommandFamilies(t *testing.T) {
	tc := startCluster(t, 2, 1, Config{})
	ctx := ctxT(t)
	c := tc.client(0)
	for gi := 0; gi < 2; gi++ {
		k := func(p string) string { return keyIn(p, gi, 2) }
		tag := k("t") // a hash tag for multi-key commands in one slot
		tk := func(s string) string { return "{" + tag + "}" + s }
		must := func(cmd redis.Cmder) {
			t.Helper()
			if err := cmd.Err(); err != nil && err != redis.Nil {
				t.Fatalf("group %d: %v: %v", gi+1, cmd.Args(), err)
			}
		}
		// strings, bitmaps, bitfield
		must(c.Set(ctx, k("s"), "10", 0))
		must(c.IncrBy(ctx, k("s"), 5))
		must(c.Append(ctx, k("s"), "x"))
		must(c.SetBit(ctx, k("bm"), 7, 1))
		must(c.BitCount(ctx, k("bm"), nil))
		must(c.BitField(ctx, k("bf"), "SET", "u8", 0, 200))
		must(c.MSetNX(ctx, tk("a"), 1, tk("b"), 2))
		must(c.BitOpAnd(ctx, tk("dst"), tk("a"), tk("b")))
		// hashes, lists, sets, sorted sets
		must(c.HSet(ctx, k("h"), "f", "v", "g", "w"))
		must(c.HIncrBy(ctx, k("h"), "n", 2))
		must(c.RPush(ctx, k("l"), 3, 1, 2))
		must(c.LMove(ctx, tk("l1"), tk("l2"), "LEFT", "RIGHT"))
		must(c.SAdd(ctx, k("set"), "a", "b"))
		must(c.SAdd(ctx, tk("s1"), "x"))
		must(c.SMove(ctx, tk("s1"), tk("s2"), "x"))
		must(c.SInterStore(ctx, tk("s3"), tk("s1"), tk("s2")))
		must(c.ZAdd(ctx, k("z"), redis.Z{Score: 1, Member: "m"}))
		must(c.ZUnionStore(ctx, tk("zu"), &redis.ZStore{Keys: []string{tk("z1"), tk("z2")}}))
		// HyperLogLog, geo
		must(c.PFAdd(ctx, k("hll"), "a", "b", "c"))
		must(c.PFMerge(ctx, tk("hll"), tk("h1"), tk("h2")))
		must(c.GeoAdd(ctx, k("geo"), &redis.GeoLocation{Name: "p", Longitude: 13.36, Latitude: 38.11}))
		must(c.GeoSearch(ctx, k("geo"), &redis.GeoSearchQuery{Longitude: 13, Latitude: 38, Radius: 200, RadiusUnit: "km"}))
		// streams and consumer groups
		must(c.XAdd(ctx, &redis.XAddArgs{Stream: k("x"), Values: []string{"f", "v"}}))
		must(c.XGroupCreate(ctx, k("x"), "grp", "0"))
		res, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "grp", Consumer: "c1", Streams: []string{k("x"), ">"}, Count: 1}).Result()
		if err != nil || len(res) != 1 || len(res[0].Messages) != 1 {
			t.Fatalf("XREADGROUP = %v, %v", res, err)
		}
		must(c.XAck(ctx, k("x"), "grp", res[0].Messages[0].ID))
		// keys and TTLs, SORT, OBJECT, DUMP/RESTORE, COPY
		must(c.Expire(ctx, k("s"), time.Hour))
		if ttl := c.TTL(ctx, k("s")).Val(); ttl <= 0 {
			t.Fatalf("TTL = %v", ttl)
		}
		must(c.Persist(ctx, k("s")))
		if typ := c.Type(ctx, k("h")).Val(); typ != "hash" {
			t.Fatalf("TYPE = %q", typ)
		}
		if s := c.Sort(ctx, k("l"), &redis.Sort{}).Val(); len(s) != 3 || s[0] != "1" {
			t.Fatalf("SORT = %v", s)
		}
		if enc := c.ObjectEncoding(ctx, k("set")).Val(); enc == "" {
			t.Fatal("OBJECT ENCODING empty")
		}
		dump := c.Dump(ctx, k("h")).Val()
		must(c.Restore(ctx, tk("restored"), 0, dump))
		must(c.Copy(ctx, tk("restored"), tk("copied"), 0, false))
		must(c.Rename(ctx, tk("copied"), tk("renamed")))
		if v := c.HGet(ctx, tk("renamed"), "f").Val(); v != "v" {
			t.Fatalf("HGET after RESTORE/COPY/RENAME = %q", v)
		}
		// Every key lives on its own group and nowhere else.
		own, other := tc.direct(gi), tc.direct(1-gi)
		for _, key := range []string{k("s"), k("h"), k("l"), k("z"), k("x"), k("geo"), tk("renamed")} {
			if own.Exists(ctx, key).Val() != 1 || other.Exists(ctx, key).Val() != 0 {
				t.Fatalf("key %s is not (only) on group %d", key, gi+1)
			}
		}
	}
}
