package migrate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// small thresholds keep big-key tests fast.
func smallBig(c *Config) {
	c.BigKeyElements = 1000
	c.LockWait = 30 * time.Second
}

func TestMoveKeysBigHash(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	src, dst := e.src(t, 2), e.dst(t, 2)
	const n = 200000
	fillHash(ctx, t, src, "{h}big", n, 10)
	must(t, src.PExpire(ctx, "{h}big", time.Hour).Err())
	exp := src.PExpireTime(ctx, "{h}big").Val()
	want := value(ctx, t, src, "{h}big")
	m := e.mover(t, smallBig)
	start := time.Now()
	moved, err := m.MoveKeys(ctx, 2, "{h}big")
	took := time.Since(start)
	if err != nil || moved != 1 {
		t.Fatalf("MoveKeys = %d, %v", moved, err)
	}
	t.Logf("%d-field hash moved in %v (%.0f fields/s)", n, took, n/took.Seconds())
	if src.Exists(ctx, "{h}big").Val() != 0 {
		t.Error("big hash still on the source")
	}
	if got := value(ctx, t, dst, "{h}big"); got != want {
		t.Errorf("target value differs (len %d vs %d)", len(got), len(want))
	}
	if got := dst.PExpireTime(ctx, "{h}big").Val(); got != exp {
		t.Errorf("target expires at %v, source at %v", got, exp)
	}
	if left := append(internalKeys(ctx, t, src), internalKeys(ctx, t, dst)...); len(left) != 0 {
		t.Errorf("lock/temp keys left: %v", left)
	}
	// Chunked: the target saw many HSETs through the write script, never one for all fields.
	if calls := cmdCalls(ctx, t, dst, "evalsha"); calls < n/1000 {
		t.Errorf("%d script calls on the target for %d fields in chunks of 1000", calls, n)
	}
}

// cmdCalls returns how many times the server ran cmd (INFO commandstats).
func cmdCalls(ctx context.Context, t *testing.T, c *redis.Client, cmd string) int {
	var calls int
	for _, line := range strings.Split(c.Info(ctx, "commandstats").Val(), "\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":"); ok {
			fmt.Sscanf(rest, "calls=%d", &calls)
		}
	}
	return calls
}

func TestMoveKeysBigEveryType(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	src, dst := e.src(t, 0), e.dst(t, 0)
	const n = 5000
	p := src.Pipeline()
	for i := range n {
		p.SAdd(ctx, "set", fmt.Sprintf("m%d", i))
		p.ZAdd(ctx, "zset", redis.Z{Score: float64(i%97) / 7, Member: fmt.Sprintf("m%d", i)})
		p.RPush(ctx, "list", fmt.Sprintf("e%d", i%13))
		p.Do(ctx, "XADD", "stream", fmt.Sprintf("%d-%d", 1000+i/3, i%3), "f", i, "g", "x")
	}
	p.ZAdd(ctx, "zset", redis.Z{Score: 1e308, Member: "huge"}, redis.Z{Score: -0.1, Member: "neg"})
	_, err := p.Exec(ctx)
	must(t, err)
	must(t, src.Set(ctx, "string", strings.Repeat("0123456789abcdef", 1<<20), 0).Err()) // 16 MiB
	must(t, src.Expire(ctx, "list", time.Hour).Err())
	// Stream metadata: groups, consumers, pending entries, deletions.
	for _, cmd := range [][]any{
		{"XGROUP", "CREATE", "stream", "g1", "0"},
		{"XGROUP", "CREATE", "stream", "g2", "$"},
		{"XREADGROUP", "GROUP", "g1", "alice", "COUNT", 40, "STREAMS", "stream", ">"},
		{"XREADGROUP", "GROUP", "g1", "bob", "COUNT", 1500, "STREAMS", "stream", ">"},
		{"XGROUP", "CREATECONSUMER", "stream", "g1", "carol"},
		{"XACK", "stream", "g1", "1000-0", "1000-1"},
		{"XDEL", "stream", "2000-1"}, // not pending: see DESIGN.md on PEL entries of deleted entries
		{"XADD", "stream", "9999-0", "last", "1"},
		{"XDEL", "stream", "9999-0"},
	} {
		must(t, src.Do(ctx, cmd...).Err())
	}
	keys := []string{"set", "zset", "list", "stream", "string"}
	want := map[string]string{}
	for _, k := range keys {
		want[k] = value(ctx, t, src, k)
	}
	exp := src.PExpireTime(ctx, "list").Val()
	m := e.mover(t, smallBig)
	moved, err := m.MoveKeys(ctx, 0, keys...)
	if err != nil || moved != len(keys) {
		t.Fatalf("MoveKeys = %d, %v", moved, err)
	}
	for _, k := range keys {
		if got := value(ctx, t, dst, k); got != want[k] {
			t.Errorf("%s differs on the target: %s", k, firstDiff(got, want[k]))
		}
		if src.Exists(ctx, k).Val() != 0 {
			t.Errorf("%s still on the source", k)
		}
	}
	if got := dst.PExpireTime(ctx, "list").Val(); got != exp {
		t.Errorf("list expires at %v on the target, %v on the source", got, exp)
	}
	if got := dst.PExpireTime(ctx, "set").Val(); got != -1 {
		t.Errorf("set has expiry %v on the target, none on the source", got)
	}
	if left := append(internalKeys(ctx, t, src), internalKeys(ctx, t, dst)...); len(left) != 0 {
		t.Errorf("lock/temp keys left: %v", left)
	}
}

// While a big key is copied, a MoveKeys of the same key from another mover (another node)
// waits for the lock and then finds the key on the target.
func TestMoveKeysConcurrentMoverWaits(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	src, dst := e.src(t, 0), e.dst(t, 0)
	const n = 200000
	fillHash(ctx, t, src, "big", n, 10)
	a, b := e.mover(t, smallBig), e.mover(t, smallBig)
	type result struct {
		moved int
		err   error
	}
	resA := make(chan result, 1)
	go func() {
		moved, err := a.MoveKeys(ctx, 0, "big")
		resA <- result{moved, err}
	}()
	waitFor(t, 10*time.Second, "the copy to start (temp key on the target)", func() bool {
		return dst.Exists(ctx, tmpKey("big")).Val() == 1
	})
	movedB, errB := b.MoveKeys(ctx, 0, "big")
	if errB != nil || movedB != 0 {
		t.Fatalf("second mover: MoveKeys = %d, %v; want 0, nil (the first moved it)", movedB, errB)
	}
	// Once B returns, the key must be complete on the target and gone from the source.
	if got := dst.HLen(ctx, "big").Val(); got != n {
		t.Fatalf("after the waiting MoveKeys the target has %d fields, want %d", got, n)
	}
	if src.Exists(ctx, "big").Val() != 0 {
		t.Fatal("the source still has the key")
	}
	if r := <-resA; r.err != nil || r.moved != 1 {
		t.Fatalf("first mover: MoveKeys = %d, %v", r.moved, r.err)
	}
}

// A crashed mover leaves a temp key, a fence and a lock that expires: the next MoveKeys waits
// for the lock, drops the stale temp key and copies from scratch.
func TestMoveKeysCrashRecovery(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	src, dst := e.src(t, 0), e.dst(t, 0)
	fillHash(ctx, t, src, "{tag}k", 5000, 10)
	want := value(ctx, t, src, "{tag}k")
	setLock(ctx, t, src, "{tag}k", "dead-node:1", 300*time.Millisecond)
	must(t, dst.HSet(ctx, tmpKey("{tag}k"), "junk", "1", "f1", "wrong").Err())
	must(t, dst.Set(ctx, fenceKey("{tag}k"), "dead-node:1", time.Minute).Err())
	m := e.mover(t, smallBig)
	moved, err := m.MoveKeys(ctx, 0, "{tag}k")
	if err != nil || moved != 1 {
		t.Fatalf("MoveKeys = %d, %v", moved, err)
	}
	if got := value(ctx, t, dst, "{tag}k"); got != want {
		t.Fatal("target value differs from the source's (stale temp key leaked in?)")
	}
	if left := append(internalKeys(ctx, t, src), internalKeys(ctx, t, dst)...); len(left) != 0 {
		t.Errorf("lock/temp keys left: %v", left)
	}
}

// A mover that loses the key (its fence taken over by another mover's start, or its lock
// gone) stops with ErrKeyBusy and leaves the source copy whole; the next attempt completes.
func TestMoveKeysLosesTheKey(t *testing.T) {
	for name, steal := range map[string]func(ctx context.Context, src, dst *redis.Client) error{
		"fence taken": func(ctx context.Context, _, dst *redis.Client) error {
			return dst.Set(ctx, fenceKey("big"), "usurper:1", time.Minute).Err()
		},
		"lock lost": func(ctx context.Context, src, _ *redis.Client) error {
			return src.HSet(ctx, LocksKey, "big", LockValue("usurper:1", time.Now().Add(time.Minute))).Err()
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			ctx := ctxT(t, 60*time.Second)
			src, dst := e.src(t, 0), e.dst(t, 0)
			fillHash(ctx, t, src, "big", 200000, 10)
			m := e.mover(t, smallBig)
			errc := make(chan error, 1)
			go func() { _, err := m.MoveKeys(ctx, 0, "big"); errc <- err }()
			waitFor(t, 10*time.Second, "the copy to start", func() bool {
				return dst.Exists(ctx, tmpKey("big")).Val() == 1
			})
			must(t, steal(ctx, src, dst))
			if err := <-errc; !errors.Is(err, ErrKeyBusy) {
				t.Fatalf("MoveKeys = %v, want ErrKeyBusy", err)
			}
			if src.HLen(ctx, "big").Val() != 200000 || dst.Exists(ctx, "big").Val() != 0 {
				t.Fatal("the source must stay whole and the target without the key")
			}
			must(t, src.HDel(ctx, LocksKey, "big").Err()) // the usurper is gone
			if moved, err := m.MoveKeys(ctx, 0, "big"); err != nil || moved != 1 {
				t.Fatalf("retry: MoveKeys = %d, %v", moved, err)
			}
			if dst.HLen(ctx, "big").Val() != 200000 {
				t.Fatal("retry did not complete the copy")
			}
			if left := append(internalKeys(ctx, t, src), internalKeys(ctx, t, dst)...); len(left) != 0 {
				t.Errorf("lock/temp keys left: %v", left)
			}
		})
	}
}

// firstDiff shows where two long renderings first differ.
func firstDiff(got, want string) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	from := max(i-200, 0)
	return fmt.Sprintf("at byte %d:\n got ...%s\nwant ...%s", i, got[from:min(i+200, len(got))], want[from:min(i+200, len(want))])
}

// TestCommitRefusedPastTheLease: a chunked copy's commit lands only within half the lease of
// its lock's last refresh (the target's clock against the deadline it carries). A commit later
// than that, from a holder that stalled, must not RENAME its temp key onto the key: another
// mover may have taken the lapsed lock and moved the key by MIGRATE or a batch copy (which set
// no fence), and a client may have deleted it on the target since.
func TestCommitRefusedPastTheLease(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 10*time.Second)
	dst := e.dst(t, 0)
	keys := []string{tmpKey("k"), fenceKey("k"), "k"}
	stage := func() {
		must(t, dst.RPush(ctx, keys[0], "a").Err())
		must(t, dst.Set(ctx, keys[1], "me:1", time.Minute).Err())
	}
	stage()
	past := time.Now().Add(-time.Second).UnixMilli()
	err := commitScript.Run(ctx, dst, keys, "me:1", -1, "", past, 1, "list").Err()
	if err == nil || !strings.HasPrefix(err.Error(), "REDRAFTLEASE") || !errors.Is(busyIfOurs(err), ErrKeyBusy) {
		t.Fatalf("commit past the lease: %v", err)
	}
	if n := dst.Exists(ctx, keys...).Val(); n != 0 {
		t.Fatalf("%d of the temp key, fence and key left after a late commit", n)
	}
	stage()
	future := time.Now().Add(time.Minute).UnixMilli()
	if err := commitScript.Run(ctx, dst, keys, "me:1", -1, "", future, 1, "list").Err(); err != nil {
		t.Fatalf("commit within the lease: %v", err)
	}
	if v := dst.LRange(ctx, "k", 0, -1).Val(); len(v) != 1 || v[0] != "a" {
		t.Fatalf("committed key = %v", v)
	}
}

// TestCommitRefusesAShortCopy: a temp key that holds fewer elements than the source had (its
// first chunks evicted on the target and the key made again by a later chunk's write, or the
// source key gone mid-copy so its last reads came back empty) is not committed: its RENAME
// would publish a value that never existed, and the source's full copy would then be deleted.
// The copy is dropped and the key moved again from the start.
func TestCommitRefusesAShortCopy(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 10*time.Second)
	dst := e.dst(t, 0)
	keys := []string{tmpKey("k"), fenceKey("k"), "k"}
	future := time.Now().Add(time.Minute).UnixMilli()
	for _, c := range []struct {
		typ   string
		stage func()
		want  int64
	}{
		{"hash", func() { must(t, dst.HSet(ctx, keys[0], "f41", "v").Err()) }, 42},
		{"list", func() { must(t, dst.RPush(ctx, keys[0], "x", "y").Err()) }, 3},
		{"string", func() { must(t, dst.SetRange(ctx, keys[0], 8, "tail").Err()) }, 20},
		{"stream", func() {
			must(t, dst.XAdd(ctx, &redis.XAddArgs{Stream: keys[0], ID: "5-1", Values: []string{"f", "v"}}).Err())
		}, 5},
	} {
		c.stage()
		must(t, dst.Set(ctx, keys[1], "me:1", time.Minute).Err())
		err := commitScript.Run(ctx, dst, keys, "me:1", -1, "", future, c.want, c.typ).Err()
		if err == nil || !strings.HasPrefix(err.Error(), "REDRAFTSHORT") || !errors.Is(busyIfOurs(err), ErrKeyBusy) {
			t.Fatalf("%s: commit of a short copy: %v", c.typ, err)
		}
		if n := dst.Exists(ctx, keys...).Val(); n != 0 {
			t.Fatalf("%s: %d of the temp key, fence and key left after a refused commit", c.typ, n)
		}
	}
}

// TestMoveKeysBigFarExpiry (session 43): a big key's expiry past year 2262 survives a chunked
// copy. go-redis's PExpireTime computes a time.Duration (int64 ns) of the reply, which wraps
// past 2262: EXPIREAT 20000000000 (year 2603) read as a past time made the commit's PEXPIREAT
// delete the key on the target before the source's copy was unlinked (the key lost), and
// EXPIREAT 253402300799 (9999-12-31) read negative made the commit PERSIST it.
func TestMoveKeysBigFarExpiry(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	src, dst := e.src(t, 0), e.dst(t, 0)
	m := e.mover(t, nil)
	const n = 12000 // over the default BigKeyElements (10000): the chunked path
	for _, at := range []int64{20000000000, 253402300799} {
		key := fmt.Sprintf("{far}%d", at)
		fillHash(ctx, t, src, key, n, 10)
		must(t, src.ExpireAt(ctx, key, time.Unix(at, 0)).Err())
		want := value(ctx, t, src, key)
		exp, err := src.Do(ctx, "PEXPIRETIME", key).Int64()
		if err != nil || exp != at*1000 {
			t.Fatalf("source PEXPIRETIME = %d, %v; want %d", exp, err, at*1000)
		}
		calls := cmdCalls(ctx, t, dst, "evalsha")
		moved, err := m.MoveKeys(ctx, 0, key)
		if err != nil || moved != 1 {
			t.Fatalf("EXPIREAT %d: MoveKeys = %d, %v", at, moved, err)
		}
		if cmdCalls(ctx, t, dst, "evalsha")-calls < n/1000 {
			t.Fatalf("EXPIREAT %d: the key was not copied in chunks", at)
		}
		if src.Exists(ctx, key).Val() != 0 {
			t.Errorf("EXPIREAT %d: key still on the source", at)
		}
		if got := value(ctx, t, dst, key); got != want {
			t.Errorf("EXPIREAT %d: target value differs (%d vs %d bytes; %q...)", at, len(got), len(want), got[:min(len(got), 20)])
		}
		if got, err := dst.Do(ctx, "PEXPIRETIME", key).Int64(); err != nil || got != exp {
			t.Errorf("EXPIREAT %d: target PEXPIRETIME = %d, %v; want %d", at, got, err, exp)
		}
	}
}
