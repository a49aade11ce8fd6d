package migrate

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// seedKeys writes n string keys "<prefix><i>" in db and returns those in slots and the others.
func seedKeys(t testing.TB, c *redis.Client, prefix string, n, size int, slots *SlotSet) (in, out map[string]bool) {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	in, out = map[string]bool{}, map[string]bool{}
	pad := strings.Repeat("p", size)
	p := c.Pipeline()
	for i := range n {
		k := fmt.Sprintf("%s%d", prefix, i)
		p.Set(ctx, k, pad+k, 0)
		if slots.Contains(SlotString(k)) {
			in[k] = true
		} else {
			out[k] = true
		}
		if p.Len() == 1000 {
			_, err := p.Exec(ctx)
			must(t, err)
		}
	}
	_, err := p.Exec(ctx)
	must(t, err)
	return in, out
}

func TestScanSlotsFiltersAndKeepsInternalKeys(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 10*time.Second)
	src := e.src(t, 0)
	// The slots of x and of the keys that belong to the server: movers never move their locks,
	// a replication log or its receiving side's positions. A slot's copy lock moves with it.
	lin, rec := LogInboxPrefix+"dc1:g1:0", LogKey+":drained:dc2"
	ranges := [][2]int{}
	for _, k := range []string{"x", LocksKey, LogKey, lin, rec, DirtyKey, FenceKey} {
		ranges = append(ranges, [2]int{SlotString(k), SlotString(k)})
	}
	slots, _ := FromRanges(ranges...)
	for _, k := range []string{"{x}a", "{x}b", "__redraft:outbox:{x}", CopyLockPrefix + "{x}", guardPrefix + "{x}a", tmpKey("{x}a"), "other", LogKey, lin, rec, DirtyKey} {
		must(t, src.Set(ctx, k, "1", 0).Err())
	}
	setLock(ctx, t, src, "{x}a", "someone:1", time.Minute)
	m := e.mover(t, nil)
	var got []string
	for cursor := "0"; ; {
		keys, next, err := m.ScanSlots(ctx, 0, slots, cursor, 2)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, keys...)
		if cursor = next; cursor == "0" {
			break
		}
	}
	want := map[string]bool{"{x}a": true, "{x}b": true, "__redraft:outbox:{x}": true, CopyLockPrefix + "{x}": true}
	if len(got) != len(want) {
		t.Fatalf("ScanSlots = %q, want the keys of %v", got, want)
	}
	for _, k := range got {
		if !want[k] {
			t.Errorf("unexpected key %q", k)
		}
	}
	n, err := CountSlotKeys(ctx, e.srcSrv.Addr, "", slots)
	if err != nil || n != 4 {
		t.Errorf("CountSlotKeys = %d, %v; want 4", n, err)
	}
}

// MoveSlots moves exactly the keys of the chosen slots, in every db, honours the rate, and
// reports progress that only grows and ends with Done.
func TestMoveSlotsThrottledAcrossDBs(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	slots, _ := FromRanges([2]int{0, 7199}, [2]int{10000, 10099})
	src0, src3 := e.src(t, 0), e.src(t, 3)
	in0, out0 := seedKeys(t, src0, "a:", 6000, 20, &slots)
	in3, out3 := seedKeys(t, src3, "b:", 3000, 20, &slots)
	// An internal key (a replication outbox) in a moving slot moves too.
	outbox := "__redraft:outbox:{" + slotTags()[17] + "}"
	must(t, src0.XAdd(ctx, &redis.XAddArgs{Stream: outbox, Values: []any{"op", "set"}}).Err())
	in0[outbox] = true
	total := int64(len(in0) + len(in3))
	if n, err := CountSlotKeys(ctx, e.srcSrv.Addr, "", slots); err != nil || n != total {
		t.Fatalf("CountSlotKeys = %d, %v; want %d", n, err, total)
	}

	// Lapsed locks a mover that died left behind (the hash has no expiry), and a live one of
	// another mover: the run sweeps the lapsed ones at its end and keeps the live one.
	must(t, src3.HSet(ctx, LocksKey, "b:dead", LockValue("dead:1", time.Now().Add(-time.Minute)), locksPadField, locksPad).Err())
	must(t, src0.HSet(ctx, LocksKey, "a:dead", LockValue("dead:1", time.Now().Add(-time.Minute)),
		"other", LockValue("live:1", time.Now().Add(time.Hour)), locksPadField, locksPad).Err())
	m := e.mover(t, nil)
	const rate = 2000
	var (
		mu      sync.Mutex
		reports []Progress
	)
	start := time.Now()
	err := m.MoveSlots(ctx, slots, MoveOptions{
		Rate:     func() int64 { return rate },
		Progress: func(p Progress) { mu.Lock(); reports = append(reports, p); mu.Unlock() },
	})
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("moved %d keys in %v at a %d keys/s throttle: %.0f keys/s, %d progress reports",
		total, took, rate, float64(total)/took.Seconds(), len(reports))
	// The throttle only ever delays, so this lower bound cannot flake.
	if minTook := time.Duration(float64(total-100) / rate * float64(time.Second) * 0.9); took < minTook {
		t.Errorf("moved %d keys in %v, faster than %d keys/s allows (%v)", total, took, rate, minTook)
	}
	if len(reports) < 5 {
		t.Errorf("only %d progress reports", len(reports))
	}
	for i := 1; i < len(reports); i++ {
		if reports[i].KeysMoved < reports[i-1].KeysMoved || reports[i].BytesMoved < reports[i-1].BytesMoved {
			t.Fatalf("progress went back: %+v then %+v", reports[i-1], reports[i])
		}
	}
	last := reports[len(reports)-1]
	if !last.Done || last.KeysMoved != total || last.KeysLeftEstimate != 0 || last.BytesMoved <= 0 {
		t.Errorf("final report %+v, want Done with %d keys moved", last, total)
	}
	for db, sets := range map[int][2]map[string]bool{0: {in0, out0}, 3: {in3, out3}} {
		src, dst := e.src(t, db), e.dst(t, db)
		for k := range sets[0] {
			if src.Exists(ctx, k).Val() != 0 || dst.Exists(ctx, k).Val() != 1 {
				t.Fatalf("db %d: key %q of a moved slot is not (only) on the target", db, k)
			}
		}
		for k := range sets[1] {
			if src.Exists(ctx, k).Val() != 1 {
				t.Fatalf("db %d: key %q of another slot left the source", db, k)
			}
		}
		if n := dst.DBSize(ctx).Val(); n != int64(len(sets[0])) {
			t.Errorf("db %d: target holds %d keys, want %d", db, n, len(sets[0]))
		}
	}
	if n := src3.Exists(ctx, LocksKey).Val(); n != 0 {
		t.Errorf("db 3: the locks hash with only lapsed locks is still there: %v", src3.HKeys(ctx, LocksKey).Val())
	}
	if f := src0.HKeys(ctx, LocksKey).Val(); len(f) != 2 || !slices.Contains(f, "other") || !slices.Contains(f, locksPadField) {
		t.Errorf("db 0: locks left %v, want the live one and the pad", f)
	}
}

// Paused holds the mover; migrate-on-access is not affected.
func TestMoveSlotsPause(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	slots, _ := FromRanges([2]int{0, NumSlots - 1})
	src := e.src(t, 0)
	seedKeys(t, src, "k", 500, 10, &slots)
	m := e.mover(t, nil)
	var paused atomic.Bool
	paused.Store(true)
	sawPause := make(chan Progress, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- m.MoveSlots(ctx, slots, MoveOptions{
			Paused: paused.Load,
			Progress: func(p Progress) {
				if paused.Load() {
					select {
					case sawPause <- p:
					default:
					}
				}
			},
		})
	}()
	var p Progress
	select {
	case p = <-sawPause:
	case err := <-errc:
		t.Fatalf("MoveSlots returned while paused: %v", err)
	case <-ctx.Done():
		t.Fatal("no progress report while paused")
	}
	if p.KeysMoved != 0 || src.DBSize(ctx).Val() != 500 {
		t.Fatalf("keys moved while paused: %+v", p)
	}
	if moved, err := m.MoveKeys(ctx, 0, "k1"); err != nil || moved != 1 {
		t.Fatalf("MoveKeys while the mover is paused = %d, %v", moved, err)
	}
	paused.Store(false)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if n := src.DBSize(ctx).Val(); n != 0 {
		t.Fatalf("%d keys left on the source", n)
	}
}

// TestMoveSlotsPauseHoldsBigKeys: a pause takes effect before the next big key of a scan step,
// not after the step's last one (a failover pauses the mover: a big key copied meanwhile goes
// to a master being replaced).
func TestMoveSlotsPauseHoldsBigKeys(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	slots, _ := FromRanges([2]int{0, NumSlots - 1})
	src := e.src(t, 0)
	const big = 6
	for i := 0; i < big; i++ {
		args := []any{}
		for f := 0; f < 50; f++ {
			args = append(args, fmt.Sprintf("f%d", f), "v")
		}
		must(t, src.HSet(ctx, fmt.Sprintf("big%d", i), args...).Err())
	}
	m := e.mover(t, func(c *Config) { c.BigKeyElements = 10 })
	var paused, release atomic.Bool
	errc := make(chan error, 1)
	go func() {
		errc <- m.MoveSlots(ctx, slots, MoveOptions{
			ScanCount: 1000, // every key in one scan step
			Paused: func() bool {
				if release.Load() {
					return false
				}
				if !paused.Load() && src.DBSize(ctx).Val() < big {
					paused.Store(true) // one big key moved: pause
				}
				return paused.Load()
			},
		})
	}()
	waitFor(t, 10*time.Second, "the pause after the first big key", paused.Load)
	left := src.DBSize(ctx).Val()
	time.Sleep(300 * time.Millisecond) // a window in which no key may move (a pause holds)
	if now := src.DBSize(ctx).Val(); now != left || now < big-2 {
		release.Store(true)
		t.Fatalf("big keys kept moving while paused: %d left at the pause, %d after (of %d)", left, now, big)
	}
	release.Store(true)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if n := src.DBSize(ctx).Val(); n != 0 {
		t.Fatalf("%d keys left on the source", n)
	}
}

// Unthrottled throughput, for `go test -v` and `make bench` readers.
func TestMoveSlotsThroughput(t *testing.T) {
	if testing.Short() {
		t.Skip("throughput figure only")
	}
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	slots, _ := FromRanges([2]int{0, NumSlots - 1})
	src := e.src(t, 0)
	const n, size = 20000, 1024
	seedKeys(t, src, "t:", n, size, &slots)
	m := e.mover(t, nil)
	var last Progress
	start := time.Now()
	err := m.MoveSlots(ctx, slots, MoveOptions{Progress: func(p Progress) { last = p }})
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if last.KeysMoved != n {
		t.Fatalf("moved %d keys, want %d", last.KeysMoved, n)
	}
	t.Logf("MoveSlots: %d keys of %d B in %v: %.0f keys/s, %.1f MB/s (MEMORY USAGE), 2 SCAN passes",
		n, size, took, n/took.Seconds(), float64(last.BytesMoved)/1e6/took.Seconds())
}

// BenchmarkMoveSlots moves 10,000 keys of 1 KiB per iteration; it reports keys/s and MB/s.
func BenchmarkMoveSlots(b *testing.B) {
	e := newEnv(b)
	ctx := ctxT(b, 10*time.Minute)
	slots, _ := FromRanges([2]int{0, NumSlots - 1})
	src := e.src(b, 0)
	m := e.mover(b, nil)
	const n, size = 10000, 1024
	var keys, bytes int64
	var took time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		seedKeys(b, src, fmt.Sprintf("b%d:", i), n, size, &slots)
		b.StartTimer()
		start := time.Now()
		var last Progress
		if err := m.MoveSlots(ctx, slots, MoveOptions{Progress: func(p Progress) { last = p }}); err != nil {
			b.Fatal(err)
		}
		took += time.Since(start)
		keys += last.KeysMoved
		bytes += last.BytesMoved
	}
	b.ReportMetric(float64(keys)/took.Seconds(), "keys/s")
	b.ReportMetric(float64(bytes)/1e6/took.Seconds(), "MB/s")
}

// Another migration's mark on the target (an HSET of FenceKey, which restores WATCH) aborts the
// restores in flight; those batches are moved again in the next pass, where they failed the
// whole run, which then started over from a full SCAN after a backoff each time a migration
// into the same target finished.
func TestMoveSlotsGoesOnWhenAnotherRunIsMarkedOnTheTarget(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	slots, _ := FromRanges([2]int{0, 8191})
	src, dst := e.src(t, 0), e.dst(t, 0)
	in, _ := seedKeys(t, src, "a:", 4000, 2000, &slots) // batches of tens of KiB: a restore spans several reads
	m := e.mover(t, func(c *Config) { c.Fence = "m1:run" })
	stop := make(chan struct{})
	marks := make(chan int)
	go func() {
		n := 0
		defer func() { marks <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			dst.HSet(ctx, FenceKey, fmt.Sprintf("m%d:other", 100+n), "over")
			n++
			time.Sleep(200 * time.Microsecond) // pacing the load, not synchronising
		}
	}()
	err := m.MoveSlots(ctx, slots, MoveOptions{})
	close(stop)
	t.Logf("%d marks of other runs written on the target meanwhile", <-marks)
	if err != nil {
		t.Fatalf("MoveSlots with other runs marked on the target: %v", err)
	}
	for k := range in {
		if src.Exists(ctx, k).Val() != 0 || dst.Exists(ctx, k).Val() != 1 {
			t.Fatalf("key %q of a moved slot is not (only) on the target", k)
		}
	}
}
