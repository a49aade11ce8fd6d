package router

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/migrate"
	"github.com/redraft/redraft/router/backend"
	"github.com/redraft/redraft/router/resp"
)

// The freeze barrier (router/DESIGN.md, "Migration-aware access"). Every keyed request first
// counts itself in flight on each slot it touches (Server.inflight), then loads the current
// snapshot and decides from that. WaitIdle reads the counters only once the freeze snapshot is
// stored, so either the request saw the freeze (and holds, uncounted) or WaitIdle sees its
// count until its reply has arrived.

// admit counts the request in flight on every slot of slots (repeats allowed) and returns the
// current snapshot, from which the caller must route the request. The slots stay counted,
// recorded in c.pslots from mark on, until every reply of the batch has arrived (finishBatch)
// or the caller calls unadmit(mark). While one of the slots is frozen, admit uncounts, finishes
// the batch so far (replies stay in order), and waits for a newer snapshot, for at most
// Config.FreezeWait; then it answers -TRYAGAIN. slots must not alias c.pslots.
func (c *client) admit(slots []uint16) (*snapshot, int, error) {
	var deadline time.Time
	for {
		mark := len(c.pslots)
		for _, sl := range slots {
			c.s.inflight[sl].Add(1)
		}
		c.pslots = append(c.pslots, slots...)
		snap := c.s.snap.Load()
		err := snap.down()
		if err == nil && snap != c.snap {
			err = c.writePathChanged(snap)
		}
		if err != nil {
			// Held (node/current.go): the batch waited once already (awaitRouting).
			c.unadmit(mark)
			return nil, 0, err
		}
		frozen := -1
		if snap.migrating > 0 {
			for _, sl := range slots {
				if snap.slots[sl].state() == migFrozen {
					frozen = int(sl)
					break
				}
			}
		}
		flushing := c.flushHolds(snap)
		if frozen < 0 && !flushing {
			return snap, mark, nil
		}
		c.unadmit(mark)
		if deadline.IsZero() {
			c.s.held.Add(1)
			// What is left of the batch's one FreezeWait (frozenWaited).
			deadline = time.Now().Add(c.s.cfg.FreezeWait - c.frozenWaited)
			c.drain()
			if err := c.flush(); err != nil {
				// The client is gone: nothing of the rest of its batch is sent.
				c.closeConn()
				return nil, 0, err
			}
		}
		began := time.Now()
		changed := c.s.awaitChange(snap, deadline)
		c.frozenWaited += time.Since(began)
		if !changed {
			if flushing {
				return nil, 0, c.tryAgain(errFlushing(snap.flushing))
			}
			return nil, 0, c.tryAgain(errHeld(snap, frozen))
		}
	}
}

// awaitRouting, when the batch's snapshot routes nothing because the node is not acting on
// current state (Hold), finishes the batch so far and waits for routing to resume, at most
// FreezeWait once per batch, then makes the newest snapshot the batch's. Deciding the batch's
// write path (setSnap) from a routing snapshot, never from a held one, keeps a write from
// bypassing cross-DC replication after a start.
func (c *client) awaitRouting() {
	snap := c.snap
	if snap == nil || snap.hold == nil || c.holdWaited {
		return
	}
	c.holdWaited = true
	c.drain()
	_ = c.flush()
	deadline := time.Now().Add(c.s.cfg.FreezeWait)
	for snap.hold != nil && c.s.awaitChange(snap, deadline) {
		snap = c.s.snap.Load()
	}
	c.setSnap(snap)
}

// unadmit uncounts the slots the request admitted from mark on.
func (c *client) unadmit(mark int) {
	if mark >= len(c.pslots) {
		return
	}
	for _, sl := range c.pslots[mark:] {
		c.s.inflight[sl].Add(-1)
	}
	c.pslots = c.pslots[:mark]
}

// enter admits a request on slot and returns the slot's entry in the current snapshot; the
// request goes to e.group(). When the slot is migrating, move runs first (it moves the
// request's keys off the source); a stale snapshot makes enter look again.
func (c *client) enter(slot int, move func(e *slotEntry) error) (*slotEntry, int, error) {
	c.one[0] = uint16(slot)
	for {
		snap, mark, err := c.admit(c.one[:])
		if err != nil {
			return nil, 0, err
		}
		e := &snap.slots[slot]
		if e.group() == nil {
			c.unadmit(mark)
			return nil, 0, errSlotDown
		}
		if e.state() == migMigrating && move != nil {
			if err := move(e); err != nil {
				c.unadmit(mark)
				if err == errStale {
					continue
				}
				return nil, 0, err
			}
		}
		return e, mark, nil
	}
}

// enterOwned is enter for the common case, a slot with no migration or failover entry: it
// admits the request and returns the slot's owner from the snapshot's owner table. ok is false,
// with nothing left admitted, when the slot needs enter.
func (c *client) enterOwned(slot int) (g *group, ok bool, err error) {
	c.one[0] = uint16(slot)
	snap, mark, err := c.admit(c.one[:])
	if err != nil {
		return nil, false, err
	}
	if k := snap.owner[slot]; k != 0 {
		return snap.groups[k-1], true, nil
	}
	c.unadmit(mark)
	return nil, false, nil
}

// writePathChanged refuses to route a request on snap, newer than the batch's snapshot, when
// the batch's decided how its writes go differently from what snap says (setSnap, xw): the
// batch's snapshot routed nothing (Hold: its one wait for routing, awaitRouting, ended before
// the hold did, and with several DCs a held snapshot sends no write through WRITE), or the
// cluster gained or lost its other DCs, or, with several DCs, changed between the slots'
// outboxes and the groups' logs (its data format), meanwhile. Routed on snap, such a write
// would reach the master unrecorded for the other DCs, or recorded where nothing ships it,
// applied here and never there. A held batch answers the hold's error; the others -TRYAGAIN.
// With one DC every write goes raw at any format: a new cluster raises its format within
// seconds of its start, and its clients must not see that.
func (c *client) writePathChanged(snap *snapshot) error {
	if c.rd == nil {
		return nil // the node's own calls (internal.go) have no batch: nothing was decided
	}
	if err := c.snap.down(); err != nil {
		return err
	}
	if c.snap.multiDC != snap.multiDC || (snap.multiDC && c.snap.outboxMax.log != snap.outboxMax.log) {
		return c.tryAgain(errWritePath)
	}
	return nil
}

// errWritePath answers a request whose batch decided its write path on a snapshot the
// cluster's replication has changed since (writePathChanged, blockOp.stale).
var errWritePath = errorf("TRYAGAIN redraft: the cluster's replication changed under this request, try again")

func errFrozen(slot int) error {
	return errorf("TRYAGAIN slot %d is being migrated, try again", slot)
}

// tryAgain counts a -TRYAGAIN reply.
func (c *client) tryAgain(err error) error {
	c.s.tryAgain.Add(1)
	return err
}

// awaitChange waits until snap is replaced, the deadline passes (false) or the server closes
// (false).
func (s *Server) awaitChange(snap *snapshot, deadline time.Time) bool {
	d := time.Until(deadline)
	if d <= 0 {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-snap.changed:
		return true
	case <-t.C:
		return false
	case <-s.ctx.Done():
		return false
	}
}

// WaitIdle implements migrate.Gate for the freeze barrier. It returns once this node's
// routing snapshot shows every slot of slots frozen and no request admitted on any of them is
// in flight: a request counts itself before it reads the snapshot, so one that is not counted
// any more has had its reply, or saw the freeze and holds. It waits for SetState if the node's
// routing has not applied the freeze yet, and polls the counters every millisecond.
func (s *Server) WaitIdle(ctx context.Context, slots *migrate.SlotSet) error {
	for {
		snap := s.snap.Load()
		ch := s.ready
		if snap != nil {
			if allFrozen(snap, slots) {
				break
			}
			ch = snap.changed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("router: slots %s are not frozen in this node's routing: %w", slots, ctx.Err())
		case <-s.ctx.Done():
			return errClosing
		}
	}
	return s.drainInflight(ctx, slots.Contains)
}

// drainInflight waits until no request is in flight on the slots for which in is true (every
// millisecond), or ctx ends.
func (s *Server) drainInflight(ctx context.Context, in func(int) bool) error {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for sl := 0; sl < fsm.NumSlots; sl++ {
		if !in(sl) {
			continue
		}
		for n := s.inflight[sl].Load(); n > 0; n = s.inflight[sl].Load() {
			select {
			case <-t.C:
			case <-ctx.Done():
				return fmt.Errorf("router: %d request(s) for slot %d still in flight: %w", n, sl, ctx.Err())
			case <-s.ctx.Done():
				return errClosing
			}
		}
	}
	return nil
}

func allFrozen(snap *snapshot, slots *migrate.SlotSet) bool {
	for sl := 0; sl < fsm.NumSlots; sl++ {
		if slots.Contains(sl) && snap.slots[sl].state() != migFrozen {
			return false
		}
	}
	return true
}

// blockOp is a blocking command waiting on a session's dedicated connection. It stays counted
// in flight while it waits, so SetState releases it when its slot freezes or its keys' group
// changes: the barrier does not wait for the client's timeout.
type blockOp struct {
	slot     int
	pool     *backend.Pool
	admin    *backend.Pool // the group's internal-user pool: CLIENT UNBLOCK is an admin command
	d        *backend.Dedicated
	id       int64        // the connection's CLIENT ID on the backend (0: unknown)
	state    atomic.Int32 // opWaiting, opFinished (by the session) or opReleased (by SetState)
	finished atomic.Bool  // the session's call returned
	// multiDC is the batch's write path when the command was sent raw: a snapshot that says
	// otherwise (the cluster gained or lost its other DCs) releases it, or an element popped
	// raw would be applied here and recorded for no other DC.
	multiDC bool
}

const (
	opWaiting int32 = iota
	opFinished
	opReleased
)

// stale reports whether snap no longer routes the op's slot to the op's group.
func (op *blockOp) stale(snap *snapshot) bool {
	e := &snap.slots[op.slot]
	g := e.group()
	return e.state() == migFrozen || g == nil || g.pool != op.pool || snap.multiDC != op.multiDC
}

// release ends the op's wait, once. c is the session that waits.
func (op *blockOp) release(s *Server, c *client) {
	if op.state.CompareAndSwap(opWaiting, opReleased) {
		s.goClient(c, "blocked command release", func() { op.unblock(s) }, op.d.Interrupt)
	}
}

// unblock asks the backend to end the wait as if its timeout had passed (CLIENT UNBLOCK id
// TIMEOUT): an element popped at that moment is still delivered, never lost. It retries while
// the command has not reached the backend yet, and interrupts the connection if the backend
// cannot be asked.
func (op *blockOp) unblock(s *Server) {
	if op.id > 0 {
		raw := resp.AppendArray(nil, 4)
		raw = resp.AppendBulkString(raw, "CLIENT")
		raw = resp.AppendBulkString(raw, "UNBLOCK")
		raw = resp.AppendBulkString(raw, strconv.FormatInt(op.id, 10))
		raw = resp.AppendBulkString(raw, "TIMEOUT")
		w := backend.NewWaiter()
		r := backend.NewRequest(w)
		deadline := time.Now().Add(s.cfg.BackendTimeout)
		for !op.finished.Load() && time.Now().Before(deadline) {
			reply, err := roundTripPool(op.admin, r, w, raw)
			if err != nil {
				break
			}
			if string(reply) == ":1\r\n" {
				return
			}
			time.Sleep(time.Millisecond) // not blocked yet (or any more): the session will tell
		}
	}
	if !op.finished.Load() {
		op.d.Interrupt()
	}
}
