package router

import (
	"sync"
	"time"
)

// Blocking commands reach Redis in the order they arrived at the node. Each session's
// blocking command runs on its own dedicated connection, and what happens before it is sent
// takes a different time per session (dialing that connection, asking its CLIENT ID, a
// migration hold), so two clients that send BLPOP on the same key a millisecond apart could
// reach Redis in the other order: Redis serves waiters first come first served, so the
// later client would get the element and the earlier one wait on. Redis's own test suite
// relies on that order (BRPOPLPUSH with multiple blocked clients), and without it one
// client stays blocked.
//
// So a blocking command takes a turn on its slot, ordered by when its client's bytes were
// read (client.readAt), and writes to its backend only when every earlier turn of the slot
// has written (or given up) and blockSettle has passed since it was read: two clients whose
// bytes arrive together are read by two goroutines in either order, and the settle time
// lets the one read first register its turn. Written on loopback or a LAN means in the
// server's socket before the next one's; epoll reports sockets in the order they became
// readable, so Redis reads them in turn. A session that dials its dedicated connection
// spends longer than blockSettle anyway; one that has it waits the rest.

// blockSettle is how long after its bytes were read a blocking command waits for commands
// read at about the same time to take their turns.
const blockSettle = time.Millisecond

// blockTurns holds, per slot, the turns not yet written, in arrival order.
type blockTurns struct {
	mu    sync.Mutex
	slots map[int]*slotTurns
}

type slotTurns struct {
	pending []*blockTurn
	changed chan struct{} // closed (and replaced) when pending loses a turn
}

// blockTurn is one blocking command's place in its slot's order.
type blockTurn struct {
	q       *blockTurns
	slot    int
	arrived time.Time
	once    sync.Once
}

// take registers the turn of a blocking command on slot whose bytes were read at arrived.
func (q *blockTurns) take(slot int, arrived time.Time) *blockTurn {
	t := &blockTurn{q: q, slot: slot, arrived: arrived}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.slots == nil {
		q.slots = map[int]*slotTurns{}
	}
	st := q.slots[slot]
	if st == nil {
		st = &slotTurns{changed: make(chan struct{})}
		q.slots[slot] = st
	}
	i := len(st.pending)
	for i > 0 && st.pending[i-1].arrived.After(arrived) {
		i--
	}
	st.pending = append(st.pending, nil)
	copy(st.pending[i+1:], st.pending[i:])
	st.pending[i] = t
	return t
}

// wait returns when the turn may write: it is the slot's earliest pending turn and
// blockSettle has passed since it arrived; or after limit, so a stalled turn never holds the
// next ones longer than that.
func (t *blockTurn) wait(limit time.Duration) {
	deadline := time.Now().Add(limit)
	for {
		t.q.mu.Lock()
		st := t.q.slots[t.slot]
		first := st == nil || len(st.pending) == 0 || st.pending[0] == t
		var changed chan struct{}
		if st != nil {
			changed = st.changed
		}
		t.q.mu.Unlock()
		now := time.Now()
		if first {
			settle := t.arrived.Add(blockSettle).Sub(now)
			if settle <= 0 {
				return
			}
			time.Sleep(settle) // then look again: an earlier arrival may have registered
			continue
		}
		if !now.Before(deadline) {
			return
		}
		tm := time.NewTimer(deadline.Sub(now))
		select {
		case <-changed:
		case <-tm.C:
		}
		tm.Stop()
	}
}

// done takes the turn out of the slot's order (written, or given up); later calls do nothing.
func (t *blockTurn) done() {
	t.once.Do(func() {
		q := t.q
		q.mu.Lock()
		defer q.mu.Unlock()
		st := q.slots[t.slot]
		if st == nil {
			return
		}
		for i, p := range st.pending {
			if p == t {
				st.pending = append(st.pending[:i], st.pending[i+1:]...)
				break
			}
		}
		close(st.changed)
		st.changed = make(chan struct{})
		if len(st.pending) == 0 {
			delete(q.slots, t.slot)
		}
	})
}
