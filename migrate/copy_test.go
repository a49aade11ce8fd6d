package migrate

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The invariant under concurrency: clients that MoveKeys a key and then write it on the target
// (as the router does) while the mover copies batches never lose a write to a late restore,
// and nothing stays on the source. Every client write is an APPEND of a unique token, so the
// final value shows any write that was lost or applied to a stale copy.
func TestMoveSlotsWithClientsWritingTheTarget(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	slots, _ := FromRanges([2]int{0, NumSlots - 1})
	src, dst := e.src(t, 0), e.dst(t, 0)
	const n = 6000
	in, _ := seedKeys(t, src, "c:", n, 16, &slots)
	keys := make([]string, 0, len(in))
	for k := range in {
		keys = append(keys, k)
	}
	mover := e.mover(t, nil)
	access := e.mover(t, func(c *Config) { c.Owner = "router" }) // another node's on-access mover
	var (
		mu      sync.Mutex
		appends = map[string][]string{}
		stop    = make(chan struct{})
		wg      sync.WaitGroup
		errc    = make(chan error, 16)
	)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := keys[rng.IntN(len(keys))]
				m := mover
				if i%2 == 1 {
					m = access
				}
				if _, err := m.MoveKeys(ctx, 0, k); err != nil {
					if errors.Is(err, ErrKeyBusy) {
						continue
					}
					errc <- err
					return
				}
				tok := fmt.Sprintf("|%d.%d", w, i)
				mu.Lock() // one writer per key at a time, as the order of appends is checked
				if err := dst.Append(ctx, k, tok).Err(); err != nil {
					mu.Unlock()
					errc <- err
					return
				}
				appends[k] = append(appends[k], tok)
				mu.Unlock()
			}
		}()
	}
	// Throttled, so the move lasts long enough for the clients to race it (about 2 s).
	err := mover.MoveSlots(ctx, slots, MoveOptions{BatchKeys: 64, Rate: func() int64 { return 3000 }})
	close(stop)
	wg.Wait()
	close(errc)
	if err != nil {
		t.Fatal(err)
	}
	for err := range errc {
		t.Fatal(err)
	}
	if left := src.DBSize(ctx).Val(); left != 0 {
		t.Fatalf("%d keys left on the source", left)
	}
	written := 0
	for _, k := range keys {
		want := strings.Repeat("p", 16) + k + strings.Join(appends[k], "")
		written += len(appends[k])
		if got := dst.Get(ctx, k).Val(); got != want {
			t.Fatalf("%s on the target = %q, want %q (a client write was lost or applied to a stale copy)", k, got, want)
		}
	}
	if written < 100 {
		t.Fatalf("only %d client writes during the move: the test did not race anything", written)
	}
	if left := internalKeys(ctx, t, src); len(left) != 0 {
		t.Errorf("internal keys left on the source: %v", left)
	}
	t.Logf("%d keys moved with %d client writes on the target meanwhile", len(keys), written)
}

// A restore that comes after half the lock TTL (the locks might have lapsed and the keys been
// moved and written since) is refused by the target: nothing is restored, the locks are
// released and the keys stay on the source.
func TestRestoreBatchRefusedAfterTheLease(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 10*time.Second)
	src, dst := e.src(t, 0), e.dst(t, 0)
	must(t, src.Set(ctx, "a", "1", 0).Err())
	must(t, src.Set(ctx, "b", "2", time.Hour).Err())
	m := e.mover(t, nil)
	sc, dc, err := m.raws(0)
	must(t, err)
	now, lock, res, err := m.dumpBatch(ctx, sc, []string{"a", "b", "gone"}, 1<<20)
	must(t, err)
	if res[0].st != stMoved || res[1].st != stMoved || res[2].st != stNoKey || res[1].expireAt <= 0 {
		t.Fatalf("dump = %+v", res)
	}
	if got, _ := src.HGet(ctx, LocksKey, "a").Result(); got != lock {
		t.Fatalf("lock of a = %q, want the batch's %q", got, lock)
	}
	// Another mover sees the locked keys as busy.
	_, _, other, err := m.dumpBatch(ctx, sc, []string{"a"}, 1<<20)
	must(t, err)
	if other[0].st != stBusy {
		t.Fatalf("a locked key dumps as %d, want busy", other[0].st)
	}
	stale := now - m.cfg.LockTTL.Milliseconds()
	if _, err := m.restoreBatch(ctx, sc, dc, stale, res[:2], lock); !errors.Is(err, ErrKeyBusy) {
		t.Fatalf("restore after the lease = %v, want ErrKeyBusy", err)
	}
	if n := dst.Exists(ctx, "a", "b").Val(); n != 0 {
		t.Fatalf("%d keys restored after the lease", n)
	}
	if n := src.Exists(ctx, "a", "b").Val(); n != 2 || src.Exists(ctx, LocksKey).Val() != 0 {
		t.Fatalf("source: %d of the keys, locks %v; want the 2 keys and no lock", n, src.HGetAll(ctx, LocksKey).Val())
	}
	// In time, it goes through, TTL included.
	now, lock, res, err = m.dumpBatch(ctx, sc, []string{"a", "b"}, 1<<20)
	must(t, err)
	ours, err := m.restoreBatch(ctx, sc, dc, now, res, lock)
	if err != nil || len(ours) != 2 || ours[0] != 1 || ours[1] != 1 {
		t.Fatalf("restore = %v, %v", ours, err)
	}
	if dst.Get(ctx, "a").Val() != "1" || dst.TTL(ctx, "b").Val() < 59*time.Minute {
		t.Fatal("restored values or TTL wrong")
	}
	if n := src.DBSize(ctx).Val(); n != 0 {
		t.Fatalf("source holds %d keys after the move", n)
	}
}

// A lock that lapsed between the restore and the delete (a stalled mover) is reported as not
// moved, and the source keeps the key for its new holder, if any; a lapsed lock nobody took is
// dropped, its key kept.
func TestRestoreBatchLockLost(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 10*time.Second)
	src := e.src(t, 0)
	must(t, src.Set(ctx, "a", "1", 0).Err())
	must(t, src.Set(ctx, "b", "2", 0).Err())
	m := e.mover(t, func(c *Config) { c.LockTTL = 300 * time.Millisecond })
	sc, _, err := m.raws(0)
	must(t, err)
	now, lock, res, err := m.dumpBatch(ctx, sc, []string{"a", "b"}, 1<<20)
	must(t, err)
	if res[0].st != stMoved || res[1].st != stMoved {
		t.Fatalf("dump = %+v", res)
	}
	// The restore went through in time; then the mover stalls past the lock's deadline.
	deadline := now + m.cfg.LockTTL.Milliseconds()
	for src.Time(ctx).Val().UnixMilli() <= deadline {
		if ctx.Err() != nil {
			t.Fatal(ctx.Err())
		}
		time.Sleep(10 * time.Millisecond) // polling the source's clock
	}
	setLock(ctx, t, src, "a", "someone-else", time.Minute) // a's lapsed lock was retaken
	ours, err := m.finish(ctx, sc, res, lock)
	if err != nil || !slices.Equal(ours, []int64{0, 0}) {
		t.Fatalf("finish = %v, %v; want both keys reported as not moved", ours, err)
	}
	if src.Exists(ctx, "a", "b").Val() != 2 || lockHolder(ctx, t, src, "a") != "someone-else" || src.HExists(ctx, LocksKey, "b").Val() {
		t.Fatal("a key left the source, the new holder's lock was touched, or b's lapsed lock was kept")
	}
}

// The locks of a batch copy live in LocksKey: a lapsed lock (its deadline past, its value still
// there) is free, a key named twice in a batch is taken once, the hash has no expiry (an older
// build's is dropped),
// the DUMP of a locked key that is not a string comes with the locks, and nothing is left
// behind once the batch is done.
func TestDumpBatchLocks(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 10*time.Second)
	src, dst := e.src(t, 0), e.dst(t, 0)
	must(t, src.Set(ctx, "a", "1", 0).Err())
	must(t, src.Set(ctx, "b", "2", 0).Err())
	must(t, src.Set(ctx, "c", "3", 0).Err())
	must(t, src.Set(ctx, "gone", "4", 0).Err()) // locked, then released unmoved
	must(t, src.HSet(ctx, "h", "f", "v").Err())
	must(t, src.HSet(ctx, LocksKey, "a", LockValue("dead:1", time.Now().Add(-time.Second))).Err())
	must(t, src.Expire(ctx, LocksKey, time.Minute).Err()) // as an older build left it
	m := e.mover(t, nil)
	sc, dc, err := m.raws(0)
	must(t, err)
	token := m.newToken()
	reply, err := dumpScript.Run(ctx, src, lockedKeys([]string{"a", "b", "b", "h", "gone"}), m.cfg.BigKeyElements,
		m.cfg.BigKeyBytes, 1<<20, token, m.cfg.LockTTL.Milliseconds(), "").Slice()
	must(t, err)
	lock, _ := reply[1].(string)
	now, _ := reply[0].(int64)
	field := func(i, f int) any { return reply[2+5*i+f] }
	var st []int64
	for i := range 5 {
		st = append(st, field(i, 0).(int64))
	}
	if want := []int64{stMoved, stMoved, stBusy, stMoved, stMoved}; !slices.Equal(st, want) {
		t.Fatalf("statuses %v, want %v (a lapsed lock is free, a repeated key busy)", st, want)
	}
	if field(0, 2) != int64(1) || field(3, 2) != int64(0) {
		t.Fatalf("kinds: string %v, hash %v", field(0, 2), field(3, 2))
	}
	if field(0, 4) != nil || field(1, 4) != nil || field(2, 4) != nil || field(4, 4) != nil {
		t.Fatalf("strings' values in the reply: %q %q %q %q", field(0, 4), field(1, 4), field(2, 4), field(4, 4))
	}
	if dump, _ := field(3, 4).(string); dump != src.Dump(ctx, "h").Val() {
		t.Fatalf("the hash's payload %q is not its DUMP", dump)
	}
	for _, k := range []string{"a", "b", "h", "gone"} {
		if got := lockHolder(ctx, t, src, k); got != token {
			t.Fatalf("lock of %s held by %q", k, got)
		}
	}
	if ttl, err := src.Do(ctx, "PTTL", LocksKey).Int64(); err != nil || ttl != -1 {
		t.Fatalf("locks hash PTTL %d (%v), want -1: no expiry", ttl, err)
	}
	m.unlockBatch(ctx, sc, []dumped{{key: "gone"}}, lock)
	out := []dumped{{key: "a", st: stMoved, str: true, expireAt: -1, payload: []byte("1")}, {key: "h", st: stMoved, expireAt: -1, payload: []byte(field(3, 4).(string))}}
	ours, err := m.restoreBatch(ctx, sc, dc, now, out, lock)
	if err != nil || !slices.Equal(ours, []int64{1, 1}) {
		t.Fatalf("restore = %v, %v", ours, err)
	}
	if dst.Get(ctx, "a").Val() != "1" || dst.HGet(ctx, "h", "f").Val() != "v" {
		t.Fatal("values not restored")
	}
	// b's lock is still ours (the test took it by hand): release it, and nothing is left but gone.
	m.unlockBatch(ctx, sc, []dumped{{key: "b"}}, lock)
	if left := internalKeys(ctx, t, src); len(left) != 0 || src.Exists(ctx, "a", "h").Val() != 0 || src.Exists(ctx, "gone").Val() != 1 {
		t.Fatalf("left on the source: %v, %d keys", left, src.Exists(ctx, "a", "h").Val())
	}
}

// restoreTx's lease rests on EXEC aborting when a WATCHed key expired after WATCH (Redis >=
// 6.0.9), whether the server already deleted it or not: a transaction queued in time whose
// EXEC comes after the lease's deadline writes nothing.
func TestRestoreTxLeaseExpiresBeforeExec(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 10*time.Second)
	dst := e.dst(t, 0)
	conn := dst.Conn()
	defer conn.Close()
	lease := leasePrefix + "test"
	must(t, conn.Set(ctx, lease, 1, 50*time.Millisecond).Err())
	at, err := conn.PExpireTime(ctx, lease).Result()
	must(t, err)
	must(t, conn.Do(ctx, "WATCH", lease).Err())
	must(t, conn.Do(ctx, "MULTI").Err())
	must(t, conn.Do(ctx, "SET", "x", "1").Err())
	for { // wait on another connection, without touching the lease, until its deadline passed
		now, err := dst.Time(ctx).Result()
		must(t, err)
		if now.UnixMilli() > int64(at/time.Millisecond) {
			break
		}
		if ctx.Err() != nil {
			t.Fatal(ctx.Err())
		}
	}
	if err := conn.Do(ctx, "EXEC").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("EXEC after the lease expired = %v, want an aborted transaction", err)
	}
	if dst.Exists(ctx, "x").Val() != 0 {
		t.Fatal("the transaction wrote after the lease expired")
	}
}

// A restore on a target where the run is recorded over (a fence the source does not have yet)
// writes nothing, answers ErrRunOver, releases the locks and leaves no lease key behind.
func TestRestoreBatchFencedOnTheTarget(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 10*time.Second)
	src, dst := e.src(t, 0), e.dst(t, 0)
	must(t, src.Set(ctx, "a", "1", 0).Err())
	must(t, src.HSet(ctx, "h", "f", "v").Err())
	m := e.mover(t, func(c *Config) { c.Fence = FenceField(5, false) })
	sc, dc, err := m.raws(0)
	must(t, err)
	now, lock, res, err := m.dumpBatch(ctx, sc, []string{"a", "h"}, 1<<20)
	must(t, err)
	must(t, dst.HSet(ctx, FenceKey, FenceField(5, false), "over").Err())
	if _, err := m.restoreBatch(ctx, sc, dc, now, res, lock); !errors.Is(err, ErrRunOver) {
		t.Fatalf("restore on a fenced target = %v, want ErrRunOver", err)
	}
	if n := dst.Exists(ctx, "a", "h").Val(); n != 0 {
		t.Fatalf("%d keys restored on a fenced target", n)
	}
	if src.Exists(ctx, "a", "h").Val() != 2 || src.Exists(ctx, LocksKey).Val() != 0 {
		t.Fatal("the keys left the source or their locks were kept")
	}
	if left := internalKeys(ctx, t, dst); len(left) != 0 {
		t.Fatalf("left on the target: %v", left)
	}
}

// The batch copy's raw connections survive the servers dropping them between batches (a
// restart, a CLIENT KILL, an idle timeout): the idle connections are found dead on first use
// and the step goes again on a new one.
func TestBatchCopyAfterConnectionsDropped(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 10*time.Second)
	src, dst := e.src(t, 0), e.dst(t, 0)
	m := e.mover(t, nil)
	for i, k := range []string{"a", "b"} {
		must(t, src.Set(ctx, k, k, 0).Err())
		if n, err := m.MoveKeys(ctx, 0, k); err != nil || n != 1 {
			t.Fatalf("move %d: %d, %v", i, n, err)
		}
		for _, c := range []*redis.Client{src, dst} { // drop every other client's connections
			must(t, c.Do(ctx, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Err())
		}
	}
	if dst.Get(ctx, "a").Val() != "a" || dst.Get(ctx, "b").Val() != "b" || src.Exists(ctx, "a", "b").Val() != 0 {
		t.Fatal("keys not moved after the connections were dropped")
	}
}

// dumpBatch reads a batch's strings by an MGET in the dump's round trip, except when the batch
// holds a string too big for it (big, or over the byte budget): then the dump script aborts
// that MGET and only the locked strings are read, so the big one never leaves the source.
func TestDumpBatchDoesNotReadBigStrings(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 10*time.Second)
	src := e.src(t, 0)
	must(t, src.Set(ctx, "a", "1", 0).Err())
	must(t, src.Set(ctx, "b", "2", time.Hour).Err())
	must(t, src.HSet(ctx, "h", "f", "v").Err())
	must(t, src.Set(ctx, "big", strings.Repeat("x", 1<<20), 0).Err())
	must(t, src.Set(ctx, "over", strings.Repeat("y", 60<<10), 0).Err())
	m := e.mover(t, func(c *Config) { c.BigKeyBytes = 100 << 10 })
	sc, _, err := m.raws(0)
	must(t, err)
	sent := func() int64 {
		info := src.Info(ctx, "stats").Val()
		_, rest, _ := strings.Cut(info, "total_net_output_bytes:")
		v, _, _ := strings.Cut(rest, "\r")
		n, err := strconv.ParseInt(v, 10, 64)
		must(t, err)
		return n
	}
	for _, tc := range []struct {
		keys []string
		want []int64
	}{
		{[]string{"a", "b", "h"}, []int64{stMoved, stMoved, stMoved}},                                   // read in the dump's round trip
		{[]string{"a", "big", "b", "over", "h"}, []int64{stMoved, stBig, stMoved, stDeferred, stMoved}}, // big and over budget: not read
	} {
		before := sent()
		_, lock, res, err := m.dumpBatch(ctx, sc, tc.keys, 50<<10)
		must(t, err)
		if out := sent() - before; out > 50<<10 {
			t.Fatalf("%v: the source sent %d bytes for a dump within a 50 KiB budget", tc.keys, out)
		}
		var st []int64
		for _, d := range res {
			st = append(st, d.st)
		}
		if !slices.Equal(st, tc.want) {
			t.Fatalf("%v: statuses %v, want %v", tc.keys, st, tc.want)
		}
		vals := map[string]string{}
		for _, d := range res {
			vals[d.key] = string(d.payload)
		}
		if vals["a"] != "1" || vals["b"] != "2" || vals["h"] != src.Dump(ctx, "h").Val() || vals["big"] != "" || vals["over"] != "" {
			t.Fatalf("%v: values %q", tc.keys, vals)
		}
		m.unlockBatch(ctx, sc, lockedOf(res), lock)
	}
	if left := internalKeys(ctx, t, src); len(left) != 0 {
		t.Fatalf("left on the source: %v", left)
	}
}

// A batch copy keeps each key's absolute expiry to the millisecond, for strings and other
// types, by restoreTx and by the keep-target script: a TTL re-based on the target's clock
// shifted it by the time between the dump and the restore, and two DCs that moved a slot
// differently then disagreed on when a key expires.
func TestBatchCopyKeepsAbsoluteExpiry(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("keepTarget=%v", keep), func(t *testing.T) {
			e := newEnv(t)
			ctx := ctxT(t, 10*time.Second)
			src, dst := e.src(t, 0), e.dst(t, 0)
			at := time.Now().Add(time.Hour).UnixMilli() + 123
			must(t, src.Set(ctx, "s", "v", 0).Err())
			must(t, src.HSet(ctx, "h", "f", "v").Err())
			for _, k := range []string{"s", "h"} {
				must(t, src.Do(ctx, "PEXPIREAT", k, at).Err())
			}
			must(t, src.Set(ctx, "forever", "v", 0).Err())
			m := e.mover(t, func(c *Config) { c.KeepTarget = keep })
			sc, dc, err := m.raws(0)
			must(t, err)
			now, lock, res, err := m.dumpBatch(ctx, sc, []string{"s", "h", "forever"}, 1<<20)
			must(t, err)
			// The copy takes a few ms: a TTL carried relative to the dump would land later.
			waitFor(t, 5*time.Second, "the target's clock to pass the dump's by 5 ms", func() bool {
				tm := dst.Time(ctx).Val()
				return tm.UnixMilli() >= now+5
			})
			if _, err := m.restoreBatch(ctx, sc, dc, now, res, lock); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"s", "h"} {
				if got := dst.Do(ctx, "PEXPIRETIME", k).Val(); got != at {
					t.Errorf("%s: target PEXPIRETIME %v, want the source's %d", k, got, at)
				}
			}
			if got := dst.Do(ctx, "PEXPIRETIME", "forever").Val(); got != int64(-1) {
				t.Errorf("forever: target PEXPIRETIME %v, want -1", got)
			}
		})
	}
}

// A source under a volatile-* eviction policy keeps the locks of a batch in flight: the locks
// hash has no expiry, so it is no candidate. With one (the last lock's deadline) it was the
// first key volatile-ttl dropped, and every live lock with it (another mover could then move
// a locked key, a client write it on the target, and this batch's restore overwrite the write).
func TestEvictingSourceKeepsTheLocks(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	src := e.src(t, 0)
	for i := range 20 {
		must(t, src.Set(ctx, fmt.Sprintf("k%d", i), "v", 0).Err())
	}
	m := e.mover(t, nil)
	keys := []string{}
	for i := range 20 {
		keys = append(keys, fmt.Sprintf("k%d", i))
	}
	token := m.newToken()
	_, err := dumpScript.Run(ctx, src, lockedKeys(keys), m.cfg.BigKeyElements, m.cfg.BigKeyBytes, 1<<20, token,
		time.Minute.Milliseconds(), "").Slice()
	must(t, err)
	used, err := src.MemoryUsage(ctx, LocksKey).Result()
	must(t, err)
	if used == 0 {
		t.Fatal("no locks hash")
	}
	info := src.Info(ctx, "memory").Val()
	var mem int64
	for _, l := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(l, "used_memory:"); ok {
			mem, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	must(t, src.ConfigSet(ctx, "maxmemory-policy", "volatile-ttl").Err())
	must(t, src.ConfigSet(ctx, "maxmemory", strconv.FormatInt(mem+(1<<20), 10)).Err())
	t.Cleanup(func() { src.ConfigSet(context.Background(), "maxmemory", "0") })
	// 4 MiB of keys that expire in an hour, over a limit 1 MiB above what the server held.
	val := strings.Repeat("x", 4096)
	for i := range 1024 {
		if err := src.Set(ctx, fmt.Sprintf("fill%d", i), val, time.Hour).Err(); err != nil {
			t.Fatalf("fill %d: %v", i, err)
		}
	}
	if ev := src.Info(ctx, "stats").Val(); !strings.Contains(ev, "evicted_keys:") || strings.Contains(ev, "evicted_keys:0\r\n") {
		t.Fatal("the server evicted nothing: the test exerts no pressure")
	}
	for _, k := range keys {
		if got := lockHolder(ctx, t, src, k); got != token {
			t.Fatalf("lock of %s held by %q after evictions, want %q", k, got, token)
		}
	}
}

// The sweep of lapsed locks takes thousands of fields in one call (Lua unpacks at most about
// 8,000 values at once: it deletes them in chunks), and the hash goes with the last of them.
func TestSweepLocksTakesManyFields(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	src := e.src(t, 0)
	past := LockValue("dead:1", time.Now().Add(-time.Minute))
	args := []any{locksPadField, locksPad}
	for i := range 9000 {
		args = append(args, fmt.Sprintf("k%d", i), past)
	}
	must(t, src.HSet(ctx, LocksKey, args...).Err())
	n, err := sweepLocksScript.Run(ctx, src, []string{LocksKey}, maxSweptLocks).Int()
	if err != nil || n != 9000 {
		t.Fatalf("sweep = %d, %v; want 9000 fields dropped", n, err)
	}
	if src.Exists(ctx, LocksKey).Val() != 0 {
		t.Fatal("the locks hash with only its pad left is still there")
	}
}

// An empty string another mover held moves once its lock is free: the chunked copy has no
// chunk for it, so it goes by a batch copy.
func TestMoveKeysEmptyStringUnderALock(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	src, dst := e.src(t, 0), e.dst(t, 0)
	must(t, src.Set(ctx, "empty", "", 0).Err())
	setLock(ctx, t, src, "empty", "other", 200*time.Millisecond)
	m := e.mover(t, nil)
	if n, err := m.MoveKeys(ctx, 0, "empty"); err != nil || n != 1 {
		t.Fatalf("MoveKeys = %d, %v", n, err)
	}
	if v, err := dst.Get(ctx, "empty").Result(); err != nil || v != "" || src.Exists(ctx, "empty").Val() != 0 {
		t.Fatalf("target %q (%v), source has it: %d", v, err, src.Exists(ctx, "empty").Val())
	}
}
