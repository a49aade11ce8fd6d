package router

import (
	"github.com/redraft/redraft/router/backend"
	"github.com/redraft/redraft/router/command"
	"github.com/redraft/redraft/router/resp"
	"github.com/redraft/redraft/router/xdc"
)

// MULTI/EXEC on the write path: with several DCs the queued block runs as one WRITE "unit"
// call, recorded as one outbox entry, whose reply is EXEC's array; with one DC it runs as
// MULTI ... EXEC, then the session's level is reached.

// txCalls turns a queued block (RESP requests) into WRITE calls: writes as Prepare makes
// them, reads with plan "n" (run, record nothing), blocking writes as their non-blocking form
// (inside MULTI Redis does not block either). blocking names, per call, the blocking write it
// stands for ("" for the others; nil when there is none), for unitReply.
func txCalls(tx *txState, snap *snapshot) (calls []xdc.Call, blocking []string, err error) {
	if len(tx.other) > 0 && !snap.outboxMax.plain {
		return nil, nil, errOtherDBXDC
	}
	calls = make([]xdc.Call, 0, len(tx.cmds))
	rest := tx.raw
	for len(rest) > 0 {
		v, r, ok := resp.Parse(rest)
		if !ok || v.Type != '*' || len(v.Elems) == 0 {
			return nil, nil, errorf("ERR redraft: cannot read the queued transaction")
		}
		rest = r
		args := make([][]byte, len(v.Elems))
		for i, e := range v.Elems {
			args[i] = e.Str
		}
		spec := command.Lookup(args)
		if spec == nil {
			return nil, nil, errUnknown(args[0], args[1:])
		}
		if spec.Kind == command.Script {
			return nil, nil, errorf("ERR redraft: %s cannot run inside MULTI in a cluster with several DCs", spec.Name)
		}
		argv := argStrings(args)
		if xdc.Rules[spec.Name].Rule == xdc.Blocking {
			if blocking == nil {
				blocking = make([]string, len(tx.cmds))
			}
			blocking[len(calls)] = spec.Name
			argv = nonBlocking(spec.Name, args)
		}
		call, isWrite, err := prepare(spec.Name, argv)
		if err != nil {
			return nil, nil, err
		}
		if !isWrite {
			call = xdc.Call{Plan: "n", Args: argv}
			for _, k := range spec.Keys(args, nil) {
				call.Keys = append(call.Keys, argv[k])
			}
		}
		calls = append(calls, call)
	}
	return calls, blocking, nil
}

// unitReply gives the replies of the blocking writes of a unit (see txCalls) the blocking
// commands' shape: BLPOP's [key, value] for LMPOP's [key, [value]], and so on. Their null
// replies are already Redis's inside MULTI (BLMOVE's null bulk, the others' null array).
func unitReply(reply []byte, blocking []string) []byte {
	if blocking == nil {
		return reply
	}
	v, _, ok := resp.Parse(reply)
	if !ok || v.Type != '*' || len(v.Elems) != len(blocking) {
		return reply
	}
	b := resp.AppendArray(nil, len(blocking))
	for i, e := range v.Elems {
		if blocking[i] == "" || isNull(e.Raw) || e.IsError() {
			b = append(b, e.Raw...)
		} else {
			b = append(b, blockingReply(blocking[i], e.Raw)...)
		}
	}
	return b
}

// execWrite runs the queued block tx (keyed, not watched) on the write path; raw and n are
// its MULTI ... EXEC form.
func (c *client) execWrite(tx *txState, raw []byte, n int) {
	snap := c.snap
	var calls []xdc.Call
	var blocking []string
	if snap.multiDC {
		var err error
		if calls, blocking, err = txCalls(tx, snap); err != nil {
			c.replyErr(err)
			return
		}
	}
	move := func(e *slotEntry) error {
		if err := c.moveTxKeys(e.m, tx.slot, tx); err != nil || !snap.multiDC {
			return err
		}
		return c.moveOutbox(e.m, tx.slot)
	}
	lvl := c.writeLevel(snap)
	if lvl == lvlOne {
		e, _, err := c.enter(tx.slot, move)
		if err != nil {
			c.replyErr(err)
			return
		}
		r := c.sendWrite(e.group(), tx.slot, true, calls)
		c.xpend[len(c.xpend)-1].blocking = blocking
		c.pend = append(c.pend, pendItem{req: r, x: int32(len(c.xpend))})
		return
	}
	c.drain()
	if snap.multiDC {
		raw = appendWriteCall(c.xsync[:0], tx.slot, c.s.cfg.DC, snap.outboxMax, true, calls)
		c.xsync = raw[:0]
		n = 1
	}
	reply, err := c.syncWrite(syncReq{slot: tx.slot, move: move, raw: raw, n: n, lvl: lvl, wrapped: snap.multiDC,
		nullNoop: true}) // a null: EXEC aborted (a watched key changed)
	reply = unitReply(reply, blocking)
	if snap.multiDC && c.r3 && err == nil {
		reply = reshape3(reply, calls, true, blocking)
	}
	c.replyWrite(reply, err)
}

// watchedRaw returns what EXEC sends on the WATCH connection: with several DCs MULTI, the
// block as one WRITE unit, EXEC (3 replies), so that a changed watched key still aborts it.
func (c *client) watchedRaw(tx *txState, slot int, raw []byte, n int) ([]byte, int, error) {
	if !c.snap.multiDC {
		return raw, n, nil
	}
	calls, blocking, err := txCalls(tx, c.snap)
	if err != nil {
		return nil, 0, err
	}
	// Set anew for every EXEC: an EXEC that ended before watchedReply (a route change, a
	// backend error) left its RESP3 calls, and a later RESP2 EXEC reshaped its reply to RESP3.
	c.txBlocking, c.txCalls = blocking, nil
	if c.r3 {
		c.txCalls = calls
	}
	b := append([]byte(nil), rawMulti...)
	b = appendWriteCall(b, slot, c.s.cfg.DC, c.snap.outboxMax, true, calls)
	return append(b, rawExec...), 3, nil
}

// watchedReply unwraps EXEC's reply on the WATCH connection d to g (with several DCs, the
// one-element array around the unit's array; the null array of a failed watch stays null),
// then reaches the session's level on d.
func (c *client) watchedReply(d *backend.Dedicated, g *group, slot int, reply []byte) ([]byte, error) {
	if c.snap.multiDC {
		// Tell the shipper the slot's log has a new entry, as every other WRITE call does
		// (checkWrite): without it the entry waited for the next write's hint or the feed.
		if f := c.s.cfg.Wrote; f != nil {
			defer f(c.db, slot)
		}
		if v, _, ok := resp.Parse(reply); ok && v.Type == '*' && len(v.Elems) == 1 {
			reply = unitReply(xdc.FixReply(c.s.checkLibrary(g, v.Elems[0].Raw)), c.txBlocking)
			if c.txCalls != nil {
				reply = reshape3(reply, c.txCalls, true, c.txBlocking)
			}
		}
		c.txBlocking, c.txCalls = nil, nil
	}
	if len(reply) == 0 || reply[0] == '-' || isNull(reply) {
		return reply, nil
	}
	return reply, c.reachLevel(g, d, slot, c.writeLevel(c.snap))
}
