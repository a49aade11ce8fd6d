package router

import (
	"slices"

	"github.com/redraft/redraft/router/backend"
	"github.com/redraft/redraft/router/command"
	"github.com/redraft/redraft/router/resp"
	"github.com/redraft/redraft/router/xdc"
)

type splitKind uint8

const (
	splitMGet splitKind = iota
	splitMSet
	splitCount // DEL, UNLINK, EXISTS, TOUCH: integer replies summed
)

// splitOp is a multi-key command divided by group; replies are merged in key order.
type splitOp struct {
	kind   splitKind
	subs   []*backend.Request
	keySub []int32 // MGET: the sub-request of each key, in order
	pos    []int   // MGET: read position in each sub-reply
	xs     []int32 // WRITE calls: each sub-request's index in client.xpend
}

// split divides MGET, MSET, DEL, UNLINK, EXISTS and TOUCH by group. Keys of one group keep
// their relative order in that group's sub-command; when all keys fall in one group the
// request is forwarded whole. Keys of migrating slots are moved off the source first and go
// to the target's sub-command, unless the source can answer the whole MGET (mgetSource).
func (c *client) split(spec *command.Spec, cmd resp.Command) {
	args := cmd.Args
	step := 1
	kind := splitCount
	switch spec.Name {
	case "mget":
		kind = splitMGet
	case "mset":
		kind, step = splitMSet, 2
		if (len(args)-1)%2 != 0 {
			c.replyErr(errWrongArgs(spec.Name))
			return
		}
	}
	// Each key's slot, counted in flight before the routing is read.
	sl := c.slotScratch[:0]
	for i := 1; i < len(args); i += step {
		if isReserved(args[i]) {
			c.replyErr(errReserved)
			return
		}
		sl = append(sl, uint16(command.Slot(args[i])))
	}
	c.slotScratch = sl
	xw := c.xw && spec.Write
	if xw && c.writeLevel(c.snap) != lvlOne {
		c.drain() // served synchronously
	}
	var snap *snapshot
	var mark int
	for {
		var err error
		if snap, mark, err = c.admit(sl); err != nil {
			c.replyErr(err)
			return
		}
		if kind == splitMGet && snap.migrating > 0 && c.mgetSource(snap, sl, cmd.Raw, args) {
			return // answered by a migration's source (sourceread.go)
		}
		err = c.moveSplitKeys(snap, sl, args, step, xw && c.snap.multiDC)
		if err == nil && xw && c.snap.multiDC {
			err = c.moveOutboxes(snap, sl)
		}
		if err == nil {
			break
		}
		c.unadmit(mark)
		if err != errStale {
			c.replyErr(err)
			return
		}
	}
	if xw {
		c.splitWrite(spec, cmd, kind, step, snap, sl, mark)
		return
	}
	// Find each key's group; keys holds group indexes.
	gidx := c.keys[:0]
	var first *group
	multi := false
	for _, s := range sl {
		g := snap.slots[s].group()
		if first == nil {
			first = g
		} else if g != first {
			multi = true
		}
		gidx = append(gidx, g.idx)
	}
	c.keys = gidx
	if !multi {
		c.forwardTo(first, cmd.Raw)
		return
	}
	op := c.newSplit(kind)
	// One sub-command per group, in order of first appearance; subOf maps group index to sub.
	subOf := c.subOf[:0]
	for range snap.groups {
		subOf = append(subOf, -1)
	}
	counts, groups := c.subCounts[:0], c.subGroups[:0]
	defer func() { c.subOf, c.subCounts, c.subGroups = subOf, counts, groups[:0] }()
	for _, gi := range gidx {
		if subOf[gi] < 0 {
			subOf[gi] = int32(len(counts))
			counts = append(counts, 0)
			groups = append(groups, snap.groups[gi])
		}
		counts[subOf[gi]]++
		if kind == splitMGet {
			op.keySub = append(op.keySub, subOf[gi])
		}
	}
	for si, g := range groups {
		buf := resp.AppendArray(c.scratch[:0], 1+counts[si]*step)
		buf = resp.AppendBulk(buf, args[0])
		for k, gi := range gidx {
			if subOf[gi] != int32(si) {
				continue
			}
			a := 1 + k*step
			buf = resp.AppendBulk(buf, args[a])
			if step == 2 {
				buf = resp.AppendBulk(buf, args[a+1])
			}
		}
		op.subs = append(op.subs, c.sendPiped(g, g.pool, buf, 1)) // Submit copies buf
		c.scratch = buf
	}
	c.pend = append(c.pend, pendItem{split: op})
}

// moveSplitKeys checks that every key's slot is served and moves the keys of migrating slots
// off their sources (per migration, in the session's database), with their element hashes
// when elems (a write through WRITE: it reads and records them as any write does, so they
// must be where it runs, not left on the source to replace the target's later).
func (c *client) moveSplitKeys(snap *snapshot, sl []uint16, args [][]byte, step int, elems bool) error {
	var moving []*migEntry
	for _, s := range sl {
		e := &snap.slots[s]
		if e.group() == nil {
			return errSlotDown
		}
		if e.state() == migMigrating && !slices.Contains(moving, e.m) {
			moving = append(moving, e.m)
		}
	}
	for _, m := range moving {
		kb := c.kb[:0]
		first := -1
		for i, s := range sl {
			if snap.slots[s].m == m {
				kb = append(kb, args[1+i*step])
				if elems {
					kb = append(kb, []byte(xdc.ElemKey(int(s), string(args[1+i*step]))))
				}
				if first < 0 {
					first = int(s)
				}
			}
		}
		err := c.moveKeys(m, first, c.db, kb)
		c.kb = kb[:0]
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *client) newSplit(kind splitKind) *splitOp {
	var op *splitOp
	if k := len(c.splits); k > 0 {
		op = c.splits[k-1]
		c.splits = c.splits[:k-1]
	} else {
		op = &splitOp{}
	}
	op.kind = kind
	op.subs, op.keySub, op.pos, op.xs = op.subs[:0], op.keySub[:0], op.pos[:0], op.xs[:0]
	return op
}

// mergeSplit waits for every sub-request and appends the merged reply to c.out: the first
// error if any sub-request failed, else the combined reply.
func (c *client) mergeSplit(op *splitOp) {
	for _, r := range op.subs {
		c.waiter.Wait(r)
	}
	defer func() {
		c.free = append(c.free, op.subs...)
		c.splits = append(c.splits, op)
	}()
	for _, r := range op.subs {
		if r.Err != nil {
			c.out = appendError(c.out, r.Err)
			c.nerr++
			return
		}
		if len(r.Reply) > 0 && r.Reply[0] == '-' {
			c.out = append(c.out, r.Reply...)
			c.nerr++
			return
		}
	}
	switch op.kind {
	case splitMSet:
		c.out = resp.AppendOK(c.out)
	case splitCount:
		var sum int64
		for _, r := range op.subs {
			v, _, ok := resp.Parse(r.Reply)
			if !ok || v.Type != ':' {
				c.out = resp.AppendError(c.out, "ERR unexpected reply from backend")
				c.nerr++
				return
			}
			sum += v.Int
		}
		c.out = resp.AppendInt(c.out, sum)
	case splitMGet:
		for _, r := range op.subs {
			n := skipHeader(r.Reply)
			if n < 0 {
				c.out = resp.AppendError(c.out, "ERR unexpected reply from backend")
				c.nerr++
				return
			}
			op.pos = append(op.pos, n)
		}
		c.out = resp.AppendArray(c.out, len(op.keySub))
		for _, si := range op.keySub {
			r := op.subs[si]
			p := op.pos[si]
			n := resp.Skip(r.Reply[p:])
			if n < 0 {
				n = len(r.Reply) - p
			}
			c.out = append(c.out, r.Reply[p:p+n]...)
			op.pos[si] = p + n
		}
	}
}

// skipHeader returns the length of an array reply's header line, or -1 if b is not an array.
func skipHeader(b []byte) int {
	if len(b) == 0 || b[0] != '*' {
		return -1
	}
	for i := 1; i < len(b); i++ {
		if b[i] == '\n' {
			return i + 1
		}
	}
	return -1
}
