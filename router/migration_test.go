package router

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/migrate"
)

// migTest drives a migration of dc1 from g1 to g2 through fsm states fed to real routers by
// SetState, playing each node's coordinator (WaitIdle, then AckFreeze) and the slot owner's
// mover itself. Only the test goroutine calls its methods.
type migTest struct {
	t  *testing.T
	tc *testCluster
	st *fsm.State
}

func newMigTest(t *testing.T, nodes int, cfg Config) *migTest {
	t.Helper()
	tc := startCluster(t, 2, nodes, cfg)
	mt := &migTest{t: t, tc: tc, st: tc.st}
	for i := range nodes {
		mt.apply(&fsm.AddNode{Node: fsm.Node{ID: nodeName(i), DC: "dc1", Peer: "127.0.0.1:" + itoa(17000+i)}})
	}
	return mt
}

// newXDCMigTest is newMigTest for one node in a cluster that also has dc2 (addDC2): its
// writes go through WRITE.
func newXDCMigTest(t *testing.T) *migTest {
	t.Helper()
	mt := newMigTest(t, 1, Config{})
	mt.st = addDC2(t, mt.st)
	for _, s := range mt.tc.servers {
		s.SetState(mt.st)
	}
	return mt
}

func nodeName(i int) string { return "n" + itoa(i+1) }

// apply commits cmd to the test's state and gives the result to every router.
func (mt *migTest) apply(cmd fsm.Command) {
	mt.t.Helper()
	st, err := fsm.ApplyCommand(mt.st, mt.st.Index+1, cmd)
	if err != nil {
		mt.t.Fatalf("%s: %v", cmd.Name(), err)
	}
	mt.st = st
	for _, s := range mt.tc.servers {
		s.SetState(st)
	}
}

// start freezes slots from..to (owned by g1) for a move to g2 and returns the migration id.
func (mt *migTest) start(from, to int) uint64 {
	mt.t.Helper()
	id := mt.st.NextMigrationID
	mt.apply(&fsm.StartMigration{DC: "dc1", Slots: []fsm.SlotRange{{From: from, To: to}}, To: "g2"})
	return id
}

// ack is every node's coordinator: WaitIdle on its router, then AckFreeze. After the last ack
// the migration is migrating.
func (mt *migTest) ack(id uint64) {
	mt.t.Helper()
	slots := migrate.SlotSetOf(mt.st.Migrations[id].Slots)
	for i, s := range mt.tc.servers {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := s.WaitIdle(ctx, slots)
		cancel()
		if err != nil {
			mt.t.Fatalf("WaitIdle on node %d: %v", i, err)
		}
		mt.apply(&fsm.AckFreeze{ID: id, Node: nodeName(i)})
	}
	if m := mt.st.Migrations[id]; m.State != fsm.MigrationMigrating {
		mt.t.Fatalf("after every ack: %s", m)
	}
}

// moveRest is the slot owner's mover: it returns once the source holds no key of the slots.
func (mt *migTest) moveRest(ctx context.Context, id uint64) error { return mt.moveRestAt(ctx, id, 0) }

// moveRestAt is moveRest throttled to rate keys/s (0: unthrottled).
func (mt *migTest) moveRestAt(ctx context.Context, id uint64, rate int64) error {
	m := mt.st.Migrations[id]
	d := mt.st.DCs["dc1"]
	return migrate.MoveJob(ctx, migrate.Job{Migration: m, Source: *d.Groups[m.Source()],
		Target: *d.Groups[m.Target()], Slots: migrate.SlotSetOf(m.Slots), Rate: func() int64 { return rate }})
}

// keysIn returns n keys starting with prefix whose slots lie in from..to.
func keysIn(prefix string, from, to, n int) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		k := prefix + itoa(i)
		if sl := slotOf(k); sl >= from && sl <= to {
			out = append(out, k)
		}
	}
	return out
}

func isTryAgain(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "TRYAGAIN ") }

// TestFreezeHoldsUntilMigrating: a request for a frozen slot waits (other slots are served),
// WaitIdle does not wait for it, and it is served once the slot migrates (a read by the source
// while its key is there, a write on the target).
func TestFreezeHoldsUntilMigrating(t *testing.T) {
	mt := newMigTest(t, 1, Config{FreezeWait: 10 * time.Second})
	ctx := ctxT(t)
	s, c := mt.tc.servers[0], mt.tc.client(0)
	k, other := keysIn("fz", 0, 99, 1)[0], keysIn("fzo", 200, 8000, 1)[0]
	if err := c.Set(ctx, k, "v", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	id := mt.start(0, 99)
	got := make(chan *redis.StringCmd, 1)
	go func() { got <- c.Get(ctx, k) }()
	waitFor(t, "GET held", func() bool { return s.Stats().MigrationHeld >= 1 })
	// EXEC of a transaction on a frozen slot is held too.
	txk := keysIn("fztx", 0, 99, 1)[0]
	txDone := make(chan error, 1)
	go func() {
		_, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Incr(ctx, txk)
			return nil
		})
		txDone <- err
	}()
	waitFor(t, "EXEC held", func() bool { return s.Stats().MigrationHeld >= 2 })
	if err := c.Set(ctx, other, "x", 0).Err(); err != nil {
		t.Fatalf("a slot outside the migration: %v", err)
	}
	select {
	case r := <-got:
		t.Fatalf("GET of a frozen slot answered %v", r)
	default:
	}
	mt.ack(id)
	if r := <-got; r.Val() != "v" || r.Err() != nil {
		t.Fatalf("held GET = %q, %v", r.Val(), r.Err())
	}
	if err := <-txDone; err != nil {
		t.Fatalf("held EXEC: %v", err)
	}
	if v := mt.tc.direct(1).Get(ctx, txk).Val(); v != "1" {
		t.Fatalf("held EXEC ran elsewhere: target has %q", v)
	}
	if n := mt.tc.direct(0).Exists(ctx, k).Val(); n != 1 {
		t.Fatal("the held GET moved its key: a read of a key still on the source is answered there")
	}
	if err := c.Append(ctx, k, "").Err(); err != nil {
		t.Fatal(err)
	}
	if n := mt.tc.direct(0).Exists(ctx, k).Val(); n != 0 {
		t.Fatal("key still on the source after a write while migrating")
	}
	if v, ttl := mt.tc.direct(1).Get(ctx, k).Val(), mt.tc.direct(1).PTTL(ctx, k).Val(); v != "v" || ttl <= 0 || ttl > time.Minute {
		t.Fatalf("target has %q with TTL %v", v, ttl)
	}
	if v := mt.tc.direct(0).Get(ctx, other).Val(); v != "x" {
		t.Fatalf("other key: %q on g1", v)
	}
}

// TestFreezeTryAgain: a request held longer than FreezeWait answers -TRYAGAIN; a cancelled
// freeze serves the slot from its owner again.
func TestFreezeTryAgain(t *testing.T) {
	mt := newMigTest(t, 1, Config{FreezeWait: 150 * time.Millisecond})
	ctx := ctxT(t)
	c := mt.tc.client(0)
	k := keysIn("ta", 0, 99, 1)[0]
	c.Set(ctx, k, "v", 0)
	id := mt.start(0, 99)
	start := time.Now()
	err := c.Get(ctx, k).Err()
	took := time.Since(start)
	want := "TRYAGAIN slot " + itoa(slotOf(k)) + " is being migrated, try again"
	if err == nil || err.Error() != want {
		t.Fatalf("GET on a frozen slot: %v, want %s", err, want)
	}
	if took < 150*time.Millisecond || took > 2*time.Second {
		t.Fatalf("TRYAGAIN after %v, want about 150ms", took)
	}
	if n := mt.tc.servers[0].Stats().MigrationTryAgain; n != 1 {
		t.Fatalf("MigrationTryAgain = %d", n)
	}
	mt.apply(&fsm.ControlMigration{ID: id, Action: fsm.MigrationCancel})
	if v, err := c.Get(ctx, k).Result(); v != "v" || err != nil {
		t.Fatalf("after cancel: %q, %v", v, err)
	}
}

// busyScript returns KEYS[1] after keeping its server busy for ARGV[1] microseconds: a request
// that stays in flight for a known time.
const busyScript = `local t = redis.call('TIME')
local start = tonumber(t[1]) * 1000000 + tonumber(t[2])
repeat t = redis.call('TIME') until tonumber(t[1]) * 1000000 + tonumber(t[2]) - start >= tonumber(ARGV[1])
return redis.call('GET', KEYS[1])`

// TestWaitIdleWaitsForInFlight: WaitIdle returns only after a request routed before the freeze
// has had its reply.
func TestWaitIdleWaitsForInFlight(t *testing.T) {
	mt := newMigTest(t, 1, Config{})
	ctx := ctxT(t)
	s, c := mt.tc.servers[0], mt.tc.client(0)
	k := keysIn("wi", 0, 99, 1)[0]
	c.Set(ctx, k, "v", 0)
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- c.Eval(ctx, busyScript, []string{k}, 400000).Err() }()
	waitFor(t, "EVAL in flight", func() bool { return s.inflight[slotOf(k)].Load() > 0 })
	id := mt.start(0, 99)
	slots := migrate.SlotSetOf(mt.st.Migrations[id].Slots)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := s.WaitIdle(short, slots); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitIdle with a request in flight: %v", err)
	}
	if err := s.WaitIdle(ctx, slots); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 350*time.Millisecond {
		t.Fatalf("WaitIdle returned after %v, before the 400ms request ended", took)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// WaitIdle also waits for the router to apply the freeze: slots not frozen here time out.
	other := migrate.SlotSetOf([]fsm.SlotRange{{From: 5000, To: 5000}})
	short2, cancel2 := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel2()
	if err := s.WaitIdle(short2, other); err == nil {
		t.Fatal("WaitIdle for slots that are not frozen returned nil")
	}
}

// TestBlockedClientReleasedByFreeze: a client blocked on a slot that freezes answers -TRYAGAIN
// at once, so the barrier does not wait for its timeout; while the slot migrates, a blocking
// command blocks on the target and a push through another node wakes it.
func TestBlockedClientReleasedByFreeze(t *testing.T) {
	mt := newMigTest(t, 2, Config{})
	ctx := ctxT(t)
	c, c2 := mt.tc.client(0), mt.tc.client(1, func(o *redis.Options) { o.ReadTimeout = 40 * time.Second })
	k := keysIn("bl", 0, 99, 1)[0]
	res := make(chan error, 1)
	go func() { res <- c2.BLPop(ctx, 30*time.Second, k).Err() }()
	waitFor(t, "BLPOP blocked on g1", func() bool { return blockedClients(t, mt.tc, 0) > 0 })
	start := time.Now()
	id := mt.start(0, 99)
	if err := <-res; !isTryAgain(err) {
		t.Fatalf("blocked BLPOP after the freeze: %v", err)
	}
	// It was ended by CLIENT UNBLOCK ... TIMEOUT (an element popped meanwhile is not lost).
	if st := mt.tc.direct(0).Info(ctx, "commandstats").Val(); !strings.Contains(st, "cmdstat_client|unblock:calls=") {
		t.Fatal("the blocked client was not released by CLIENT UNBLOCK")
	}
	mt.ack(id)
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("release and barrier took %v", took)
	}
	if n := blockedClients(t, mt.tc, 0); n != 0 {
		t.Fatalf("%d clients still blocked on the source", n)
	}
	pop := make(chan []string, 1)
	go func() { pop <- c2.BLPop(ctx, 10*time.Second, k).Val() }()
	waitFor(t, "BLPOP blocked on the target", func() bool { return blockedClients(t, mt.tc, 1) > 0 })
	if err := c.RPush(ctx, k, "x").Err(); err != nil {
		t.Fatal(err)
	}
	if v := <-pop; len(v) != 2 || v[1] != "x" {
		t.Fatalf("BLPOP on the target = %v", v)
	}
}

// TestMovedKeysCache: the cache is per database and stops growing at its bound.
func TestMovedKeysCache(t *testing.T) {
	kc := newKeyCache(2)
	kc.add(0, "a")
	kc.add(1, "a")
	kc.add(0, "b")
	if !kc.has(0, []byte("a")) || !kc.has(1, []byte("a")) || kc.has(0, []byte("b")) || kc.has(2, []byte("a")) {
		t.Fatal("cache contents wrong")
	}
	if off := newKeyCache(-1); func() bool { off.add(0, "a"); return off.has(0, []byte("a")) }() {
		t.Fatal("a disabled cache remembers keys")
	}
}
