package xdc

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestLogShippersChurn: two nodes of dc1 ship its group's log to dc2 and dc3 at once, as
// they do for a while when the ring's owner of the group's shipping slot moves, while writers
// push to lists and count through dc1's master. For the run's length (REDRAFT_CHURN, 15 s by
// default) faults come every few tens of milliseconds: a node's shipping restarts (a plan
// after its node acted again), a node's peer calls fail, a node stops acting on the cluster
// state (its replicator reads an empty state), on either side. Every 50 ms each list in dc2
// and dc3 must be a prefix of what dc1 acknowledged, in order: nothing skipped, nothing twice.
// After the faults every DC must hold exactly what dc1 acknowledged. The log's bound is far
// above what it holds: no destination falls behind it.
func TestLogShippersChurn(t *testing.T) { shippersChurn(t, 1_000_000) }

// TestLogShippersChurnCopies is TestLogShippersChurn with the log bound at 30,000 entries
// (outbox bound 3,000), which the writers pass in several seconds: a destination held or cut
// off that long falls behind the log and gets the group copied in full, at times wanted by
// both nodes at once.
func TestLogShippersChurnCopies(t *testing.T) { shippersChurn(t, 3000) }

// shippersChurn runs TestLogShippersChurn with writes that bound the log at bound entries.
func shippersChurn(t *testing.T, bound int64) {
	length := 15 * time.Second
	if v := os.Getenv("REDRAFT_CHURN"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("REDRAFT_CHURN=%q: %v", v, err)
		}
		length = d
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	ctx := context.Background()
	n, dcs := startDCsWith(t, func(c *Config) { c.noLogShipping = true }, "dc1", "dc2", "dc3")
	dc1, dc2, dc3 := dcs[0], dcs[1], dcs[2]
	raiseFormat(t, n, LogDataFormat)
	other := &testDC{name: "dc1", node: "n1b", redis: dc1.redis, rc: dc1.rc}
	c := nodeOf{net: n, dc: other}
	other.repl = New(Config{Cluster: c, Peers: c, Local: c, Heartbeat: 100 * time.Millisecond, Block: 200 * time.Millisecond,
		OutboxScan: 200 * time.Millisecond, CollectEvery: 100 * time.Millisecond, TombstoneMargin: time.Millisecond,
		noLogShipping: true, Logger: testLogger.With("dc", "dc1", "node", "n1b")})
	log := LogID{DC: "dc1", Group: "g-dc1"}

	// A shipping node: its log group restarted on demand, each after the one before ended (as
	// planLogs does).
	type shipping struct {
		dc     *testDC
		mu     sync.Mutex
		cancel context.CancelFunc
		done   chan struct{}
	}
	start := func(s *shipping) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.cancel != nil {
			s.cancel()
			<-s.done
		}
		g := newLogGroup(s.dc.repl, dc1.rc, log, 0, []string{"dc2", "dc3"}, 20*time.Millisecond)
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); g.run(cctx) }()
		s.cancel, s.done = cancel, done
	}
	nodes := []*shipping{{dc: dc1}, {dc: other}}
	for _, s := range nodes {
		start(s)
	}
	t.Cleanup(func() {
		for _, s := range nodes {
			s.mu.Lock()
			s.cancel()
			<-s.done
			s.mu.Unlock()
		}
	})

	// The writers: each pushes 1, 2, 3... to its own list and counts its pushes in a counter,
	// one write at a time; acked[w] is how many dc1 acknowledged.
	const writers = 4
	var acked [writers]atomic.Int64
	stop := make(chan struct{})
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				for _, cmd := range []string{fmt.Sprintf("RPUSH {l%d}list %d", w, i), fmt.Sprintf("INCR {l%d}count", w)} {
					call, err := Prepare(strings.Fields(cmd))
					if err == nil {
						err = writeLogOnce(ctx, dc1.rc, bound, call)
					}
					if err != nil {
						errs <- fmt.Errorf("%s: %w", cmd, err)
						return
					}
				}
				acked[w].Store(int64(i))
			}
		}()
	}
	// isPrefix checks a DC's list w against what dc1 acknowledged so far (read after it).
	check := func(d *testDC, w int, final bool) error {
		got, err := d.rc.LRange(ctx, fmt.Sprintf("{l%d}list", w), 0, -1).Result()
		if err != nil {
			return err
		}
		upTo := acked[w].Load() + 1 // the write in flight may be applied already
		for i, v := range got {
			if v != strconv.Itoa(i+1) {
				return fmt.Errorf("%s's list %d holds %s at %d (%d elements): a write skipped or applied twice", d.name, w, v, i, len(got))
			}
		}
		if int64(len(got)) > upTo || final && int64(len(got)) != acked[w].Load() {
			return fmt.Errorf("%s's list %d has %d elements, dc1 acknowledged %d", d.name, w, len(got), acked[w].Load())
		}
		return nil
	}

	faults := map[string]int{}
	end := time.Now().Add(length)
	next := time.Now()
	for time.Now().Before(end) {
		select {
		case err := <-errs:
			t.Fatal(err)
		default:
		}
		if time.Now().After(next) {
			next = time.Now().Add(50 * time.Millisecond)
			for _, d := range []*testDC{dc2, dc3} {
				for w := range writers {
					if err := check(d, w, false); err != nil {
						t.Fatalf("faults so far %v: %v", faults, err)
					}
				}
			}
		}
		s := nodes[rng.IntN(2)]
		switch f := rng.IntN(6); f {
		case 0:
			start(s)
			faults["restart"]++
		case 1, 2:
			d := []*testDC{dc1, other, dc2, dc3}[rng.IntN(4)]
			d.down.Store(!d.down.Load())
			faults["down"]++
		case 3, 4:
			d := []*testDC{dc1, other, dc2, dc3}[rng.IntN(4)]
			d.held.Store(!d.held.Load())
			faults["held"]++
		default:
		}
		time.Sleep(time.Duration(5+rng.IntN(60)) * time.Millisecond) // the faults' pace
	}
	for _, d := range []*testDC{dc1, other, dc2, dc3} {
		d.down.Store(false)
		d.held.Store(false)
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	t.Logf("faults %v; writes per list %v", faults, func() (out []int64) {
		for w := range writers {
			out = append(out, acked[w].Load())
		}
		return out
	}())
	for _, d := range []*testDC{dc2, dc3} {
		// Copies of 16,384 slots take a while, a few of them under -race.
		if _, _, ok := sameDataWithin(dc1.rc, d.rc, 60*time.Second); !ok {
			t.Fatalf("%s after the faults differs from dc1: %s", d.name, churnDiff(ctx, dc1.rc, d.rc, writers))
		}
	}
	for _, d := range []*testDC{dc1, dc2, dc3} {
		for w := range writers {
			if err := check(d, w, true); err != nil {
				t.Error(err)
			}
			if got, _ := d.rc.Get(ctx, fmt.Sprintf("{l%d}count", w)).Int64(); got != acked[w].Load() {
				t.Errorf("%s's counter %d = %d, dc1 acknowledged %d increments", d.name, w, got, acked[w].Load())
			}
		}
	}
	if s := slices.Collect(func(yield func(string) bool) {
		for _, d := range []string{"dc2", "dc3"} {
			if !yield(fmt.Sprintf("%s superseded %d", d, dcs[slices.IndexFunc(dcs, func(x *testDC) bool { return x.name == d })].repl.superseded.Load())) {
				return
			}
		}
	}); len(s) > 0 {
		t.Log(strings.Join(s, "; "))
	}
}

// churnDiff says, per writer, what dc1 and d hold of its list and counter.
func churnDiff(ctx context.Context, dc1, d *redis.Client, writers int) string {
	var out []string
	for w := range writers {
		l := fmt.Sprintf("{l%d}list", w)
		c := fmt.Sprintf("{l%d}count", w)
		out = append(out, fmt.Sprintf("writer %d: list %d/%d elements, counter %s/%s", w,
			dc1.LLen(ctx, l).Val(), d.LLen(ctx, l).Val(), dc1.Get(ctx, c).Val(), d.Get(ctx, c).Val()))
	}
	in := d.HGetAll(ctx, LogInboxKey(LogID{DC: "dc1", Group: "g-dc1"})).Val()
	var slots []string
	for w := range writers {
		slots = append(slots, fmt.Sprintf("{l%d} slot %d", w, slotString(fmt.Sprintf("{l%d}list", w))))
	}
	info, _ := dc1.XInfoStream(ctx, LogKey).Result()
	var first string
	if info != nil {
		first = info.FirstEntry.ID
	}
	return strings.Join(out, "; ") + fmt.Sprintf("; inbox %v; %s; the log from %s", in, strings.Join(slots, ", "), first)
}

// writeLogOnce runs c through WRITE into the group's log on rc's server (dc1), again while it
// answers TRYAGAIN (a full copy holds the slot), as the router does for a client; bound is
// the outbox bound the write carries (the log's MAXLEN is ten times it).
func writeLogOnce(ctx context.Context, rc *redis.Client, bound int64, c Call) error {
	keys, argv := WriteLogArgs(slotString(c.Keys[0]), "dc1", bound, false, []Call{c})
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := FCall(ctx, rc, WriteFunc, keys, argv...).Err()
		if err == nil || errors.Is(err, redis.Nil) {
			return nil
		}
		if !strings.HasPrefix(err.Error(), "TRYAGAIN") || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond) // the router's retry pace, not synchronisation
	}
}
