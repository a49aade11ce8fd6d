package router

import (
	"sync"
	"sync/atomic"

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
	pending atomic.Bool // a subscribe was sent and not yet confirmed
	closed  atomic.Bool
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
		pc = &psConn{d: d, g: g}
		c.ps.mu.Lock()
		if sharded {
			c.ps.shard = pc
			c.psShard.Store(&shardSub{slot: slot, pool: g.pool})
		} else {
			c.ps.main = pc
			c.psMain.Store(g.pool)
		}
		c.ps.mu.Unlock()
		c.s.goClient(c, "pub/sub copy", func() { c.pumpMessages(pc) }, nil)
	}
	if !unsub {
		pc.pending.Store(true)
	}
	if err := pc.d.Write(cmd.Raw); err != nil {
		c.closeConn()
	}
}

// forward sends PING on a subscriber connection so its reply stays in order with messages.
func (ps *pubsubState) forward(c *client, raw []byte) {
	ps.mu.Lock()
	pc := ps.main
	if pc == nil {
		pc = ps.shard
	}
	ps.mu.Unlock()
	c.drain()
	_ = c.flush()
	if pc == nil || pc.d.Write(raw) != nil {
		c.closeConn()
	}
}

// pumpMessages copies everything the backend sends on pc to the client. If the backend
// connection fails the client connection is closed, so the client reconnects and subscribes
// again instead of silently missing messages.
func (c *client) pumpMessages(pc *psConn) {
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
		if v, _, ok := resp.Parse(buf); ok && len(v.Elems) == 3 && v.Elems[2].Type == ':' {
			switch string(v.Elems[0].Str) {
			case "subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe":
				pc.count.Store(v.Elems[2].Int)
				pc.pending.Store(false)
			}
		}
		c.wmu.Lock()
		_, err = c.nc.Write(buf)
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

// counts returns the channel, pattern and shard-channel subscription counts, approximately
// (Redis reports channels and patterns together).
func (ps *pubsubState) counts() (sub, psub, ssub int) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.main != nil {
		sub = int(ps.main.count.Load())
	}
	if ps.shard != nil {
		ssub = int(ps.shard.count.Load())
	}
	return sub, 0, ssub
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
