package xdc

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Batch is a run of consecutive entries of one slot's outbox in the source DC, in order.
type Batch struct {
	// SourceDC is the DC whose outbox the entries come from.
	SourceDC string
	// Slot is the slot of the outbox.
	Slot int
	// Entries are the entries, in outbox order, with their parsed effects.
	Entries []Entry
	// PrevID is the id of the outbox entry just before Entries[0] as the shipper saw it (""
	// when it shipped from the start): the receiver refuses the batch (ErrGap) when its last
	// applied id is a different one.
	PrevID string
}

// Sink is the receiving side of shipping: the slot's owner in the destination DC.
type Sink interface {
	// Apply applies b exactly once, in order, and returns the last applied id from
	// b.SourceDC afterwards. Entries already applied are skipped; a batch that does not
	// follow the last applied entry fails with ErrGap.
	Apply(ctx context.Context, b Batch) (lastApplied string, err error)
	// LastApplied returns the id of the last entry applied from sourceDC on slot, "" if none.
	LastApplied(ctx context.Context, sourceDC string, slot int) (string, error)
}

// RedisSink is a Sink that applies batches with the APPLY script onto one Redis master: the
// receiving DC's master for the slot. The entries of a batch are pipelined, one APPLY each.
type RedisSink struct {
	// Client is the receiving master.
	Client redis.Cmdable

	diverged atomic.Int64
}

// NewRedisSink returns a RedisSink applying onto c.
func NewRedisSink(c redis.Cmdable) *RedisSink { return &RedisSink{Client: c} }

// Diverged returns how many applied effects have failed on this sink so far (the DCs'
// copies differ, e.g. WRONGTYPE after concurrent writes in two DCs).
func (s *RedisSink) Diverged() int64 { return s.diverged.Load() }

// LastApplied reads the slot's inbox for sourceDC.
func (s *RedisSink) LastApplied(ctx context.Context, sourceDC string, slot int) (string, error) {
	id, err := s.Client.HGet(ctx, InboxKey(slot), sourceDC).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return id, err
}

// Apply pipelines one APPLY per entry, each checking that it follows the one before it, so a
// failure stops every later entry of the batch from applying. It loads the library when the
// server does not have it.
func (s *RedisSink) Apply(ctx context.Context, b Batch) (string, error) {
	if len(b.Entries) == 0 {
		return s.LastApplied(ctx, b.SourceDC, b.Slot)
	}
	last, err := s.applyOnce(ctx, b)
	if err != nil && isFuncMissing(err.Error()) {
		if err := loaded(s.Client.FunctionLoad(ctx, library).Err()); err != nil {
			return "", err
		}
		last, err = s.applyOnce(ctx, b)
	}
	return last, err
}

func (s *RedisSink) applyOnce(ctx context.Context, b Batch) (string, error) {
	pipe := s.Client.Pipeline()
	cmds := make([]*redis.Cmd, len(b.Entries))
	prev := b.PrevID
	for i, e := range b.Entries {
		if e.DC == "" {
			e.DC = b.SourceDC
		}
		keys, argv := ApplyArgs(b.Slot, e, prev, "")
		cmds[i] = pipe.FCall(ctx, ApplyFunc, keys, argv...)
		prev = e.ID
	}
	_, _ = pipe.Exec(ctx)
	last := ""
	for i, c := range cmds {
		r, err := c.Result()
		if err != nil {
			if strings.HasPrefix(err.Error(), "GAP ") {
				err = fmt.Errorf("%w: %s", ErrGap, err)
			}
			if last == "" {
				return "", err
			}
			return last, err
		}
		if a, ok := r.([]any); ok && len(a) == 5 {
			if n, _ := a[1].(int64); n > 0 {
				s.diverged.Add(n)
			}
		}
		last = b.Entries[i].ID
	}
	return last, nil
}

// ErrBehind is returned by Shipper.Run when the outbox no longer holds the entries after the
// destination's last applied id (they were trimmed by the outbox's MAXLEN bound): the slot
// must be copied in full to the destination, then shipping continues from the copy's id.
var ErrBehind = errors.New("xdc: destination fell behind the outbox; the slot needs a full copy")

// Progress is what a Shipper reports after each applied batch, after an error and when it
// has caught up.
type Progress struct {
	// LastID is the last entry id the destination has applied.
	LastID string
	// Shipped counts the entries shipped by this Run so far.
	Shipped int64
	// Rate is the entries shipped per second over the last measuring window (about 1 s).
	Rate float64
	// Lag is now minus the time in the last shipped entry's id (the source master's clock);
	// 0 once caught up.
	Lag time.Duration
	// CaughtUp reports that the outbox held nothing more to ship.
	CaughtUp bool
	// Err is the error that made the shipper back off, if any.
	Err error
}

// Shipper ships one slot's outbox from the source DC's master to one destination DC, in
// order and exactly once (the Sink's inbox check makes re-sent entries harmless).
type Shipper struct {
	// Slot is the slot whose outbox is shipped.
	Slot int
	// SourceDC is the name of the source DC (the "dc" of its entries).
	SourceDC string
	// Source is the source DC's master for the slot.
	Source redis.Cmdable
	// Sink is the destination DC's receiving side.
	Sink Sink
	// BatchSize bounds the entries per batch (default 256).
	BatchSize int64
	// Block bounds one XREAD BLOCK wait once caught up (default 1 s); cancellation of Run's
	// context is noticed within it.
	Block time.Duration
	// MinBackoff and MaxBackoff bound the wait after an error (defaults 50 ms and 2 s).
	MinBackoff, MaxBackoff time.Duration
	// OnProgress, if set, is called from Run's goroutine with each Progress.
	OnProgress func(Progress)
}

// Run ships until ctx is done (returning ctx's error) or the destination is behind the
// outbox (returning an error wrapping ErrBehind). Other errors are reported through
// OnProgress and retried with exponential backoff, re-reading the Sink's last applied id.
func (s *Shipper) Run(ctx context.Context) error {
	batch, block := s.BatchSize, s.Block
	if batch <= 0 {
		batch = 256
	}
	if block <= 0 {
		block = time.Second
	}
	minB, maxB := s.MinBackoff, s.MaxBackoff
	if minB <= 0 {
		minB = 50 * time.Millisecond
	}
	if maxB < minB {
		maxB = max(2*time.Second, minB)
	}
	var (
		shipped    int64
		winStart   = time.Now()
		winCount   int64
		rate       float64
		backoff    = minB
		last       string
		known      bool
		lastReport string
	)
	report := func(p Progress) {
		p.Shipped, p.Rate = shipped, rate
		if s.OnProgress != nil {
			s.OnProgress(p)
		}
	}
	fail := func(err error) error {
		known = false
		report(Progress{LastID: last, Err: err})
		t := time.NewTimer(backoff)
		defer t.Stop()
		backoff = min(2*backoff, maxB)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		}
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !known {
			id, err := s.Sink.LastApplied(ctx, s.SourceDC, s.Slot)
			if err != nil {
				if err := fail(fmt.Errorf("xdc: last applied: %w", err)); err != nil {
					return err
				}
				continue
			}
			last, known = id, true
		}
		entries, err := readAfter(ctx, s.Source, s.Slot, last, batch)
		if errors.Is(err, ErrBehind) {
			report(Progress{LastID: last, Err: err})
			return err
		}
		if err != nil {
			if err := fail(fmt.Errorf("xdc: read outbox: %w", err)); err != nil {
				return err
			}
			continue
		}
		if len(entries) == 0 {
			if lastReport != last {
				lastReport = last
				report(Progress{LastID: last, CaughtUp: true})
			}
			err := s.Source.XRead(ctx, &redis.XReadArgs{Streams: []string{OutboxKey(s.Slot), orZero(last)},
				Count: 1, Block: block}).Err()
			if err != nil && !errors.Is(err, redis.Nil) {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if err := fail(fmt.Errorf("xdc: wait on outbox: %w", err)); err != nil {
					return err
				}
			}
			continue
		}
		applied, err := s.Sink.Apply(ctx, Batch{SourceDC: s.SourceDC, Slot: s.Slot, Entries: entries, PrevID: last})
		if err != nil {
			if err := fail(fmt.Errorf("xdc: apply: %w", err)); err != nil {
				return err
			}
			continue
		}
		backoff = minB
		n := int64(len(entries))
		shipped += n
		winCount += n
		if el := time.Since(winStart); el >= time.Second {
			rate = float64(winCount) / el.Seconds()
			winStart, winCount = time.Now(), 0
		}
		if CompareIDs(applied, last) > 0 {
			last = applied
		}
		lastReport = last
		report(Progress{LastID: last, Lag: LagOf(last, time.Now())})
	}
}

// LagOf returns now minus the millisecond time of stream id ("ms-seq"), never negative.
func LagOf(id string, now time.Time) time.Duration {
	ms, _, _ := strings.Cut(id, "-")
	v, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return 0
	}
	return max(0, now.Sub(time.UnixMilli(v)))
}

func orZero(id string) string {
	if id == "" {
		return "0-0"
	}
	return id
}

// readAfter reads up to count outbox entries after id in one MULTI with XINFO STREAM, and
// fails with ErrBehind when an entry after id may have been trimmed (see checkBehind).
func readAfter(ctx context.Context, c redis.Cmdable, slot int, after string, count int64) ([]Entry, error) {
	got, err := readSlots(ctx, c, []int{slot}, []string{after}, count)
	if err != nil {
		return nil, err
	}
	return got[0].entries, got[0].err
}

// checkBehind reports ErrBehind when the outbox, as XINFO STREAM describes it, lost entries
// (entries-added > length) that may come after id: those before its first entry, or all of
// them when it is empty. Trimming only removes from the front, so an id at or after the first
// entry lost nothing. (max-deleted-entry-id does not help: trimming does not update it.)
func checkBehind(info any, after string) error {
	length, _ := streamInfoField(info, "length").(int64)
	added, _ := streamInfoField(info, "entries-added").(int64)
	if added <= length {
		return nil
	}
	first, _ := streamInfoField(info, "recorded-first-entry-id").(string)
	if length == 0 {
		first, _ = streamInfoField(info, "last-generated-id").(string)
		if CompareIDs(orZero(after), first) >= 0 {
			return nil
		}
	} else if CompareIDs(orZero(after), first) >= 0 {
		return nil
	}
	return fmt.Errorf("%w: last applied %q, outbox trimmed (first entry %s, %d of %d entries left)",
		ErrBehind, after, first, length, added)
}

// streamInfoField finds name in XINFO STREAM's reply (a flat RESP2 array or a RESP3 map).
func streamInfoField(v any, name string) any {
	switch r := v.(type) {
	case []any:
		for i := 0; i+1 < len(r); i += 2 {
			if k, _ := r[i].(string); k == name {
				return r[i+1]
			}
		}
	case map[any]any:
		return r[name]
	}
	return nil
}

// Trim removes from slot's outbox the entries every DC has applied: XTRIM MINID the smallest
// of ackedIDs (the last applied id of each destination DC). The entry at that id is kept, so
// nothing a DC still needs goes. With no ids, or one DC that has applied nothing (""),
// nothing is trimmed. It returns the number of entries removed.
func Trim(ctx context.Context, c redis.Cmdable, slot int, ackedIDs []string) (int64, error) {
	low := lowest(ackedIDs)
	if low == "" {
		return 0, nil
	}
	return c.XTrimMinID(ctx, OutboxKey(slot), low).Result()
}
