package migrate

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The pace of MoveSlots (DESIGN.md, "Pacing"). Every client of the source and the target waits
// behind the mover's scripts, and on a busy host behind the CPU the mover takes: unthrottled,
// the mover took the source and the target in bursts and the clients' p99 rose 7-12x, while a
// fixed rate that keeps them near 2x on one machine is far too slow (or too fast) on another.
// So the mover measures what a client would see and sets its own rate:
//
//   - a prober PINGs the source and the target every probeEvery, each on its own connection,
//     and records the round trips (a PING waits behind whatever those servers and this
//     process are busy with, as a client's request does);
//   - every restEvery the mover rests for restFor: no new batch starts, and the probes taken
//     once the batches in flight have drained (after restSettle) give each server's latency
//     without the mover; the reference is the median of the last refKeep rests' medians
//     (one rest's is noisy on a shared host);
//   - every controlEvery while moving, the median of each server's probes is compared with
//     its reference: over max(LatencyFactor x reference, reference + paceSlack) on either
//     server, the rate drops by a quarter; under 0.8 of that on both, it grows by a quarter,
//     to at most twice the rate the mover reached in that step (a rate it cannot reach says
//     nothing); it stays within [MinRate, the operator's rate or maxPace].
//
// The reference is measured again at every rest, so other load on the machine shifts it and
// only the mover's own share is held down. The rests cost restFor/restEvery of the time.
const (
	probeEvery   = 2 * time.Millisecond
	controlEvery = 100 * time.Millisecond
	restEvery    = time.Second
	restFor      = 60 * time.Millisecond
	restSettle   = 20 * time.Millisecond
	refKeep      = 3
	paceSlack    = 500 * time.Microsecond
	paceStart    = 10000   // keys/s before the first measurement
	maxPace      = 1000000 // keys/s: in effect unthrottled
	minProbes    = 8       // a window with fewer probes of a server decides nothing
)

// pacer sets the mover's rate from the probes (see above).
type pacer struct {
	factor  float64
	min     int64
	log     *slog.Logger
	rate    atomic.Int64 // keys/s now
	used    atomic.Int64 // keys started since the last control step
	restTil atomic.Int64 // unix ns: no batch starts before (resting)

	mu      sync.Mutex
	window  [2][]time.Duration // probes since the last control step, per server
	rest    [2][]time.Duration // probes of the current rest, per server
	refs    [2][]time.Duration // the last refKeep rests' medians, per server
	resting bool
}

// startPacer starts probing the source and the target and returns the pacer; it stops when
// ctx ends.
func (m *Mover) startPacer(ctx context.Context, factor float64, minRate int64) *pacer {
	cfg := m.cfg
	cfg.PoolSize = 1
	p := newPacer(factor, minRate, m.log)
	// Raw connections (resp.go): a go-redis PING cost this process a system call more, its
	// pool's health check, and the probes are most of the mover's round trips.
	probers := [2]*rawPool{newRawPool(m.cfg.Source, 0, &cfg), newRawPool(m.cfg.Target, 0, &cfg)}
	p.startRest(time.Now()) // the first reference, before any batch
	var wg sync.WaitGroup
	for i, c := range probers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.probe(ctx, i, c)
		}()
	}
	go func() {
		wg.Wait()
		for _, c := range probers {
			c.close()
		}
	}()
	go p.control(ctx)
	return p
}

func newPacer(factor float64, minRate int64, log *slog.Logger) *pacer {
	p := &pacer{factor: factor, min: minRate, log: log}
	p.rate.Store(max(paceStart, minRate))
	return p
}

// probe PINGs server i every probeEvery until ctx ends. A failed PING is not a sample (the
// mover's own steps report the server's trouble).
func (p *pacer) probe(ctx context.Context, i int, c *rawPool) {
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		t0 := time.Now()
		res, err := c.do(ctx, func(c *rawConn) { c.cmd("PING") })
		if err != nil || res[0].err() != nil {
			continue
		}
		p.sample(i, t0, time.Since(t0))
	}
}

// sample records server i's probe sent at t0.
func (p *pacer) sample(i int, t0 time.Time, rtt time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.resting {
		if t0.UnixNano() >= p.restTil.Load()-int64(restFor-restSettle) {
			p.rest[i] = append(p.rest[i], rtt)
		}
		return
	}
	p.window[i] = append(p.window[i], rtt)
}

// startRest starts a rest at now: no batch starts until it ends.
func (p *pacer) startRest(now time.Time) {
	p.mu.Lock()
	p.restTil.Store(now.Add(restFor).UnixNano())
	p.resting = true
	p.rest = [2][]time.Duration{}
	p.mu.Unlock()
}

// control runs the rests and the control steps until ctx ends.
func (p *pacer) control(ctx context.Context) {
	t := time.NewTicker(controlEvery / 10)
	defer t.Stop()
	lastRest, lastStep := time.Now(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			p.mu.Lock()
			resting := p.resting
			p.mu.Unlock()
			switch {
			case resting && now.UnixNano() >= p.restTil.Load():
				p.endRest()
				lastRest, lastStep = now, now
				p.used.Store(0)
			case !resting && now.Sub(lastRest) >= restEvery:
				p.startRest(now)
			case !resting && now.Sub(lastStep) >= controlEvery:
				p.step(now.Sub(lastStep))
				lastStep = now
			}
		}
	}
}

// endRest ends a rest: each server with enough probes gets a new reference sample.
func (p *pacer) endRest() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.rest {
		if len(p.rest[i]) >= minProbes {
			p.refs[i] = append(p.refs[i], median(p.rest[i]))
			if len(p.refs[i]) > refKeep {
				p.refs[i] = p.refs[i][1:]
			}
		}
	}
	p.resting = false
	p.window = [2][]time.Duration{}
}

// step is one control step over the probes of the last elapsed (see above).
func (p *pacer) step(elapsed time.Duration) {
	p.mu.Lock()
	w := p.window
	p.window = [2][]time.Duration{}
	var ref [2]time.Duration
	for i, r := range p.refs {
		if len(r) > 0 {
			ref[i] = median(slices.Clone(r))
		}
	}
	p.mu.Unlock()
	reached := float64(p.used.Swap(0)) / elapsed.Seconds()
	var q [2]time.Duration
	over, under, known := false, true, false
	for i := range w {
		if ref[i] <= 0 || len(w[i]) < minProbes {
			continue
		}
		known = true
		limit := max(time.Duration(float64(ref[i])*p.factor), ref[i]+paceSlack)
		q[i] = median(w[i])
		over = over || q[i] > limit
		under = under && q[i] < limit*4/5
	}
	if !known {
		return
	}
	rate := p.rate.Load()
	switch {
	case over:
		rate = rate * 3 / 4
	case under:
		rate = min(rate+rate/4, max(int64(2*reached), rate))
	}
	rate = min(max(rate, p.min), maxPace)
	p.rate.Store(rate)
	p.log.Debug("migrate pace", "source_ms", ms3(q[0]), "source_ref_ms", ms3(ref[0]), "target_ms", ms3(q[1]),
		"target_ref_ms", ms3(ref[1]), "reached", int64(reached), "rate", rate)
}

// started counts n keys started under the pace.
func (p *pacer) started(n int) { p.used.Add(int64(n)) }

// wait blocks while the pacer rests.
func (p *pacer) wait(ctx context.Context) error {
	if d := time.Until(time.Unix(0, p.restTil.Load())); d > 0 {
		return SleepCtx(ctx, d)
	}
	return nil
}

// median returns the median of d (sorted in place; d is not empty).
func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}

// ms3 renders d in milliseconds with 3 decimals, for logs.
func ms3(d time.Duration) string { return strconv.FormatFloat(d.Seconds()*1000, 'f', 3, 64) }
