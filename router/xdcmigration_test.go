package router

import (
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
	mt := newMigTest(t, 1, Config{})
	mt.st = addDC2(t, mt.st)
	for _, s := range mt.tc.servers {
		s.SetState(mt.st)
	}
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
