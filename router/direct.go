package router

import (
	"time"

	"github.com/redraft/redraft/router/backend"
	"github.com/redraft/redraft/router/resp"
)

// directReply writes the reply of a batch of one forwarded request to the client from the
// backend connection's reader, as soon as it is read (router/DESIGN.md, "Direct replies"):
// the client's goroutine goes back to reading once it has sent the request, and is not woken
// to copy the reply and write it. A client at pipeline 1, the common case, then costs one
// goroutine wake-up per request instead of two, and replies leave in the order the backend
// answered them, as an event loop's would.
type directReply struct {
	c  *client
	tw *resp.TryWriter
	// Set by the client's goroutine before it arms the request, read by the reader's Deliver.
	slot int // the slot the request is counted in flight on, or -1
	ids  [1]uint16
	nids int
	at   time.Time // when the request was read, for the command's latency
	buf  []byte    // an error reply, built by Deliver
}

// armDirect hands the batch's one forwarded request to the reader, when it is the whole batch
// and nothing else is owed to the client; it reports whether it did. The client's goroutine
// must then awaitDirect before it writes to the client or touches the request again.
func (c *client) armDirect() bool {
	d := c.direct
	if d == nil || len(c.pend) != 1 || len(c.out) != 0 || c.quit || c.ps != nil ||
		len(c.pslots) > 1 || len(c.cmdIDs) > 1 || len(c.sent) > 1 || len(c.xpend) > 0 {
		return false
	}
	p := c.pend[0]
	if p.req == nil || p.x != 0 {
		return false
	}
	d.slot = -1
	if len(c.pslots) == 1 {
		d.slot = int(c.pslots[0])
	}
	d.nids = copy(d.ids[:], c.cmdIDs)
	d.at = c.readAt
	c.flushBackends()
	if !p.req.Arm(d) {
		return false // the reply is already here: finishBatch writes it
	}
	c.dreq = p.req
	c.pend[0] = pendItem{}
	c.pend = c.pend[:0]
	c.pslots = c.pslots[:0]
	c.cmdIDs = c.cmdIDs[:0]
	c.lbuf = c.lbuf[:0]
	clear(c.sent)
	c.sent = c.sent[:0]
	return true
}

// awaitDirect waits until the armed request's reply has been written to the client.
func (c *client) awaitDirect() {
	r := c.dreq
	if r == nil {
		return
	}
	c.waiter.Wait(r)
	c.dreq = nil
	c.free = append(c.free, r)
}

// Deliver writes the reply to the client; it runs on the backend connection's reader. What
// the client's socket does not take at once is written by a goroutine of its own, so that a
// client that does not read holds up no one else's replies.
func (d *directReply) Deliver(r *backend.Request) bool {
	c := d.c
	if d.slot >= 0 {
		c.s.inflight[d.slot].Add(-1)
	}
	b := r.Reply
	if r.Err != nil {
		d.buf = appendError(d.buf[:0], r.Err)
		b = d.buf
		c.s.errs.Add(1)
	} else if len(b) > 0 && b[0] == '-' {
		c.s.errs.Add(1)
	}
	if d.nids > 0 { // counted before the client can have the reply, as the errors are
		c.s.cmds.observe(d.ids[:d.nids], time.Since(d.at))
	}
	c.wmu.Lock()
	n, err := d.tw.TryWrite(b)
	c.wmu.Unlock()
	if err == nil && n < len(b) {
		go d.writeRest(r, b[n:])
		return false
	}
	d.done(err)
	return true
}

// writeRest writes what the socket did not take, waiting for it to drain.
func (d *directReply) writeRest(r *backend.Request, b []byte) {
	d.c.wmu.Lock()
	_, err := d.c.write(b)
	d.c.wmu.Unlock()
	d.done(err)
	r.Complete()
}

// done closes a connection whose write failed.
func (d *directReply) done(err error) {
	if err != nil {
		d.c.closeConn()
	}
}
