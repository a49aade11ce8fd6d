package xdc

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Waiting on a group log (data format 3): a DC_EACH_SAFE_QUORUM write and a flush's drain
// wait until every other DC answered a position at or past an entry of a group's log. The
// answers reach the node that ships the log (logShipper, logGroup.answered), so the wait runs
// there: Await routes it by the group's shipping slot (groupSlots.ship).

// logAwaitPoll is how often awaitLog looks again for a log this node does not ship yet (the
// plan starts a database's logGroup after its first write is seen).
const logAwaitPoll = 20 * time.Millisecond

// awaitLog waits, at most timeout, until every other DC applied group's log in db through id.
func (r *Replicator) awaitLog(ctx context.Context, db int, group, id string, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	dc := r.cfg.Cluster.DC()
	for {
		st := r.cfg.Cluster.State()
		acting := r.acting(st)
		dests := r.destinations(st)
		missing := dests
		var changed <-chan struct{}
		if g := r.shippedLog(LogID{DC: dc, Group: group}, db); g != nil {
			missing, changed = g.through(dests, id)
		}
		if acting && len(missing) == 0 {
			return nil
		}
		if !acting {
			changed = nil // polled until the node acts again
		}
		// Look again now and then: the log may start here, or its logGroup be replaced (a
		// failover), and then no answer reaches changed.
		every := logAwaitPoll
		if changed != nil {
			every = 10 * logAwaitPoll
		}
		poll := time.After(every)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			if !acting {
				return errNotActing
			}
			return fmt.Errorf("not applied in DC %s within %s", strings.Join(missing, ", "), timeout.Round(time.Millisecond))
		case <-changed:
		case <-poll:
		}
	}
}

// shippedLog is the logGroup this node runs for log in db, or nil.
func (r *Replicator) shippedLog(log LogID, db int) *logGroup {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, l := range r.logs {
		if k.db == db && l.g.log == log {
			return l.g
		}
	}
	return nil
}
