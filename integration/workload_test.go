package integration

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// workload writes through every node while a test changes the cluster underneath, keeping
// what each worker had acknowledged so the end state can be checked exactly.
type workload struct {
	t       *testing.T
	workers []*worker
	stop    chan struct{}
	wg      sync.WaitGroup

	tryagain atomic.Int64
	ops      atomic.Int64
}

// worker owns its keys: only it writes them, so what it was acknowledged is the truth.
type worker struct {
	id  int
	rdb *redis.Client
	// acked state
	counters map[string]int64
	lists    map[string][]string
	sets     map[string]map[string]bool
	strs     map[string]int64
	// what went wrong
	errs      []string
	stale     []string
	latencies []time.Duration
}

const (
	workKeys = 40 // keys of each kind per worker, spread over the slots by their names
)

// startWorkload starts perNode workers on each node's RESP port.
func startWorkload(t *testing.T, nodes []*proc, perNode int) *workload {
	w := &workload{t: t, stop: make(chan struct{})}
	for _, p := range nodes {
		for i := 0; i < perNode; i++ {
			wk := &worker{
				id:       len(w.workers),
				rdb:      redis.NewClient(&redis.Options{Addr: p.Listen, MaxRetries: -1, PoolSize: 2, ReadTimeout: 10 * time.Second}),
				counters: map[string]int64{}, lists: map[string][]string{}, sets: map[string]map[string]bool{}, strs: map[string]int64{},
			}
			w.workers = append(w.workers, wk)
		}
	}
	for _, wk := range w.workers {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.run(wk)
		}()
	}
	t.Cleanup(func() {
		w.Stop()
		for _, wk := range w.workers {
			wk.rdb.Close()
		}
	})
	return w
}

// do runs op, retrying while the cluster answers TRYAGAIN (the command did not run).
func (w *workload) do(wk *worker, op func(ctx context.Context) error) bool {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		start := time.Now()
		err := op(ctx)
		cancel()
		wk.latencies = append(wk.latencies, time.Since(start))
		w.ops.Add(1)
		if err == nil {
			return true
		}
		if notRun(err.Error()) {
			w.tryagain.Add(1)
			select {
			case <-w.stop:
				return false
			default:
			}
			continue
		}
		wk.errs = append(wk.errs, err.Error())
		return false
	}
}

func (w *workload) run(wk *worker) {
	for seq := int64(1); ; seq++ {
		select {
		case <-w.stop:
			return
		default:
		}
		k := int(seq) % workKeys
		ctr := fmt.Sprintf("ctr:%d:%d", wk.id, k)
		lst := fmt.Sprintf("lst:%d:%d", wk.id, k)
		set := fmt.Sprintf("set:%d:%d", wk.id, k)
		str := fmt.Sprintf("str:%d:%d", wk.id, k)
		var got int64
		if w.do(wk, func(ctx context.Context) (err error) { got, err = wk.rdb.Incr(ctx, ctr).Result(); return }) {
			wk.counters[ctr]++
			if got != wk.counters[ctr] {
				wk.errs = append(wk.errs, fmt.Sprintf("INCR %s = %d, acknowledged INCRs %d", ctr, got, wk.counters[ctr]))
				wk.counters[ctr] = got
			}
		}
		v := strconv.FormatInt(seq, 10)
		if w.do(wk, func(ctx context.Context) error { return wk.rdb.RPush(ctx, lst, v).Err() }) {
			wk.lists[lst] = append(wk.lists[lst], v)
		}
		if w.do(wk, func(ctx context.Context) error { return wk.rdb.SAdd(ctx, set, v).Err() }) {
			if wk.sets[set] == nil {
				wk.sets[set] = map[string]bool{}
			}
			wk.sets[set][v] = true
		}
		if w.do(wk, func(ctx context.Context) error { return wk.rdb.Set(ctx, str, v, time.Hour).Err() }) {
			wk.strs[str] = seq
		}
		// Read back a key written earlier: never older than what this client was acknowledged.
		rk := fmt.Sprintf("str:%d:%d", wk.id, (k+7)%workKeys)
		if want, ok := wk.strs[rk]; ok {
			var s string
			if w.do(wk, func(ctx context.Context) (err error) { s, err = wk.rdb.Get(ctx, rk).Result(); return }) {
				if n, _ := strconv.ParseInt(s, 10, 64); n < want {
					wk.stale = append(wk.stale, fmt.Sprintf("GET %s = %q, acknowledged %d", rk, s, want))
				}
			}
		}
	}
}

// Stop ends the workload and waits for the workers.
func (w *workload) Stop() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.wg.Wait()
}

// WaitOps waits until at least n more operations completed.
func (w *workload) WaitOps(n int64) {
	w.t.Helper()
	target := w.ops.Load() + n
	waitFor(w.t, 60*time.Second, fmt.Sprintf("%d more operations", n), func() error {
		if got := w.ops.Load(); got < target {
			return fmt.Errorf("%d of %d", got, target)
		}
		return nil
	})
}

// Verify stops the workload and checks, through rdb, that every acknowledged write is there
// exactly once; it returns the p99 operation latency.
func (w *workload) Verify(rdb *redis.Client) time.Duration {
	w.t.Helper()
	w.Stop()
	ctx := context.Background()
	var all []time.Duration
	for _, wk := range w.workers {
		all = append(all, wk.latencies...)
		for _, e := range wk.errs {
			w.t.Errorf("worker %d: %s", wk.id, e)
		}
		for _, e := range wk.stale {
			w.t.Errorf("worker %d: stale read: %s", wk.id, e)
		}
		for k, n := range wk.counters {
			if got, err := rdb.Get(ctx, k).Int64(); err != nil || got != n {
				w.t.Errorf("counter %s = %d (%v), acknowledged %d", k, got, err, n)
			}
		}
		for k, want := range wk.lists {
			got, err := rdb.LRange(ctx, k, 0, -1).Result()
			if err != nil || strings.Join(got, ",") != strings.Join(want, ",") {
				w.t.Errorf("list %s = %v (%v), acknowledged %v", k, got, err, want)
			}
		}
		for k, want := range wk.sets {
			got, err := rdb.SMembers(ctx, k).Result()
			if err != nil || len(got) != len(want) {
				w.t.Errorf("set %s has %d members (%v), acknowledged %d", k, len(got), err, len(want))
			}
		}
		for k, want := range wk.strs {
			s, err := rdb.Get(ctx, k).Result()
			ttl, _ := rdb.TTL(ctx, k).Result()
			if err != nil || s != strconv.FormatInt(want, 10) || ttl <= 0 {
				w.t.Errorf("string %s = %q ttl %v (%v), acknowledged %d with a TTL", k, s, ttl, err, want)
			}
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	if len(all) == 0 {
		w.t.Fatal("the workload ran no operation")
	}
	return all[len(all)*99/100]
}
