package migrate

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/internal/testredis"
)

// seedSmall writes one key of every type in db, some with TTLs, and returns their names.
func seedSmall(t *testing.T, c *redis.Client, prefix string) []string {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	must(t, c.Set(ctx, prefix+"str", "hello", time.Hour).Err())
	must(t, c.Set(ctx, prefix+"int", 42, 0).Err())
	must(t, c.HSet(ctx, prefix+"hash", "a", "1", "b", "2").Err())
	must(t, c.PExpire(ctx, prefix+"hash", 90*time.Minute).Err())
	must(t, c.SAdd(ctx, prefix+"set", "x", "y", 3).Err())
	must(t, c.ZAdd(ctx, prefix+"zset", redis.Z{Score: 1.5, Member: "a"}, redis.Z{Score: -2e300, Member: "b"}).Err())
	must(t, c.RPush(ctx, prefix+"list", "1", "2", "3", "2").Err())
	must(t, c.Expire(ctx, prefix+"list", 2*time.Hour).Err())
	must(t, c.Do(ctx, "XADD", prefix+"stream", "1-1", "f", "v").Err())
	must(t, c.Do(ctx, "XADD", prefix+"stream", "2-1", "g", "w").Err())
	must(t, c.Do(ctx, "XGROUP", "CREATE", prefix+"stream", "grp", "0").Err())
	must(t, c.Do(ctx, "XREADGROUP", "GROUP", "grp", "alice", "COUNT", 1, "STREAMS", prefix+"stream", ">").Err())
	must(t, c.PFAdd(ctx, prefix+"hll", "a", "b", "c").Err())
	return []string{prefix + "str", prefix + "int", prefix + "hash", prefix + "set", prefix + "zset",
		prefix + "list", prefix + "stream", prefix + "hll"}
}

func TestMoveKeysSmallEveryType(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	for _, db := range []int{0, 5} {
		src, dst := e.src(t, db), e.dst(t, db)
		keys := seedSmall(t, src, fmt.Sprintf("db%d:", db))
		want := map[string]string{}
		exp := map[string]time.Duration{}
		for _, k := range keys {
			want[k] = value(ctx, t, src, k)
			exp[k] = src.PExpireTime(ctx, k).Val()
		}
		m := e.mover(t, nil)
		moved, err := m.MoveKeys(ctx, db, append(keys, "never-existed", keys[0])...)
		if err != nil {
			t.Fatal(err)
		}
		if moved != len(keys) {
			t.Errorf("db %d: moved %d, want %d", db, moved, len(keys))
		}
		for _, k := range keys {
			if n := src.Exists(ctx, k).Val(); n != 0 {
				t.Errorf("db %d: %s still on the source", db, k)
			}
			if got := value(ctx, t, dst, k); got != want[k] {
				t.Errorf("db %d: %s on target = %q, want %q", db, k, got, want[k])
			}
			got := dst.PExpireTime(ctx, k).Val()
			if d := got - exp[k]; (exp[k] < 0) != (got < 0) || d < -time.Second || d > time.Second {
				t.Errorf("db %d: %s expires at %v on target, %v on source", db, k, got, exp[k])
			}
		}
		// Moving again: nothing left to move, which is fine.
		moved, err = m.MoveKeys(ctx, db, keys...)
		if err != nil || moved != 0 {
			t.Errorf("second MoveKeys = %d, %v; want 0, nil", moved, err)
		}
		if left := internalKeys(ctx, t, src); len(left) != 0 {
			t.Errorf("internal keys left on the source: %v", left)
		}
	}
	// The other db was not touched by the db 5 move.
	if n := e.dst(t, 0).DBSize(ctx).Val(); n != 8 {
		t.Errorf("target db 0 holds %d keys, want 8", n)
	}
}

// A stale copy on the target (a MIGRATE whose reply was lost, or leftovers) is replaced: while
// the source holds a key, its copy is the authoritative one.
func TestMoveKeysReplacesStaleTargetCopy(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 10*time.Second)
	src, dst := e.src(t, 0), e.dst(t, 0)
	must(t, src.Set(ctx, "k", "source", 0).Err())
	must(t, dst.Set(ctx, "k", "stale", time.Hour).Err())
	must(t, src.Set(ctx, "h", "source", 0).Err())
	must(t, dst.HSet(ctx, "h", "f", "stale").Err())
	m := e.mover(t, nil)
	if moved, err := m.MoveKeys(ctx, 0, "k", "h"); err != nil || moved != 2 {
		t.Fatalf("MoveKeys = %d, %v", moved, err)
	}
	// Strings move by SET: the stale copy's TTL and type go with it.
	if v, ttl := dst.Get(ctx, "k").Val(), dst.PTTL(ctx, "k").Val(); v != "source" || ttl != -1 {
		t.Fatalf("target has %q with PTTL %v, want the source's value without a TTL", v, ttl)
	}
	if v := dst.Get(ctx, "h").Val(); v != "source" {
		t.Fatalf("target has %q for a stale hash", v)
	}
}

// Batch copies are bounded by BatchBytes: keys over the budget go in the next batch.
func TestMoveKeysByteBudget(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 20*time.Second)
	src, dst := e.src(t, 0), e.dst(t, 0)
	var keys []string
	for i := range 50 {
		k := fmt.Sprintf("blob%d", i)
		keys = append(keys, k)
		must(t, src.Set(ctx, k, strings.Repeat("x", 100<<10), 0).Err())
	}
	must(t, dst.ConfigResetStat(ctx).Err())
	m := e.mover(t, func(c *Config) { c.BatchBytes = 300 << 10 })
	moved, err := m.MoveKeys(ctx, 0, keys...)
	if err != nil || moved != 50 {
		t.Fatalf("MoveKeys = %d, %v", moved, err)
	}
	if n := dst.DBSize(ctx).Val(); n != 50 {
		t.Fatalf("target holds %d keys", n)
	}
	// At most 3 keys per batch: the target ran at least 17 restores (each one EXEC).
	if calls := commandStats(ctx, t, dst)["exec"].calls; calls < 17 {
		t.Errorf("%d restores for 50 keys of 100 KiB under a 300 KiB budget", calls)
	}
	if stats := commandStats(ctx, t, src); stats["migrate"].calls > 0 {
		t.Errorf("the source ran MIGRATE %d times: small keys go by batch copies", stats["migrate"].calls)
	}
}

// A small key locked by a dead mover waits for the lock to expire, then moves.
func TestMoveKeysSmallKeyWaitsForStaleLock(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 10*time.Second)
	src, dst := e.src(t, 0), e.dst(t, 0)
	must(t, src.Set(ctx, "k", "v", 0).Err())
	setLock(ctx, t, src, "k", "dead:1", 300*time.Millisecond)
	short := e.mover(t, func(c *Config) { c.LockWait = 20 * time.Millisecond })
	if _, err := short.MoveKeys(ctx, 0, "k"); !errors.Is(err, ErrKeyBusy) {
		t.Fatalf("MoveKeys under a held lock = %v, want ErrKeyBusy", err)
	}
	if src.Exists(ctx, "k").Val() != 1 {
		t.Fatal("a locked key was moved")
	}
	m := e.mover(t, func(c *Config) { c.LockWait = 5 * time.Second })
	if moved, err := m.MoveKeys(ctx, 0, "k"); err != nil || moved != 1 {
		t.Fatalf("MoveKeys = %d, %v", moved, err)
	}
	if dst.Get(ctx, "k").Val() != "v" || src.Exists(ctx, "k", LocksKey).Val() != 0 {
		t.Fatal("key not moved or lock left behind")
	}
}

// TestMoveKeysMissingKeyUnderALiveLock: a key missing on the source while a live lock of
// another mover holds it (a batch in flight whose key expired after its dump) is busy, not
// "not on the source": a write let through to the target would be removed there by that
// batch's restore. With the lock gone it is off the source.
func TestMoveKeysMissingKeyUnderALiveLock(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 10*time.Second)
	src := e.src(t, 0)
	must(t, src.HSet(ctx, LocksKey, "k", LockValue("other:1", time.Now().Add(time.Minute))).Err())
	short := e.mover(t, func(c *Config) { c.LockWait = 20 * time.Millisecond; c.Fence = "run:1" })
	if moved, err := short.MoveKeys(ctx, 0, "k"); !errors.Is(err, ErrKeyBusy) {
		t.Fatalf("MoveKeys of a missing key under a live lock = %d, %v, want ErrKeyBusy", moved, err)
	}
	if short.KnownOff(0, "k") {
		t.Fatal("a missing key under a live lock is known off the source")
	}
	must(t, src.HDel(ctx, LocksKey, "k").Err())
	m := e.mover(t, func(c *Config) { c.Fence = "run:2" })
	if moved, err := m.MoveKeys(ctx, 0, "k"); err != nil || moved != 0 || !m.KnownOff(0, "k") {
		t.Fatalf("without the lock: MoveKeys = %d, %v; known off %v", moved, err, m.KnownOff(0, "k"))
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New without addresses must fail")
	}
	if _, err := New(Config{Source: Endpoint{Addr: "a:1"}, Target: Endpoint{Addr: "nohostport"}}); err == nil {
		t.Error("New with a bad target address must fail")
	}
}

// The source never receives the target's credentials: keys a mover takes under their lock
// (one another mover held, a big one) are copied by the node, where the source used to MIGRATE
// them with AUTH and the target's password in the script's arguments. An admin caller who added
// a group on a Redis of their own as a migration's source read the target's internal password
// there (docs/security.md).
func TestSourceNeverSeesTheTargetsPassword(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	src, dst := e.src(t, 0), e.dst(t, 0)
	mon, conn := testredis.Monitor(t, e.srcSrv.Addr)

	must(t, src.Set(ctx, "held", "v", 0).Err())
	for i := 0; i < 50; i++ {
		must(t, src.HSet(ctx, "big", fmt.Sprintf("f%d", i), i).Err())
	}
	// "held" is locked by another mover for a moment: MoveKeys waits for the lock and moves
	// it under its own.
	setLock(ctx, t, src, "held", "other", 300*time.Millisecond)
	m := e.mover(t, func(c *Config) { c.BigKeyElements = 10 })
	if n, err := m.MoveKeys(ctx, 0, "held", "big"); err != nil || n != 2 {
		t.Fatalf("MoveKeys = %d, %v", n, err)
	}
	if dst.Get(ctx, "held").Val() != "v" || dst.HLen(ctx, "big").Val() != 50 || src.Exists(ctx, "held", "big").Val() != 0 {
		t.Fatal("the keys did not move")
	}
	must(t, src.Echo(ctx, "end-of-test").Err())
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		l, err := mon.ReadString('\n')
		if err != nil {
			t.Fatalf("MONITOR: %v", err)
		}
		if strings.Contains(l, e.dstPass) {
			t.Fatalf("the source received the target's password: %.200s", l)
		}
		if strings.Contains(l, "end-of-test") {
			return
		}
	}
}
