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
// whether the reply is queued. When it is not, the caller serves the command as any other,
// MoveKeys first. A key found missing here is not recorded as moved: it may have expired while
// a batch copy that dumped it before is still in flight, whose lock only MoveKeys sees; taken
// for moved, a write of the key would reach the target before that batch's restore, which
// removes it there (an expiry in the past).
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
		if r.knownOff(c.db, k) {
			return false // the target serves it
		}
		if !containsKey(keys, k) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 1 && len(keyPos) == 1 && spec.Name == "get" {
		q := c.sendPiped(m.src, m.src.pool, raw, 1)
		c.wait(q)
		defer func() { c.free = append(c.free, q) }()
		if q.Err != nil {
			return false // the usual path reports the source's trouble
		}
		if isNil(q.Reply) {
			return false
		}
		c.s.sourceReads.Add(1)
		c.reply(q.Reply)
		return true
	}
	return c.askSource(m.src, keys, raw)
}

// askSource sends raw to g in a MULTI block after EXISTS of keys (distinct, all of g) and, when
// EXISTS counted every key, queues the command's reply and reports true. Otherwise (a key
// missing, or the block failed) the caller takes the usual path, which reports the source's
// trouble.
func (c *client) askSource(g *group, keys [][]byte, raw []byte) bool {
	req := resp.AppendArray(c.scratch[:0], 1)
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
	q := c.sendPiped(g, g.pool, req, 4)
	c.wait(q)
	defer func() { c.free = append(c.free, q) }()
	if q.Err != nil {
		return false
	}
	reply, there, ok := execExists(q.Reply)
	if !ok {
		return false
	}
	if there != int64(len(keys)) {
		return false
	}
	c.s.sourceReads.Add(1)
	c.reply(reply)
	return true
}

// knownOff reports whether key of db is known off the migration's source (the router's cache
// or the movers of this process), recording a key only the movers knew in the cache.
func (r *moverRef) knownOff(db int, key []byte) bool {
	if r.moved.has(db, key) {
		return true
	}
	if r.mv.KnownOff(db, string(key)) {
		r.moved.add(db, string(key)) // so the usual path skips MoveKeys too
		return true
	}
	return false
}

// mgetSource tries to answer an MGET (keys' slots sl, counted in flight on snap) from one
// group: when every key is either in a slot that group owns with no migration, or in a slot
// migrating away from it and still there, the group's answer is the latest for every key (the
// argument of readSource, key by key), given in one atomic step. It reports whether the reply
// is queued (keys found missing are not recorded as moved, as in readSource).
func (c *client) mgetSource(snap *snapshot, sl []uint16, raw []byte, args [][]byte) bool {
	var src *group
	keys := c.kb[:0]
	defer func() { c.kb = keys[:0] }()
	for i, s := range sl {
		e := &snap.slots[s]
		g := e.g
		if e.state() == migMigrating {
			m := e.m
			if m.ref == nil || m.keep || m.ref.knownOff(c.db, args[1+i]) {
				return false
			}
			g = m.src
			if !containsKey(keys, args[1+i]) {
				keys = append(keys, args[1+i])
			}
		} else if e.m != nil {
			return false
		}
		if g == nil || (src != nil && g != src) {
			return false
		}
		src = g
	}
	if len(keys) == 0 {
		return false // no key migrates: the usual split serves it
	}
	return c.askSource(src, keys, raw)
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
