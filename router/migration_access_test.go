package router

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/migrate"
)

// onlyOn checks that key (of db 0) is on group to and not on group from, with value want when
// it is a string.
func onlyOn(t *testing.T, tc *testCluster, key string, from, to int, want string) {
	t.Helper()
	ctx := ctxT(t)
	if n := tc.direct(from).Exists(ctx, key).Val(); n != 0 {
		t.Fatalf("%s still on g%d", key, from+1)
	}
	if n := tc.direct(to).Exists(ctx, key).Val(); n != 1 {
		t.Fatalf("%s missing on g%d", key, to+1)
	}
	if want != "" {
		if v := tc.direct(to).Get(ctx, key).Val(); v != want {
			t.Fatalf("%s on g%d = %q, want %q", key, to+1, v, want)
		}
	}
}

// TestMigratingMovesKeysOnAccess: while a slot migrates, every kind of access moves the keys it
// names from the source to the target (values and TTLs kept) and runs on the target; slots
// outside the migration stay where they are. Then the mover moves the rest and the switch
// points the slot table at the target.
func TestMigratingMovesKeysOnAccess(t *testing.T) {
	mt := newMigTest(t, 1, Config{Mover: migrateCfgFastLock()})
	ctx := ctxT(t)
	s, c := mt.tc.servers[0], mt.tc.client(0)
	ks := keysIn("acc", 0, 1023, 16)
	out1, out2 := keysIn("out", 2000, 8000, 2), keysIn("out", 9000, 16000, 1)[0]
	g1, g2 := mt.tc.direct(0), mt.tc.direct(1)
	for i, k := range ks {
		g1.Set(ctx, k, "v"+itoa(i), 0)
	}
	g1.Expire(ctx, ks[0], 100*time.Second)
	g1.Del(ctx, ks[3])
	g1.RPush(ctx, ks[3], "a", "b")
	g1.Del(ctx, ks[4])
	g1.HSet(ctx, ks[4], "f", "1")
	g1.Expire(ctx, ks[4], 100*time.Second)
	g1.Set(ctx, out1[0], "o1", 0)
	g2.Set(ctx, out2, "o2", 0)
	id := mt.start(0, 1023)
	mt.ack(id)

	check := func(what string, err error) {
		t.Helper()
		if err != nil && err != redis.Nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// A read of a key still on the source is answered there (sourceread.go); a write moves it.
	if v, err := c.Get(ctx, ks[0]).Result(); v != "v0" || err != nil {
		t.Fatalf("GET = %q, %v", v, err)
	}
	onlyOn(t, mt.tc, ks[0], 1, 0, "v0")
	check("APPEND", c.Append(ctx, ks[0], "").Err())
	onlyOn(t, mt.tc, ks[0], 0, 1, "v0")
	if ttl := g2.PTTL(ctx, ks[0]).Val(); ttl <= 0 || ttl > 100*time.Second {
		t.Fatalf("TTL on the target: %v", ttl)
	}
	check("SET", c.Set(ctx, ks[1], "new", 0).Err())
	onlyOn(t, mt.tc, ks[1], 0, 1, "new")
	g1.Set(ctx, ks[2], "10", 0)
	if v, err := c.Incr(ctx, ks[2]).Result(); v != 11 || err != nil {
		t.Fatalf("INCR = %d, %v", v, err)
	}
	onlyOn(t, mt.tc, ks[2], 0, 1, "11")
	check("RPUSH", c.RPush(ctx, ks[3], "c").Err())
	onlyOn(t, mt.tc, ks[3], 0, 1, "")
	if v := g2.LRange(ctx, ks[3], 0, -1).Val(); len(v) != 3 || v[0] != "a" || v[2] != "c" {
		t.Fatalf("list on the target: %v", v)
	}
	if v := c.HGet(ctx, ks[4], "f").Val(); v != "1" {
		t.Fatalf("HGET = %q", v)
	}
	check("HSET", c.HSet(ctx, ks[4], "g", "2").Err())
	onlyOn(t, mt.tc, ks[4], 0, 1, "")
	if ttl := g2.PTTL(ctx, ks[4]).Val(); ttl <= 0 {
		t.Fatalf("hash TTL on the target: %v", ttl)
	}
	// Split commands: keys of the migrating slots go to the target, others stay.
	vals, err := c.MGet(ctx, ks[5], out1[0], ks[6], out2).Result()
	check("MGET", err)
	if len(vals) != 4 || vals[0] != "v5" || vals[1] != "o1" || vals[2] != "v6" || vals[3] != "o2" {
		t.Fatalf("MGET = %v", vals)
	}
	onlyOn(t, mt.tc, ks[5], 0, 1, "v5")
	onlyOn(t, mt.tc, ks[6], 0, 1, "v6")
	if n := g1.Exists(ctx, out1[0]).Val(); n != 1 {
		t.Fatal("a key outside the migration moved")
	}
	check("MSET", c.MSet(ctx, ks[7], "m7", ks[8], "m8", out1[1], "o3").Err())
	onlyOn(t, mt.tc, ks[7], 0, 1, "m7")
	onlyOn(t, mt.tc, ks[8], 0, 1, "m8")
	if v := g1.Get(ctx, out1[1]).Val(); v != "o3" {
		t.Fatalf("MSET outside the migration: g1 has %q", v)
	}
	if n, err := c.Del(ctx, ks[9], ks[10], out2).Result(); n != 3 || err != nil {
		t.Fatalf("DEL = %d, %v", n, err)
	}
	if n := g1.Exists(ctx, ks[9], ks[10]).Val() + g2.Exists(ctx, ks[9], ks[10]).Val(); n != 0 {
		t.Fatal("deleted keys survive somewhere")
	}
	if n := c.Exists(ctx, ks[11]).Val(); n != 1 {
		t.Fatalf("EXISTS = %d", n)
	}
	onlyOn(t, mt.tc, ks[11], 0, 1, "v11")
	// MOVE also moves the key of the other database first.
	g1db1 := mt.tc.directDB(0, 1)
	if ok, err := c.Move(ctx, ks[12], 1).Result(); !ok || err != nil {
		t.Fatalf("MOVE = %v, %v", ok, err)
	}
	if v := mt.tc.directDB(1, 1).Get(ctx, ks[12]).Val(); v != "v12" || g1db1.Exists(ctx, ks[12]).Val() != 0 {
		t.Fatalf("after MOVE: target db1 has %q", v)
	}
	// MULTI/EXEC: the queued keys move, the block runs on the target.
	cmds, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Incr(ctx, ks[13])
		p.Get(ctx, ks[13])
		return nil
	})
	if err == nil {
		t.Fatal("INCR of a string value succeeded")
	}
	if v := cmds[1].(*redis.StringCmd).Val(); v != "v13" {
		t.Fatalf("GET in MULTI = %q", v)
	}
	onlyOn(t, mt.tc, ks[13], 0, 1, "v13")
	// A key locked by another mover's chunked copy: still read on the source (its copy there
	// is the latest until the mover deletes it); a write gets -TRYAGAIN after LockWait.
	g1.HSet(ctx, migrate.LocksKey, ks[14], migrate.LockValue("other:1", time.Now().Add(10*time.Second)))
	if v, err := c.Get(ctx, ks[14]).Result(); v != "v14" || err != nil {
		t.Fatalf("GET of a locked key = %q, %v", v, err)
	}
	if err := c.Set(ctx, ks[14], "w", 0).Err(); !isTryAgain(err) {
		t.Fatalf("SET of a locked key: %v", err)
	}
	// A key a batch in flight holds that expired on the source after the batch's dump: not
	// taken for moved, by a read or a write, while the lock lives (the batch's restore, with
	// an expiry now past, would remove a write that reached the target first).
	gone := keysIn("gone", 0, 1023, 1)[0]
	g1.HSet(ctx, migrate.LocksKey, gone, migrate.LockValue("other:2", time.Now().Add(10*time.Second)))
	if err := c.Get(ctx, gone).Err(); !isTryAgain(err) {
		t.Fatalf("GET of a missing key a batch holds: %v", err)
	}
	if err := c.Set(ctx, gone, "w", 0).Err(); !isTryAgain(err) {
		t.Fatalf("SET of a missing key a batch holds: %v", err)
	}
	if n := g2.Exists(ctx, gone).Val(); n != 0 {
		t.Fatal("a missing key a batch holds was written on the target")
	}
	if err := c.Get(ctx, "__redraft:lock:x").Err(); err == nil {
		t.Fatal("reserved key served")
	}
	// Moved keys are remembered: no second MoveKeys.
	e := &s.snap.Load().slots[slotOf(ks[0])]
	if !e.m.ref.moved.has(0, []byte(ks[0])) {
		t.Fatal("moved key not cached")
	}
	if n := s.Stats().KeysMovedOnAccess; n < 12 {
		t.Fatalf("KeysMovedOnAccess = %d", n)
	}

	// Keyless fan-outs keep working (nothing moves concurrently here, so they are exact).
	if keys := c.Keys(ctx, "acc*").Val(); len(keys) != 13 {
		t.Fatalf("KEYS while migrating: %d keys %v", len(keys), keys)
	}
	var scanned []string
	for cur := uint64(0); ; {
		page, next, err := c.Scan(ctx, cur, "acc*", 5).Result()
		if err != nil {
			t.Fatal(err)
		}
		scanned = append(scanned, page...)
		if cur = next; cur == 0 {
			break
		}
	}
	if len(scanned) != 13 {
		t.Fatalf("SCAN while migrating: %v", scanned)
	}
	g1.HDel(ctx, migrate.LocksKey, ks[14], gone)
	check("SET once the batch's lock is gone", c.Set(ctx, gone, "w", 0).Err())
	onlyOn(t, mt.tc, gone, 0, 1, "w")
	if err := mt.moveRest(ctx, id); err != nil {
		t.Fatal(err)
	}
	ref := e.m.ref
	mt.apply(&fsm.FinishMigration{ID: id})
	if g := s.snap.Load().slots[slotOf(ks[0])]; g.g.id != "g2" || g.state() != migNone {
		t.Fatalf("after the switch slot routes to %s (%d)", g.g.id, g.state())
	}
	if !ref.retired {
		t.Fatal("the mover of a finished migration is not closed")
	}
	for i, k := range ks[14:] {
		onlyOn(t, mt.tc, k, 0, 1, "v"+itoa(14+i))
	}
	if v := c.Get(ctx, ks[15]).Val(); v != "v15" {
		t.Fatalf("after the switch: %q", v)
	}
}

// TestWatchAbortsWhenSlotReroutes: EXEC answers a failed WATCH when the watched slot froze,
// started migrating or switched since WATCH, and runs when its routing stayed the same.
func TestWatchAbortsWhenSlotReroutes(t *testing.T) {
	mt := newMigTest(t, 1, Config{})
	ctx := ctxT(t)
	c := mt.tc.client(0)
	k := keysIn("wr", 0, 99, 1)[0]
	c.Set(ctx, k, "1", 0)
	var id uint64
	tx := func(between func()) error {
		return c.Watch(ctx, func(tx *redis.Tx) error {
			between()
			_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Incr(ctx, k)
				return nil
			})
			return err
		}, k)
	}
	if err := tx(func() { id = mt.start(0, 99); mt.ack(id) }); err != redis.TxFailedErr {
		t.Fatalf("EXEC after the slot started migrating: %v, want a failed WATCH", err)
	}
	if v := c.Get(ctx, k).Val(); v != "1" {
		t.Fatalf("value %q after an aborted transaction", v)
	}
	if err := tx(func() {}); err != nil {
		t.Fatalf("WATCH and EXEC while migrating: %v", err)
	}
	onlyOn(t, mt.tc, k, 0, 1, "2")
	if err := tx(func() {
		if err := mt.moveRest(ctx, id); err != nil {
			t.Error(err)
		}
		mt.apply(&fsm.FinishMigration{ID: id})
	}); err != redis.TxFailedErr {
		t.Fatalf("EXEC after the switch: %v, want a failed WATCH", err)
	}
	if err := tx(func() {}); err != nil {
		t.Fatal(err)
	}
	onlyOn(t, mt.tc, k, 0, 1, "3")
}

// TestCancelRoundTrip: a migration cancelled while migrating runs back behind a new barrier;
// keys moved to the target come back on access and by the mover, and the slots stay with the
// source.
func TestCancelRoundTrip(t *testing.T) {
	mt := newMigTest(t, 2, Config{})
	ctx := ctxT(t)
	c, c2 := mt.tc.client(0), mt.tc.client(1)
	ks := keysIn("cr", 0, 511, 6)
	for i, k := range ks {
		c.Set(ctx, k, "v"+itoa(i), 0)
	}
	id := mt.start(0, 511)
	mt.ack(id)
	c.Append(ctx, ks[0], "")
	c2.Set(ctx, ks[1], "new", 0)
	c.Set(ctx, ks[2], "created-on-target", 0)
	onlyOn(t, mt.tc, ks[0], 0, 1, "v0")
	onlyOn(t, mt.tc, ks[1], 0, 1, "new")
	mt.apply(&fsm.ControlMigration{ID: id, Action: fsm.MigrationCancel})
	if m := mt.st.Migrations[id]; !m.Cancelling || m.State != fsm.MigrationFrozen || m.Source() != "g2" {
		t.Fatalf("after cancel: %s", m)
	}
	mt.ack(id)
	if v := c2.Get(ctx, ks[0]).Val(); v != "v0" {
		t.Fatalf("GET while moving back = %q", v)
	}
	onlyOn(t, mt.tc, ks[0], 0, 1, "v0") // read on the run back's source, g2
	if v := c2.Get(ctx, ks[3]).Val(); v != "v3" {
		t.Fatalf("GET of a key that never left g1, while moving back = %q", v)
	}
	if err := mt.moveRest(ctx, id); err != nil {
		t.Fatal(err)
	}
	mt.apply(&fsm.FinishMigration{ID: id})
	if m := mt.st.Migrations[id]; m.State != fsm.MigrationCancelled || mt.st.DCs["dc1"].Slots[0] != "g1" {
		t.Fatalf("after the switch back: %s, slot 0 on %s", m, mt.st.DCs["dc1"].Slots[0])
	}
	want := []string{"v0", "new", "created-on-target", "v3", "v4", "v5"}
	for i, k := range ks {
		onlyOn(t, mt.tc, k, 1, 0, want[i])
		if v := c2.Get(ctx, k).Val(); v != want[i] {
			t.Fatalf("%s = %q through the router, want %q", k, v, want[i])
		}
	}
}

// directDB returns a go-redis client of group i's redis-server on database db.
func (tc *testCluster) directDB(i, db int) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: tc.redis[i].Addr, DB: db, MaxRetries: -1})
	tc.t.Cleanup(func() { _ = c.Close() })
	return c
}

// migrateCfgFastLock is a mover config whose lock wait is short, for busy-key tests.
func migrateCfgFastLock() migrate.Config { return migrate.Config{LockWait: 100 * time.Millisecond} }
