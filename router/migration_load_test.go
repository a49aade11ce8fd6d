package router

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
)

// TestMigrationUnderLoad runs INCRs on 200 counters and RPUSHes to one list per worker, from 4
// workers through two routers, while slots 0-2047 (half the counters, every list) go frozen,
// migrating, are moved by the mover, and switch. Every counter must equal its acknowledged
// INCRs and every list hold exactly its acknowledged pushes in order; the only error allowed
// is -TRYAGAIN; requests held by the freeze must wait under 100 ms (p99).
func TestMigrationUnderLoad(t *testing.T) {
	mt := newMigTest(t, 2, Config{})
	ctx := ctxT(t)
	const workers, nkeys = 4, 200
	counters := append(keysIn("cnt", 0, 2047, nkeys/2), keysIn("cnt", 2048, 16383, nkeys/2)...)
	lists := keysIn("lst", 0, 2047, workers)
	type sample struct {
		start  time.Time
		took   time.Duration
		frozen bool // the key is in the migrating slots
	}
	var (
		acked    [nkeys]atomic.Int64
		pushed   = make([][]string, workers)
		samples  = make([][]sample, workers)
		ops      atomic.Int64
		tryAgain atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for w := range workers {
		cl := mt.tc.client(w % 2)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok := func(err error) bool {
				switch {
				case err == nil:
					return true
				case isTryAgain(err):
					tryAgain.Add(1)
				default:
					t.Errorf("worker %d: %v", w, err)
					<-stop
				}
				return false
			}
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				i := (j*7 + w*53) % nkeys
				t0 := time.Now()
				err := cl.Incr(ctx, counters[i]).Err()
				samples[w] = append(samples[w], sample{t0, time.Since(t0), i < nkeys/2})
				if ok(err) {
					acked[i].Add(1)
				}
				v := itoa(j)
				t0 = time.Now()
				err = cl.RPush(ctx, lists[w], v).Err()
				samples[w] = append(samples[w], sample{t0, time.Since(t0), true})
				if ok(err) {
					pushed[w] = append(pushed[w], v)
				}
				ops.Add(2)
			}
		}()
	}
	waitFor(t, "load running", func() bool { return ops.Load() >= 2000 })
	tFreeze := time.Now()
	id := mt.start(0, 2047)
	tFrozen := time.Now() // both routers hold the slots from here
	mt.ack(id)
	tMigrating := time.Now()
	if err := mt.moveRestAt(ctx, id, 300); err != nil { // slowly: accesses move keys meanwhile
		t.Fatal(err)
	}
	tMoved := time.Now()
	mt.apply(&fsm.FinishMigration{ID: id})
	base := ops.Load()
	waitFor(t, "load after the switch", func() bool { return ops.Load() >= base+2000 })
	close(stop)
	wg.Wait()
	if t.Failed() {
		return
	}

	c := mt.tc.client(0)
	for i, k := range counters {
		got, err := c.Get(ctx, k).Int64()
		if err == redis.Nil {
			got, err = 0, nil
		}
		if err != nil || got != acked[i].Load() {
			t.Errorf("%s = %d (%v), acknowledged INCRs %d", k, got, err, acked[i].Load())
		}
	}
	for w, l := range lists {
		got, err := c.LRange(ctx, l, 0, -1).Result()
		if err != nil || !slices.Equal(got, pushed[w]) {
			t.Errorf("list %s holds %d elements (%v), %d pushes acknowledged", l, len(got), err, len(pushed[w]))
		}
	}
	for _, k := range append(counters[:nkeys/2:nkeys/2], lists...) {
		if mt.tc.direct(0).Exists(ctx, k).Val() != 0 {
			t.Errorf("%s still on the source after the switch", k)
		}
	}
	var held, moving []time.Duration
	for _, ws := range samples {
		for _, s := range ws {
			switch {
			case !s.frozen:
			case s.start.Before(tMigrating) && s.start.Add(s.took).After(tFrozen):
				held = append(held, s.took) // overlapped the freeze: held (or in flight before it)
			case !s.start.Before(tMigrating) && s.start.Before(tMoved):
				moving = append(moving, s.took)
			}
		}
	}
	st0, st1 := mt.tc.servers[0].Stats(), mt.tc.servers[1].Stats()
	t.Logf("%d ops; freeze lasted %v; TRYAGAIN %d; held %d; keys moved on access %d; mover ran %v",
		ops.Load(), tMigrating.Sub(tFreeze), tryAgain.Load(), st0.MigrationHeld+st1.MigrationHeld,
		st0.KeysMovedOnAccess+st1.KeysMovedOnAccess, tMoved.Sub(tMigrating))
	p := func(d []time.Duration, q float64) time.Duration {
		if len(d) == 0 {
			return 0
		}
		slices.Sort(d)
		return d[min(len(d)-1, int(q*float64(len(d))))]
	}
	t.Logf("requests on frozen slots overlapping the freeze: %d, p50 %v, p99 %v, max %v", len(held), p(held, .5), p(held, .99), p(held, 1))
	t.Logf("requests on migrating slots while the mover ran: %d, p50 %v, p99 %v, max %v", len(moving), p(moving, .5), p(moving, .99), p(moving, 1))
	if q := p(held, .99); q > 100*time.Millisecond {
		t.Errorf("freeze-time p99 %v, want under 100ms", q)
	}
}
