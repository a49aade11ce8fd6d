package router

import (
	"github.com/redraft/redraft/router/backend"
	"github.com/redraft/redraft/router/command"
	"github.com/redraft/redraft/router/resp"
	"github.com/redraft/redraft/router/xdc"
)

// Backend users (router/DESIGN.md, "Backend users"). Every group has two pools: pool
// authenticates as the restricted client user (internal/backendacl.ClientUser), which runs
// forwarded client commands and user scripts, so what they may do is enforced by Redis
// itself; ipool as the internal user, which runs redraft's own work: WRITE calls (they append
// to the slot's outbox), Internal (APPLY, inbox reads, copy locks), flushes the router
// allowed, CLIENT UNBLOCK, the copy-lock check and outbox reads of the write path.
//
// A client's requests to one group used to share one connection, which kept them in order.
// With two connections per group, a batch that sends a pipelined WRITE call on ipool and then
// a read on pool (or the reverse) must not let the second overtake the first: before sending
// on one pool of a group, the client waits for the batch's requests still pending on the
// other (orderAfter). Only batches on the cross-DC write path (c.xw) mix the two.

// sentReq is a pipelined request of the batch (c.xw only) and the pool it went to.
type sentReq struct {
	p *backend.Pool
	r *backend.Request
}

// sendInternal is send on g's internal-user pool.
func (c *client) sendInternal(g *group, raw []byte, n int) *backend.Request {
	return c.sendOn(g.ipool, raw, n)
}

// sendPiped sends a request of the batch whose reply finishBatch collects, on p of group g,
// after the batch's requests on g's other pool (c.xw only; else it is send).
func (c *client) sendPiped(g *group, p *backend.Pool, raw []byte, n int) *backend.Request {
	if !c.xw {
		return c.sendOn(p, raw, n)
	}
	other := g.ipool
	if p == g.ipool {
		other = g.pool
	}
	c.orderAfter(other)
	r := c.sendOn(p, raw, n)
	c.sent = append(c.sent, sentReq{p: p, r: r})
	return r
}

// orderAfter waits until every request of the batch sent on p has its reply.
func (c *client) orderAfter(p *backend.Pool) {
	flushed := false
	for _, s := range c.sent {
		if s.p != p || s.r.Done() {
			continue
		}
		if !flushed {
			c.flushBackends()
			flushed = true
		}
		c.waiter.Wait(s.r)
	}
}

// roundTripInternal is roundTrip on g's internal-user pool.
func (c *client) roundTripInternal(g *group, raw []byte, n int) ([]byte, error) {
	r := c.sendInternal(g, raw, n)
	c.wait(r)
	reply, err := append([]byte(nil), r.Reply...), r.Err
	c.free = append(c.free, r)
	return reply, err
}

// forwardAllKeys serves SORT and SORT_RO with GET, or BY with a pattern: Redis runs those only
// for a user that may read every key, so they run as the internal user, synchronously (the
// batch drained first, so they cannot overtake or be overtaken by its other requests).
// checkSortPatterns has made sure no key a pattern forms can be internal. With several DCs a
// SORT ... STORE is a write and goes through WRITE, as the internal user too.
func (c *client) forwardAllKeys(spec *command.Spec, cmd resp.Command) {
	c.keys = spec.Keys(cmd.Args, c.keys[:0])
	slot, err := keySlot(cmd.Args, c.keys)
	if err != nil {
		c.replyErr(err)
		return
	}
	write := spec.Write
	if write && c.snap.multiDC {
		// Without STORE it is a read (xdc.Prepare), run as one here: WRITE would sort a set
		// BY nosort, and forwardWrite would send it as the client's user, which Redis refuses
		// the patterns.
		_, err := xdc.Prepare(argStrings(cmd.Args))
		write = err == nil
	}
	if c.xw && write && slot >= 0 && c.snap.multiDC {
		c.forwardWrite(spec, cmd, slot)
		return
	}
	c.drain()
	e, mark, err := c.enter(slot, func(e *slotEntry) error { return c.moveCmdKeys(e.m, slot, spec, cmd.Args, c.keys) })
	if err != nil {
		c.replyErr(err)
		return
	}
	lvl := lvlOne
	if write {
		lvl = c.writeLevel(c.snap)
	}
	reply, err := c.writeAndReach(e.group(), slot, cmd.Raw, 1, lvl, true, false)
	c.unadmit(mark)
	c.replyWrite(reply, err)
}
