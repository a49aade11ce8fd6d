package router

import (
	"strconv"
	"strings"

	"github.com/redraft/redraft/router/command"
	"github.com/redraft/redraft/router/resp"
	"github.com/redraft/redraft/router/xdc"
)

// User scripts in a cluster with several DCs (router/DESIGN.md, "Cross-DC write path"). A
// script cannot run inside WRITE (a script calling a script is refused), so it runs in
// MULTI next to WRITE's record of the state of the keys it declares. The block runs on the
// internal user's connection and switches users inside it, so the script runs as the client
// user and only the record as the internal one: MULTI; AUTH client; EVAL...; AUTH internal;
// FCALL WRITE ... rec ...; EXEC (Redis checks each queued command's ACL again at EXEC, as the
// user of that moment).

// scriptWrites reports whether a script command may write (the _RO variants cannot).
func scriptWrites(name string) bool { return name == "eval" || name == "evalsha" || name == "fcall" }

// forwardScript serves EVAL, EVALSHA and FCALL on the write path. With several DCs the call
// is recorded in the slot's outbox in the same MULTI as it runs (EVALSHA as EVAL when this
// node knows the body), and keyless scripts are refused. With one DC it runs raw, then the
// session's level is reached.
func (c *client) forwardScript(spec *command.Spec, cmd resp.Command, slot int) {
	snap := c.snap
	lvl := c.writeLevel(snap)
	if !snap.multiDC {
		c.drain()
		if slot < 0 {
			g, err := c.route(-1)
			if err != nil {
				c.replyErr(err)
				return
			}
			c.replyWrite(c.writeAndReach(g, -1, cmd.Raw, 1, lvl, false, false))
			return
		}
		move := func(e *slotEntry) error { return c.moveCmdKeys(e.m, slot, spec, cmd.Args, c.keys) }
		c.replyWrite(c.syncWrite(syncReq{slot: slot, move: move, raw: cmd.Raw, n: 1, lvl: lvl}))
		return
	}
	if slot < 0 {
		c.replyErr(errorf("ERR redraft: %s without keys cannot be replicated to the other DCs: pass the keys the script writes", strings.ToUpper(spec.Name)))
		return
	}
	argv := argStrings(cmd.Args)
	// The script and its record, kept apart: the block is put together for the group that
	// serves the write (rawFor), whose users' passwords are its own.
	parts := append(c.xsync[:0], cmd.Raw...)
	split := len(parts)
	parts = c.appendRecord(parts, slot, scriptRecord(argv, c.keys))
	n := 6 // MULTI, AUTH, the script, AUTH, the record, EXEC
	parts = append(parts, rawExec...)
	c.xsync = parts[:0]
	rawFor := func(g *group) []byte {
		raw := make([]byte, 0, len(rawMulti)+len(g.authClient)+len(parts)+len(g.authInternal))
		raw = append(raw, rawMulti...)
		raw = append(raw, g.authClient...)
		raw = append(raw, parts[:split]...)
		raw = append(raw, g.authInternal...)
		return append(raw, parts[split:]...)
	}
	c.drain()
	move := func(e *slotEntry) error {
		if err := c.moveCmdKeys(e.m, slot, spec, cmd.Args, c.keys); err != nil {
			return err
		}
		return c.moveOutbox(e.m, slot)
	}
	var served *group
	reply, err := c.syncWrite(syncReq{slot: slot, move: move, rawFor: rawFor, n: n, lvl: lvl, internal: true,
		pre: func(g *group) ([]byte, error) { served = g; return c.copyLocked(g, slot) }})
	if err != nil {
		c.replyErr(err)
		return
	}
	c.reply(c.scriptReply(reply, served))
}

// appendRecord appends to b the commands that record, for the other DCs, a write that runs
// just before them in the same MULTI on slot (one reply): WRITE in its "rec" form (no
// copy-lock check: the write already ran) of call, a read that names the keys whose state is
// recorded. Also with the setting convergence off: the script call itself was recorded then,
// and the other DCs' APPLY could not run it (a script cannot call EVAL or FCALL), so such
// scripts never reached them.
func (c *client) appendRecord(b []byte, slot int, call xdc.Call) []byte {
	w := c.snap.outboxMax
	w.record, w.plain = true, false
	return appendWriteCall(b, slot, c.s.cfg.DC, w, true, []xdc.Call{call})
}

// recordFailed returns the error to answer when one of recs, the replies of appendRecord's
// commands on g, is an error: what ran, but is not recorded for the other DCs. Nil otherwise.
// A missing WRITE function (FUNCTION FLUSH on the backend) loads it on g for the next write.
func (c *client) recordFailed(what string, g *group, recs []resp.Value) []byte {
	for _, x := range recs {
		if x.IsError() {
			if g != nil && xdc.FuncMissingReply(x.Raw) {
				c.s.reloadLibrary(g.ipool)
			}
			return appendError(nil, errorf("ERR redraft: %s ran but recording it for the other DCs failed: %s", what, printable(x.Str)))
		}
	}
	return nil
}

// copyLocked is the racy pre-check of a user script's write: while the slot's copy lock is
// set (a full copy of the slot to another DC) it answers -TRYAGAIN, as WRITE would. It is a
// separate round trip before the MULTI, so a lock set in between is not seen: that one script
// runs while the copy reads the slot, the race the lock exists to prevent.
func (c *client) copyLocked(g *group, slot int) ([]byte, error) {
	raw := appendCommand(nil, []string{"EXISTS", xdc.CopyLockKey(slot)})
	reply, err := c.roundTripOn(g.ipool, raw, 1)
	if err != nil {
		return nil, err
	}
	if string(reply) == ":1\r\n" {
		return []byte("-TRYAGAIN redraft: the slot is being copied to another DC, retry shortly\r\n"), nil
	}
	return nil, nil
}

// scriptRecord is the WRITE call that records a user script's effect with several DCs: the
// state of every key the script declares (argv[keyPos]), as a command that changes several
// keys does (docs/convergence.md); EXISTS is what it runs, a read.
func scriptRecord(argv []string, keyPos []int) xdc.Call {
	call := xdc.Call{Args: []string{"EXISTS"}}
	plan := []byte("v/a")
	for i, p := range keyPos {
		call.Args = append(call.Args, argv[p])
		call.Keys = append(call.Keys, argv[p])
		if i > 0 {
			plan = append(plan, ',')
		}
		plan = strconv.AppendInt(plan, int64(i+2), 10)
	}
	call.Plan = string(plan)
	return call
}

// scriptReply extracts the script's reply (run on g) from EXEC's [AUTH client, script reply, AUTH
// internal, record replies...] (WRITE's, or the outbox's and change feed's XADD). A failed switch to the client user means the script may have run as
// the internal user: that is answered as an error (and the backend's users need fixing). An
// XADD that failed (the script ran, but is not recorded) answers an error that says so.
func (c *client) scriptReply(reply []byte, g *group) []byte {
	v, _, ok := resp.Parse(reply)
	if !ok || v.Type != '*' || len(v.Elems) < 4 {
		return reply // an error, or -TRYAGAIN from the pre-check
	}
	if a := v.Elems[0]; a.IsError() {
		return appendError(nil, errorf("ERR redraft: switching to the backend's client user failed (%s): the script ran unrestricted; check redraft's ACL users on the backend", printable(a.Str)))
	}
	if a := v.Elems[2]; a.IsError() {
		return appendError(nil, errorf("ERR redraft: switching back to the backend's internal user failed (%s): the script ran but is not recorded for the other DCs", printable(a.Str)))
	}
	if failed := c.recordFailed("the script", g, v.Elems[3:]); failed != nil {
		return failed
	}
	return v.Elems[1].Raw
}
