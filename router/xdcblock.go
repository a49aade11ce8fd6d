package router

import (
	"strconv"
	"time"

	"github.com/redraft/redraft/router/command"
	"github.com/redraft/redraft/router/resp"
	"github.com/redraft/redraft/router/xdc"
)

// Blocking writes in a cluster with several DCs. A script cannot block, so BLPOP and its kin
// are served by polling their non-blocking form through WRITE, which records what was popped:
// once at once, then with backoff from 10 ms doubling to 100 ms, until the client's timeout.

// nonBlocking returns the non-blocking form of a blocking write (args[0] is its name) whose
// reply has, or is reshaped by blockingReply into, the blocking command's shape.
func nonBlocking(name string, args [][]byte) []string {
	a := argStrings(args)
	switch name {
	case "blpop", "brpop", "bzpopmin", "bzpopmax":
		keys := a[1 : len(a)-1]
		out := make([]string, 0, len(keys)+3)
		op, end := "LMPOP", "LEFT"
		switch name {
		case "brpop":
			end = "RIGHT"
		case "bzpopmin":
			op, end = "ZMPOP", "MIN"
		case "bzpopmax":
			op, end = "ZMPOP", "MAX"
		}
		out = append(out, op, strconv.Itoa(len(keys)))
		out = append(out, keys...)
		return append(out, end)
	case "blmove":
		return append([]string{"LMOVE"}, a[1:5]...)
	case "brpoplpush":
		return []string{"RPOPLPUSH", a[1], a[2]}
	case "blmpop":
		return append([]string{"LMPOP"}, a[2:]...)
	case "bzmpop":
		return append([]string{"ZMPOP"}, a[2:]...)
	}
	return a // XREADGROUP: Prepare drops its BLOCK
}

// blockingReply reshapes a non-empty reply of the non-blocking form into the blocking
// command's: LMPOP's [key, [value]] is BLPOP's [key, value]; ZMPOP's [key, [[member, score]]]
// is BZPOPMIN's [key, member, score].
func blockingReply(name string, reply []byte) []byte {
	switch name {
	case "blpop", "brpop", "bzpopmin", "bzpopmax":
	default:
		return reply
	}
	v, _, ok := resp.Parse(reply)
	if !ok || v.Type != '*' || len(v.Elems) != 2 || len(v.Elems[1].Elems) != 1 {
		return reply
	}
	key, el := v.Elems[0], v.Elems[1].Elems[0]
	if name == "blpop" || name == "brpop" {
		b := resp.AppendArray(nil, 2)
		return append(append(b, key.Raw...), el.Raw...)
	}
	if len(el.Elems) != 2 {
		return reply
	}
	b := resp.AppendArray(nil, 3)
	return append(append(append(b, key.Raw...), el.Elems[0].Raw...), el.Elems[1].Raw...)
}

// pollBlocking serves a blocking write with several DCs: its non-blocking form through WRITE,
// first at once, then with backoff, until it pops something or the timeout d (0: none)
// passes, which answers the null array as the blocking command does. Each poll is admitted
// like a request, so migrations hold and move it as any write. The client leaving ends it.
// slot is the keys' slot (the caller found keys; a keyless request is Redis's to refuse).
func (c *client) pollBlocking(spec *command.Spec, cmd resp.Command, slot int, d time.Duration) {
	call, ok, err := prepare(spec.Name, nonBlocking(spec.Name, cmd.Args))
	if err == nil && !ok {
		err = errorf("ERR redraft: %s is not recorded as a write", spec.Name)
	}
	if err != nil {
		c.replyErr(err)
		return
	}
	// Nothing below reads cmd: the watcher may move the reader's buffer. A poll moves what a
	// write's WRITE touches, as any write does (moveOutbox): the keys with their element
	// hashes, the outbox, the metadata hash and the copy lock; WRITE run on a target without
	// them would stamp the pop against empty metadata, which the source's, moved later,
	// replaces.
	kb := make([][]byte, len(call.Keys))
	for i, k := range call.Keys {
		kb[i] = []byte(k)
	}
	kb = slotWriteKeys(c.withElemKeys(slot, kb), slot)
	db, lvl := c.db, c.writeLevel(c.snap)
	sr := syncReq{slot: slot, n: 1, lvl: lvl, wrapped: true, nullNoop: true, // a poll that popped nothing
		raw:  appendWriteCall(nil, slot, c.s.cfg.DC, c.snap.outboxMax, false, []xdc.Call{call}),
		move: func(e *slotEntry) error { return c.moveKeys(e.m, slot, db, kb) }}
	var deadline time.Time
	if d > 0 {
		deadline = time.Now().Add(d)
	}
	gone := make(chan struct{})
	var reply []byte
	c.watchClient(func() { close(gone) }, func() {
		backoff := retryMin
		for {
			c.frozenWaited = 0 // each poll waits for frozen slots as a request of its own
			if reply, err = c.syncWrite(sr); err != nil || !isNull(reply) {
				return
			}
			reply = nil
			wait := backoff
			if !deadline.IsZero() {
				left := time.Until(deadline)
				if left <= 0 {
					return
				}
				wait = min(wait, left)
			}
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-gone:
				t.Stop()
				return
			case <-c.s.ctx.Done():
				t.Stop()
				err = errClosing
				return
			}
			backoff = min(2*backoff, retryMax)
		}
	})
	shaped := func() []byte {
		if c.r3 {
			return reshape3(blockingReply(spec.Name, reply), []xdc.Call{{Args: []string{spec.Name}}}, false, nil)
		}
		return blockingReply(spec.Name, reply)
	}
	switch {
	case c.quit:
	case err != nil:
		if reply == nil || isNull(reply) || !c.handOver(shaped(), err) {
			c.replyErr(err)
		}
	case reply == nil:
		c.replyFunc(func(b []byte) []byte { return resp.AppendNullArray(b, c.r3) })
	default:
		c.reply(shaped())
	}
}
