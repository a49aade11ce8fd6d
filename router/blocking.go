package router

import (
	"bytes"
	"errors"
	"math"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redraft/redraft/router/backend"
	"github.com/redraft/redraft/router/command"
	"github.com/redraft/redraft/router/resp"
)

// blockingNames are the commands cmdBlocking serves.
var blockingNames = []string{"blpop", "brpop", "brpoplpush", "blmove", "blmpop", "bzpopmin", "bzpopmax", "bzmpop", "xread", "xreadgroup"}

// watchers marks, by command.Spec.ID, the commands whose handlers may watch the client's
// connection (watchClient): those of blockingNames and WAIT.
var watchers []bool

func registerBlocking() {
	for _, name := range blockingNames {
		handle(name, cmdBlocking)
	}
	handle("wait", cmdWait)
	watchers = make([]bool, command.Count())
	for _, name := range append([]string{"wait"}, blockingNames...) {
		watchers[command.ByName(name).ID] = true
	}
}

// blockTimeout returns how long the command may block (0: forever) and whether it blocks; ok
// is false when Redis refuses the timeout (not a number, negative, out of range), which it
// does before the command blocks or touches data.
func blockTimeout(name string, args [][]byte) (d time.Duration, blocks, ok bool) {
	switch name {
	case "xread", "xreadgroup":
		at, _ := xreadOptions(args)
		if at < 0 {
			return 0, false, true
		}
		ms, ok := command.ParseInt(args[at])
		if !ok || ms < 0 {
			return 0, true, false
		}
		if ms > math.MaxInt64/int64(time.Millisecond) {
			ms = 0 // past what a Duration holds: as good as forever
		}
		return time.Duration(ms) * time.Millisecond, true, true
	case "blmpop", "bzmpop":
		d, ok := timeoutSecs(args[1])
		return d, true, ok
	default:
		d, ok := timeoutSecs(args[len(args)-1])
		return d, true, ok
	}
}

// xreadOptions reads XREAD's and XREADGROUP's options as Redis's xreadCommand does, in order
// up to STREAMS: GROUP and its two names (a group or consumer named BLOCK or STREAMS is a
// name), COUNT or BLOCK and a value, NOACK. It returns the position of the BLOCK value Redis
// goes by (the last, or the first it refuses) and of the STREAMS keyword (-1: none, or an
// option Redis refuses before reading anything).
func xreadOptions(args [][]byte) (block, streams int) {
	block = -1
	for i := 1; i < len(args); i++ {
		more := len(args) - i - 1
		switch a := args[i]; {
		case bytes.EqualFold(a, []byte("streams")) && more > 0:
			return block, i
		case bytes.EqualFold(a, []byte("group")) && more >= 2:
			i += 2
		case bytes.EqualFold(a, []byte("block")) && more > 0:
			// Redis takes the last BLOCK, and refuses a bad value where it reads it.
			if block < 0 || validBlockMS(args[block]) {
				block = i + 1
			}
			i++
		case bytes.EqualFold(a, []byte("count")) && more > 0:
			i++
		case bytes.EqualFold(a, []byte("noack")):
		default:
			return -1, -1 // a syntax error: Redis reads nothing
		}
	}
	return block, -1
}

// validBlockMS reports whether v is a BLOCK value Redis takes: milliseconds, not negative.
func validBlockMS(v []byte) bool {
	ms, ok := command.ParseInt(v)
	return ok && ms >= 0
}

// timeoutSecs reads a timeout in seconds as Redis does (strtold, then milliseconds as a long
// long, rounded up): not a number, NaN, negative, or more milliseconds than an int64 holds
// (Redis answers "timeout is negative" for those) is refused. A negative timeout that rounds
// up to 0 ms (-0.0005, -0) is no error: Redis blocks forever. Go's float parser takes a few
// spellings strtold does not (digit separators) and misses one it takes (a hexadecimal
// mantissa without exponent); both are brought in line. Redis computes in long double: near
// -1 ms and at the very edge of the range (9223372036854775 s, not exact in a float64) the two
// may disagree on a value; near -1 ms the doubt is read as no error, since a request judged
// refused goes to Redis as it is, where it would write unrecorded if Redis took it.
func timeoutSecs(b []byte) (time.Duration, bool) {
	if bytes.IndexByte(b, '_') >= 0 {
		return 0, false
	}
	s := string(b)
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && isHexMantissa(s) {
		f, err = strconv.ParseFloat(s+"p0", 64)
	}
	if err != nil || math.IsNaN(f) || f*1000 <= -1-1e-9 || f*1000 >= math.MaxInt64 {
		return 0, false
	}
	if f < 0 {
		return 0, true // rounded up to 0 ms: forever
	}
	if f > float64(math.MaxInt64/int64(time.Second)) {
		return 0, true // past what a Duration holds: as good as forever
	}
	return time.Duration(f * float64(time.Second)), true
}

// isHexMantissa reports whether s is a hexadecimal float without a binary exponent ("0x1.8").
func isHexMantissa(s string) bool {
	s = strings.TrimLeft(s, "+-")
	return len(s) > 2 && (s[:2] == "0x" || s[:2] == "0X") && !strings.ContainsAny(s, "pP")
}

// cmdBlocking runs a blocking command on the session's dedicated connection to the group
// serving the keys' slot, waiting as long as the client asked plus the backend timeout. While
// the slot migrates, the keys move to the target first and the command blocks there; while it
// is frozen, the command is held like any request. A command blocked on a slot that freezes or
// moves to another group meanwhile is released and answers -TRYAGAIN.
//
// A request Redis refuses before blocking (a bad timeout, no keys: numkeys 0, -1 or not a
// number) goes to Redis as it is, which answers the error in its own words and order.
func cmdBlocking(c *client, spec *command.Spec, cmd resp.Command) {
	d, blocks, ok := blockTimeout(spec.Name, cmd.Args)
	if !blocks {
		c.forward(spec, cmd)
		return
	}
	c.keys = spec.Keys(cmd.Args, c.keys[:0])
	slot, err := keySlot(cmd.Args, c.keys)
	if err != nil {
		c.replyErr(err)
		return
	}
	c.drain()
	_ = c.flush() // the client sees earlier replies before blocking
	c.waiting.Store(true)
	defer c.waiting.Store(false)
	if !ok || slot < 0 {
		c.refusedByRedis(slot, cmd)
		return
	}
	if c.xw && c.snap.multiDC && spec.Write {
		c.s.pollers.Add(1)
		defer c.s.pollers.Add(-1)
		c.pollBlocking(spec, cmd, slot, d)
		return
	}
	turn := c.s.turns.take(slot, c.readAt)
	defer turn.done()
	limit := time.Duration(0)
	if d > 0 {
		limit = d + c.s.cfg.BackendTimeout
	}
	var flushWait time.Time // when a flush it waits for ends its wait
	for {
		c.frozenWaited = 0 // routed anew after a release: it waits for a freeze as at first
		e, mark, err := c.enter(slot, func(e *slotEntry) error { return c.moveCmdKeys(e.m, slot, spec, cmd.Args, c.keys) })
		if err != nil {
			c.replyErr(err)
			return
		}
		reply, again, err := c.doBlocking(e.group(), slot, cmd.Raw, limit, turn)
		if err == nil && !again && c.xw && spec.Write && len(reply) > 0 && reply[0] != '-' && !isNull(reply) {
			// One DC, a level above DC_ONE: WAIT on the connection the command ran on.
			if dd := c.blocked[e.group().pool]; dd != nil {
				if lerr := c.reachLevel(e.group(), dd, slot, c.writeLevel(c.snap)); lerr != nil {
					err = &levelError{lerr}
				}
			} else if lvl := c.writeLevel(c.snap); lvl == lvlQuorum && e.group().quorum > 0 {
				// Served, then released (a freeze, a failover hold, a flush) before its WAIT:
				// the connection is gone, and a WAIT on another one says nothing of this write.
				// Until session 46 the write was answered as if its level had been reached.
				err = &levelError{errorf("ERR redraft: write consistency %s not known: the connection the command ran on was released before its WAIT; the write was applied on the master and may still replicate", lvl)}
			}
		}
		c.unadmit(mark)
		if again {
			if snap := c.s.snap.Load(); snap.flushing != nil {
				// Not counted in flight while it waits, so the flush can drain.
				if flushWait.IsZero() {
					c.s.held.Add(1)
					flushWait = time.Now().Add(c.s.cfg.FreezeWait)
				}
				if !c.s.awaitChange(snap, flushWait) {
					c.replyErr(c.tryAgain(errFlushing(snap.flushing)))
					return
				}
			}
			continue
		}
		if err != nil {
			if !c.handOver(reply, err) {
				c.replyErr(err)
			}
			return
		}
		c.reply(reply)
		return
	}
}

// afterBlockingReply, when set (tests only), runs when a blocking command's reply arrived and
// before doBlocking marks it finished: where a release can still find it.
var afterBlockingReply atomic.Pointer[func()]

// doBlocking runs raw on the session's dedicated connection to g as a blockOp that SetState
// can release, after the slot's earlier blocking commands were sent (turn). again means the
// routing changed before the command was sent: route it anew.
func (c *client) doBlocking(g *group, slot int, raw []byte, limit time.Duration, turn *blockTurn) (reply []byte, again bool, err error) {
	d, err := c.dedicated(g)
	if err != nil {
		return nil, false, err
	}
	op := &blockOp{slot: slot, pool: g.pool, admin: g.ipool, d: d, id: d.ClientID(), multiDC: c.snap.multiDC}
	turn.wait(c.s.cfg.BackendTimeout)
	c.blk.Store(op)
	// SetState stores its snapshot before it looks for blocked sessions: either it sees op,
	// or this load sees its snapshot. A flush releases every blocked command (its drain
	// waits for every slot's requests, whatever their database), so one that would block
	// while a flush is active does not: it would hold the flush up. It is routed again once
	// the flush is over, held as a request of a flushed database is.
	if snap := c.s.snap.Load(); op.stale(snap) || snap.flushing != nil {
		op.finished.Store(true)
		c.blk.Store(nil)
		if !op.state.CompareAndSwap(opWaiting, opFinished) {
			c.dropDedicated(g, d) // an UNBLOCK may be on its way to this connection
		}
		return nil, true, nil // the caller waits for the flush to end (cmdBlocking)
	}
	raw = append([]byte(nil), raw...) // the watcher may move the reader's buffer
	c.watchClient(d.Interrupt, func() { reply, err = d.DoNotify(raw, 1, limit, nil, turn.done) })
	if f := afterBlockingReply.Load(); f != nil {
		(*f)()
	}
	op.finished.Store(true)
	c.blk.Store(nil)
	released := !op.state.CompareAndSwap(opWaiting, opFinished)
	if err != nil || released {
		c.dropDedicated(g, d)
	}
	if released && (err != nil || isNull(reply)) {
		if c.s.snap.Load().multiDC != op.multiDC {
			return nil, false, c.tryAgain(errWritePath)
		}
		return nil, false, c.tryAgain(errFrozen(slot))
	}
	return reply, false, err
}

// refusedByRedis sends a blocking request that Redis refuses before it blocks or touches data
// to the group of slot (any group for -1), so the client gets Redis's own error. It runs on the
// session's dedicated connection with the backend timeout as its limit: were Redis to accept
// it after all, it blocks this session only, and not for long.
func (c *client) refusedByRedis(slot int, cmd resp.Command) {
	g, err := c.route(slot)
	if err == nil {
		var reply []byte
		if reply, err = c.doDedicated(g, cmd.Raw, c.s.cfg.BackendTimeout); err == nil {
			c.reply(reply)
			return
		}
	}
	c.replyErr(err)
}

// isNull reports whether a reply is a null: RESP2's null bulk string or null array, RESP3's null.
func isNull(reply []byte) bool {
	return (len(reply) == 5 && (reply[0] == '*' || reply[0] == '$') && string(reply[1:]) == "-1\r\n") ||
		string(reply) == "_\r\n" // RESP3
}

// maxReadAhead bounds what a client may pipeline behind a blocking command while it waits:
// past it the node stops reading the client until the command returns (a disconnect is then
// seen only after it).
const maxReadAhead = 1 << 20

// watchClient runs f, a call that may block for long (on a dedicated connection), while a
// goroutine reads ahead from the client: if the client disconnects, interrupt is called so f
// returns and the session ends instead of holding a backend connection forever. Bytes the
// client pipelines meanwhile stay in the reader's buffer, and the watcher goes on reading
// after them (until session 43 it stopped at the first: a client that sent anything behind a
// BLPOP and then closed held its session, and the BLPOP took an element that no one received).
func (c *client) watchClient(interrupt func(), f func()) {
	if c.inLoop {
		// The read loop holds the connection's read side: the watcher's Fill would wait for it
		// forever. A command that gets here must be in watchers (watchesClient).
		panic("router: watchClient inside the read loop")
	}
	done := make(chan error, 1)
	finished := make(chan struct{})
	c.s.goClient(c, "blocking read-ahead", func() {
		for {
			err := c.rd.Fill()
			if err == nil && c.rd.Buffered() < maxReadAhead {
				continue
			}
			if err == nil {
				<-finished // enough read ahead: the rest waits for the command's end
			}
			var ne net.Error
			if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
				interrupt()
			}
			done <- err
			return
		}
	}, func() {
		interrupt()
		done <- errInternal // the session ends
	})
	func() {
		defer close(finished) // even if f panics (recover.go): the watcher must not stay parked
		f()
	}()
	_ = c.nc.SetReadDeadline(time.Now()) // wake the watcher if it still waits
	err := <-done
	_ = c.nc.SetReadDeadline(time.Time{})
	var ne net.Error
	if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
		c.quit = true // the client is gone
	}
}

// dedicated returns the session's dedicated connection to g as the client user, dialing it
// if needed.
func (c *client) dedicated(g *group) (*backend.Dedicated, error) { return c.dedicatedOn(g, g.pool) }

// dedicatedOn returns the session's dedicated connection from p, one of g's pools.
func (c *client) dedicatedOn(g *group, p *backend.Pool) (*backend.Dedicated, error) {
	if c.blocked == nil {
		c.blocked = map[*backend.Pool]*backend.Dedicated{}
	}
	d := c.blocked[p]
	if d != nil && (d.DB != c.db || d.R3 != c.r3) {
		d.Close()
		d = nil
	}
	if d == nil {
		var err error
		if d, err = p.DialProto(c.db, c.r3); err != nil {
			delete(c.blocked, p)
			return nil, err
		}
		c.blocked[p] = d
	}
	return d, nil
}

// dropDedicated closes the session's dedicated connection d to g.
func (c *client) dropDedicated(g *group, d *backend.Dedicated) {
	d.Close()
	if p := d.Pool(); c.blocked[p] == d {
		delete(c.blocked, p)
	}
}

// doDedicated runs raw on the session's dedicated connection to g, dialing it if needed; a
// connection that failed is dropped.
func (c *client) doDedicated(g *group, raw []byte, limit time.Duration) ([]byte, error) {
	d, err := c.dedicated(g)
	if err != nil {
		return nil, err
	}
	// The watcher may move the reader's buffer, which raw points into.
	raw = append([]byte(nil), raw...)
	var reply []byte
	c.watchClient(d.Interrupt, func() { reply, err = d.Do(raw, 1, limit, nil) })
	if err != nil {
		c.dropDedicated(g, d)
	}
	return reply, err
}

// cmdWait asks every group's master on the session's dedicated connections and answers the
// smallest count. Those connections have written nothing, so WAIT reports how many replicas
// each master has connected; it does not track this session's writes.
// Arguments are checked as Redis checks them, in its order.
func cmdWait(c *client, _ *command.Spec, cmd resp.Command) {
	if _, ok := command.ParseInt(cmd.Args[1]); !ok {
		c.replyErr(errNotInteger)
		return
	}
	ms, ok := command.ParseInt(cmd.Args[2])
	if !ok {
		c.replyErr(errorf("ERR timeout is not an integer or out of range"))
		return
	}
	if ms < 0 {
		c.replyErr(errorf("ERR timeout is negative"))
		return
	}
	snap := c.snap
	if err := snap.down(); err != nil {
		c.replyErr(err)
		return
	}
	c.drain()
	_ = c.flush()
	c.waiting.Store(true)
	defer c.waiting.Store(false)
	limit := time.Duration(0)
	if ms > 0 && ms < math.MaxInt64/int64(2*time.Millisecond) {
		limit = time.Duration(ms)*time.Millisecond + c.s.cfg.BackendTimeout
	}
	// The request is built anew per group: cmd.Raw points into the reader's buffer, which the
	// first group's read-ahead may fill with the client's next request (until session 43 a
	// second group could be sent that request instead of the WAIT), and each group gets what
	// is left of the timeout, so that WAIT n T takes T in all, not T per group.
	numreplicas, timeout := string(cmd.Args[1]), string(cmd.Args[2])
	var deadline time.Time
	if limit > 0 {
		deadline = time.Now().Add(time.Duration(ms) * time.Millisecond)
	}
	least := int64(math.MaxInt64)
	for _, g := range snap.groups {
		left := timeout // 0, or past what a Duration holds: forever either way
		if !deadline.IsZero() {
			left = strconv.FormatInt(max(time.Until(deadline).Milliseconds(), 1), 10)
		}
		reply, err := c.doDedicated(g, appendCommand(nil, []string{"WAIT", numreplicas, left}), limit)
		if err != nil {
			c.replyErr(err)
			return
		}
		v, _, ok := resp.Parse(reply)
		if !ok || v.Type != ':' {
			c.reply(reply)
			return
		}
		least = min(least, v.Int)
	}
	c.replyFunc(func(b []byte) []byte { return resp.AppendInt(b, least) })
}
