package xdc

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/internal/testredis"
)

// shipRun starts sh in a goroutine; stop cancels it and returns Run's error.
func shipRun(t *testing.T, sh *Shipper) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sh.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// lastOutboxID returns the id of the newest entry of slot's outbox on c.
func lastOutboxID(t *testing.T, ctx context.Context, c *redis.Client) string {
	t.Helper()
	xs, err := c.XRevRangeN(ctx, OutboxKey(slot), "+", "-", 1).Result()
	if err != nil || len(xs) == 0 {
		t.Fatalf("outbox: %v %v", xs, err)
	}
	return xs[0].ID
}

// waitApplied polls dst's inbox until it holds want for DC "a".
func waitApplied(t *testing.T, ctx context.Context, dst *redis.Client, want string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got, _ := NewRedisSink(dst).LastApplied(ctx, "a", slot)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("inbox at %q, want %q after %v", got, want, d)
		}
		time.Sleep(2 * time.Millisecond) // poll interval, not synchronisation
	}
}

func write(t testing.TB, ctx context.Context, a *redis.Client, maxLen int64, cmd string) {
	t.Helper()
	if err := Write(ctx, a, slot, "a", maxLen, prepare(t, cmd)).Err(); err != nil && !errors.Is(err, redis.Nil) {
		t.Fatalf("%s: %v", cmd, err)
	}
}

func sameData(t *testing.T, ctx context.Context, a *redis.Client, others ...*redis.Client) {
	t.Helper()
	want := snapshot(t, ctx, a)
	for i, o := range others {
		if got := snapshot(t, ctx, o); !maps.Equal(got, want) {
			t.Fatalf("copy %d differs:\n got %v\nwant %v", i, got, want)
		}
	}
}

func TestShipConverges(t *testing.T) {
	ctx := context.Background()
	a, b, c := client(t, testredis.Start(t)), client(t, testredis.Start(t)), client(t, testredis.Start(t))
	for i := range 300 {
		write(t, ctx, a, 100000, fmt.Sprintf("SET {t}k%d v%d EX 1000", i%37, i))
		write(t, ctx, a, 100000, "INCR {t}n")
		write(t, ctx, a, 100000, fmt.Sprintf("HSET {t}h f%d %d", i%11, i))
		write(t, ctx, a, 100000, fmt.Sprintf("SADD {t}s %d", i%23))
		if i%10 == 0 {
			write(t, ctx, a, 100000, "SPOP {t}s")
		}
	}
	var lastProgress atomic.Value
	mk := func(dst *redis.Client) *Shipper {
		return &Shipper{Slot: slot, SourceDC: "a", Source: a, Sink: NewRedisSink(dst), BatchSize: 50,
			OnProgress: func(p Progress) { lastProgress.Store(p) }}
	}
	shipRun(t, mk(b))
	shipRun(t, mk(c))
	waitApplied(t, ctx, b, lastOutboxID(t, ctx, a), 10*time.Second)
	waitApplied(t, ctx, c, lastOutboxID(t, ctx, a), 10*time.Second)
	sameData(t, ctx, a, b, c)

	// Writes made while the shippers wait in XREAD BLOCK arrive too.
	for i := range 50 {
		write(t, ctx, a, 100000, fmt.Sprintf("RPUSH {t}l %d", i))
	}
	waitApplied(t, ctx, b, lastOutboxID(t, ctx, a), 10*time.Second)
	waitApplied(t, ctx, c, lastOutboxID(t, ctx, a), 10*time.Second)
	sameData(t, ctx, a, b, c)
	if p, _ := lastProgress.Load().(Progress); p.LastID == "" || p.Err != nil {
		t.Fatalf("last progress %+v", p)
	}
}

// flakySink applies batches but reports every third one as failed, as if the reply was lost.
type flakySink struct {
	*RedisSink
	n atomic.Int64
}

func (f *flakySink) Apply(ctx context.Context, b Batch) (string, error) {
	last, err := f.RedisSink.Apply(ctx, b)
	if err == nil && f.n.Add(1)%3 == 0 {
		return "", errors.New("reply lost")
	}
	return last, err
}

func TestShipRestartIsExactlyOnce(t *testing.T) {
	ctx := context.Background()
	a, b := client(t, testredis.Start(t)), client(t, testredis.Start(t))
	const total = 3000
	var written atomic.Int64
	wdone := make(chan struct{})
	go func() {
		defer close(wdone)
		for range total {
			if err := Write(ctx, a, slot, "a", 1e6, prepare(t, "INCR {t}c")).Err(); err != nil {
				t.Error(err)
				return
			}
			written.Add(1)
		}
	}()
	sink := &flakySink{RedisSink: NewRedisSink(b)}
	var shipped atomic.Int64
	mk := func() *Shipper {
		return &Shipper{Slot: slot, SourceDC: "a", Source: a, Sink: sink, BatchSize: 7,
			MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
			OnProgress: func(p Progress) {
				if p.Err == nil {
					shipped.Store(p.Shipped)
				}
			}}
	}
	// Stop and restart the shipper three times mid-stream.
	for round := range 3 {
		cancel := shipRun(t, mk())
		deadline := time.Now().Add(10 * time.Second)
		for shipped.Load() < 100 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond) // poll interval
		}
		if n := shipped.Load(); n < 100 {
			t.Fatalf("round %d: %d entries shipped in 10 s, want 100 before the restart", round, n)
		}
		if err := cancel(); !errors.Is(err, context.Canceled) {
			t.Fatalf("round %d: Run = %v", round, err)
		}
		shipped.Store(0)
	}
	shipRun(t, mk())
	<-wdone
	waitApplied(t, ctx, b, lastOutboxID(t, ctx, a), 20*time.Second)
	got, err := b.Get(ctx, "{t}c").Int64()
	if err != nil || got != total {
		t.Fatalf("counter on b = %d, %v; want %d", got, err, total)
	}
	sameData(t, ctx, a, b)
}

func TestShipCatchesUpAfterSinkOutage(t *testing.T) {
	ctx := context.Background()
	a := client(t, testredis.Start(t))
	bs := testredis.Start(t, testredis.WithArgs("--appendonly", "yes", "--appendfsync", "always"))
	b := client(t, bs)
	var errs atomic.Int64
	shipRun(t, &Shipper{Slot: slot, SourceDC: "a", Source: a, Sink: NewRedisSink(b), BatchSize: 64,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		OnProgress: func(p Progress) {
			if p.Err != nil {
				errs.Add(1)
			}
		}})
	for range 500 {
		write(t, ctx, a, 1e6, "INCR {t}c")
	}
	waitApplied(t, ctx, b, lastOutboxID(t, ctx, a), 10*time.Second)
	bs.Stop()
	for range 1000 {
		write(t, ctx, a, 1e6, "INCR {t}c")
	}
	deadline := time.Now().Add(10 * time.Second)
	for errs.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // poll interval
	}
	if errs.Load() == 0 {
		t.Fatal("no error reported while the sink was down")
	}
	if err := bs.Restart(); err != nil {
		t.Fatal(err)
	}
	for range 500 {
		write(t, ctx, a, 1e6, "INCR {t}c")
	}
	waitApplied(t, ctx, b, lastOutboxID(t, ctx, a), 20*time.Second)
	if got, err := b.Get(ctx, "{t}c").Int64(); err != nil || got != 2000 {
		t.Fatalf("counter on b = %d, %v; want 2000", got, err)
	}
	sameData(t, ctx, a, b)
}

func TestShipBehindTheOutboxBound(t *testing.T) {
	ctx := context.Background()
	a, b := client(t, testredis.Start(t)), client(t, testredis.Start(t))
	sink := NewRedisSink(b)
	for range 10 {
		write(t, ctx, a, 100, "INCR {t}c")
	}
	// b applies the first 10 entries, then 1000 more are written with MAXLEN ~ 100 (the hard
	// cap, ten times the bound: 1000).
	entries, err := ReadOutbox(ctx, a, slot, "", 100)
	if err != nil || len(entries) != 10 {
		t.Fatal(entries, err)
	}
	if _, err := sink.Apply(ctx, Batch{SourceDC: "a", Slot: slot, Entries: entries}); err != nil {
		t.Fatal(err)
	}
	for range 1200 {
		write(t, ctx, a, 100, "INCR {t}c")
	}
	if n, _ := a.XLen(ctx, OutboxKey(slot)).Result(); n >= 1210 {
		t.Fatalf("outbox not trimmed: %d entries", n)
	}
	var reported error
	err = (&Shipper{Slot: slot, SourceDC: "a", Source: a, Sink: sink,
		OnProgress: func(p Progress) { reported = p.Err }}).Run(ctx)
	if !errors.Is(err, ErrBehind) || !errors.Is(reported, ErrBehind) {
		t.Fatalf("Run = %v (reported %v), want ErrBehind", err, reported)
	}
	if got, _ := b.Get(ctx, "{t}c").Int64(); got != 10 {
		t.Fatalf("b applied past the hole: counter %d", got)
	}
	// A destination that never applied anything is behind too once entries were trimmed.
	c := client(t, testredis.Start(t))
	if err := (&Shipper{Slot: slot, SourceDC: "a", Source: a, Sink: NewRedisSink(c)}).Run(ctx); !errors.Is(err, ErrBehind) {
		t.Fatalf("Run from scratch = %v, want ErrBehind", err)
	}
}

func TestTrimKeepsWhatADCStillNeeds(t *testing.T) {
	ctx := context.Background()
	a, b, c := client(t, testredis.Start(t)), client(t, testredis.Start(t)), client(t, testredis.Start(t))
	for i := range 400 {
		write(t, ctx, a, 1e6, fmt.Sprintf("RPUSH {t}l %d", i))
	}
	sb, sc := NewRedisSink(b), NewRedisSink(c)
	all, err := ReadOutbox(ctx, a, slot, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Apply(ctx, Batch{SourceDC: "a", Slot: slot, Entries: all}); err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Apply(ctx, Batch{SourceDC: "a", Slot: slot, Entries: all[:150]}); err != nil {
		t.Fatal(err)
	}
	lb, _ := sb.LastApplied(ctx, "a", slot)
	lc, _ := sc.LastApplied(ctx, "a", slot)
	if n, err := Trim(ctx, a, slot, []string{lb, ""}); err != nil || n != 0 {
		t.Fatalf("Trim with a DC at nothing removed %d, %v", n, err)
	}
	n, err := Trim(ctx, a, slot, []string{lb, lc})
	if err != nil || n != 149 {
		t.Fatalf("Trim removed %d, %v; want 149", n, err)
	}
	first, _ := a.XRangeN(ctx, OutboxKey(slot), "-", "+", 1).Result()
	if first[0].ID != lc {
		t.Fatalf("outbox starts at %s, want c's last applied %s", first[0].ID, lc)
	}
	shipRun(t, &Shipper{Slot: slot, SourceDC: "a", Source: a, Sink: sc})
	waitApplied(t, ctx, c, lastOutboxID(t, ctx, a), 10*time.Second)
	sameData(t, ctx, a, b, c)
	lc, _ = sc.LastApplied(ctx, "a", slot)
	if n, err := Trim(ctx, a, slot, []string{lb, lc}); err != nil || n != 250 {
		t.Fatalf("second Trim removed %d, %v; want 250", n, err)
	}
}

// timingSink records, per applied entry, now minus its id's time.
type timingSink struct {
	*RedisSink
	mu   sync.Mutex
	lags []time.Duration
}

func (s *timingSink) Apply(ctx context.Context, b Batch) (string, error) {
	last, err := s.RedisSink.Apply(ctx, b)
	now := time.Now()
	s.mu.Lock()
	for _, e := range b.Entries {
		if CompareIDs(e.ID, last) <= 0 {
			s.lags = append(s.lags, LagOf(e.ID, now))
		}
	}
	s.mu.Unlock()
	return last, err
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

func TestShipLagAndThroughput(t *testing.T) {
	ctx := context.Background()
	a, b := client(t, testredis.Start(t)), client(t, testredis.Start(t))
	if err := LoadLibrary(ctx, a); err != nil {
		t.Fatal(err)
	}
	pipeWrite := func(n int, i0 int) {
		p := a.Pipeline()
		for i := range n {
			keys, argv := WriteArgs(slot, "a", 1e7, false, []Call{prepare(t, fmt.Sprintf("SET {t}k%d %d", (i0+i)%1000, i0+i))})
			p.FCall(ctx, WriteFunc, keys, argv...)
		}
		if _, err := p.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// Lag at a fixed rate: 2,000 writes/s for 3 s (20 every 10 ms).
	ts := &timingSink{RedisSink: NewRedisSink(b)}
	var rate atomic.Value
	stop := shipRun(t, &Shipper{Slot: slot, SourceDC: "a", Source: a, Sink: ts,
		OnProgress: func(p Progress) {
			if p.Rate > 0 {
				rate.Store(p.Rate)
			}
		}})
	tick := time.NewTicker(10 * time.Millisecond)
	start := time.Now()
	i := 0
	for time.Since(start) < 3*time.Second {
		<-tick.C
		pipeWrite(20, i)
		i += 20
	}
	tick.Stop()
	wrote := time.Since(start)
	waitApplied(t, ctx, b, lastOutboxID(t, ctx, a), 20*time.Second)
	_ = stop()
	ts.mu.Lock()
	lags := slices.Clone(ts.lags)
	ts.mu.Unlock()
	slices.Sort(lags)
	if len(lags) != i {
		t.Fatalf("%d entries applied, %d written", len(lags), i)
	}
	t.Logf("lag at %.0f writes/s for 3 s (%d entries, race=%v): p50 %v, p99 %v, max %v; shipper rate %v entries/s",
		float64(i)/wrote.Seconds(), i, raceEnabled, pct(lags, 0.5), pct(lags, 0.99), lags[len(lags)-1], rate.Load())

	// Throughput: a backlog shipped by one shipper into a fresh destination.
	backlog := 50000
	if raceEnabled || testing.Short() {
		backlog = 20000
	}
	for j := 0; j < backlog; j += 500 {
		pipeWrite(500, i+j)
	}
	c := client(t, testredis.Start(t))
	for _, bs := range []int64{256, 1024} {
		if err := c.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		want := lastOutboxID(t, ctx, a)
		t0 := time.Now()
		stop := shipRun(t, &Shipper{Slot: slot, SourceDC: "a", Source: a, Sink: NewRedisSink(c), BatchSize: bs})
		waitApplied(t, ctx, c, want, 60*time.Second)
		el := time.Since(t0)
		_ = stop()
		total := i + backlog
		t.Logf("throughput, batch %d: %d entries in %v = %.0f entries/s (race=%v)", bs, total, el.Round(time.Millisecond),
			float64(total)/el.Seconds(), raceEnabled)
	}
	sameData(t, ctx, a, c)
}
