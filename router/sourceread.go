package router

import (
	"bytes"

	"github.com/redraft/redraft/router/command"
	"github.com/redraft/redraft/router/resp"
)

// Reads of a migrating slot from the source (router/DESIGN.md, "Reads on the source"). As
// Redis Cluster's ASK does, a read-only command whose keys are all still on the migration's
// source is answered there, without moving them: one round trip, no script. Only when a key
// is not there (moved already, or never was) does the read take the usual path, MoveKeys and
// then the target. It is sound because nobody writes the source during a migration run and a
// key never returns to it: while the source holds a key, the source's value is the latest one
// any client was told about (migrate/DESIGN.md, the invariant).

// sourceReadable reports whether spec may be served by a migration's source: a forwarded
// command without the write flag. Scripts are left out (a script may read keys it does not
// declare, which the source may no longer hold), and so is SORT (its BY and GET patterns name
// keys too).
func sourceReadable(spec *command.Spec) bool {
	return spec.Kind == command.Forward && !spec.Write && spec.Name != "sort" && spec.Name != "sort_ro"
}

// readSource tries to answer a read-only command on a slot that m migrates from m's source;
// keyPos are the positions of its keys in args (one slot, the session's database). It reports
// whether the reply is queued. When it is not, the caller serves the command as any other:
// keys found missing on the source are recorded in the migration's moved-keys cache first (they
// cannot come back), so that path does not ask the source again.
//
// A lone GET goes as it is: its nil reply means the key is missing (a key of another type
// answers WRONGTYPE). Any other command goes in a MULTI block after EXISTS of its keys, so the
// source says in one atomic step whether every key was there when the command ran.
func (c *client) readSource(m *migEntry, spec *command.Spec, raw []byte, args [][]byte, keyPos []int) bool {
	r := m.ref
	if r == nil || m.keep || len(keyPos) == 0 {
		return false
	}
	keys := c.kb[:0]
	defer func() { c.kb = keys[:0] }()
	for _, p := range keyPos {
		k := args[p]
		if r.moved.has(c.db, k) {
			return false // known off the source: the target serves it
		}
		if r.mv.KnownOff(c.db, string(k)) {
			r.moved.add(c.db, string(k)) // so the usual path skips MoveKeys too
			return false
		}
		if !containsKey(keys, k) {
			keys = append(keys, k)
		}
	}
	lone := len(keys) == 1 && len(keyPos) == 1 && spec.Name == "get"
	req := raw
	n := 1
	if !lone {
		req = resp.AppendArray(c.scratch[:0], 1)
		req = resp.AppendBulkString(req, "MULTI")
		req = resp.AppendArray(req, 1+len(keys))
		req = resp.AppendBulkString(req, "EXISTS")
		for _, k := range keys {
			req = resp.AppendBulk(req, k)
		}
		req = append(req, raw...)
		req = resp.AppendArray(req, 1)
		req = resp.AppendBulkString(req, "EXEC")
		c.scratch = req
		n = 4
	}
	q := c.sendPiped(m.src, m.src.pool, req, n)
	c.wait(q)
	defer func() { c.free = append(c.free, q) }()
	if q.Err != nil {
		return false // the usual path reports the source's trouble
	}
	reply := q.Reply
	if lone {
		if isNil(reply) {
			r.moved.add(c.db, string(keys[0]))
			return false
		}
	} else {
		var ok bool
		var there int64
		if reply, there, ok = execExists(reply); !ok {
			return false
		}
		if there != int64(len(keys)) {
			if there == 0 {
				for _, k := range keys {
					r.moved.add(c.db, string(k))
				}
			}
			return false
		}
	}
	c.s.sourceReads.Add(1)
	c.reply(reply)
	return true
}

// execExists splits the reply of MULTI, EXISTS, command, EXEC: the count EXISTS answered and
// the command's reply. ok is false for anything else (EXEC refused the block, for one).
func execExists(b []byte) (rest []byte, there int64, ok bool) {
	h := skipHeader(b)
	if h < 0 || !bytes.HasPrefix(b, []byte("*2\r")) {
		return nil, 0, false
	}
	v, rest, ok := resp.Parse(b[h:])
	if !ok || v.Type != ':' || len(rest) == 0 {
		return nil, 0, false
	}
	return rest, v.Int, true
}

// isNil reports whether a reply is RESP2's nil bulk string or RESP3's null.
func isNil(b []byte) bool {
	return bytes.HasPrefix(b, []byte("$-1\r")) || bytes.HasPrefix(b, []byte("_\r"))
}

func containsKey(keys [][]byte, k []byte) bool {
	for _, x := range keys {
		if bytes.Equal(x, k) {
			return true
		}
	}
	return false
}
