package router

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redraft/redraft/router/backend"
	"github.com/redraft/redraft/router/command"
	"github.com/redraft/redraft/router/resp"
)

// Pub/sub model: every node of a DC sends PUBLISH, SUBSCRIBE and PSUBSCRIBE for all channels
// to one group, the DC's pub/sub group (the owner of slot 0), so a message published through
// any node reaches subscribers on every node. Sharded pub/sub (SPUBLISH, SSUBSCRIBE) uses the
// group owning the channel's slot, as Redis Cluster does. A subscribed session holds one
// dedicated connection per group it subscribed on; their replies and messages are copied to
// the client as they come. When SetState moves the pub/sub group (or a shard channel's slot),
// subscribed clients are disconnected so that they subscribe again where messages now go.
//
// Order: the replies to what a session sends on a subscriber connection (confirmations, a
// PONG) come from another backend connection than its other replies, yet Redis sends them in
// request order. So every command sent there is followed by a marker (PING with a token no
// client knows), and the session waits until the connection's pump has reached the marker,
// having written everything before it to the client, before it goes on (sendOrdered).

// pubsubAllowed are the commands a subscribed RESP2 session may send (a RESP3 session may send
// any: its messages are push replies, told apart from command replies).
var pubsubAllowed = map[string]bool{"subscribe": true, "unsubscribe": true, "psubscribe": true, "punsubscribe": true,
	"ssubscribe": true, "sunsubscribe": true, "ping": true, "quit": true, "reset": true}

type pubsubState struct {
	mu    sync.Mutex
	main  *psConn // the DC's pub/sub group
	shard *psConn // the sharded channels' group
}

// psConn is a dedicated subscriber connection and the subscription count its backend reported.
type psConn struct {
	d       *backend.Dedicated
	g       *group
	count   atomic.Int64
	pats    atomic.Int64 // the patterns among count (Redis counts them with the channels)
	pending atomic.Bool  // a subscribe was sent and not yet confirmed
	closed  atomic.Bool

	sent   uint64        // order markers sent (the session's goroutine only)
	passed atomic.Uint64 // order markers the pump has reached
	wake   chan struct{} // one slot: the pump reached a marker
	done   chan struct{} // closed when the pump returns
	// writes counts the pump's writes to the client, odd while one is under way: a wait for
	// a marker during which the pump wrote is held up by the client's reading, not the backend.
	writes atomic.Uint64
	// hello is set while the reply to a HELLO sent here (a protocol switch) is due; the pump
	// drops it: the client gets the node's own HELLO reply.
	hello atomic.Bool
}

func newPSConn(d *backend.Dedicated, g *group) *psConn {
	return &psConn{d: d, g: g, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// The order marker: PING with a per-process random token, and its replies (a bulk string, or
// RESP2's subscribed-mode array).
var (
	psToken     = newPSToken()
	rawPSMarker = appendCommand(nil, []string{"PING", psToken})
	psMarkBulk  = resp.AppendBulkString(nil, psToken)
	psMarkPong  = resp.AppendBulkString(resp.AppendBulkString(resp.AppendArray(nil, 2), "pong"), psToken)
)

func newPSToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "redraft-order-" + hex.EncodeToString(b[:])
}

// isPSMarker reports whether reply answers an order marker.
func isPSMarker(reply []byte) bool {
	return bytes.Equal(reply, psMarkBulk) || bytes.Equal(reply, psMarkPong)
}

func registerPubSub() {
	for _, n := range []string{"subscribe", "psubscribe", "unsubscribe", "punsubscribe"} {
		handle(n, func(c *client, spec *command.Spec, cmd resp.Command) { c.pubsub(spec, cmd, false) })
	}
	for _, n := range []string{"ssubscribe", "sunsubscribe"} {
		handle(n, func(c *client, spec *command.Spec, cmd resp.Command) { c.pubsub(spec, cmd, true) })
	}
	handle("publish", func(c *client, _ *command.Spec, cmd resp.Command) {
		if err := c.snap.downPubsub(); err != nil {
			c.replyErr(err)
			return
		}
		c.forwardTo(c.snap.pubsub, cmd.Raw)
	})
	for _, n := range []string{"pubsub|channels", "pubsub|numsub", "pubsub|numpat"} {
		handle(n, func(c *client, _ *command.Spec, cmd resp.Command) {
			if err := c.snap.downPubsub(); err != nil {
				c.replyErr(err)
				return
			}
			c.forwardTo(c.snap.pubsub, cmd.Raw)
		})
	}
	handle("spublish", func(c *client, _ *command.Spec, cmd resp.Command) {
		g, err := c.route(command.Slot(cmd.Args[1]))
		if err != nil {
			c.replyErr(err)
			return
		}
		c.forwardTo(g, cmd.Raw)
	})
	handle("pubsub|shardchannels", cmdKeys) // concatenated over groups
	handle("pubsub|shardnumsub", cmdShardNumSub)
}

// cmdShardNumSub sums each channel's count over groups: only its slot's group has any.
func cmdShardNumSub(c *client, _ *command.Spec, cmd resp.Command) {
	n := len(cmd.Args) - 2
	c.fanoutReply(cmd.Raw, func(b []byte, vals []resp.Value) []byte {
		b = resp.AppendArray(b, 2*n) // an array in RESP3 too (Redis 7.0)
		for i := 0; i < n; i++ {
			b = resp.AppendBulk(b, cmd.Args[2+i])
			var sum int64
			for _, v := range vals {
				if 2*i+1 < len(v.Elems) {
					sum += v.Elems[2*i+1].Int
				}
			}
			b = resp.AppendInt(b, sum)
		}
		return b
	})
}

// pubsub sends a (un)subscribe command on the session's subscriber connection.
func (c *client) pubsub(spec *command.Spec, cmd resp.Command, sharded bool) {
	c.drain()
	if err := c.flush(); err != nil {
		return
	}
	if c.ps == nil {
		c.ps = &pubsubState{}
		c.view.ps.Store(c.ps)
	}
	unsub := spec.Name == "unsubscribe" || spec.Name == "punsubscribe" || spec.Name == "sunsubscribe"
	var g *group
	var err error
	slot := -1
	if sharded && len(cmd.Args) > 1 {
		for _, ch := range cmd.Args[1:] {
			sl := command.Slot(ch)
			if slot >= 0 && sl != slot {
				c.replyErr(errCrossSlot)
				return
			}
			slot = sl
		}
		g, err = c.route(slot)
	} else if !sharded {
		if err = c.snap.downPubsub(); err == nil {
			g = c.snap.pubsub
		}
	}
	if err != nil {
		c.replyErr(err)
		return
	}
	c.ps.mu.Lock()
	pc := c.ps.main
	if sharded {
		pc = c.ps.shard
		if pc != nil && g != nil && pc.g.pool != g.pool && !unsub {
			c.ps.mu.Unlock()
			c.replyErr(errorf("CROSSSLOT shard channels of one session must live in one group"))
			return
		}
	}
	c.ps.mu.Unlock()
	if pc == nil {
		if unsub || g == nil {
			// Nothing subscribed there: answer as Redis does for an idle connection.
			kind := spec.Name
			c.replyFunc(func(b []byte) []byte {
				if len(cmd.Args) == 1 {
					b = resp.AppendPush(b, 3, c.r3)
					b = resp.AppendBulkString(b, kind)
					b = resp.AppendNullBulk(b, c.r3)
					return resp.AppendInt(b, 0)
				}
				for _, ch := range cmd.Args[1:] {
					b = resp.AppendPush(b, 3, c.r3)
					b = resp.AppendBulkString(b, kind)
					b = resp.AppendBulk(b, ch)
					b = resp.AppendInt(b, 0)
				}
				return b
			})
			return
		}
		d, err := g.pool.DialProto(c.db, c.r3)
		if err != nil {
			c.replyErr(err)
			return
		}
		pc = newPSConn(d, g)
		c.ps.mu.Lock()
		if sharded {
			c.ps.shard = pc
			c.psShard.Store(&shardSub{slots: []int{slot}, pool: g.pool})
		} else {
			c.ps.main = pc
			c.psMain.Store(g.pool)
		}
		c.ps.mu.Unlock()
		c.s.goClient(c, "pub/sub copy", func() { c.pumpMessages(pc) }, nil)
	}
	if sharded && !unsub && slot >= 0 {
		// A shard channel of another slot on the same group: its slot is watched too.
		if ss := c.psShard.Load(); ss != nil {
			c.psShard.Store(ss.with(slot))
		}
	}
	// The group was chosen on the batch's snapshot; SetState stores a newer one before it
	// looks at the sessions' subscriptions: either it saw the ones just stored, or this load
	// sees its snapshot. A move in between closes the connection, as SetState would have, and
	// the client subscribes again on the group that serves the channels now.
	// A held snapshot (the node paused its routing: Hold) routes nothing and keeps the
	// subscribers, as SetState does not look at them then.
	if snap := c.s.snap.Load(); snap.hold == nil && c.pubsubMoved(snap) {
		c.closeConn()
		return
	}
	if !unsub {
		pc.pending.Store(true)
	}
	c.sendOrdered(pc, cmd.Raw)
	pc.pending.Store(false) // confirmed by now, or refused
}

// pubsubMoved reports whether snap serves the session's channels from another group than the
// one its subscriptions are on.
func (c *client) pubsubMoved(snap *snapshot) bool {
	if p := c.psMain.Load(); p != nil && (snap.pubsub == nil || snap.pubsub.pool != p) {
		return true
	}
	if ss := c.psShard.Load(); ss != nil {
		for _, sl := range ss.slots {
			if g := snap.slots[sl].g; g == nil || g.pool != ss.pool {
				return true
			}
		}
	}
	return false
}

// sendOrdered writes raw on pc, followed by the order marker, and waits until pc's pump has
// written everything the backend answered before the marker: the replies to raw reach the
// client before any later reply of the session, as from one Redis connection. A backend that
// does not answer within BackendTimeout (while the pump writes nothing to the client), or a
// write that fails, closes the client connection (the client reconnects and subscribes again).
func (c *client) sendOrdered(pc *psConn, raw []byte) {
	b := make([]byte, 0, len(raw)+len(rawPSMarker))
	b = append(append(b, raw...), rawPSMarker...)
	pc.sent++
	if err := pc.d.Write(b); err != nil {
		c.closeConn()
		return
	}
	t := time.NewTimer(c.s.cfg.BackendTimeout)
	defer t.Stop()
	writes := pc.writes.Load()
	for pc.passed.Load() < pc.sent {
		select {
		case <-pc.wake:
		case <-pc.done:
			return
		case <-t.C:
			if w := pc.writes.Load(); w != writes || w%2 == 1 {
				writes = w // the pump is busy writing to a slow client: wait on
				t.Reset(c.s.cfg.BackendTimeout)
				continue
			}
			c.closeConn()
			return
		}
	}
}

// forward sends PING on a subscriber connection (one with subscriptions, if any) so its reply
// stays in order with messages.
func (ps *pubsubState) forward(c *client, raw []byte) {
	ps.mu.Lock()
	pc := ps.main
	if pc == nil || (pc.count.Load() == 0 && ps.shard != nil && ps.shard.count.Load() > 0) {
		pc = ps.shard
	}
	ps.mu.Unlock()
	c.drain()
	_ = c.flush()
	if pc == nil {
		c.closeConn()
		return
	}
	c.sendOrdered(pc, raw)
}

// switchProto switches the session's subscriber connections to RESP3 (r3) or RESP2 with
// HELLO, which Redis allows a subscribed RESP3 session: the subscriptions stay.
func (ps *pubsubState) switchProto(c *client, r3 bool) {
	raw := []byte("*2\r\n$5\r\nHELLO\r\n$1\r\n2\r\n")
	if r3 {
		raw = []byte("*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n")
	}
	ps.mu.Lock()
	pcs := []*psConn{ps.main, ps.shard}
	ps.mu.Unlock()
	for _, pc := range pcs {
		if pc != nil {
			pc.hello.Store(true)
			c.sendOrdered(pc, raw)
			pc.d.R3 = r3
		}
	}
}

// pumpMessages copies everything the backend sends on pc to the client. If the backend
// connection fails the client connection is closed, so the client reconnects and subscribes
// again instead of silently missing messages.
func (c *client) pumpMessages(pc *psConn) {
	defer close(pc.done)
	var buf []byte
	for {
		var err error
		buf, err = pc.d.Read(buf[:0])
		if err != nil {
			if !pc.closed.Load() {
				c.closeConn()
			}
			return
		}
		if isPSMarker(buf) {
			pc.passed.Add(1)
			select {
			case pc.wake <- struct{}{}:
			default:
			}
			continue
		}
		if pc.hello.Load() && len(buf) > 0 && buf[0] != '>' {
			// HELLO's reply: everything else a RESP3 subscriber connection receives
			// before it is a push, and nothing else is sent before its marker.
			pc.hello.Store(false)
			continue
		}
		if v, _, ok := resp.Parse(buf); ok && len(v.Elems) == 3 && v.Elems[2].Type == ':' {
			switch string(v.Elems[0].Str) {
			case "subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe":
				// Redis counts channels and patterns together; each reply moves the count by
				// at most one, of its own kind.
				prev := pc.count.Swap(v.Elems[2].Int)
				if k := v.Elems[0].Str; string(k) == "psubscribe" || string(k) == "punsubscribe" {
					pc.pats.Add(v.Elems[2].Int - prev)
				}
				pc.pending.Store(false)
			}
		}
		c.wmu.Lock()
		if pc.closed.Load() {
			// The session ended these subscriptions (RESET, a protocol switch): nothing
			// of this connection may follow the reply that said so.
			c.wmu.Unlock()
			return
		}
		pc.writes.Add(1)
		_, err = c.write(buf)
		pc.writes.Add(1)
		c.wmu.Unlock()
		if err != nil {
			return
		}
		if cap(buf) > 64<<10 {
			buf = nil
		}
	}
}

// subscribed reports whether the session is in subscriber mode.
func (ps *pubsubState) subscribed() bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, pc := range []*psConn{ps.main, ps.shard} {
		if pc != nil && (pc.count.Load() > 0 || pc.pending.Load()) {
			return true
		}
	}
	return false
}

// counts returns the channel, pattern and shard-channel subscription counts (CLIENT LIST).
func (ps *pubsubState) counts() (sub, psub, ssub int) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.main != nil {
		// Read apart from the pump's updates of the two: kept within each other.
		n := int(ps.main.count.Load())
		psub = min(max(int(ps.main.pats.Load()), 0), n)
		sub = n - psub
	}
	if ps.shard != nil {
		ssub = int(ps.shard.count.Load())
	}
	return sub, psub, ssub
}

// closePubsub ends the session's subscriptions: it closes the subscriber connections and
// forgets where the session subscribed (RESET, a protocol switch, the end of the session).
func (c *client) closePubsub() {
	if c.ps != nil {
		c.ps.close()
		c.ps = nil
		c.view.ps.Store(nil)
	}
	c.psMain.Store(nil)
	c.psShard.Store(nil)
}

func (ps *pubsubState) close() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, pc := range []*psConn{ps.main, ps.shard} {
		if pc != nil {
			pc.closed.Store(true)
			pc.d.Close()
		}
	}
	ps.main, ps.shard = nil, nil
}
