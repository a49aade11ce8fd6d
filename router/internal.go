package router

import (
	"context"
	"fmt"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/router/backend"
	"github.com/redraft/redraft/router/command"
)

// Internal runs one command (args[0] is its name) in database db on the group serving slot in
// this node's DC, routed as a client's request would be: counted in flight for the freeze
// barrier and held while the slot is frozen; while it migrates, keys (all of slot) move off
// the source first and the command runs on the target. It is never wrapped in WRITE and may
// name reserved __redraft: keys: the receiving side of replication runs APPLY and reads the
// inbox with it. The reply's raw RESP is returned, error replies included; err reports
// routing and transport failures. Safe for concurrent use.
func (s *Server) Internal(ctx context.Context, db, slot int, keys []string, args []string) ([]byte, error) {
	switch {
	case len(args) == 0:
		return nil, fmt.Errorf("router: Internal: no command")
	case slot < 0 || slot >= fsm.NumSlots:
		return nil, fmt.Errorf("router: Internal: slot %d out of range", slot)
	case db < 0 || db >= s.cfg.Databases:
		return nil, fmt.Errorf("router: Internal: database %d out of range", db)
	}
	kb := make([][]byte, len(keys))
	for i, k := range keys {
		kb[i] = []byte(k)
		if sl := command.Slot(kb[i]); sl != slot {
			return nil, fmt.Errorf("router: Internal: key %q is in slot %d, not %d", k, sl, slot)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, _ := s.internal.Get().(*client)
	if c == nil {
		c = &client{s: s, id: s.nextID.Add(1), waiter: backend.NewWaiter(), authed: true}
	}
	defer s.internal.Put(c)
	c.db = db
	raw := appendCommand(nil, args)
	e, mark, err := c.enter(slot, func(e *slotEntry) error { return c.moveKeys(e.m, slot, db, kb) })
	if err != nil {
		return nil, err
	}
	defer c.unadmit(mark)
	return c.roundTrip(e.group(), raw, 1)
}

// MultiDC reports whether the cluster has more than one DC: writes then go through WRITE.
func (s *Server) MultiDC() bool {
	snap := s.snap.Load()
	return snap != nil && snap.multiDC
}
