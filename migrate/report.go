package migrate

import (
	"context"
	"sync"
	"time"
)

// reporter proposes a mover's progress into the cluster state from a goroutine of its own.
// MoveSlots calls Progress under its run's lock, and a proposal waits on Raft: a round trip to
// the leader and a quorum, which spans DCs (tens of milliseconds between real ones, seconds
// when Raft is starved). The mover used to wait with it, up to 5 s a second, its batches in
// flight held behind the lock. Only the latest report matters: one that comes while another
// is being proposed replaces any still waiting.
type reporter struct {
	propose func(ctx context.Context, p Progress)

	mu   sync.Mutex
	next *Progress
	busy bool
	wake chan struct{}
}

// newReporter returns a reporter whose goroutine proposes with propose until ctx ends.
func newReporter(ctx context.Context, propose func(ctx context.Context, p Progress)) *reporter {
	r := &reporter{propose: propose, wake: make(chan struct{}, 1)}
	go r.run(ctx)
	return r
}

// send hands p over without waiting.
func (r *reporter) send(p Progress) {
	r.mu.Lock()
	r.next = &p
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *reporter) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		}
		for {
			r.mu.Lock()
			p := r.next
			r.next, r.busy = nil, p != nil
			r.mu.Unlock()
			if p == nil {
				break
			}
			r.propose(ctx, *p)
		}
	}
}

// flush waits, at most d, until every report sent has been proposed (or failed): the last
// one, with the final counts, must reach the state before the switch ends the migration,
// after which reports are refused.
func (r *reporter) flush(ctx context.Context, d time.Duration) {
	deadline := time.Now().Add(d)
	for {
		r.mu.Lock()
		idle := r.next == nil && !r.busy
		r.mu.Unlock()
		if idle || ctx.Err() != nil || time.Now().After(deadline) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}
