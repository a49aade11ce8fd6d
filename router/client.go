package router

import (
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redraft/redraft/router/backend"
	"github.com/redraft/redraft/router/command"
	"github.com/redraft/redraft/router/resp"
	"github.com/redraft/redraft/router/xdc"
)

const (
	// maxPending bounds the commands of one client dispatched before replies are written.
	maxPending = 1024
	// outFlushAt is the reply-buffer size at which replies are written mid-batch.
	outFlushAt = 64 << 10
)

// pendItem is one reply owed to the client, in request order: a forwarded request, a split
// command's sub-requests, or a reply computed locally (a span of client.lbuf).
type pendItem struct {
	req    *backend.Request
	split  *splitOp
	lo, hi int
	x      int32 // a write through WRITE: index+1 in client.xpend (0: none)
}

// client is one client connection and its session.
type client struct {
	s    *Server
	nc   net.Conn
	id   uint64
	addr string
	rd   *resp.Reader
	// cmdMemo resolves the command names of this client's requests (command.Memo).
	cmdMemo command.Memo
	// closed is set when the node closes the connection (CLIENT KILL, shutdown): the client is
	// gone from CLIENT LIST at once, as in Redis, before its goroutine has ended.
	closed atomic.Bool
	// flushOther is 1 + the database the request being routed writes besides the session's
	// (MOVE, COPY ... DB), 0 for none: a flush of it holds the request (flushHolds).
	flushOther int

	wmu  sync.Mutex // guards writes to nc (pub/sub readers write too)
	w    io.Writer  // writes to nc: resp.Writer's, with raw system calls for a socket
	out  []byte
	outp *[]byte // the pooled buffer out started from, while the client is busy (idleBuffers)
	lbuf []byte  // locally computed replies awaiting their turn

	waiter *backend.Waiter
	free   []*backend.Request
	// holdWaited is set once the batch has waited for a held snapshot (awaitRouting).
	holdWaited bool
	// frozenWaited is how long the batch has waited for frozen slots (admit): one FreezeWait
	// for the whole batch, not one per request (a pipeline of 1,024 held requests waited 34
	// minutes, then still sent them). Reset per batch (batch), per internal call
	// (internalClient), per poll of a blocking write (pollBlocking) and per re-route of a
	// blocking command (cmdBlocking).
	frozenWaited time.Duration
	splits       []*splitOp
	pend         []pendItem
	dirty        []*backend.Conn
	snap         *snapshot
	keys         []int
	nreq         uint64
	// cmdIDs are the Spec.IDs of the batch's commands, counted with the batch's latency once
	// its replies are written (cmdstats.go).
	cmdIDs []uint16

	// Slots this batch's requests are counted in flight on (barrier.go), and scratch space.
	pslots      []uint16
	one         [1]uint16
	slotScratch []uint16
	kb          [][]byte
	moveScratch []string

	// The cross-DC write path (xdcwrite.go): whether this batch's writes take it, the
	// session's consistency override, the EVALSHA bytes of the batch's pipelined writes
	// (kept for a TRYAGAIN retry; xpend indexes them), and scratch for synchronous writes.
	xw       bool
	level    level
	readMode readMode // READONLY, READWRITE (replicaread.go)
	xraw     []byte
	xpend    []xpend
	xsync    []byte
	// txBlocking marks the blocking writes of the watched unit EXEC runs (xdctx.go).
	txBlocking []string
	txCalls    []xdc.Call // the watched unit's calls, for a RESP3 session (reshape3)
	sent       []sentReq  // the batch's pipelined requests and pools, while xw (backendusers.go)
	finishing  bool       // finishBatch is running: a retry inside it must not drain

	// Scratch space for split commands.
	scratch   []byte
	subOf     []int32
	subCounts []int
	subGroups []*group
	nerr      uint64

	// Session state.
	authed    bool
	user      *User // nil until the session authenticates
	db        int
	r3        bool // the session speaks RESP3 (HELLO 3): its requests use RESP3 backend connections
	name      string
	quit      bool
	created   time.Time
	lastCmd   string
	tx        *txState
	watch     *backend.Dedicated
	watchSlot int
	watchSig  routeSig // how the watched slot was routed at WATCH
	watchXDC  bool     // the cluster had several DCs at WATCH (the block's write path)
	watchLost bool     // the watched slot's routing changed: EXEC answers a failed WATCH
	blocked   map[*backend.Pool]*backend.Dedicated
	ps        *pubsubState

	// ended is set when the session is over (batch); linger when it ended on a protocol error
	// whose reply was written (lingerClose); outside while a request waits in the read buffer
	// for serve to run it outside resp.Reader.Loop (watchesClient).
	ended, linger, outside bool
	// resumed marks the batch serve runs after outside: it goes on with the read the loop
	// stopped in. inLoop is set while batch runs inside the loop (watchClient checks it).
	resumed, inLoop bool

	// direct writes a batch of one request's reply from the backend reader (direct.go); nil
	// for a TLS connection. dreq is the request armed so, until awaitDirect collects it.
	direct *directReply
	dreq   *backend.Request

	// The blocking command waiting on a dedicated connection, for SetState to release.
	blk atomic.Pointer[blockOp]
	// waiting is set while the session waits in a blocking command (blocked_clients).
	waiting atomic.Bool
	// view is what CLIENT LIST, KILL and INFO read from other goroutines (clients_cmd.go).
	view clientView
	// readAt is when the batch's bytes were read: a blocking command's arrival (blockorder.go).
	readAt time.Time

	// Where the session subscribed, for SetState to read from another goroutine.
	psMain  atomic.Pointer[backend.Pool]
	psShard atomic.Pointer[shardSub]
}

// shardSub is the slots and pool a session's sharded subscriptions live on: every slot it
// subscribed in (one group serves them all), so that a move of any of them disconnects it.
// It is replaced, never changed.
type shardSub struct {
	slots []int
	pool  *backend.Pool
}

// with returns ss with slot among its slots (ss itself when it is there).
func (ss *shardSub) with(slot int) *shardSub {
	if slices.Contains(ss.slots, slot) {
		return ss
	}
	return &shardSub{slots: append(slices.Clip(ss.slots), slot), pool: ss.pool}
}

// setAuthed records whether the session has authenticated (or needs not); until it has, its
// reader takes only small requests, as redis-server does.
func (c *client) setAuthed(v bool) {
	c.authed = v
	if c.rd != nil {
		c.rd.Unauthenticated(!v)
	}
}

func newClient(s *Server, nc net.Conn) *client {
	c := &client{
		s: s, nc: nc, id: s.nextID.Add(1), addr: nc.RemoteAddr().String(),
		rd:      resp.NewReader(nc, s.cfg.MaxBulkBytes, s.cfg.MaxMultibulk),
		waiter:  backend.NewWaiter(),
		user:    s.users.initial(),
		created: time.Now(),
		w:       resp.Writer(nc),
	}
	c.setAuthed(c.user != nil)
	if tw := resp.NewTryWriter(nc); tw != nil {
		c.direct = &directReply{c: c, tw: tw}
	}
	return c
}

// write writes b to the client's connection; called with wmu held.
func (c *client) write(b []byte) (int, error) { return c.w.Write(b) }

// closeConn closes the client's connection; its goroutine then ends and cleans up. The
// socket is shut down at once (the client sees it closed, and the read loop ends), and closed
// on a goroutine of its own: the client's goroutine holds the connection's read side in its
// read loop (resp.Reader.Loop), where a Close waits for it, and it may be waiting there for
// the caller (a backend connection's reader delivering a reply, direct.go).
func (c *client) closeConn() {
	if c.closed.CompareAndSwap(false, true) {
		resp.Shutdown(c.nc)
		go func() { _ = c.nc.Close() }()
	}
}

// serve reads requests, dispatches every complete request in the buffer, then writes the
// replies in order; one goroutine per client, no goroutine per request. A socket is read by
// resp.Reader.Loop, which serves each read's requests inside the read (batch) and waits for
// the next without an empty read; a TLS connection by Fill. A panic ends this connection
// only (recover.go).
func (c *client) serve() {
	defer c.cleanup()
	defer c.recoverClient()
	c.view.user.Store(c.user)
	for !c.ended {
		if c.rd.CanLoop() {
			if err := c.rd.Loop(c.loopBatch); err != nil {
				return
			}
			// Loop ended for a request that must be served outside it (outside), or the
			// session ends; the request is still in the buffer.
			c.outside = false
		} else {
			c.idleBuffers()
			if err := c.rd.Fill(); err != nil {
				return
			}
		}
		if !c.ended {
			c.batch()
		}
	}
	if c.linger {
		c.lingerClose()
	}
}

// loopBatch is the batch of resp.Reader.Loop. A connection the node closed (CLIENT KILL,
// shutdown) serves nothing more: shut down, its socket still hands over what was queued.
func (c *client) loopBatch() bool {
	if c.closed.Load() {
		c.ended = true
		return false
	}
	c.inLoop = true
	goOn := c.batch()
	c.inLoop = false
	return goOn
}

// batch serves every complete request in the read buffer: it dispatches them, then writes the
// replies in order, or hands the reply of a lone forwarded request to the backend connection's
// reader (direct.go). It reports whether the session reads on; when not, ended says whether
// the session is over (QUIT, a failed write, a protocol error: linger), else, inside Loop
// (inLoop), a request that watches the client's connection (watchesClient) is left in the
// buffer for serve (outside).
func (c *client) batch() bool {
	for {
		c.awaitDirect()
		if c.out == nil {
			c.outp = resp.GetBuf()
			c.out = (*c.outp)[:0]
		}
		more := false
		if !c.resumed {
			// A batch resumed outside the loop keeps the read's arrival time (a blocking
			// command's turn: blockorder.go) and its one wait for a held snapshot.
			c.readAt = time.Now()
			c.view.last.Store(c.readAt.Unix())
			c.holdWaited = false
			c.frozenWaited = 0
		}
		c.resumed = false
		c.setSnap(c.s.snap.Load())
		for {
			mark := c.rd.Mark()
			cmd, ok, err := c.rd.Next()
			if err != nil {
				c.finishBatch()
				c.out = appendError(c.out, err)
				c.nerr++
				c.linger = c.flush() == nil
				c.ended = true
				return false
			}
			if !ok {
				break
			}
			if c.closed.Load() {
				// Killed (CLIENT KILL, shutdown) while the batch ran: nothing more it sent
				// runs, as Redis frees a killed client at once; requests held until then (a
				// frozen slot) ran after the kill was answered.
				c.ended = true
				break
			}
			if c.inLoop && c.watchesClient(cmd.Args) {
				c.rd.Rewind(mark)
				c.outside, c.resumed = true, true
				break
			}
			c.nreq++
			c.dispatch(cmd)
			if c.quit {
				break
			}
			if len(c.pend) >= maxPending {
				more = true
				break
			}
		}
		if !more && c.armDirect() {
			_ = c.flush() // counts the batch's requests
		} else {
			c.finishBatch()
			// Counted before the client can have the replies, as a direct reply is (a
			// client that read its reply could see the count still without it).
			if len(c.cmdIDs) > 0 {
				c.s.cmds.observe(c.cmdIDs, time.Since(c.readAt))
				c.cmdIDs = c.cmdIDs[:0]
			}
			err := c.flush()
			if err != nil || c.quit {
				c.ended = true
				return false
			}
		}
		if c.outside {
			return false
		}
		if !more {
			c.idleBuffers()
			return true
		}
	}
}

// watchesClient reports whether a request's handler watches the client's connection while it
// waits (watchClient: a blocking command, WAIT), which reads the connection from another
// goroutine and so cannot run inside resp.Reader.Loop. Queued in MULTI, none waits; XREAD
// and XREADGROUP only with BLOCK (or a BLOCK Redis refuses: refusedByRedis watches too).
func (c *client) watchesClient(args [][]byte) bool {
	if c.tx != nil || len(args) == 0 || len(args[0]) < 4 || len(args[0]) > 10 {
		return false
	}
	switch args[0][0] | 0x20 { // every such command's name starts with b, w or x
	case 'b', 'w', 'x':
	default:
		return false
	}
	spec := c.cmdMemo.Lookup(args)
	if spec == nil || !watchers[spec.ID] {
		return false
	}
	if spec.Name == "xread" || spec.Name == "xreadgroup" {
		_, blocks, ok := blockTimeout(spec.Name, args)
		return blocks || !ok
	}
	return true
}

// idleBuffers gives the read and reply buffers back to their pool before the client waits
// for its next request: an idle connection holds neither, and busy connections share a few
// warm ones.
func (c *client) idleBuffers() {
	if len(c.out) == 0 {
		if c.outp != nil {
			resp.PutBuf(c.outp)
			c.outp = nil
		}
		c.out = nil
	}
	c.rd.Release()
	// Large replies are not kept while the connection idles (a pipeline of big GETs left
	// each request's reply buffer full until the request's next use, which at pipeline 1
	// came only for the last one): the idle connection holds about 7 KiB, as measured.
	if len(c.pend) == 0 {
		// At most idleRequests recycled requests stay, each with at most idleReplyCap: a
		// pipeline of 1,024 GETs of 60 KiB values left 60 MiB with the idle connection.
		if len(c.free) > idleRequests {
			clear(c.free[idleRequests:])
			c.free = c.free[:idleRequests]
		}
		for _, r := range c.free {
			if cap(r.Reply) > idleReplyCap {
				r.Reply = nil
			}
		}
		if cap(c.lbuf) > idleReplyCap {
			c.lbuf = nil
		}
		// The scratch buffers a big request grew (a split MSET's sub-requests, a WRITE call's
		// bytes) go too.
		if cap(c.scratch) > idleReplyCap {
			c.scratch = nil
		}
		if cap(c.xsync) > idleReplyCap {
			c.xsync = nil
		}
		if len(c.xpend) == 0 && cap(c.xraw) > idleReplyCap {
			c.xraw = nil
		}
	}
}

// idleRequests is how many recycled requests an idle connection keeps for its next batch.
const idleRequests = 32

// idleReplyCap is the largest reply buffer a request (or the local replies' buffer) keeps
// while its connection idles, as Request.Reset keeps at most that much for its next use.
const idleReplyCap = 64 << 10

// lingerClose ends a connection after a protocol error so the client can read the error: it
// half-closes and discards what the client is still sending (an oversized argument, say) for a
// short while, instead of resetting the connection under the client's write.
func (c *client) lingerClose() {
	// A TCP connection, or a TLS one (whose CloseWrite sends close_notify first).
	tc, ok := c.nc.(interface {
		CloseWrite() error
		SetReadDeadline(time.Time) error
		io.Reader
	})
	if !ok {
		return
	}
	_ = tc.CloseWrite()
	_ = tc.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, _ = io.Copy(io.Discard, io.LimitReader(tc, 1<<30))
}

func (c *client) cleanup() {
	c.awaitDirect()
	c.finishBatch()
	c.s.requests.Add(c.nreq)
	c.s.errs.Add(c.nerr)
	c.closed.Store(true)
	_ = c.nc.Close() // outside the read loop: nothing of this goroutine holds the connection
	c.closeSession()
	c.out = c.out[:0]
	c.idleBuffers()
	c.s.removeClient(c)
}

// closeSession releases the session's dedicated backend connections.
func (c *client) closeSession() {
	c.unwatch()
	for p, d := range c.blocked {
		d.Close()
		delete(c.blocked, p)
	}
	c.closePubsub()
	c.tx = nil
}

// flush writes the reply buffer to the client.
func (c *client) flush() error {
	if c.nreq > 0 || c.nerr > 0 {
		c.s.requests.Add(c.nreq)
		c.s.errs.Add(c.nerr)
		c.nreq, c.nerr = 0, 0
	}
	if len(c.out) == 0 {
		return nil
	}
	c.wmu.Lock()
	_, err := c.write(c.out)
	c.wmu.Unlock()
	if cap(c.out) > outFlushAt*4 {
		c.out = nil
	} else {
		c.out = c.out[:0]
	}
	return err
}

// reply queues a locally computed reply in order.
func (c *client) reply(b []byte) {
	if len(c.pend) == 0 {
		c.out = append(c.out, b...)
		return
	}
	lo := len(c.lbuf)
	c.lbuf = append(c.lbuf, b...)
	c.pend = append(c.pend, pendItem{lo: lo, hi: len(c.lbuf)})
}

// replyErr queues an error reply.
func (c *client) replyErr(err error) {
	var tmp [256]byte
	c.reply(appendError(tmp[:0], err))
}

// replyFunc queues a reply built by f, appending it directly to the output when nothing is
// pending (the common case for synchronous commands, which drain first).
func (c *client) replyFunc(f func(b []byte) []byte) {
	if len(c.pend) == 0 {
		c.out = f(c.out)
		return
	}
	lo := len(c.lbuf)
	c.lbuf = f(c.lbuf)
	c.pend = append(c.pend, pendItem{lo: lo, hi: len(c.lbuf)})
}

func (c *client) newReq(n int) *backend.Request {
	var r *backend.Request
	if k := len(c.free); k > 0 {
		r = c.free[k-1]
		c.free = c.free[:k-1]
	} else {
		r = backend.NewRequest(c.waiter)
	}
	r.Reset(n)
	return r
}

func (c *client) markDirty(bc *backend.Conn) {
	for _, d := range c.dirty {
		if d == bc {
			return
		}
	}
	c.dirty = append(c.dirty, bc)
}

// send submits raw to g's shared connection (as the client user) for the session's database
// and returns the request; the caller records it in c.pend (or waits for it).
func (c *client) send(g *group, raw []byte, n int) *backend.Request {
	return c.sendOn(g.pool, raw, n)
}

// sendOn is send on pool p (one of a group's two, backendusers.go).
func (c *client) sendOn(p *backend.Pool, raw []byte, n int) *backend.Request {
	r := c.newReq(n)
	bc := p.ConnProto(c.db, c.r3, c.id)
	bc.Submit(r, raw)
	c.markDirty(bc)
	return r
}

// forwardTo sends raw to g and owes the client its reply.
func (c *client) forwardTo(g *group, raw []byte) {
	c.pend = append(c.pend, pendItem{req: c.sendPiped(g, g.pool, raw, 1)})
}

// flushBackends writes what this client queued on backend connections.
func (c *client) flushBackends() {
	for i, d := range c.dirty {
		d.Flush()
		c.dirty[i] = nil
	}
	c.dirty = c.dirty[:0]
}

// finishBatch writes every owed reply to c.out in request order. When the batch's requests are
// counted in flight, it first waits for all their replies and uncounts them, before writing to
// the client: a client that does not read cannot hold up a migration's barrier.
func (c *client) finishBatch() {
	if c.finishing {
		return
	}
	c.finishing = true
	c.flushBackends()
	if len(c.pslots) > 0 {
		for i := range c.pend {
			p := &c.pend[i]
			switch {
			case p.req != nil:
				c.waiter.Wait(p.req)
			case p.split != nil:
				for _, r := range p.split.subs {
					c.waiter.Wait(r)
				}
			}
		}
		c.unadmit(0)
	}
	for i := range c.pend {
		p := &c.pend[i]
		switch {
		case p.req != nil:
			c.waiter.Wait(p.req)
			if p.x != 0 {
				c.checkWrite(i, &c.xpend[p.x-1], p.req)
			}
			if p.req.Err != nil {
				c.out = appendError(c.out, p.req.Err)
				c.nerr++
			} else {
				if len(p.req.Reply) > 0 && p.req.Reply[0] == '-' {
					c.nerr++
				}
				c.out = append(c.out, p.req.Reply...)
			}
			c.free = append(c.free, p.req)
		case p.split != nil:
			if len(p.split.xs) > 0 {
				for si, x := range p.split.xs {
					c.checkWrite(i, &c.xpend[x], p.split.subs[si])
				}
			}
			c.mergeSplit(p.split)
		default:
			if c.lbuf[p.lo] == '-' {
				c.nerr++
			}
			c.out = append(c.out, c.lbuf[p.lo:p.hi]...)
		}
		*p = pendItem{}
		if len(c.out) >= outFlushAt {
			_ = c.flush()
		}
	}
	c.pend = c.pend[:0]
	clear(c.sent)
	c.sent = c.sent[:0]
	c.lbuf = c.lbuf[:0]
	c.finishing = false
	if len(c.xpend) > 0 {
		c.xpend, c.xraw = c.xpend[:0], c.xraw[:0]
	}
}

// drain finishes the batch so far, for commands that talk to backends synchronously.
func (c *client) drain() {
	if len(c.pend) > 0 || len(c.dirty) > 0 {
		c.finishBatch()
	}
}

// wait sends queued bytes and waits for r.
func (c *client) wait(r *backend.Request) {
	c.flushBackends()
	c.waiter.Wait(r)
}

// route returns the group owning slot in the batch's snapshot (the first group for slot -1),
// or an error reply. Keyed data requests use enter instead, which follows migrations.
func (c *client) route(slot int) (*group, error) {
	snap := c.snap
	if err := snap.down(); err != nil {
		return nil, err
	}
	if slot < 0 {
		return snap.groups[0], nil
	}
	g := snap.slots[slot].g
	if g == nil {
		return nil, errSlotDown
	}
	return g, nil
}

// keySlot returns the single slot all keys at positions keys share (-1 for none), or an error
// for reserved keys and keys in different slots.
func keySlot(args [][]byte, keys []int) (int, error) {
	slot := -1
	for _, k := range keys {
		key := args[k]
		if isReserved(key) {
			return -1, errReserved
		}
		sl := command.Slot(key)
		if slot >= 0 && sl != slot {
			return -1, errCrossSlot
		}
		slot = sl
	}
	return slot, nil
}

const reservedPrefix = xdc.InternalPrefix

func isReserved(key []byte) bool {
	return len(key) >= len(reservedPrefix) && string(key[:len(reservedPrefix)]) == reservedPrefix
}
