package router

import (
	"context"
	"fmt"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/router/backend"
	"github.com/redraft/redraft/router/command"
	"github.com/redraft/redraft/router/xdc"
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
	c := s.internalClient(db)
	defer s.internal.Put(c)
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
	return c.collect(reqs)
}

// internalClient returns a pooled internal session (authenticated, never wrapped in WRITE)
// on database db; the caller puts it back into s.internal.
func (s *Server) internalClient(db int) *client {
	c, _ := s.internal.Get().(*client)
	if c == nil {
		c = &client{s: s, id: s.nextID.Add(1), waiter: backend.NewWaiter(), authed: true}
	}
	c.db = db
	c.frozenWaited = 0 // each internal call waits for frozen slots as a batch of its own
	return c
}

// collect waits for reqs, sent and flushed, and returns copies of their replies in order,
// or the first transport error.
func (c *client) collect(reqs []*backend.Request) ([][]byte, error) {
	out := make([][]byte, len(reqs))
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

// InternalOwned runs commands on many slots at once, for the slots of slots that no migration
// or failover concerns (the receiving side of replication applies a request's entries with it):
// it admits all of them under one admission, counted in flight for the freeze barrier as
// Internal is, calls build once per group with the positions (in slots) of the slots that
// group serves and those left out, and sends each group's commands pipelined, one round trip
// per group, all groups at once. It returns each group's positions and replies, or the error
// that lost that group's replies (the other groups' stand: a caller must still count what
// they did), and the positions it left out (a migration or failover entry, or no group),
// which the caller runs through InternalBatch. The commands must only name keys of their
// positions' slots.
func (s *Server) InternalOwned(ctx context.Context, db int, slots []int, build func(pos, rest []int) [][]string) ([]xdc.OwnedReplies, []int, error) {
	if db < 0 || db >= s.cfg.Databases {
		return nil, nil, fmt.Errorf("router: Internal: database %d out of range", db)
	}
	for _, sl := range slots {
		if sl < 0 || sl >= fsm.NumSlots {
			return nil, nil, fmt.Errorf("router: Internal: slot %d out of range", sl)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	c := s.internalClient(db)
	defer s.internal.Put(c)
	// Admit the slots the current snapshot gives an owner; if the snapshot that admitted them
	// has moved one of them to a migration or failover entry, start over with it.
	var owned, rest []int
	var admitted []uint16
	var snap *snapshot
	mark := 0
	for {
		cur := s.snap.Load()
		owned, rest, admitted = owned[:0], rest[:0], admitted[:0]
		for i, sl := range slots {
			if cur.owner[sl] != 0 {
				owned, admitted = append(owned, i), append(admitted, uint16(sl))
			} else {
				rest = append(rest, i)
			}
		}
		if len(owned) == 0 {
			return nil, rest, nil
		}
		var err error
		snap, mark, err = c.admit(admitted)
		if err != nil {
			return nil, nil, err
		}
		if snap == cur || allOwned(snap, admitted) {
			break
		}
		c.unadmit(mark)
	}
	defer c.unadmit(mark)
	byGroup := map[uint8][]int{}
	var order []uint8
	for _, i := range owned {
		k := snap.owner[slots[i]]
		if byGroup[k] == nil {
			order = append(order, k)
		}
		byGroup[k] = append(byGroup[k], i)
	}
	out := make([]xdc.OwnedReplies, len(order))
	reqs := make([][]*backend.Request, len(order))
	var raw []byte
	for j, k := range order {
		g := snap.groups[k-1]
		cmds := build(byGroup[k], rest)
		out[j] = xdc.OwnedReplies{Pos: byGroup[k]}
		for _, args := range cmds {
			if len(args) == 0 {
				return nil, nil, fmt.Errorf("router: Internal: no command")
			}
			raw = appendCommand(raw[:0], args)
			reqs[j] = append(reqs[j], c.sendInternal(g, raw, 1))
		}
	}
	c.flushBackends()
	for j := range reqs { // every group's replies are waited for, even after an error
		out[j].Replies, out[j].Err = c.collect(reqs[j])
	}
	return out, rest, nil
}

// allOwned reports whether every slot has an owner (no migration or failover entry) in snap.
func allOwned(snap *snapshot, slots []uint16) bool {
	for _, sl := range slots {
		if snap.owner[sl] == 0 {
			return false
		}
	}
	return true
}
