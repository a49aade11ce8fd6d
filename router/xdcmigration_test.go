package router

import (
	"strings"
	"testing"
	"time"

	"github.com/redraft/redraft/router/xdc"
)

// TestXDCWritesInAMigrationMoveTheirMetadata: with several DCs a write of a migrating slot
// runs WRITE on the target, which reads and records the slot's metadata hash and the key's
// element hash; every kind of write moves them off the source first, the split DEL and a
// blocking pop's polls included. Left on the source, they would be moved later and replace
// what WRITE recorded on the target (a DEL's element counters, a pop's stamp).
func TestXDCWritesInAMigrationMoveTheirMetadata(t *testing.T) {
	mt := newXDCMigTest(t)
	ctx := ctxT(t)
	c, g1 := mt.tc.client(0), mt.tc.direct(0)
	var ks []string // keys of distinct slots, all in the migration
	seen := map[int]bool{}
	for _, k := range keysIn("mm", 0, 99, 200) {
		if !seen[slotOf(k)] && len(ks) < 3 {
			seen[slotOf(k)] = true
			ks = append(ks, k)
		}
	}
	h, z, l := ks[0], ks[1], ks[2]
	for _, err := range []error{c.HIncrBy(ctx, h, "f", 2).Err(), c.ZIncrBy(ctx, z, 1, "m").Err(), c.RPush(ctx, l, "a").Err()} {
		if err != nil {
			t.Fatal(err)
		}
	}
	// held lists the metadata of ks still on g1 (the source once the migration begins).
	held := func() []string {
		var out []string
		for _, k := range ks {
			if g1.HExists(ctx, xdc.MetaKey(slotOf(k)), "s:"+k).Val() {
				out = append(out, "stamp of "+k)
			}
			if g1.Exists(ctx, xdc.ElemKey(slotOf(k), k)).Val() != 0 {
				out = append(out, "element hash of "+k)
			}
		}
		return out
	}
	before := held()
	if len(before) != 3 { // the hash's and the sorted set's element hashes, the list's stamp
		t.Fatalf("before the migration g1 holds %v", before)
	}
	id := mt.start(0, 99)
	mt.ack(id)
	if err := c.Del(ctx, h).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := c.BZPopMin(ctx, time.Second, z).Result(); err != nil || v.Member != "m" {
		t.Fatalf("BZPOPMIN = %v, %v", v, err)
	}
	if v, err := c.BLPop(ctx, time.Second, l).Result(); err != nil || len(v) != 2 || v[1] != "a" {
		t.Fatalf("BLPOP = %v, %v", v, err)
	}
	if left := held(); len(left) > 0 {
		t.Errorf("after the writes the source still holds %v", left)
	}
}

// TestXDCCopyLockMovesWithTheSlot: a full copy's lock, taken on the source before a migration
// began, holds the slot on the target too: a client write moves it with the outbox and the
// metadata hash and is refused (TRYAGAIN) while it is held, and goes through once it is
// released (through the router, where the lock now is).
func TestXDCCopyLockMovesWithTheSlot(t *testing.T) {
	mt := newXDCMigTest(t)
	ctx := ctxT(t)
	s, c, g1, g2 := mt.tc.servers[0], mt.tc.client(0), mt.tc.direct(0), mt.tc.direct(1)
	k := keysIn("cl", 0, 99, 1)[0]
	slot := slotOf(k)
	lock := xdc.CopyLockKey(slot)
	if err := g1.Set(ctx, lock, "in:dc2:1", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	id := mt.start(0, 99)
	mt.ack(id)
	if err := c.Set(ctx, k, "v", 0).Err(); err == nil || !strings.HasPrefix(err.Error(), "TRYAGAIN") {
		t.Fatalf("a write of a slot under a copy lock: %v", err)
	}
	if g1.Exists(ctx, lock).Val() != 0 || g2.Exists(ctx, lock).Val() != 1 {
		t.Fatal("the copy lock did not move to the target with the write")
	}
	if ttl := g2.PTTL(ctx, lock).Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("the lock's time to live on the target: %v", ttl)
	}
	if _, err := s.Internal(ctx, 0, slot, []string{lock}, []string{"DEL", lock}); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, k, "v", 0).Err(); err != nil {
		t.Fatalf("a write once the copy lock is released: %v", err)
	}
	if v := g2.Get(ctx, k).Val(); v != "v" {
		t.Fatalf("the target holds %q", v)
	}
}
