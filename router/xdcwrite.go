package router

import (
	"bytes"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redraft/redraft/router/backend"
	"github.com/redraft/redraft/router/command"
	"github.com/redraft/redraft/router/resp"
	"github.com/redraft/redraft/router/xdc"
)

// The cross-DC write path (router/DESIGN.md, "Cross-DC write path"). With several DCs every
// write runs through the WRITE script of router/xdc, which applies it and appends its effect
// to the slot's outbox atomically; with one DC writes are forwarded raw. DC_ONE writes stay
// pipelined; higher consistency levels are served synchronously (consistency.go).

// backendLibraries are loaded on every backend connection of the internal user
// (backend.Options.Libraries): the replication functions, WRITE and APPLY (xdc.Library).
var backendLibraries = []string{xdc.Library()}

// rawLoadLibrary loads the replication functions again (a backend that lost them).
var rawLoadLibrary = appendCommand(nil, []string{"FUNCTION", "LOAD", "REPLACE", xdc.Library()})

// Backoff of retries while a slot's copy lock holds writes (-TRYAGAIN from WRITE) and of
// polls that serve blocking commands.
const (
	retryMin = 10 * time.Millisecond
	retryMax = 100 * time.Millisecond
)

// xpend is a pipelined WRITE call of the batch, kept until its reply is checked: its bytes
// (client.xraw[lo:hi]), group and slot, to retry it after -TRYAGAIN.
type xpend struct {
	g      *group
	slot   int
	lo, hi int
	// blocking marks a unit's blocking writes, whose replies unitReply reshapes.
	blocking []string
	// calls and unit, for a RESP3 session only, give the reply its RESP3 shape (reshape3).
	calls []xdc.Call
	unit  bool
}

// appendWriteCall appends `FCALL <WRITE> numkeys keys... argv...` for calls on slot, as
// xdc.WriteArgs lays them out (a test keeps the two in step), without building []any.
// writeOpts are the cluster settings WRITE calls carry: the outbox bound, and plain (setting
// convergence off: the calls go without their convergence class, and their effects are
// recorded as commands, without stamps).
type writeOpts struct {
	maxLen string
	plain  bool
	// record makes a unit call WRITE's "rec" form: it records and does not check the slot's
	// copy lock (a user script's record, after the script ran; its pre-check was copyLocked).
	record bool
	// log makes WRITE record in the group's log instead of the slot's outbox: the cluster's
	// data format has group logs (xdc.LogDataFormat, docs/replication.md).
	log bool
}

func appendWriteCall(b []byte, slot int, dc string, w writeOpts, unit bool, calls []xdc.Call) []byte {
	nkeys, nargs := 3, 4
	for i := range calls {
		nkeys += len(calls[i].Keys)
		nargs += 2 + len(calls[i].Args)
	}
	b = resp.AppendArray(b, 3+nkeys+nargs)
	b = resp.AppendBulkString(b, "FCALL")
	b = resp.AppendBulkString(b, xdc.WriteFunc)
	b = appendBulkInt(b, nkeys)
	for i := range calls {
		for _, k := range calls[i].Keys {
			b = resp.AppendBulkString(b, k)
		}
	}
	b = resp.AppendBulkString(b, xdc.MetaKey(slot))
	b = resp.AppendBulkString(b, xdc.CopyLockKey(slot))
	if w.log {
		b = resp.AppendBulkString(b, xdc.LogKey)
	} else {
		b = resp.AppendBulkString(b, xdc.OutboxKey(slot))
	}
	b = resp.AppendBulkString(b, w.maxLen)
	b = resp.AppendBulkString(b, dc)
	if w.record {
		b = resp.AppendBulkString(b, "rec")
	} else if unit {
		b = resp.AppendBulkString(b, "unit")
	} else {
		b = resp.AppendBulkString(b, "one")
	}
	b = appendBulkInt(b, len(calls))
	for i := range calls {
		plan := calls[i].Plan
		if w.plain {
			plan, _, _ = strings.Cut(plan, "/")
		}
		b = resp.AppendBulkString(b, plan)
		b = appendBulkInt(b, len(calls[i].Args))
		for _, a := range calls[i].Args {
			b = resp.AppendBulkString(b, a)
		}
	}
	return b
}

func appendBulkInt(b []byte, n int) []byte {
	var tmp [20]byte
	return resp.AppendBulk(b, strconv.AppendInt(tmp[:0], int64(n), 10))
}

// appendCommand appends args as a RESP request.
func appendCommand(b []byte, args []string) []byte {
	n := 16
	for _, a := range args {
		n += len(a) + 16
	}
	b = slices.Grow(b, n) // one allocation, not one per doubling (a batch APPLY is kilobytes)
	b = resp.AppendArray(b, len(args))
	for _, a := range args {
		b = resp.AppendBulkString(b, a)
	}
	return b
}

// argStrings copies a request's arguments to strings (xdc.Prepare's input).
func argStrings(args [][]byte) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = string(a)
	}
	return out
}

// prepare turns a write into its WRITE call; ok is false for a command WRITE does not
// record (a read, or an unknown subcommand left to the server), and err names the command a
// cross-DC cluster cannot serve.
func prepare(name string, argv []string) (call xdc.Call, ok bool, err error) {
	call, err = xdc.Prepare(argv)
	switch {
	case err == nil:
		return call, true, nil
	case errors.Is(err, xdc.ErrNotWrite) || errors.Is(err, xdc.ErrUnknown):
		return call, false, nil
	}
	return call, false, errNotReplicated(name, err)
}

// errOtherDBXDC answers MOVE, and COPY ... DB naming another database than the session's, in
// a cluster with several DCs and the setting convergence on: WRITE records the state of the
// keys it changes in the session's database and its slot's log there, so the key written in
// the other database would reach no other DC, and the DCs would differ for good. Redis Cluster
// refuses both commands for its own reason (it has one database); with convergence off they
// are recorded as the commands they are and served.
var errOtherDBXDC = &replyError{"ERR redraft: MOVE and COPY ... DB to another database are refused in a cluster with several DCs and convergence on: the key in the other database would not be replicated (see docs/commands.md)"}

func errNotReplicated(name string, err error) error {
	return errorf("ERR redraft: %s cannot be served in a cluster with several DCs: %v", bytes.ToUpper([]byte(name)), err)
}

// isTryAgain reports whether reply is a -TRYAGAIN error (WRITE's answer while the slot's
// copy lock is set).
func isTryAgainReply(reply []byte) bool { return bytes.HasPrefix(reply, []byte("-TRYAGAIN")) }

// forwardWrite serves a write on one slot: through WRITE when the cluster has several DCs,
// then at the session's consistency level. DC_ONE writes are pipelined like any request.
func (c *client) forwardWrite(spec *command.Spec, cmd resp.Command, slot int) {
	snap := c.snap
	var call xdc.Call
	wrap := snap.multiDC
	if wrap {
		if _, _, ok := c.otherDB(spec.Name, cmd.Args); ok && !snap.outboxMax.plain {
			c.replyErr(errOtherDBXDC)
			return
		}
		var err error
		if call, wrap, err = prepare(spec.Name, argStrings(cmd.Args)); err != nil {
			c.replyErr(err)
			return
		}
	}
	lvl := c.writeLevel(snap)
	if lvl != lvlOne {
		c.drain()
	}
	move := func(e *slotEntry) error {
		if err := c.moveCmdKeys(e.m, slot, spec, cmd.Args, c.keys); err != nil || !wrap {
			return err
		}
		return c.moveOutbox(e.m, slot)
	}
	if lvl == lvlOne {
		e, _, err := c.enter(slot, move)
		if err != nil {
			c.replyErr(err)
			return
		}
		if !wrap {
			c.forwardTo(e.group(), cmd.Raw)
			return
		}
		r := c.sendWrite(e.group(), slot, false, []xdc.Call{call})
		c.pend = append(c.pend, pendItem{req: r, x: int32(len(c.xpend))})
		return
	}
	raw := cmd.Raw
	if wrap {
		raw = appendWriteCall(c.xsync[:0], slot, c.s.cfg.DC, snap.outboxMax, false, []xdc.Call{call})
		c.xsync = raw[:0]
	}
	reply, err := c.syncWrite(syncReq{slot: slot, move: move, raw: raw, n: 1, lvl: lvl, wrapped: wrap,
		nullNoop: xdc.NullMeansNoChange(spec.Name, argStrings(cmd.Args))})
	var le *levelError
	if wrap && c.r3 && len(reply) > 0 && (err == nil || errors.As(err, &le)) { // a level missed: handOver may answer it
		reply = reshape3(reply, []xdc.Call{call}, false, nil)
	}
	c.replyWrite(reply, err)
}

// moveOutbox moves slot's outbox, metadata hash and copy lock off m's source, like the keys
// of a write that appends to them: the stream must reach the target with its entries and last
// id, the stamps with the keys they describe, and a full copy's lock (taken before the
// migration began) where WRITE checks it, before WRITE runs there.
func (c *client) moveOutbox(m *migEntry, slot int) error {
	return c.moveKeys(m, slot, c.db, slotWriteKeys(nil, slot))
}

// slotWriteKeys appends to keys the slot's keys that WRITE reads or appends to besides the
// command's: its outbox, metadata hash and copy lock (moveOutbox).
func slotWriteKeys(keys [][]byte, slot int) [][]byte {
	return append(keys, []byte(xdc.OutboxKey(slot)), []byte(xdc.MetaKey(slot)), []byte(xdc.CopyLockKey(slot)))
}

// withElemKeys appends to keys, with several DCs, the element hash of each (convergence
// state of hashes, sets and sorted sets: it must move with its key).
func (c *client) withElemKeys(slot int, keys [][]byte) [][]byte {
	if !c.snap.multiDC {
		return keys
	}
	for _, k := range keys[:len(keys):len(keys)] {
		keys = append(keys, []byte(xdc.ElemKey(slot, string(k))))
	}
	return keys
}

// moveOutboxes moves the outboxes of the migrating slots among sl (split writes).
func (c *client) moveOutboxes(snap *snapshot, sl []uint16) error {
	for i, s := range sl {
		e := &snap.slots[s]
		if e.state() != migMigrating || slices.Contains(sl[:i], s) {
			continue
		}
		if err := c.moveOutbox(e.m, int(s)); err != nil {
			return err
		}
	}
	return nil
}

// sendWrite submits a WRITE call on the session's shared connection to g, keeping its bytes
// in client.xraw (and an xpend entry) until finishBatch has checked the reply.
func (c *client) sendWrite(g *group, slot int, unit bool, calls []xdc.Call) *backend.Request {
	lo := len(c.xraw)
	c.xraw = appendWriteCall(c.xraw, slot, c.s.cfg.DC, c.snap.outboxMax, unit, calls)
	c.xpend = append(c.xpend, xpend{g: g, slot: slot, lo: lo, hi: len(c.xraw)})
	if c.r3 {
		c.xpend[len(c.xpend)-1].calls, c.xpend[len(c.xpend)-1].unit = calls, unit
	}
	return c.sendPiped(g, g.ipool, c.xraw[lo:], 1)
}

func (c *client) replyWrite(reply []byte, err error) {
	if c.handOver(reply, err) {
		return
	}
	if err != nil {
		c.replyErr(err)
		return
	}
	c.reply(reply)
}

// checkWrite fixes the reply r of the batch's pipelined WRITE call xp (pend item i) before it
// reaches the client: a -TRYAGAIN (the slot's copy lock) is retried for up to FreezeWait when
// nothing later in the batch went to a backend (else a retry could reorder it after a later
// request; the client gets -TRYAGAIN), and a missing WRITE function becomes a clear error.
func (c *client) checkWrite(i int, xp *xpend, r *backend.Request) {
	if f := c.s.cfg.Wrote; f != nil {
		defer f(c.db, xp.slot)
	}
	if r.Err != nil || len(r.Reply) == 0 {
		return
	}
	if r.Reply[0] != '-' {
		r.Reply = unitReply(xdc.FixReply(r.Reply), xp.blocking)
		if xp.calls != nil {
			r.Reply = reshape3(r.Reply, xp.calls, xp.unit, xp.blocking)
		}
		return
	}
	if isTryAgainReply(r.Reply) && !c.laterBackend(i) {
		reply, err := c.retryWrite(xp.g, xp.slot, c.xraw[xp.lo:xp.hi], 1)
		if err != nil {
			r.Err = err
			return
		}
		if reply != nil {
			r.Reply = append(r.Reply[:0], reply...)
		}
	}
	r.Reply = c.s.checkLibrary(xp.g, r.Reply)
}

// laterBackend reports whether a pend item after i waits for a backend reply.
func (c *client) laterBackend(i int) bool {
	for _, p := range c.pend[i+1:] {
		if p.req != nil || p.split != nil {
			return true
		}
	}
	return false
}

// retryWrite sends raw (a WRITE call on slot that answered -TRYAGAIN) again, with backoff, to
// the same group, until it answers something else or FreezeWait passes. It returns nil (keep
// the -TRYAGAIN) when the deadline passes or the slot is now served by another group, which
// the client must be told about; it never drains the batch (finishBatch may be running).
func (c *client) retryWrite(g *group, slot int, raw []byte, n int) ([]byte, error) {
	deadline := time.Now().Add(c.s.cfg.FreezeWait)
	backoff := retryMin
	var reply []byte
	for {
		if err := c.s.retrySleep(&backoff, deadline); err == errRetryOver {
			return reply, nil
		} else if err != nil {
			return nil, err
		}
		c.one[0] = uint16(slot)
		snap, mark, err := c.admit(c.one[:])
		if err != nil {
			return nil, err
		}
		e := &snap.slots[slot]
		if eg := e.group(); eg == nil || eg.pool != g.pool {
			c.unadmit(mark)
			return reply, nil
		}
		r := c.sendInternal(e.group(), raw, n)
		c.wait(r)
		reply, err = append(reply[:0], r.Reply...), r.Err
		c.free = append(c.free, r)
		c.unadmit(mark)
		if err != nil {
			return nil, err
		}
		if !isTryAgainReply(reply) {
			return reply, nil
		}
	}
}

// syncReq is a write served synchronously: raw (n replies, the last kept) on slot, whose keys
// move is called for while the slot migrates, at level lvl.
type syncReq struct {
	slot    int
	move    func(e *slotEntry) error
	raw     []byte
	n       int
	lvl     level
	wrapped bool // raw is a WRITE call: "function not found" means WRITE is missing
	// internal runs raw as the internal user although it is not a WRITE call.
	internal bool
	// rawFor, when set, builds raw for the group that serves the write (a user script's
	// block names that group's users).
	rawFor func(g *group) []byte
	// pre, when set, runs on the serving group before the write; a non-nil reply answers
	// instead of the write (the copy-lock check of user scripts).
	pre func(g *group) ([]byte, error)
	// nullNoop says a null reply means the write changed nothing (writeAndReach).
	nullNoop bool
}

// syncWrite serves sr admitted on its slot (the caller drained the batch first).
func (c *client) syncWrite(sr syncReq) ([]byte, error) {
	e, mark, err := c.enter(sr.slot, sr.move)
	if err != nil {
		return nil, err
	}
	defer c.unadmit(mark)
	return c.writeRetrying(e.group(), sr)
}

// writeRetrying sends sr to g, reaches its level, and sends it again with backoff for up to
// FreezeWait while it answers -TRYAGAIN (the slot's copy lock). The request stays counted in
// flight meanwhile, so a migration's barrier on the slot waits for the retries.
func (c *client) writeRetrying(g *group, sr syncReq) ([]byte, error) {
	if f := c.s.cfg.Wrote; f != nil {
		defer f(c.db, sr.slot)
	}
	var deadline time.Time
	backoff := retryMin
	for {
		var reply []byte
		var err error
		if sr.pre != nil {
			reply, err = sr.pre(g)
		}
		if reply == nil && err == nil {
			raw := sr.raw
			if sr.rawFor != nil {
				raw = sr.rawFor(g)
			}
			reply, err = c.writeAndReach(g, sr.slot, raw, sr.n, sr.lvl, sr.wrapped || sr.internal, sr.nullNoop)
		}
		var le *levelError
		if err != nil && !errors.As(err, &le) {
			return nil, err
		}
		if sr.wrapped {
			reply = xdc.FixReply(c.s.checkLibrary(g, reply))
		}
		if le != nil || !isTryAgainReply(reply) {
			return reply, err // a levelError: applied, its reply with it
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(c.s.cfg.FreezeWait)
		}
		if err := c.s.retrySleep(&backoff, deadline); err == errRetryOver {
			c.s.tryAgain.Add(1)
			return reply, nil
		} else if err != nil {
			return nil, err
		}
	}
}

// errRetryOver means the next retry would pass its deadline.
var errRetryOver = errors.New("router: retry deadline passed")

// retrySleep waits *backoff before a retry and doubles it (up to retryMax); it answers
// errRetryOver, without waiting, when the wait would pass deadline, and errClosing when the
// server closes meanwhile.
func (s *Server) retrySleep(backoff *time.Duration, deadline time.Time) error {
	if time.Now().Add(*backoff).After(deadline) {
		return errRetryOver
	}
	t := time.NewTimer(*backoff)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.ctx.Done():
		return errClosing
	}
	*backoff = min(*backoff*2, retryMax)
	return nil
}

// writeAndReach sends raw (n replies) to g and, unless it answered an error, or a null that
// means it changed nothing (nullNoop: a pop of nothing, an aborted EXEC; xdc.NullMeansNoChange),
// makes sure it reached lvl. Any other null waits too: SET k v NX GET of an absent key, a
// script that returns nothing (until session 43 every null was answered without its level).
// DC_QUORUM writes run on the session's dedicated connection to g, so that the WAIT after
// them blocks no other client.
// internal runs it as the internal user (a WRITE call, a user script's MULTI with its XADD).
func (c *client) writeAndReach(g *group, slot int, raw []byte, n int, lvl level, internal, nullNoop bool) ([]byte, error) {
	var d *backend.Dedicated
	var reply []byte
	var err error
	p := g.pool
	if internal {
		p = g.ipool
	}
	if lvl == lvlQuorum && g.quorum > 0 {
		if d, err = c.dedicatedOn(g, p); err != nil {
			return nil, err
		}
		if reply, err = d.Do(raw, n, c.s.cfg.BackendTimeout, nil); err != nil {
			c.dropDedicated(g, d)
			return nil, err
		}
	} else if reply, err = c.roundTripOn(p, raw, n); err != nil {
		return nil, err
	}
	if len(reply) == 0 || reply[0] == '-' || nullNoop && isNull(reply) {
		return reply, nil
	}
	if err := c.reachLevel(g, d, slot, lvl); err != nil {
		return reply, &levelError{err}
	}
	return reply, nil
}

// levelError is a write applied whose consistency level was not reached: its reply is there,
// the client gets the error (writeAndReach). A split write sends its other pieces all the same.
type levelError struct{ error }

func (e *levelError) Unwrap() error { return e.error }

// checkLibrary turns a "function not found" reply to a WRITE call on g into a clear error and
// loads the replication functions on g's master again, for the next write.
func (s *Server) checkLibrary(g *group, reply []byte) []byte {
	if !xdc.FuncMissingReply(reply) {
		return reply
	}
	s.reloadLibrary(g.ipool)
	return appendError(reply[:0], errorf("ERR redraft: the replication function WRITE is not loaded on group %s (%s), e.g. after FUNCTION FLUSH on the backend itself; redraft is loading it again, retry the write", g.id, g.addr))
}

// reloadLibrary loads the replication functions on p's master again, in the background.
func (s *Server) reloadLibrary(p *backend.Pool) {
	s.reloadMu.Lock()
	if s.reloading[p] {
		s.reloadMu.Unlock()
		return
	}
	if s.reloading == nil {
		s.reloading = map[*backend.Pool]bool{}
	}
	s.reloading[p] = true
	s.reloadMu.Unlock()
	go func() {
		w := backend.NewWaiter()
		r := backend.NewRequest(w)
		r.Reset(1)
		bc := p.Conn(0, 0)
		bc.Submit(r, rawLoadLibrary)
		bc.Flush()
		w.Wait(r)
		s.reloadMu.Lock()
		delete(s.reloading, p)
		s.reloadMu.Unlock()
	}()
}

// splitWrite serves a split write (MSET, DEL, UNLINK) admitted on the slots sl of its keys
// (mark as admit returned it): with several DCs one WRITE call per slot, since outboxes are
// per slot; with one DC (a consistency level above DC_ONE) one command per group. The replies
// merge as the split's do.
func (c *client) splitWrite(spec *command.Spec, cmd resp.Command, kind splitKind, step int, snap *snapshot, sl []uint16, mark int) {
	args := cmd.Args
	multi := c.snap.multiDC
	type sub struct {
		slot int
		g    *group
		argv []string
		call xdc.Call
	}
	var subs []sub
	index := map[int]int{}
	for i, s := range sl {
		g := snap.slots[s].group()
		k := g.idx
		if multi {
			k = int(s)
		}
		si, ok := index[k]
		if !ok {
			si = len(subs)
			index[k] = si
			subs = append(subs, sub{slot: int(s), g: g, argv: []string{string(args[0])}})
		}
		a := 1 + i*step
		subs[si].argv = append(subs[si].argv, string(args[a]))
		if step == 2 {
			subs[si].argv = append(subs[si].argv, string(args[a+1]))
		}
	}
	if multi {
		for i := range subs {
			call, ok, err := prepare(spec.Name, subs[i].argv)
			if err == nil && !ok {
				err = errorf("ERR redraft: %s is not recorded as a write", spec.Name)
			}
			if err != nil {
				c.unadmit(mark)
				c.replyErr(err)
				return
			}
			subs[i].call = call
		}
	}
	lvl := c.writeLevel(snap)
	if lvl == lvlOne {
		op := c.newSplit(kind)
		for _, s := range subs {
			op.subs = append(op.subs, c.sendWrite(s.g, s.slot, false, []xdc.Call{s.call}))
			op.xs = append(op.xs, int32(len(c.xpend)-1))
		}
		c.pend = append(c.pend, pendItem{split: op})
		return
	}
	defer c.unadmit(mark)
	var sum int64
	// A piece applied whose level was not reached does not stop the others (until session 43
	// the rest of an MSET was never sent, while the error said the write was applied): every
	// piece is sent, then the first such error is the answer.
	var missed error
	for _, s := range subs {
		raw := c.xsync[:0]
		if multi {
			raw = appendWriteCall(raw, s.slot, c.s.cfg.DC, c.snap.outboxMax, false, []xdc.Call{s.call})
		} else {
			raw = appendCommand(raw, s.argv)
		}
		c.xsync = raw[:0]
		reply, err := c.writeRetrying(s.g, syncReq{slot: s.slot, raw: raw, n: 1, lvl: lvl, wrapped: multi})
		var le *levelError
		if errors.As(err, &le) {
			if missed == nil {
				missed = err
			}
			err = nil
		}
		if err != nil {
			c.replyErr(err)
			return
		}
		v, _, ok := resp.Parse(reply)
		switch {
		case ok && v.IsError():
			c.reply(reply)
			return
		case kind == splitCount && (!ok || v.Type != ':'):
			c.replyErr(errorf("ERR unexpected reply from backend"))
			return
		}
		sum += v.Int
	}
	if missed != nil {
		c.replyErr(missed)
		return
	}
	if kind == splitMSet {
		c.reply([]byte("+OK\r\n"))
		return
	}
	c.replyFunc(func(b []byte) []byte { return resp.AppendInt(b, sum) })
}
