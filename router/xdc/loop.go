package xdc

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/migrate"
)

// maxRoundSlots bounds the slots one shipping round reads and sends.
const maxRoundSlots = 512

// trimChunk bounds the waiting trims sent in one pipeline (about 0.3 ms of the master's time).
const trimChunk = 64

// maxInflight bounds a loop's sends in flight: while one waits for its answer the next round
// reads and sends (docs/replication.md, "Shipping between nodes").
const maxInflight = 2

// lateFactor: a send in flight longer than this many times the recent average is late, and the
// next round goes ahead without waiting for it (gate).
const lateFactor = 2

// gate waits, before a round takes the ready slots, while a send is in flight and not late
// (or while maxInflight are): the writes meanwhile gather into the next round. A send that
// usually takes 0.5 ms and stalls does not hold the writes behind it for long; under load,
// when every send takes milliseconds, rounds stay one at a time and large (each round costs
// the two nodes about 0.2 ms of CPU in its read and its peer call, whatever its size). It
// reports false when ctx ended.
func (l *loop) gate(ctx context.Context) bool {
	for {
		l.mu.Lock()
		n, avg := len(l.starts), l.sendAvg
		var age time.Duration
		if n > 0 {
			age = time.Since(l.starts[0])
		}
		l.mu.Unlock()
		wait := time.Duration(lateFactor)*avg - age
		if n == 0 || n < maxInflight && wait <= 0 {
			return true
		}
		var timer <-chan time.Time
		var t *time.Timer
		if n < maxInflight {
			t = time.NewTimer(wait)
			timer = t.C
		}
		late := false
		select {
		case <-ctx.Done():
			return false
		case <-l.sent:
		case <-timer:
			late = true
		}
		if t != nil {
			t.Stop()
		}
		if late {
			if l.ph.enabled() {
				l.ph.add("late-send", time.Since(l.starts0()))
			}
			return true
		}
	}
}

// starts0 is the start of the oldest send in flight (now when none).
func (l *loop) starts0() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.starts) == 0 {
		return time.Now()
	}
	return l.starts[0]
}

// lagWindow is how many recent entry lags a loop keeps for the p50/p99 it reports.
const lagWindow = 2048

// loopKey identifies a shipping loop: one group of this DC, one destination DC, one database.
type loopKey struct {
	server
	dest string
	db   int
}

// loop ships the outboxes of the slots this node owns on one group to one destination DC:
// one blocking XREAD over all their outboxes tells which have new entries; those are read
// (with the check that nothing after the last applied entry was trimmed) and sent to the
// slot's owner in the destination DC, grouped by node.
type loop struct {
	r      *Replicator
	key    loopKey
	slots  []int
	index  []int32 // slot -> position in slots, -1 for a slot this loop does not ship
	cancel context.CancelFunc
	done   chan struct{}
	// bits are the slots hinted to have new entries (one bit per slot); wake is signalled
	// when one is set. touched are the slots written or acked since the last scanOutbox.
	bits    [fsm.NumSlots / 64]atomic.Uint64
	touched [fsm.NumSlots / 64]atomic.Uint64
	wake    chan struct{}
	// trimQ hands a round's trims to the loop's trimmer (trimAsync).
	trimQ chan redis.Pipeliner
	// full asks the next round to look at every outbox the loop ships (at the start, and
	// when the change feed lost entries the loop had not read).
	full atomic.Bool
	// lens are the outbox lengths last read, by position in slots; scanning is set while
	// scanOutbox reads them.
	lens     []int64
	scanning atomic.Bool
	// ph times the rounds' phases for the debug log; woke is when follow last signalled
	// (UnixNano), for the "wake" phase.
	ph   *phases
	woke atomic.Int64
	// following is set while follow reads the change feed: the node's own writes then need
	// not hint the loop (Wrote).
	following atomic.Bool
	// sem holds one token per send in flight (maxInflight); sends waits for them when the
	// loop stops. sent is signalled when a send ends (gate).
	sem   chan struct{}
	sends sync.WaitGroup
	sent  chan struct{}

	mu      sync.Mutex
	stopped bool     // stop was called (run may not have set cancel yet)
	acked   []string // per position in slots
	pending []int64
	reset   map[int]bool // slots whose last applied id must be read again
	copying map[int]bool
	// fed are the outbox entries the change feed carried, by position in slots, in outbox
	// order, until the destination applied them; fedN counts them (dirty.go).
	fed  map[int][]fedEntry
	fedN int
	// unfed counts, by position in slots, the entries the change feed named that the loop
	// did not keep, since a read of the outbox that the destination applied to its end: while
	// it is set, the outbox is read, not the feed's entries shipped.
	unfed  map[int]uint64
	outbox int64
	pairStats
	refused map[int]bool // slots whose full copy logsOnly refused (logged once)
	// inflight are the slots of the batches sent and not answered yet, one bit per slot;
	// blocked, those a round left out because they were in flight (their answer marks them
	// again). sendErr is the last failed send's error, for the loop to back off.
	inflight [fsm.NumSlots / 64]uint64
	blocked  [fsm.NumSlots / 64]uint64
	sendErr  error
	// starts are the start times of the sends in flight; sendAvg is the recent sends'
	// average duration (an EWMA), for gate.
	starts  []time.Time
	sendAvg time.Duration
}

func newLoop(r *Replicator, k loopKey, slots []int) *loop {
	l := &loop{r: r, key: k, slots: slots, index: make([]int32, migrate.NumSlots), done: make(chan struct{}),
		acked: make([]string, len(slots)), pending: make([]int64, len(slots)), lens: make([]int64, len(slots)), reset: map[int]bool{},
		copying: map[int]bool{}, unfed: map[int]uint64{}, pairStats: pairStats{started: time.Now()}, wake: make(chan struct{}, 1), trimQ: make(chan redis.Pipeliner, 1),
		sem: make(chan struct{}, maxInflight), sent: make(chan struct{}, 1)}
	l.ph = newPhases(r.log.With("dest", k.dest, "group", k.group, "db", k.db), "shipping")
	for i := range l.index {
		l.index[i] = -1
	}
	for i, s := range slots {
		l.index[s] = int32(i)
	}
	return l
}

// ships reports whether l ships slot (its slots never change: plan replaces a loop instead).
func (l *loop) ships(slot int) bool { return slot >= 0 && slot < len(l.index) && l.index[slot] >= 0 }

// position returns where outbox key ob's slot is in l.slots, false for a key that is not the
// outbox of a slot this loop ships.
func (l *loop) position(ob string) (int, bool) {
	s := migrate.SlotString(ob)
	if p := l.index[s]; p >= 0 && OutboxKey(s) == ob {
		return int(p), true
	}
	return 0, false
}

// stop ends the loop, also one whose run has not begun yet (plan may replace a loop it
// started a moment earlier): run then returns at once.
func (l *loop) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
	if l.cancel != nil {
		l.cancel()
	}
}

func (l *loop) run(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	l.mu.Lock()
	l.cancel = cancel
	if l.stopped {
		cancel()
	}
	l.mu.Unlock()
	defer close(l.done)
	defer l.sends.Wait()
	defer cancel()
	src := l.r.client(l.key.server, l.key.db)
	backoff := 50 * time.Millisecond
	wait := func() bool {
		d := backoff
		backoff = min(2*backoff, 2*time.Second)
		return sleep(ctx, d)
	}
	for {
		ids, err := l.lastApplied(ctx, l.slots)
		if err == nil {
			l.mu.Lock()
			copy(l.acked, ids)
			l.recovered()
			l.mu.Unlock()
			trims := src.Pipeline()
			for i, id := range ids {
				if id != "" {
					l.r.recordAck(ctx, trims, l.key.master, l.key.dest, l.key.db, l.slots[i], id)
				}
			}
			execTrims(ctx, trims)
			break
		}
		l.fail(fmt.Errorf("last applied in %s: %w", l.key.dest, err))
		if !wait() {
			return
		}
	}
	copies := make(chan int, len(l.slots))
	go l.copier(ctx, src, copies)
	go l.trimmer(ctx)
	// Follow the change feed from where it is now; the first round looks at every outbox
	// for what was written before.
	pos, err := feedPos(ctx, src)
	if err != nil {
		pos = "0-0" // the whole feed: hints for slots that may have nothing new
	}
	go l.follow(ctx, src, pos)
	l.full.Store(true)
	l.signal()
	for i := range l.touched {
		l.touched[i].Store(^uint64(0))
	}
	nextScan := time.Now()
	for ctx.Err() == nil {
		if time.Now().After(nextScan) {
			l.scanOutbox(ctx, src)
			nextScan = time.Now().Add(l.r.cfg.OutboxScan)
		}
		if !l.gate(ctx) {
			return
		}
		ready, err := l.waitReady(ctx, src, nextScan)
		if err == nil {
			err = l.round(ctx, src, ready, copies)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// Nothing but the feed wakes the loop: what this round did not ship is tried
			// again after the backoff.
			for _, p := range ready {
				l.mark(l.slots[p])
			}
			l.fail(err)
			if !wait() {
				return
			}
			l.signal()
			continue
		}
		backoff = 50 * time.Millisecond
	}
}

// hint marks slot as having new entries and wakes the loop.
func (l *loop) hint(slot int) {
	l.mark(slot)
	l.signal()
}

// mark marks slot as having new entries, without waking the loop.
func (l *loop) mark(slot int) {
	l.bits[slot/64].Or(1 << (slot % 64))
	l.touch(slot)
}

// touch marks slot's outbox for the next outbox scan.
func (l *loop) touch(slot int) { l.touched[slot/64].Or(1 << (slot % 64)) }

// take empties a set of slots (one bit per slot) and returns the positions in l.slots of
// those the loop ships.
func (l *loop) take(set *[fsm.NumSlots / 64]atomic.Uint64) []int {
	var out []int
	for w := range set {
		v := set[w].Swap(0)
		for v != 0 {
			b := bits.TrailingZeros64(v)
			v &^= 1 << b
			if p := sort.SearchInts(l.slots, w*64+b); p < len(l.slots) && l.slots[p] == w*64+b {
				out = append(out, p)
			}
		}
	}
	return out
}

// sleep waits d, or less if ctx ends first; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool { return migrate.SleepCtx(ctx, d) == nil }

// signal wakes the loop.
func (l *loop) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// waitReady waits for a hint, a reset or a full look (or until the outbox scan is due), and
// returns the positions (in l.slots) of the slots that may have entries after their last
// applied id.
func (l *loop) waitReady(ctx context.Context, src *redis.Client, scan time.Time) ([]int, error) {
	t := time.NewTimer(max(time.Until(scan), time.Millisecond))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-l.wake:
	case <-t.C:
	}
	swept := l.full.Swap(false)
	ready := l.take(&l.bits)
	l.mu.Lock()
	resets := make([]int, 0, len(l.reset))
	for s := range l.reset {
		resets = append(resets, s)
	}
	l.reset = map[int]bool{}
	l.mu.Unlock()
	if len(resets) > 0 {
		sort.Ints(resets)
		ids, err := l.lastApplied(ctx, resets)
		if err != nil {
			l.mu.Lock()
			for _, s := range resets {
				l.reset[s] = true
			}
			l.mu.Unlock()
			return nil, err
		}
		l.mu.Lock()
		// The destination answered: an error from reaching it is over (at data format 3
		// nothing else this loop does would clear it, and the pair read down for good: e2e).
		l.recovered()
		for i, s := range resets {
			if p := sort.SearchInts(l.slots, s); p < len(l.slots) && l.slots[p] == s {
				l.acked[p] = ids[i]
				// The id read may lie before entries shipped and trimmed since (a full copy
				// from a third DC replaced the slot there): the carried entries kept no longer
				// tell what the outbox holds after it, and shipping them would skip the
				// trimmed ones without the read that finds them gone. The outbox is read
				// until a read reaches its end (readToEnd).
				l.dropAllFed(p)
				l.unfed[p]++
				ready = append(ready, p)
			}
		}
		l.mu.Unlock()
	}
	if swept {
		more, err := l.sweep(ctx, src)
		if err != nil {
			l.full.Store(true)
			return nil, err
		}
		ready = append(ready, more...)
	}
	sort.Ints(ready)
	ready = slices.Compact(ready)
	if len(ready) > maxRoundSlots {
		for _, p := range ready[maxRoundSlots:] {
			l.hint(l.slots[p])
		}
		ready = ready[:maxRoundSlots]
	}
	return ready, nil
}

// sweepChunk is how many outboxes one XREAD of a sweep names, so that a sweep over thousands
// of slots never holds the master for long.
const sweepChunk = 256

// sweep asks, in XREADs over sweepChunk outboxes each, which of the outboxes the loop ships
// have entries after their last applied id. It runs when the loop starts and when the change
// feed lost entries the loop had not read, not per round.
func (l *loop) sweep(ctx context.Context, src *redis.Client) ([]int, error) {
	var ready []int
	for from := 0; from < len(l.slots); from += sweepChunk {
		to := min(len(l.slots), from+sweepChunk)
		names, ids := make([]string, 0, to-from), make([]string, 0, to-from)
		l.mu.Lock()
		for i := from; i < to; i++ {
			if s := l.slots[i]; !l.copying[s] {
				names, ids = append(names, OutboxKey(s)), append(ids, orZero(l.acked[i]))
			}
		}
		l.mu.Unlock()
		if len(names) == 0 {
			continue
		}
		res, err := src.XRead(ctx, &redis.XReadArgs{Streams: append(names, ids...), Count: 1, Block: -1}).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("sweep outboxes: %w", err)
		}
		for _, st := range res {
			if p, ok := l.position(st.Stream); ok {
				ready = append(ready, p)
			}
		}
	}
	return ready, nil
}

// round reads the ready slots' next entries and hands them to a send (ship) that runs while
// the next rounds read: up to maxInflight sends are in flight. A slot is in at most one
// in-flight batch, so its entries are applied in order: a ready slot whose batch is still in
// flight is left for the round after its answer (blocked).
func (l *loop) round(ctx context.Context, src *redis.Client, ready []int, copies chan<- int) error {
	if len(ready) == 0 {
		return nil
	}
	if len(ready) > maxRoundSlots {
		ready = ready[:maxRoundSlots]
	}
	// A free send first, so that while every send is in flight the writes gather into the
	// next round (one read and one send for many) instead of waiting in many small ones.
	select {
	case l.sem <- struct{}{}:
	default:
		t := time.Now()
		select {
		case l.sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		l.ph.add("send-wait", time.Since(t))
	}
	shipping := false
	defer func() {
		if !shipping {
			<-l.sem
		}
	}()
	l.mu.Lock()
	if l.sendErr != nil {
		err := l.sendErr
		l.sendErr = nil
		l.mu.Unlock()
		return err
	}
	free := make([]int, 0, len(ready))
	after := make([]string, 0, len(ready))
	for _, p := range ready {
		if s := l.slots[p]; l.inflight[s/64]&(1<<(s%64)) != 0 {
			l.blocked[s/64] |= 1 << (s % 64)
			continue
		}
		free, after = append(free, p), append(after, l.acked[p])
	}
	l.mu.Unlock()
	ready = free
	if len(ready) == 0 {
		return nil
	}
	t0 := time.Now()
	if w := l.woke.Swap(0); w != 0 && l.ph.enabled() {
		l.ph.add("wake", t0.Sub(time.Unix(0, w)))
	}
	// The entries the change feed carried ship as they are; the other slots' outboxes are read.
	got := make([]slotRead, len(ready))
	var unread []int // indexes in ready
	l.mu.Lock()
	for i, p := range ready {
		if l.unfed[p] == 0 && !l.copying[l.slots[p]] {
			if es, ok := l.fedAfter(p, after[i], l.r.cfg.BatchSize); ok {
				got[i] = slotRead{entries: es, topOrd: -1}
				continue
			}
		}
		unread = append(unread, i)
	}
	l.mu.Unlock()
	if err := l.readInto(ctx, src, ready, after, unread, got); err != nil {
		return err
	}
	t1 := time.Now()
	if l.ph.enabled() && len(unread) > 0 {
		l.ph.add("read", t1.Sub(t0))
		for _, g := range got {
			if len(g.entries) > 0 {
				l.ph.add("age-after-read", LagOf(g.entries[0].ID, t1))
			}
		}
	}
	var batches []WireBatch
	var pos []int
	var reads []*slotRead
	more := false
	defer func() {
		if more {
			l.signal()
		}
	}()
	logs := l.logsOnly()
	lostFailed := false // copyLost failed to queue a slot's copy, and said so (l.fail)
	for i, p := range ready {
		g := got[i]
		if logs && (errors.Is(g.err, ErrBehind) || g.missing && l.lossPossible(l.slots[p])) {
			why := g.err
			if why == nil {
				why = errors.New("the outbox lost entries the destination applied, with a failed-over master")
			}
			l.refuseCopy(l.slots[p], why)
			continue
		}
		if errors.Is(g.err, ErrBehind) {
			l.mu.Lock()
			if !l.copying[l.slots[p]] {
				l.copying[l.slots[p]] = true
				copies <- l.slots[p]
				l.r.log.Warn("destination fell behind the outbox bound; copying the slot in full",
					"dest", l.key.dest, "slot", l.slots[p], "db", l.key.db, "err", g.err)
			}
			l.mu.Unlock()
			continue
		}
		if g.err != nil {
			return g.err
		}
		if g.missing && l.lossPossible(l.slots[p]) {
			l.r.noteLost(l.key, l.slots[p], after[i], &got[i])
			lostFailed = !l.copyLost(ctx, src, l.slots[p], &got[i], copies) || lostFailed
			continue
		}
		l.mu.Lock()
		if len(g.entries) < int(l.r.cfg.BatchSize) {
			l.pending[p] = int64(len(g.entries))
		} else {
			l.pending[p] = max(g.length, int64(len(g.entries)))
			l.mark(l.slots[p]) // more after this batch: the next round reads on
			more = true
		}
		l.mu.Unlock()
		if len(g.entries) == 0 {
			l.mu.Lock()
			l.readToEnd(p, &got[i])
			l.mu.Unlock()
			l.r.lost.shipped(lostKey{l.key.dest, l.key.db, l.slots[p]}, after[i], after[i], &got[i])
			continue
		}
		b := WireBatch{Slot: l.slots[p], Prev: after[i], Entries: make([]WireEntry, len(g.entries))}
		l.r.gc.markHot(l.key.db, l.slots[p])
		for j, e := range g.entries {
			b.Entries[j] = WireEntry{ID: e.ID, TS: e.TS, Cmds: e.Cmds}
		}
		batches = append(batches, b)
		pos, reads = append(pos, p), append(reads, &got[i])
	}
	if len(batches) == 0 {
		// The slots this round took were read and hold nothing to ship, and no copy runs or
		// failed to start (the copier and copyLost report their own failures): an error of
		// this side (an outbox read) is over. At data format 3 a loop ships nothing, and such an
		// error stayed, reporting the pair down for good. The destination's own errors
		// clear where it answers (run, waitReady, ship).
		l.mu.Lock()
		if !lostFailed && l.sendErr == nil && len(l.starts) == 0 && len(l.copying) == 0 {
			l.recovered()
		}
		l.mu.Unlock()
		return nil
	}
	start := time.Now()
	l.mu.Lock()
	for _, b := range batches {
		l.inflight[b.Slot/64] |= 1 << (b.Slot % 64)
	}
	l.starts = append(l.starts, start)
	l.mu.Unlock()
	shipping = true
	l.sends.Add(1)
	go func() {
		defer l.sends.Done()
		defer func() { <-l.sem }()
		l.ship(ctx, src, batches, pos, reads, start)
	}()
	return nil
}

// readInto reads the outboxes of the slots at ready[i] for i in unread, after after[i], into
// got[i].
func (l *loop) readInto(ctx context.Context, src *redis.Client, ready []int, after []string, unread []int, got []slotRead) error {
	if len(unread) == 0 {
		return nil
	}
	slots, from := make([]int, len(unread)), make([]string, len(unread))
	// XINFO only where the lost-entry count needs an outbox's ordinal (lost.go): once per
	// slot, then the ordinals are counted on.
	info := make([]bool, len(unread))
	seen := make([]uint64, len(unread))
	l.mu.Lock()
	for j, i := range unread {
		slots[j], from[j], seen[j] = l.slots[ready[i]], after[i], l.unfed[ready[i]]
		info[j] = !l.r.lost.known(lostKey{l.key.dest, l.key.db, slots[j]}, after[i])
	}
	l.mu.Unlock()
	res, err := readSlotsInfo(ctx, src, slots, from, l.r.cfg.BatchSize, info)
	if err != nil {
		return fmt.Errorf("read outboxes: %w", err)
	}
	for j, i := range unread {
		got[i] = res[j]
		got[i].unfed = seen[j]
	}
	return nil
}

// ship sends a round's batches and records the answers: the destination's last applied ids,
// the lags, the trims. A failure marks the batches' slots to be read again and leaves the
// error for the loop, which backs off (sendErr). Either way the batches' slots leave the
// in-flight set, and those a round left out meanwhile are marked again.
func (l *loop) ship(ctx context.Context, src *redis.Client, batches []WireBatch, pos []int, reads []*slotRead, start time.Time) {
	results, err := l.send(ctx, batches)
	took := time.Since(start)
	if err == nil && l.ph.enabled() {
		l.ph.add("send", took)
	}
	var firstErr error
	more := false
	defer func() {
		select { // after the answer is recorded (deferred first, run last): gate goes on
		case l.sent <- struct{}{}:
		default:
		}
	}()
	defer func() {
		l.mu.Lock()
		if i := slices.Index(l.starts, start); i >= 0 {
			l.starts = slices.Delete(l.starts, i, i+1)
		}
		if err == nil {
			l.sendAvg = (7*l.sendAvg + took) / 8
		}
		for _, b := range batches {
			w, bit := b.Slot/64, uint64(1)<<(b.Slot%64)
			l.inflight[w] &^= bit
			if l.blocked[w]&bit != 0 {
				l.blocked[w] &^= bit
				l.mark(b.Slot)
				more = true
			}
		}
		if firstErr != nil {
			l.sendErr = cmpErr(l.sendErr, firstErr)
			more = true
		} else {
			l.recovered()
		}
		l.mu.Unlock()
		if more {
			l.signal()
		}
	}()
	if err != nil {
		for _, b := range batches {
			l.mark(b.Slot) // read and sent again after the backoff
		}
		firstErr = err
		return
	}

	now := time.Now()
	trims := src.Pipeline() // the round's trims, one round trip, off the round's path
	defer l.trimAsync(ctx, trims)
	for i, res := range results {
		p, b := pos[i], batches[i]
		n := 0
		for _, e := range b.Entries {
			if res.Last != "" && CompareIDs(e.ID, res.Last) <= 0 {
				n++
			}
		}
		l.mu.Lock()
		if res.Last != "" && CompareIDs(res.Last, l.acked[p]) > 0 {
			l.acked[p] = res.Last
			l.dropFed(p, res.Last)
		}
		if len(b.Entries) < int(l.r.cfg.BatchSize) && res.Last == b.Entries[len(b.Entries)-1].ID {
			l.readToEnd(p, reads[i])
		}
		l.r.counter(l.key.dest).shipped.Add(int64(n))
		l.pending[p] = max(0, l.pending[p]-int64(n))
		for _, e := range b.Entries[:n] {
			l.applied(e.ID, len(e.Cmds) == 0, now)
		}
		if n > 0 {
			l.touch(b.Slot)
		}
		if res.Gap {
			l.reset[b.Slot] = true
		}
		l.mu.Unlock()
		if res.Last != "" {
			l.r.recordAck(ctx, trims, l.key.master, l.key.dest, l.key.db, b.Slot, res.Last)
			l.r.lost.shipped(lostKey{l.key.dest, l.key.db, b.Slot}, b.Prev, res.Last, reads[i])
		}
		if res.Error != "" && !res.Gap {
			l.mark(b.Slot) // tried again after the backoff
			if firstErr == nil {
				firstErr = fmt.Errorf("apply in %s, slot %d: %s", l.key.dest, b.Slot, res.Error)
			}
		}
		if res.Gap {
			more = true
		}
	}
}

// trimAsync sends a round's trims in the background, so that the next round does not wait for
// them (one round trip to the source less per round). The next round's read may run first:
// it starts at the destination's last applied id, which a trim keeps. At most one round's
// trims wait; a round that finds them still waiting sends its own itself.
func (l *loop) trimAsync(ctx context.Context, p redis.Pipeliner) {
	if p.Len() == 0 {
		return
	}
	select {
	case l.trimQ <- p:
	default:
		execTrims(ctx, p)
	}
}

// trimmer sends the trims rounds hand it until ctx ends.
func (l *loop) trimmer(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-l.trimQ:
			execTrims(ctx, p)
		}
	}
}

// execTrims sends the trims queued on p, if any; a trim that fails leaves a longer outbox
// until the next one.
func execTrims(ctx context.Context, p redis.Pipeliner) {
	if p.Len() > 0 {
		_, _ = p.Exec(ctx)
	}
}

// fail records a shipping error for the report.
func (l *loop) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failed(err.Error(), time.Now())
	l.r.log.Debug("shipping", "dest", l.key.dest, "group", l.key.group, "err", err)
}

// send sends batches to the destination DC, each to its slot's owner there (another node of
// the DC when the owner does not answer), and returns one result per batch.
func (l *loop) send(ctx context.Context, batches []WireBatch) ([]ApplyResult, error) {
	st := l.r.cfg.Cluster.State()
	byNode := map[string][]int{}
	ring := st.Ring(l.key.dest)
	for i, b := range batches {
		owner := fsm.OwnerIn(ring, b.Slot)
		byNode[owner] = append(byNode[owner], i)
	}
	out := make([]ApplyResult, len(batches))
	var mu sync.Mutex
	var firstErr error
	sendTo := func(owner string, idx []int) {
		req := ApplyRequest{Source: l.r.cfg.Cluster.DC(), DB: l.key.db, Batches: make([]WireBatch, len(idx))}
		for j, i := range idx {
			req.Batches[j] = batches[i]
		}
		resp, err := l.r.sendApply(ctx, st, l.key.dest, owner, req)
		if err == nil && len(resp.Results) != len(idx) {
			err = fmt.Errorf("%d results for %d batches", len(resp.Results), len(idx))
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			firstErr = cmpErr(firstErr, fmt.Errorf("ship to %s: %w", l.key.dest, err))
			return
		}
		for j, i := range idx {
			out[i] = resp.Results[j]
		}
	}
	if len(byNode) == 1 {
		// One owner (always, with one node in the destination DC): on this goroutine, whose
		// stack has grown already; a new one per round grew its stack anew (5 % of a
		// shipping node's CPU flat out, session 23).
		for owner, idx := range byNode {
			sendTo(owner, idx)
		}
	} else {
		var wg sync.WaitGroup
		for owner, idx := range byNode {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sendTo(owner, idx)
			}()
		}
		wg.Wait()
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return out, nil
}

// sendApply sends req to node owner of DC dest in the newest form that node reads: a node of
// a version before a form refuses it as bad JSON, and gets (now and later) the next older one.
func (r *Replicator) sendApply(ctx context.Context, st *fsm.State, dest, owner string, req ApplyRequest) (ApplyResponse, error) {
	form := 0
	if v, ok := r.oldWire.Load(owner); ok {
		form = v.(int)
	}
	for {
		var resp ApplyResponse
		var body any
		switch form {
		case 0:
			body = EncodeApply(req)
		case wireV1:
			body = EncodeApply(req).V1()
		default:
			body = req
		}
		err := r.callDC(ctx, st, dest, owner, RPCApply, body, &resp)
		if err == nil || form == wireJSON || !strings.Contains(err.Error(), "xdc: bad request: invalid character") {
			return resp, err
		}
		form++
		r.oldWire.Store(owner, form)
	}
}

// lastApplied asks the destination DC for its last applied ids of this DC on slots.
func (l *loop) lastApplied(ctx context.Context, slots []int) ([]string, error) {
	return l.r.lastApplied(ctx, l.key.dest, l.key.db, slots)
}

// lastApplied asks DC dest, the owner of each slot there, for the id of the last entry of this
// DC's outbox of the slot in database db that it applied ("" when none).
func (r *Replicator) lastApplied(ctx context.Context, dest string, db int, slots []int) ([]string, error) {
	st := r.cfg.Cluster.State()
	ring := st.Ring(dest)
	byNode := map[string][]int{}
	for i, s := range slots {
		owner := fsm.OwnerIn(ring, s)
		byNode[owner] = append(byNode[owner], i)
	}
	out := make([]string, len(slots))
	for owner, idx := range byNode {
		req := LastRequest{Source: r.cfg.Cluster.DC(), DB: db, Slots: make([]int, len(idx))}
		for j, i := range idx {
			req.Slots[j] = slots[i]
		}
		var resp LastResponse
		if err := r.callDC(ctx, st, dest, owner, RPCLast, req, &resp); err != nil {
			return nil, err
		}
		if len(resp.IDs) != len(idx) {
			return nil, fmt.Errorf("%d ids for %d slots", len(resp.IDs), len(idx))
		}
		for j, i := range idx {
			out[i] = resp.IDs[j]
		}
	}
	return out, nil
}

// callDC calls name on node first of DC dc, then on the DC's other nodes until one answers.
func (r *Replicator) callDC(ctx context.Context, st *fsm.State, dc, first, name string, in, out any) error {
	order := []string{}
	if st.Nodes[first] != nil {
		order = append(order, first)
	}
	for _, id := range st.NodeIDs() {
		if id != first && st.Nodes[id].DC == dc {
			order = append(order, id)
		}
	}
	if len(order) == 0 {
		return fmt.Errorf("no node in DC %s", dc)
	}
	var err error
	for _, id := range order {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = r.cfg.Peers.CallPeer(cctx, st.Nodes[id].Peer, name, in, out)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		if !isTransport(err) {
			return err
		}
	}
	return err
}

// isTransport reports whether err is a failure to reach the node (worth trying another).
func isTransport(err error) bool {
	s := err.Error()
	return strings.Contains(s, "node at ") || errors.Is(err, context.DeadlineExceeded)
}

// scanOutbox sends the trims of the loop's outboxes still waiting (recordAck), sums the
// lengths of the loop's outboxes and enforces the outbox bound: an outbox longer than
// outbox_max_entries is trimmed to what every DC that is up has applied, so a DC that is down
// (its shipping failing) loses the entries it lacks and gets a full copy when it is back,
// while DCs that are up but slow never lose an entry (a copy would then have to replace
// writes of their own that the source never saw).
//
// Only the outboxes written or acked since the last scan are read (all of them at the start).
// Both run off the loop's path, in pipelines a millisecond apart: thousands of trims or
// lengths at once would hold the master (and, on a node of one thread, the node) for tens of
// milliseconds, in the lag of every write meanwhile (an XLEN of 12,000 outboxes at once held
// both for about 30 ms every scan, docs/replication.md).
func (l *loop) scanOutbox(ctx context.Context, src *redis.Client) {
	if due := l.r.takeTrims(l.key.master, l.key.db, l.slots); len(due) > 0 {
		l.inChunks(ctx, len(due), trimChunk, func(lo, hi int) bool {
			trims := src.Pipeline()
			for _, t := range due[lo:hi] {
				l.r.trimNow(ctx, trims, t.k, t.ids)
			}
			execTrims(ctx, trims)
			return true
		}, nil)
	}
	if !l.scanning.CompareAndSwap(false, true) {
		return // the last scan's lengths are still being read: its slots wait for the next
	}
	pos := l.take(&l.touched)
	if len(pos) == 0 {
		l.scanning.Store(false)
		return
	}
	l.inChunks(ctx, len(pos), lenChunk, func(lo, hi int) bool {
		if l.readLens(ctx, src, pos[lo:hi]) {
			return true
		}
		for _, p := range pos[lo:] { // read at the next scan
			l.touch(l.slots[p])
		}
		return false
	}, func() { l.scanning.Store(false) })
}

// inChunks runs f over [0, n) in chunks of at most size, a millisecond apart, in a goroutine
// of its own (off the loop's path, waited for by stop), until f reports false or ctx ends;
// then done, if not nil.
func (l *loop) inChunks(ctx context.Context, n, size int, f func(lo, hi int) bool, done func()) {
	l.sends.Add(1)
	go func() {
		defer l.sends.Done()
		if done != nil {
			defer done()
		}
		for lo := 0; lo < n; lo += size {
			if lo > 0 && !sleep(ctx, time.Millisecond) {
				return
			}
			if !f(lo, min(lo+size, n)) {
				return
			}
		}
	}()
}

// lenChunk bounds the outbox lengths read in one pipeline (about 0.3 ms of the master's time).
const lenChunk = 256

// readLens reads the lengths of the outboxes at positions pos, adds them to the loop's
// total and trims those over the bound; false if the read failed.
func (l *loop) readLens(ctx context.Context, src *redis.Client, pos []int) bool {
	pipe := src.Pipeline()
	cmds := make([]*redis.IntCmd, len(pos))
	for i, p := range pos {
		cmds[i] = pipe.XLen(ctx, OutboxKey(l.slots[p]))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return false
	}
	bound := l.r.cfg.Cluster.State().SettingInt("outbox_max_entries")
	l.mu.Lock()
	for i, p := range pos {
		l.outbox += cmds[i].Val() - l.lens[p]
		l.lens[p] = cmds[i].Val()
	}
	l.mu.Unlock()
	for i, p := range pos {
		if bound > 0 && cmds[i].Val() > bound {
			l.r.trimToLive(ctx, src, l.key.db, l.slots[p])
		}
	}
	return true
}

// report adds this loop's figures to p.
func (l *loop) report(p *PairReport, now time.Time) {
	logs := l.logsOnly() // no heartbeats in the outboxes then: the group logs' report the lag
	l.mu.Lock()
	defer l.mu.Unlock()
	var pending int64
	for _, n := range l.pending {
		pending += n
	}
	stats := l.pairStats
	if logs && pending == 0 && l.lastErr == "" {
		// Drained: at data format 3 nothing writes the outboxes, and the lag of the last
		// entry this loop shipped (a backlog after an outage, say) is history that would
		// report the pair lagging for good. The group logs report the pair's lag.
		stats.lastSample = 0
	}
	stats.report(p, now, l.r.cfg.Heartbeat, l.key.db == 0 && !logs, len(l.copying) > 0)
	p.Pending += pending
	p.Outbox += l.outbox
	p.Copying += len(l.copying)
}

// logsOnly reports whether the cluster's data format has group logs (LogDataFormat): every
// write is then recorded in its group's log, and the per-slot loops only ship what the
// outboxes held from before. They copy no slot in full then: a slot's copy would replace its
// keys behind the back of the logs, whose entries the destination applies by positions the
// copy knows nothing of (a group whose log lacks what a destination needs is copied as a
// group, docs/replication.md).
func (l *loop) logsOnly() bool { return l.r.groupLogs() }

// refuseCopy logs, once per slot, the full copy that logsOnly refuses.
func (l *loop) refuseCopy(slot int, why error) {
	l.mu.Lock()
	first := !l.refused[slot]
	if l.refused == nil {
		l.refused = map[int]bool{}
	}
	l.refused[slot] = true
	l.mu.Unlock()
	if first {
		l.r.log.Warn("an outbox entry from before the group logs cannot be shipped; the slot is not copied in full at data format 3",
			"dest", l.key.dest, "slot", slot, "db", l.key.db, "err", why)
	}
}

// down reports whether shipping to the loop's destination has been failing for a while.
func (l *loop) down(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pairStats.down(now, l.r.cfg.Heartbeat)
}

// recentLags returns the loop's recent entry lags.
func (l *loop) recentLags() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pairStats.recentLags()
}

// slotRead is one slot's read: its next entries, the outbox length, or an error.
type slotRead struct {
	entries []Entry
	length  int64
	err     error
	// missing is set when the outbox lacks the id read after (not trimmed: lost, see lost.go).
	missing bool
	// topOrd is the outbox's entries-added when entries reach its end, else -1.
	topOrd int64
	// unfed is the loop's unfed count of the slot when the read began (0 for entries the
	// change feed carried, which are not read).
	unfed uint64
}

// readToEnd notes that the outbox of the slot at position p was read to its end after the
// destination's last applied id and that the destination applied it all (l.mu held): the feed
// entries not kept before the read are in the past (unless more came since).
func (l *loop) readToEnd(p int, g *slotRead) {
	if g.unfed > 0 && l.unfed[p] == g.unfed {
		delete(l.unfed, p)
	}
}

// readSlots reads, in one MULTI, up to count entries after after[i] of each slot's outbox
// and the outbox's XINFO; a slot whose entries after its id were trimmed gets ErrBehind. The
// range starts at after[i] itself, to tell whether the outbox still has it (slotRead.missing).
func readSlots(ctx context.Context, c redis.Cmdable, slots []int, after []string, count int64) ([]slotRead, error) {
	return readSlotsInfo(ctx, c, slots, after, count, nil)
}

// readSlotsInfo is readSlots with XINFO only for the slots info names (nil: all). The range
// starting at after[i] itself answers the common case without it: when its first entry is
// after[i], nothing after it was trimmed (trimming keeps the last applied entry) and nothing
// was lost. A slot read without XINFO whose range does not start at after[i] is read again
// with it, to tell a trimmed outbox (behind) from a lost entry (missing). Without XINFO a
// read's length and topOrd are unknown (0 and -1).
func readSlotsInfo(ctx context.Context, c redis.Cmdable, slots []int, after []string, count int64, info []bool) ([]slotRead, error) {
	withInfo := func(i int) bool { return info == nil || info[i] || !isEntryID(after[i]) }
	rng := make([]*redis.Cmd, len(slots))
	inf := make([]*redis.Cmd, len(slots))
	_, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for i, s := range slots {
			start := "-"
			if isEntryID(after[i]) {
				start = after[i]
			}
			rng[i] = p.Do(ctx, "XRANGE", OutboxKey(s), start, "+", "COUNT", count+1)
			if withInfo(i) {
				inf[i] = p.Do(ctx, "XINFO", "STREAM", OutboxKey(s))
			}
		}
		return nil
	})
	if err != nil && !strings.Contains(err.Error(), "no such key") {
		return nil, err
	}
	out := make([]slotRead, len(slots))
	var again []int // read without XINFO, and the range does not start at after[i]
	for i := range slots {
		out[i].topOrd = -1
		if inf[i] == nil {
			raw, _ := rng[i].Val().([]any)
			out[i].entries, out[i].err = parseRange(raw)
			if out[i].err != nil {
				continue
			}
			if len(out[i].entries) == 0 || out[i].entries[0].ID != after[i] {
				again = append(again, i)
				continue
			}
			out[i].entries = out[i].entries[1:]
			if int64(len(out[i].entries)) > count {
				out[i].entries = out[i].entries[:count]
			}
			continue
		}
		if e := inf[i].Err(); e != nil {
			if strings.Contains(e.Error(), "no such key") {
				out[i].missing, out[i].topOrd = isEntryID(after[i]), 0
				continue
			}
			out[i].err = e
			continue
		}
		if e := checkBehind(inf[i].Val(), after[i]); e != nil {
			out[i].err = e
			continue
		}
		out[i].length, _ = streamInfoField(inf[i].Val(), "length").(int64)
		raw, _ := rng[i].Val().([]any)
		out[i].entries, out[i].err = parseRange(raw)
		out[i].missing = isEntryID(after[i]) && (len(out[i].entries) == 0 || out[i].entries[0].ID != after[i])
		if isEntryID(after[i]) && !out[i].missing {
			out[i].entries = out[i].entries[1:]
		}
		if int64(len(out[i].entries)) > count {
			out[i].entries = out[i].entries[:count]
		} else if added, ok := streamInfoField(inf[i].Val(), "entries-added").(int64); ok {
			out[i].topOrd = added
		}
	}
	if len(again) > 0 {
		sl, af := make([]int, len(again)), make([]string, len(again))
		for j, i := range again {
			sl[j], af[j] = slots[i], after[i]
		}
		res, err := readSlotsInfo(ctx, c, sl, af, count, nil)
		if err != nil {
			return nil, err
		}
		for j, i := range again {
			out[i] = res[j]
		}
	}
	return out, nil
}

// isEntryID reports whether id names an entry (not the stream's beginning: "" or 0-0).
func isEntryID(id string) bool { return id != "" && id != "0-0" }
