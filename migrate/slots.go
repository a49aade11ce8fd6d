package migrate

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ScanSlots runs one SCAN step over the source db from cursor and returns the keys that hash
// to slots, and the next cursor ("0" when the pass is over). count is SCAN's COUNT hint. Lock
// and temp keys and the fence (fence.go) are left out; redraft's other internal keys (replication outboxes) are
// returned, since they must move with their slot.
func (m *Mover) ScanSlots(ctx context.Context, db int, slots SlotSet, cursor string, count int) (keys []string, next string, err error) {
	src, _, err := m.clients(db)
	if err != nil {
		return nil, "", err
	}
	keys, next, _, err = scanSlots(ctx, src, &slots, cursor, count)
	return keys, next, err
}

// scanSlots is ScanSlots on a client; it also returns how many keys SCAN returned in all.
func scanSlots(ctx context.Context, c *redis.Client, slots *SlotSet, cursor string, count int) ([]string, string, int, error) {
	cur, err := strconv.ParseUint(cursor, 10, 64)
	if err != nil {
		return nil, "", 0, fmt.Errorf("migrate: bad SCAN cursor %q", cursor)
	}
	if count <= 0 {
		count = 1000
	}
	all, nextCur, err := c.Scan(ctx, cur, "", int64(count)).Result()
	if err != nil {
		return nil, "", 0, fmt.Errorf("migrate: SCAN: %w", err)
	}
	keys := all[:0:0]
	for _, k := range all {
		if strings.HasPrefix(k, lockPrefix) && !strings.HasPrefix(k, CopyLockPrefix) || strings.HasPrefix(k, tmpPrefix) || k == FenceKey || k == DirtyKey ||
			strings.HasPrefix(k, LogKey) || strings.HasPrefix(k, LogInboxPrefix) {
			continue
		}
		if slots.Contains(SlotString(k)) {
			keys = append(keys, k)
		}
	}
	return keys, strconv.FormatUint(nextCur, 10), len(all), nil
}

// Progress is a MoveSlots progress report.
type Progress struct {
	// KeysMoved counts keys moved by this MoveSlots call (not by migrate-on-access).
	KeysMoved int64
	// BytesMoved sums the moved keys' sizes on the source: a string's length and its name's,
	// anything else's MEMORY USAGE (an estimate).
	BytesMoved int64
	// KeysLeftEstimate extrapolates the keys of the slots still on the source from what this
	// pass has scanned so far.
	KeysLeftEstimate int64
	// KeysTotal estimates the keys to move in all: KeysMoved plus KeysLeftEstimate.
	KeysTotal int64
	// Pass numbers the SCAN passes from 1; the last pass finds no keys.
	Pass int
	// DB is the database being scanned.
	DB int
	// Done is set on the final report, once a full pass found no key of the slots.
	Done bool
}

// MoveOptions tunes a MoveSlots call; every field is optional.
type MoveOptions struct {
	// Rate returns the throttle in keys per second, read before every batch so it can change
	// while running; nil or <= 0 is unthrottled.
	Rate func() int64
	// Paused, when it returns true, holds the mover until it returns false.
	Paused func() bool
	// Progress receives reports at most every ProgressEvery and a final one.
	Progress func(Progress)
	// ProgressEvery spaces progress reports (default 100ms).
	ProgressEvery time.Duration
	// BatchKeys is the most keys per batch copy (default 50, at most 1000).
	BatchKeys int
	// BatchBytes bounds the MEMORY USAGE of one batch copy, and so how long its DUMPs block the
	// source (default 64 KiB).
	BatchBytes int64
	// InFlight is how many batches may wait between two steps of the copy (default 4).
	InFlight int
	// ScanCount is SCAN's COUNT hint (default 300: a SCAN step blocks the source ~0.2 ms).
	ScanCount int
	// LatencyFactor paces the mover (pace.go): it keeps the median of its probes' round trips
	// to the source and the target within this factor of what it is while the mover rests
	// (or 0.5 ms over it, whichever is more), by setting its own rate (never over Rate's).
	// Default 2; negative: no pacing (with no Rate either, the mover goes flat out).
	LatencyFactor float64
	// MinRate is the pace's floor in keys/s (default 2000): however slow the servers, the
	// migration ends.
	MinRate int64
}

// MoveSlots moves every key of slots, in every db of the source, to the target: it SCANs the
// source and moves the keys it finds in batches, throttled and pausable, then repeats until a
// full pass over every db finds no key of the slots. It returns nil only then: the caller may
// commit the switch. Each pass costs a SCAN of the whole source (stock Redis has no per-slot
// key index). Keys that stay busy (another mover holds them) are retried in the next pass.
func (m *Mover) MoveSlots(ctx context.Context, slots SlotSet, opts MoveOptions) error {
	if slots.Len() == 0 {
		return errEmptySlots
	}
	if opts.ProgressEvery <= 0 {
		opts.ProgressEvery = 100 * time.Millisecond
	}
	if opts.ScanCount <= 0 {
		opts.ScanCount = 300
	}
	if opts.BatchKeys <= 0 {
		opts.BatchKeys = 50
	}
	opts.BatchKeys = min(opts.BatchKeys, maxBatchKeys)
	if opts.BatchBytes <= 0 {
		opts.BatchBytes = 64 << 10
	}
	if opts.InFlight <= 0 {
		opts.InFlight = 4
	}
	if opts.LatencyFactor == 0 {
		opts.LatencyFactor = 2
	}
	if opts.MinRate <= 0 {
		opts.MinRate = 2000
	}
	r := &run{m: m, opts: opts, slots: &slots}
	if opts.LatencyFactor > 0 {
		pctx, stop := context.WithCancel(ctx)
		defer stop()
		r.pace = m.startPacer(pctx, opts.LatencyFactor, opts.MinRate)
	}
	for r.p.Pass = 1; ; r.p.Pass++ {
		src, _, err := m.clients(0)
		if err != nil {
			return err
		}
		dbs, total, err := keyspace(ctx, src)
		if err != nil {
			return err
		}
		r.found, r.busy, r.scanned, r.hits, r.total = 0, 0, 0, 0, total
		r.refused, r.refusedErr = 0, nil
		for _, db := range dbs {
			if err := r.pass(ctx, db); err != nil {
				return err
			}
		}
		if r.found == 0 {
			m.sweepLocks(ctx, dbs)
			r.p.Done, r.p.KeysLeftEstimate = true, 0
			r.report(true)
			return nil
		}
		m.log.Info("migrate pass done", "pass", r.p.Pass, "found", r.found, "busy", r.busy,
			"moved", r.p.KeysMoved, "slots", slots.String())
		if r.refused > 0 {
			m.log.Warn("migrate: the target refused batches of this pass; their keys move in the next",
				"pass", r.p.Pass, "batches", r.refused, "err", r.refusedErr)
		}
		if r.busy == r.found {
			// Only busy keys left: give their holders time before scanning everything again.
			if err := SleepCtx(ctx, m.cfg.LockWait); err != nil {
				return err
			}
		}
	}
}

// run is the state of one MoveSlots call.
type run struct {
	m     *Mover
	opts  MoveOptions
	slots *SlotSet
	pace  *pacer    // nil: not paced
	next  time.Time // throttle: when the next batch may start

	mu                   sync.Mutex // the restorer goroutine reports too
	p                    Progress
	last                 time.Time
	found                int64 // keys of the slots seen in this pass
	busy                 int64 // of which still busy
	scanned, hits, total int64
	// refused counts this pass's batches the target refused (refusedErr the last one's why):
	// their keys stay on the source, moved again in the next pass.
	refused    int64
	refusedErr error
}

// copyJob is a batch locked and dumped on the source, on its way to the target.
type copyJob struct {
	lock  string // the batch's lock value (dumpBatch)
	now   int64
	batch []dumped
}

// pass runs one full SCAN over db. The three steps of a batch copy overlap: this goroutine
// SCANs (the next SCAN step runs while the keys of this one are dumped) and dumps the batches of
// each step concurrently (dumpScript), InFlight restorers restore them on the target, InFlight
// finishers delete them from the source; up to InFlight batches wait between two steps. Each
// server thus has a few of the mover's short scripts in flight at once, each on its own
// connection, so client commands interleave between them and the round trips overlap.
func (r *run) pass(ctx context.Context, db int) error {
	scanner, _, err := r.m.clients(db)
	if err != nil {
		return err
	}
	src, dst, err := r.m.raws(db)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dumpedc := make(chan copyJob, r.opts.InFlight)
	restored := make(chan copyJob, r.opts.InFlight)
	var failMu sync.Mutex
	var failed error
	fail := func(err error) {
		failMu.Lock()
		if failed == nil {
			failed = err
		}
		failMu.Unlock()
		cancel()
	}
	var restorers, finishers sync.WaitGroup
	for range r.opts.InFlight {
		restorers.Add(1)
		go func() {
			defer restorers.Done()
			for j := range dumpedc {
				if ctx.Err() != nil {
					r.m.unlockBatch(ctx, src, j.batch, j.lock)
					continue
				}
				if err := r.m.restore(ctx, src, dst, j.now, j.batch, j.lock); err != nil {
					if errors.Is(err, ErrKeyBusy) && !errors.Is(err, ErrRunOver) {
						// The target's lease check refused it (the lease ran out, or another
						// migration's mark on the target touched the watched FenceKey): the
						// locks are released and the keys stay on the source, for the next
						// pass. Failing the run restarted every pass from a full SCAN after
						// a backoff, each time another migration into the target finished.
						r.mu.Lock()
						r.busy += int64(len(j.batch))
						r.refused++
						r.refusedErr = err
						r.mu.Unlock()
						continue
					}
					fail(err)
					continue
				}
				restored <- j
			}
		}()
		finishers.Add(1)
		go func() { // finishers always run, even after a failure, so restored keys leave the source
			defer finishers.Done()
			for j := range restored {
				// Every batch restored meanwhile goes in the same round trip: a round trip
				// costs the source and this process more than a delete script (DESIGN.md).
				js := []copyJob{j}
			drain:
				for len(js) < maxFinishRound {
					select {
					case j, ok := <-restored:
						if !ok {
							break drain
						}
						js = append(js, j)
					default:
						break drain
					}
				}
				r.finished(ctx, src, db, js, fail)
			}
		}()
	}
	err = r.scanAndDump(ctx, scanner, src, db, dumpedc)
	close(dumpedc)
	restorers.Wait()
	close(restored)
	finishers.Wait()
	if failed != nil && (err == nil || errors.Is(err, context.Canceled)) {
		return failed
	}
	return err
}

// sweepLocks drops the lapsed locks of dbs' locks hashes on the source (sweepLocksScript); a
// failure is only logged (the fields are free already, and the next run sweeps them).
func (m *Mover) sweepLocks(ctx context.Context, dbs []int) {
	for _, db := range dbs {
		src, _, err := m.clients(db)
		if err == nil {
			err = sweepLocksScript.Run(ctx, src, []string{LocksKey}, maxSweptLocks).Err()
		}
		if err != nil {
			m.log.Warn("migrate: sweeping lapsed locks failed", "db", db, "err", err)
			return
		}
	}
}

// maxSweptLocks bounds the locks hash sweepLocks reads at once.
const maxSweptLocks = 10000

// maxFinishRound bounds the batches whose delete steps share a round trip.
const maxFinishRound = 8

// finished runs step 3 of batch copies js in one round trip and counts their keys.
func (r *run) finished(ctx context.Context, src *rawPool, db int, js []copyJob, fail func(error)) {
	batches, locks := make([][]dumped, len(js)), make([]string, len(js))
	for i, j := range js {
		batches[i], locks[i] = j.batch, j.lock
	}
	ours, err := r.m.finishMany(context.WithoutCancel(ctx), src, batches, locks)
	if err != nil {
		fail(err)
		return
	}
	known := r.m.known(db)
	r.mu.Lock()
	for n, j := range js {
		for i, ok := range ours[n] {
			if ok == 1 {
				known.add(j.batch[i].key)
				r.p.KeysMoved++
				r.p.BytesMoved += j.batch[i].mem
			} else {
				r.busy++ // its lock lapsed: moved again in the next pass
			}
		}
	}
	r.mu.Unlock()
	r.report(false)
}

// scanStep is one SCAN step's result.
type scanStep struct {
	keys []string
	next string
	n    int
	err  error
}

// scanAndDump SCANs db once and dumps the keys of the slots in batches into jobs; busy and
// big keys go one by one through moveKeys (under their locks). The next SCAN step runs while
// this step's batches are dumped, all at once.
func (r *run) scanAndDump(ctx context.Context, scanner *redis.Client, src *rawPool, db int, jobs chan<- copyJob) error {
	r.mu.Lock()
	r.p.DB = db
	r.mu.Unlock()
	scan := func(cursor string) <-chan scanStep {
		ch := make(chan scanStep, 1)
		go func() {
			var st scanStep
			st.keys, st.next, st.n, st.err = scanSlots(ctx, scanner, r.slots, cursor, r.opts.ScanCount)
			ch <- st
		}()
		return ch
	}
	step := scan("0")
	for {
		if err := r.waitPaused(ctx); err != nil {
			return err
		}
		st := <-step
		if st.err != nil {
			return st.err
		}
		if st.next != "0" {
			step = scan(st.next)
		}
		r.mu.Lock()
		r.scanned += int64(st.n)
		r.hits += int64(len(st.keys))
		r.found += int64(len(st.keys))
		r.mu.Unlock()
		slow, err := r.dumpStep(ctx, src, st.keys, jobs)
		if err != nil {
			return err // a SCAN step still running ends with ctx (pass cancels it)
		}
		for _, k := range slow {
			// A big or busy key counts as one key for the rate and the pacer, and waits
			// while the mover is paused (a failover), as every batch does; until session 44
			// a step's big keys were copied flat out, and a pause took effect after them.
			if err := r.waitPaused(ctx); err != nil {
				return err
			}
			if err := r.throttle(ctx, 1); err != nil {
				return err
			}
			moved, bytes, err := r.m.moveKeys(ctx, db, []string{k})
			r.mu.Lock()
			r.p.KeysMoved += int64(moved)
			r.p.BytesMoved += bytes
			if err != nil && errors.Is(err, ErrKeyBusy) {
				r.busy++
			}
			r.mu.Unlock()
			if err != nil && !errors.Is(err, ErrKeyBusy) {
				return err
			}
			r.report(false)
		}
		if st.next == "0" {
			return nil
		}
	}
}

// dumpStep dumps keys in batches, all batches at once (each throttled, each on its own
// connection), and hands each locked batch to jobs in order; keys over a batch's byte budget
// go in the next round. It returns the busy and big keys.
func (r *run) dumpStep(ctx context.Context, src *rawPool, keys []string, jobs chan<- copyJob) ([]string, error) {
	var slow []string
	for len(keys) > 0 {
		type result struct {
			j   copyJob
			res []dumped
			err error
		}
		var results []chan result
		for len(keys) > 0 {
			batch := keys[:min(r.batchSize(), len(keys))]
			keys = keys[len(batch):]
			if err := r.throttle(ctx, len(batch)); err != nil {
				keys = nil
				break
			}
			ch := make(chan result, 1)
			results = append(results, ch)
			go func() {
				var j copyJob
				var res []dumped
				var err error
				j.now, j.lock, res, err = r.m.dumpBatch(ctx, src, batch, r.opts.BatchBytes)
				ch <- result{j: j, res: res, err: err}
			}()
			if r.rated() {
				// Under a rate each batch is handed on before the next one waits its turn: a
				// dumped batch holds its keys' locks, which would lapse while a slow rate
				// launched the rest of the step (nothing would ever move at 20 keys/s).
				break
			}
		}
		var first error
		var later []string
		for _, ch := range results {
			out := <-ch
			for _, d := range out.res {
				switch d.st {
				case stMoved:
					out.j.batch = append(out.j.batch, d)
				case stBusy, stBig:
					slow = append(slow, d.key)
				case stDeferred:
					later = append(later, d.key)
				}
			}
			if first == nil {
				first = out.err
			}
			if len(out.j.batch) == 0 {
				continue
			}
			if first != nil {
				r.m.unlockBatch(ctx, src, out.j.batch, out.j.lock)
				continue
			}
			select {
			case jobs <- out.j:
			case <-ctx.Done():
				r.m.unlockBatch(ctx, src, out.j.batch, out.j.lock)
				first = ctx.Err()
			}
		}
		if first == nil {
			first = ctx.Err()
		}
		if first != nil {
			return nil, first
		}
		keys = append(keys[:len(keys):len(keys)], later...)
	}
	return slow, nil
}

// rate is the throttle now in keys/s: the operator's rate or the pace, whichever is lower (0:
// none).
func (r *run) rate() int64 {
	var rate int64
	if r.opts.Rate != nil {
		rate = r.opts.Rate()
	}
	if r.pace != nil {
		if p := r.pace.rate.Load(); rate <= 0 || p < rate {
			rate = p
		}
	}
	return rate
}

// batchSize is BatchKeys, smaller under a low rate so batches stay about 50 ms apart.
func (r *run) batchSize() int {
	size := r.opts.BatchKeys
	if rate := r.rate(); rate > 0 {
		size = int(min(int64(size), max(rate/20, 1)))
	}
	return size
}

// rated reports whether a rate throttles the mover now.
func (r *run) rated() bool { return r.rate() > 0 }

// throttle waits until n more keys may move under the current rate (and while the pacer
// rests).
func (r *run) throttle(ctx context.Context, n int) error {
	if r.pace != nil {
		if err := r.pace.wait(ctx); err != nil {
			return err
		}
		r.pace.started(n)
	}
	rate := r.rate()
	now := time.Now()
	if rate <= 0 {
		r.next = now
		return nil
	}
	if r.next.Before(now) {
		r.next = now // no credit for idle time
	}
	wait := r.next.Sub(now)
	r.next = r.next.Add(time.Duration(n) * time.Second / time.Duration(rate))
	if wait <= 0 {
		return nil
	}
	return SleepCtx(ctx, wait)
}

func (r *run) waitPaused(ctx context.Context) error {
	for r.opts.Paused != nil && r.opts.Paused() {
		r.report(false)
		if err := SleepCtx(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// report calls Progress when ProgressEvery has passed, or always when final.
func (r *run) report(final bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.opts.Progress == nil || (!final && time.Since(r.last) < r.opts.ProgressEvery) {
		return
	}
	r.last = time.Now()
	if !final && r.scanned > 0 {
		left := float64(r.hits) / float64(r.scanned) * float64(max(r.total-r.scanned, 0))
		r.p.KeysLeftEstimate = int64(left) + r.busy
	}
	r.p.KeysTotal = r.p.KeysMoved + r.p.KeysLeftEstimate
	r.opts.Progress(r.p)
}

// keyspace returns the dbs that hold keys (INFO keyspace), sorted, and their total key count.
func keyspace(ctx context.Context, c *redis.Client) ([]int, int64, error) {
	info, err := c.Info(ctx, "keyspace").Result()
	if err != nil {
		return nil, 0, fmt.Errorf("migrate: INFO keyspace: %w", err)
	}
	var dbs []int
	var total int64
	for db, n := range Keyspace(info) {
		dbs = append(dbs, db)
		total += max(n, 0)
	}
	sort.Ints(dbs)
	return dbs, total, nil
}

// Keyspace reads an INFO keyspace reply: the keys of each database it lists (-1 for a line
// without a keys= count).
func Keyspace(info string) map[int]int64 {
	out := map[int]int64{}
	for name, fields := range InfoFields(info) {
		n, ok := strings.CutPrefix(name, "db")
		db, err := strconv.Atoi(n)
		if !ok || err != nil {
			continue
		}
		out[db] = -1
		for _, f := range strings.Split(fields, ",") {
			if v, ok := strings.CutPrefix(f, "keys="); ok {
				if keys, err := strconv.ParseInt(v, 10, 64); err == nil {
					out[db] = keys
				}
			}
		}
	}
	return out
}

// CountSlotKeys counts the keys of slots on the Redis at addr, over every db that holds keys
// (a full SCAN: O(all keys)). Lock and temp keys are not counted.
func CountSlotKeys(ctx context.Context, addr, password string, slots SlotSet) (int64, error) {
	cfg := Config{}
	cfg.setDefaults()
	c0 := newClient(Endpoint{Addr: addr, Password: password}, 0, &cfg)
	defer c0.Close()
	dbs, _, err := keyspace(ctx, c0)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, db := range dbs {
		c := newClient(Endpoint{Addr: addr, Password: password}, db, &cfg)
		for cursor := "0"; ; {
			keys, next, _, err := scanSlots(ctx, c, &slots, cursor, 1000)
			if err != nil {
				c.Close()
				return n, err
			}
			n += int64(len(keys))
			if cursor = next; cursor == "0" {
				break
			}
		}
		c.Close()
	}
	return n, nil
}
