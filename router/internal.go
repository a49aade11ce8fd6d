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
	if len(args) == 0 {
		return nil, fmt.Errorf("router: Internal: no command")
	}
	replies, err := s.InternalBatch(ctx, db, slot, keys, [][]string{args})
	if err != nil {
		return nil, err
	}
	return replies[0], nil
}

// InternalBatch is Internal for several commands on one slot, sent in one pipelined round
// trip under one admission (keys lists every key of every command); it returns their raw
// replies in order.
func (s *Server) InternalBatch(ctx context.Context, db, slot int, keys []string, cmds [][]string) ([][]byte, error) {
	switch {
	case len(cmds) == 0:
		return nil, nil
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
	for _, args := range cmds {
		if len(args) == 0 {
			return nil, fmt.Errorf("router: Internal: no command")
		}
	}
	e, mark, err := c.enter(slot, func(e *slotEntry) error { return c.moveKeys(e.m, slot, db, kb) })
	if err != nil {
		return nil, err
	}
	defer c.unadmit(mark)
	// One request per command (a request keeps its last reply only), pipelined on the group's
	// connection in order.
	g := e.group()
	reqs := make([]*backend.Request, len(cmds))
	var raw []byte
	for i, args := range cmds {
		raw = appendCommand(raw[:0], args)
		reqs[i] = c.sendInternal(g, raw, 1)
	}
	c.flushBackends()
	out := make([][]byte, len(cmds))
	var firstErr error
	for i, r := range reqs {
		c.waiter.Wait(r)
		if r.Err != nil && firstErr == nil {
			firstErr = r.Err
		}
		out[i] = append([]byte(nil), r.Reply...)
		c.free = append(c.free, r)
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return out, nil
}
