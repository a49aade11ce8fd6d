package router

import (
	"errors"
	"strings"

	"github.com/redraft/redraft/router/command"
	"github.com/redraft/redraft/router/resp"
)

// txState is a MULTI block queued on the node until EXEC. It runs as one contiguous
// MULTI ... EXEC on the shared connection of the transaction's group (or on the session's
// WATCH connection), so every key of the block must share one slot.
type txState struct {
	raw     []byte // the queued commands, RESP encoded
	cmds    []string
	slot    int
	aborted bool
	// size counts the bytes queued (the requests, their keys' copies): MaxTxBytes bounds it.
	size int
	// The queued commands' keys (copies), moved off a migrating slot's source at EXEC.
	keys         [][]byte
	other        []dbKey
	sortPatterns bool
}

// script returns the name of the block's first script (EVAL, FCALL...), or "": with several
// DCs a script cannot run inside MULTI, keys or none.
func (tx *txState) script() string {
	for _, name := range tx.cmds {
		if s := command.ByName(name); s != nil && s.Kind == command.Script {
			return name
		}
	}
	return ""
}

// txControl are the commands MULTI does not queue.
// WATCH is queued: queueTx refuses it as Redis does.
var txControl = map[string]bool{"exec": true, "discard": true, "multi": true, "quit": true, "reset": true}

var (
	rawMulti = []byte("*1\r\n$5\r\nMULTI\r\n")
	rawExec  = []byte("*1\r\n$4\r\nEXEC\r\n")
)

// txAllowed are the local commands that may be queued (they run on the backend).
var txAllowed = map[string]bool{"ping": true, "echo": true}

func registerTx() {
	handle("multi", func(c *client, _ *command.Spec, _ resp.Command) {
		if c.tx != nil {
			c.replyErr(errNestedMulti)
			return
		}
		c.tx = &txState{slot: -1}
		c.reply([]byte("+OK\r\n"))
	})
	handle("discard", func(c *client, _ *command.Spec, _ resp.Command) {
		if c.tx == nil {
			c.replyErr(errDiscardNo)
			return
		}
		c.tx = nil
		c.unwatch()
		c.reply([]byte("+OK\r\n"))
	})
	handle("exec", cmdExec)
	handle("watch", cmdWatch)
	handle("unwatch", func(c *client, _ *command.Spec, _ resp.Command) {
		c.unwatch()
		c.reply([]byte("+OK\r\n"))
	})
}

// queueTx queues one command of a MULTI block, checking that it can run in the block.
func (c *client) queueTx(spec *command.Spec, cmd resp.Command) {
	tx := c.tx
	ok := false
	switch spec.Kind {
	case command.Forward, command.Split, command.Script, command.Block, command.Any:
		ok = true
	case command.Local:
		ok = txAllowed[spec.Name]
	}
	if spec.Name == "watch" {
		c.replyErr(errWatchInTx)
		return
	}
	if !ok {
		tx.aborted = true
		c.replyErr(errorf("ERR command '%s' cannot run inside MULTI on redraft", spec.Name))
		return
	}
	if tx.size+len(cmd.Raw) > c.s.cfg.MaxTxBytes {
		// Dropped at once: one client could otherwise queue until the node runs out of memory.
		*tx = txState{aborted: true, slot: -1}
		c.replyErr(errorf("ERR redraft: the MULTI block exceeds %d bytes of queued commands; it is discarded (EXEC answers EXECABORT)", c.s.cfg.MaxTxBytes))
		return
	}
	if err := refuseOwnLibrary(spec, cmd.Args); err != nil { // FCALL of redraft's functions
		tx.aborted = true
		c.replyErr(err)
		return
	}
	if spec.Name == "sort" || spec.Name == "sort_ro" {
		// The patterns are checked as outside MULTI: with several DCs the block runs in WRITE
		// as redraft's internal user, which may read any key, redraft's own included.
		if _, err := checkSortPatterns(cmd.Args); err != nil {
			tx.aborted = true
			c.replyErr(err)
			return
		}
	}
	c.keys = spec.Keys(cmd.Args, c.keys[:0])
	slot, err := keySlot(cmd.Args, c.keys)
	if err == nil && slot >= 0 && tx.slot >= 0 && slot != tx.slot {
		err = errCrossSlot
	}
	if err != nil {
		tx.aborted = true
		c.replyErr(err)
		return
	}
	if slot >= 0 {
		tx.slot = slot
	}
	if tx.aborted {
		// As Redis answers; EXEC discards the block anyway, so nothing of it is kept (a
		// block dropped for its size would otherwise grow again by its keys' copies).
		c.reply([]byte("+QUEUED\r\n"))
		return
	}
	if slot >= 0 {
		for _, k := range c.keys {
			tx.keys = append(tx.keys, append([]byte(nil), cmd.Args[k]...))
		}
		if db, key, ok := c.otherDB(spec.Name, cmd.Args); ok {
			tx.other = append(tx.other, dbKey{db, append([]byte(nil), key...)})
		}
		if (spec.Name == "sort" || spec.Name == "sort_ro") && sortHasPatterns(cmd.Args) {
			tx.sortPatterns = true
		}
	}
	tx.raw = append(tx.raw, cmd.Raw...)
	tx.cmds = append(tx.cmds, spec.Name)
	tx.size += len(cmd.Raw) + 16 // and its name's entry
	for _, k := range c.keys {
		tx.size += len(cmd.Args[k])
	}
	c.reply([]byte("+QUEUED\r\n"))
}

// replyNullArray answers EXEC's reply when a watched key changed: a null array (RESP3's null).
func (c *client) replyNullArray() {
	c.replyFunc(func(b []byte) []byte { return resp.AppendNullArray(b, c.r3) })
}

// abortExec answers an EXEC that Redis rejects before running it (wrong arity) as Redis does,
// in MULTI or not: EXECABORT with the reason, and the transaction and watches are discarded.
func (c *client) abortExec(err error) {
	c.tx = nil
	c.unwatch()
	c.replyErr(errorf("EXECABORT Transaction discarded because of: %s", strings.TrimPrefix(err.Error(), "ERR ")))
}

// errWatchLost means the watched slot's routing changed since WATCH.
var errWatchLost = errors.New("router: watched slot rerouted")

// cmdExec runs the queued block on the transaction's slot's group (the target, after moving
// the block's keys, while the slot migrates), or on the session's WATCH connection. A WATCH
// whose slot was rerouted since (frozen, migrating, switched) makes EXEC answer the null
// array, as a watched key that changed would: the block never runs on the wrong group.
func cmdExec(c *client, _ *command.Spec, _ resp.Command) {
	tx := c.tx
	if tx == nil {
		c.replyErr(errExecNoMulti)
		return
	}
	c.tx = nil
	if tx.aborted {
		c.unwatch()
		c.replyErr(errExecAbort)
		return
	}
	if script := tx.script(); script != "" && c.xw && c.snap.multiDC {
		// Refused for a keyed block when its calls are built (txCalls); a block of keyless
		// scripts would otherwise run raw on a group, its writes recorded for no other DC.
		c.unwatch()
		c.replyErr(errorf("ERR redraft: %s cannot run inside MULTI in a cluster with several DCs", script))
		return
	}
	raw := make([]byte, 0, len(rawMulti)+len(tx.raw)+len(rawExec))
	raw = append(append(append(raw, rawMulti...), tx.raw...), rawExec...)
	n := len(tx.cmds) + 2
	if c.watch == nil && c.watchLost {
		// A WATCH failed on its connection, which was closed: the keys watched before it
		// are not watched any more, so EXEC answers as a failed WATCH.
		c.watchLost = false
		c.replyNullArray()
		return
	}
	if c.watch != nil {
		d, sig, lost := c.watch, c.watchSig, c.watchLost || c.watchXDC != c.snap.multiDC
		c.watch, c.watchLost = nil, false
		defer d.Close()
		if tx.slot >= 0 && tx.slot != c.watchSlot && c.watchSlot >= 0 {
			c.replyErr(errCrossSlot)
			return
		}
		if lost { // or the cluster gained or lost a DC: the block would run on the other path
			c.replyNullArray()
			return
		}
		c.drain()
		slot := max(tx.slot, c.watchSlot)
		if c.xw && slot >= 0 {
			var err error
			if raw, n, err = c.watchedRaw(tx, slot, raw, n); err != nil {
				c.replyErr(err)
				return
			}
		}
		e, mark, err := c.enter(slot, func(e *slotEntry) error {
			if e.sig() != sig {
				return errWatchLost
			}
			if err := c.moveTxKeys(e.m, slot, tx); err != nil || !c.xw || !c.snap.multiDC {
				return err
			}
			return c.moveOutbox(e.m, slot)
		})
		if err == nil && e.sig() != sig {
			c.unadmit(mark)
			err = errWatchLost
		}
		if err == errWatchLost {
			c.replyNullArray()
			return
		}
		if err != nil {
			c.replyErr(err)
			return
		}
		reply, err := d.Do(raw, n, c.s.cfg.BackendTimeout, nil)
		if err == nil && c.xw && slot >= 0 {
			reply, err = c.watchedReply(d, e.group(), slot, reply)
		}
		c.unadmit(mark)
		if err != nil {
			c.replyErr(err)
			return
		}
		c.reply(reply)
		return
	}
	if tx.slot < 0 {
		g, err := c.route(-1)
		if err != nil {
			c.replyErr(err)
			return
		}
		if lvl := c.writeLevel(c.snap); lvl != lvlOne && !c.snap.multiDC {
			// A keyless block (scripts without keys) at a level above DC_ONE reaches it, as
			// such a script outside MULTI does (forwardScript); until session 43 it went
			// pipelined, answered without its WAIT.
			c.drain()
			c.replyWrite(c.writeAndReach(g, -1, raw, n, lvl, false, true)) // a null: EXEC aborted
			return
		}
		c.pend = append(c.pend, pendItem{req: c.sendPiped(g, g.pool, raw, n)})
		return
	}
	if c.xw {
		c.execWrite(tx, raw, n)
		return
	}
	e, _, err := c.enter(tx.slot, func(e *slotEntry) error { return c.moveTxKeys(e.m, tx.slot, tx) })
	if err != nil {
		c.replyErr(err)
		return
	}
	c.pend = append(c.pend, pendItem{req: c.sendPiped(e.group(), e.group().pool, raw, n)})
}

// cmdWatch opens (or reuses) a dedicated connection to the group serving the keys' slot and
// watches there (after moving the keys to the target while the slot migrates); EXEC then runs
// on that connection. A later WATCH that finds the slot rerouted marks the watch lost.
func cmdWatch(c *client, spec *command.Spec, cmd resp.Command) {
	c.keys = spec.Keys(cmd.Args, c.keys[:0])
	slot, err := keySlot(cmd.Args, c.keys)
	if err == nil && c.watch != nil && slot != c.watchSlot {
		err = errCrossSlot
	}
	if err != nil {
		c.replyErr(err)
		return
	}
	c.drain()
	e, mark, err := c.enter(slot, func(e *slotEntry) error {
		if c.watch != nil && e.sig() != c.watchSig {
			return errWatchLost
		}
		return c.moveCmdKeys(e.m, slot, spec, cmd.Args, c.keys)
	})
	if err == nil && c.watch != nil && e.sig() != c.watchSig {
		c.unadmit(mark)
		err = errWatchLost
	}
	if err == errWatchLost {
		c.watchLost = true
		c.reply([]byte("+OK\r\n"))
		return
	}
	if err != nil {
		c.replyErr(err)
		return
	}
	defer c.unadmit(mark)
	prior := c.watch != nil // keys watched on it already
	if c.watch == nil {
		// With several DCs EXEC runs a WRITE call here, which appends to the outbox: the
		// internal user's connection (the keys were checked like any request's).
		p := e.group().pool
		if c.snap.multiDC {
			p = e.group().ipool
		}
		d, err := p.DialProto(c.db, c.r3)
		if err != nil {
			c.replyErr(err)
			return
		}
		c.watch, c.watchSlot, c.watchSig, c.watchXDC = d, slot, e.sig(), c.snap.multiDC
	}
	reply, err := c.watch.Do(cmd.Raw, 1, c.s.cfg.BackendTimeout, nil)
	if err != nil {
		// The connection may still get the reply: closed. Keys watched on it before are not
		// watched any more, so EXEC must answer as a failed WATCH (Redis would still watch
		// them), not commit; a first WATCH that failed watched nothing.
		lost := c.watchLost || prior
		c.unwatch()
		c.watchLost = lost
		c.replyErr(err)
		return
	}
	c.reply(reply)
}

func (c *client) unwatch() {
	if c.watch != nil {
		c.watch.Close()
		c.watch = nil
	}
	c.watchLost = false
}
