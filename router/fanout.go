package router

import (
	"hash/fnv"
	"math/rand/v2"
	"strconv"

	"github.com/redraft/redraft/router/backend"
	"github.com/redraft/redraft/router/command"
	"github.com/redraft/redraft/router/resp"
)

// SCAN cursors carry, from the high bits down, a fingerprint of the groups' ids (printBits),
// the group's index in id order (indexBits) and the group's own cursor (cursorBits; Redis's
// cursor is below its table's size, far under 2^40). A group added or removed moves the
// indexes of the groups after it; a cursor whose fingerprint is not the node's groups' starts
// the iteration again from the first group, which returns keys twice (SCAN may) but skips
// none. Read by position alone, such a cursor skipped every group up to its old position's
// new holder, or ended the iteration early (TestScanAcrossAGroupRemoval).
const (
	cursorBits = 40
	cursorMask = 1<<cursorBits - 1
	indexBits  = 12
	indexMask  = 1<<indexBits - 1
	printBits  = 64 - cursorBits - indexBits
	printMask  = 1<<printBits - 1
)

// groupsPrint is the fingerprint of groups' ids, in their order, that SCAN cursors carry.
func groupsPrint(groups []*group) uint64 {
	h := fnv.New64a()
	for _, g := range groups {
		h.Write([]byte(g.id))
		h.Write([]byte{0})
	}
	return h.Sum64() & printMask
}

// scanCursor is the cursor of group gi's own cursor cur under snap's groups.
func scanCursor(snap *snapshot, gi int, cur uint64) uint64 {
	return snap.groupsPrint<<(cursorBits+indexBits) | uint64(gi)<<cursorBits | cur
}

func registerFanout() {
	handle("keys", cmdKeys)
	handle("scan", cmdScan)
	handle("randomkey", cmdRandomKey)
	handle("dbsize", cmdDBSize)
	handle("flushdb", cmdFlush)
	handle("flushall", cmdFlush)
	handle("script|load", cmdScriptLoad)
	handle("script|exists", cmdScriptExists)
	handle("script|flush", cmdScriptFlush)
}

// fanoutReply sends raw to every group and answers with merge over their replies, in group
// order, or with the first error.
func (c *client) fanoutReply(raw []byte, merge func(b []byte, vals []resp.Value) []byte) {
	reqs, vals, err := c.fanout(raw)
	defer c.release(reqs)
	if err != nil {
		c.replyErr(err)
		return
	}
	c.replyFunc(func(b []byte) []byte { return merge(b, vals) })
}

// fanout sends raw to every group, waits for all replies and returns them in group order; a
// failed request or an error reply becomes the returned error. The caller frees the requests.
func (c *client) fanout(raw []byte) ([]*backend.Request, []resp.Value, error) {
	return c.fanoutAs(raw, false)
}

// fanoutAs is fanout, as the internal user when internal is set (flushes the router allowed).
func (c *client) fanoutAs(raw []byte, internal bool) ([]*backend.Request, []resp.Value, error) {
	c.drain()
	snap := c.snap
	if err := snap.down(); err != nil {
		return nil, nil, err
	}
	reqs := make([]*backend.Request, len(snap.groups))
	for i, g := range snap.groups {
		p := g.pool
		if internal {
			p = g.ipool
		}
		reqs[i] = c.sendOn(p, raw, 1)
	}
	c.flushBackends()
	vals := make([]resp.Value, len(reqs))
	var err error
	for i, r := range reqs {
		c.waiter.Wait(r)
		if err != nil {
			continue
		}
		if r.Err != nil {
			err = r.Err
			continue
		}
		v, _, ok := resp.Parse(r.Reply)
		if !ok {
			err = errorf("ERR unexpected reply from group %s", snap.groups[i].id)
			continue
		}
		if v.IsError() {
			err = &replyError{"" + string(v.Str)}
		}
		vals[i] = v
	}
	return reqs, vals, err
}

func (c *client) release(reqs []*backend.Request) { c.free = append(c.free, reqs...) }

func (c *client) allOK(raw []byte) { c.allOKAs(raw, false) }

func (c *client) allOKAs(raw []byte, internal bool) {
	reqs, _, err := c.fanoutAs(raw, internal)
	defer c.release(reqs)
	if err != nil {
		c.replyErr(err)
		return
	}
	c.reply([]byte("+OK\r\n"))
}

func cmdKeys(c *client, _ *command.Spec, cmd resp.Command) {
	c.fanoutReply(cmd.Raw, func(b []byte, vals []resp.Value) []byte {
		n := 0
		for _, v := range vals {
			for _, e := range v.Elems {
				if !c.hidden(e.Str) {
					n++
				}
			}
		}
		b = resp.AppendArray(b, n)
		for _, v := range vals {
			for _, e := range v.Elems {
				if !c.hidden(e.Str) {
					b = append(b, e.Raw...)
				}
			}
		}
		return b
	})
}

// cmdScan scans one group per call; the returned cursor moves to the next group when the
// group's own cursor comes back to 0, so a full iteration visits every group once.
func cmdScan(c *client, _ *command.Spec, cmd resp.Command) {
	cur, err := strconv.ParseUint(string(cmd.Args[1]), 10, 64)
	if err != nil {
		c.replyErr(errorf("ERR invalid cursor"))
		return
	}
	snap := c.snap
	if err := snap.down(); err != nil {
		c.replyErr(err)
		return
	}
	if len(snap.groups) > indexMask+1 {
		c.replyErr(errorf("ERR redraft: SCAN serves at most %d groups", indexMask+1))
		return
	}
	gi := int(cur >> cursorBits & indexMask)
	if cur != 0 && cur>>(cursorBits+indexBits) != snap.groupsPrint {
		gi, cur = 0, 0 // handed out under other groups: from the start again
	}
	// A cursor past the last group (not one redraft handed out) ends the iteration, once
	// its options passed Redis's check: a minimal scan of the first group.
	past := gi >= len(snap.groups)
	if past && len(cmd.Args) == 2 {
		c.reply([]byte("*2\r\n$1\r\n0\r\n*0\r\n"))
		return
	}
	c.drain()
	n := len(cmd.Args)
	if past {
		gi, cur, n = 0, 0, n+2
	}
	raw := resp.AppendArray(nil, n)
	raw = resp.AppendBulk(raw, cmd.Args[0])
	raw = resp.AppendBulkString(raw, strconv.FormatUint(cur&cursorMask, 10))
	for _, a := range cmd.Args[2:] {
		raw = resp.AppendBulk(raw, a)
	}
	if past {
		raw = resp.AppendBulkString(resp.AppendBulkString(raw, "COUNT"), "1")
	}
	r := c.send(snap.groups[gi], raw, 1)
	c.wait(r)
	defer c.release([]*backend.Request{r})
	if r.Err != nil {
		c.replyErr(r.Err)
		return
	}
	v, _, ok := resp.Parse(r.Reply)
	if ok && v.IsError() {
		c.reply(r.Reply)
		return
	}
	if past {
		c.reply([]byte("*2\r\n$1\r\n0\r\n*0\r\n"))
		return
	}
	if !ok || len(v.Elems) != 2 {
		c.replyErr(errorf("ERR unexpected SCAN reply from group %s", snap.groups[gi].id))
		return
	}
	next, err := strconv.ParseUint(string(v.Elems[0].Str), 10, 64)
	if err != nil || next > cursorMask {
		c.replyErr(errorf("ERR group %s returned a SCAN cursor redraft cannot encode", snap.groups[gi].id))
		return
	}
	switch {
	case next != 0:
		next = scanCursor(snap, gi, next)
	case gi+1 < len(snap.groups):
		next = scanCursor(snap, gi+1, 0)
	}
	keys := v.Elems[1].Elems
	c.replyFunc(func(b []byte) []byte {
		b = resp.AppendArray(b, 2)
		b = resp.AppendBulkString(b, strconv.FormatUint(next, 10))
		n := 0
		for _, k := range keys {
			if !c.hidden(k.Str) {
				n++
			}
		}
		b = resp.AppendArray(b, n)
		for _, k := range keys {
			if !c.hidden(k.Str) {
				b = append(b, k.Raw...)
			}
		}
		return b
	})
}

// cmdRandomKey asks groups in random order until one returns a visible key.
func cmdRandomKey(c *client, _ *command.Spec, cmd resp.Command) {
	snap := c.snap
	if err := snap.down(); err != nil {
		c.replyErr(err)
		return
	}
	c.drain()
	for _, i := range rand.Perm(len(snap.groups)) {
		for try := 0; try < 8; try++ {
			r := c.send(snap.groups[i], cmd.Raw, 1)
			c.wait(r)
			reply, err := append([]byte(nil), r.Reply...), r.Err
			c.release([]*backend.Request{r})
			if err != nil {
				c.replyErr(err)
				return
			}
			v, _, ok := resp.Parse(reply)
			if !ok || v.IsError() {
				c.reply(reply)
				return
			}
			if v.IsNull() {
				break
			}
			if !isReserved(v.Str) {
				c.reply(reply)
				return
			}
			if try == 7 {
				// Only redraft's own keys came up (a small keyspace beside per-slot
				// metadata): look for a visible key by SCAN rather than answer "empty".
				k, err := c.visibleKey(snap.groups[i])
				if err != nil {
					c.replyErr(err)
					return
				}
				if k != nil {
					c.replyFunc(func(b []byte) []byte { return resp.AppendBulk(b, k) })
					return
				}
			}
		}
	}
	c.replyFunc(func(b []byte) []byte { return resp.AppendNullBulk(b, c.r3) })
}

// visibleKey returns a key of g's current database that is not one of redraft's own, found
// by SCAN, or nil when there is none.
func (c *client) visibleKey(g *group) ([]byte, error) {
	cursor := "0"
	for {
		reply, err := c.roundTripDB(g, c.db, appendCommand(nil, []string{"SCAN", cursor, "COUNT", "1000"}))
		if err != nil {
			return nil, err
		}
		v, _, ok := resp.Parse(reply)
		if !ok || v.Type != '*' || len(v.Elems) != 2 {
			return nil, errorf("ERR unexpected SCAN reply from group %s: %s", g.id, printable(reply))
		}
		for _, k := range v.Elems[1].Elems {
			if !isReserved(k.Str) {
				return append([]byte(nil), k.Str...), nil
			}
		}
		if cursor = string(v.Elems[0].Str); cursor == "0" {
			return nil, nil
		}
	}
}

func cmdScriptLoad(c *client, _ *command.Spec, cmd resp.Command) {
	c.fanoutReply(cmd.Raw, func(b []byte, vals []resp.Value) []byte { return append(b, vals[0].Raw...) })
}

// cmdScriptExists answers 1 for a script only when every group has it.
func cmdScriptExists(c *client, _ *command.Spec, cmd resp.Command) {
	n := len(cmd.Args) - 2
	c.fanoutReply(cmd.Raw, func(b []byte, vals []resp.Value) []byte {
		b = resp.AppendArray(b, n)
		for i := 0; i < n; i++ {
			all := int64(1)
			for _, v := range vals {
				if i >= len(v.Elems) || v.Elems[i].Int != 1 {
					all = 0
				}
			}
			b = resp.AppendInt(b, all)
		}
		return b
	})
}

// cmdScriptFlush flushes every group's script cache. redraft's own replication functions
// are a function library (xdc.Library), which SCRIPT FLUSH leaves alone.
func cmdScriptFlush(c *client, _ *command.Spec, cmd resp.Command) {
	reqs, _, err := c.fanout(cmd.Raw)
	c.release(reqs)
	if err != nil {
		c.replyErr(err)
		return
	}
	c.reply([]byte("+OK\r\n"))
}
