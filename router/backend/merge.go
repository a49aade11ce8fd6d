package backend

import (
	"bytes"
	"strconv"

	"github.com/redraft/redraft/router/resp"
)

// Group commit: calls of one Redis function that many clients queue on a shared connection in
// the same turn go out as one call of a grouped form of the function, whose reply is the array
// of the calls' replies (router/DESIGN.md, "Group commit"). The cross-DC WRITE function is the
// one user: its fixed cost per call (dispatch, argument tables, the clock, the change feed's
// XADD) is then paid once per group.

// Merge configures group commit on a pool's shared connections.
type Merge struct {
	// Into is the name of the grouped function. Its KEYS are every call's KEYS in order;
	// its ARGV the number of calls, then per call its number of KEYS, its number of ARGV and
	// its ARGV; its reply the array of the calls' replies, one per call, in order.
	Into string
	// Max is the most calls in one grouped call (default 64).
	Max int
}

// maxMergeBytes bounds the bytes of one grouped call.
const maxMergeBytes = 1 << 20

// mergeSeg is a run of mergeable requests next to each other in a connection's queued bytes:
// wbuf[off:end] holds their single calls, and g (in the fifo) stands for them all.
type mergeSeg struct {
	off, end int
	g        *Request
}

// mergePart is where a single `FCALL function numkeys key... arg...` call keeps its KEYS and ARGV:
// byte offsets in its raw bytes and counts.
type mergePart struct {
	keys, args, size int
	nkeys, nargs     int
}

// parseFcall finds the KEYS and ARGV of raw, one FCALL; ok is false for anything else.
func parseFcall(raw []byte) (p mergePart, ok bool) {
	n, rest, ok := header(raw, '*')
	if !ok || n < 3 {
		return p, false
	}
	var name, numkeys []byte
	if name, rest, ok = bulk(rest); !ok || !bytes.EqualFold(name, []byte("FCALL")) {
		return p, false
	}
	if _, rest, ok = bulk(rest); !ok {
		return p, false
	}
	if numkeys, rest, ok = bulk(rest); !ok {
		return p, false
	}
	nk, err := strconv.Atoi(string(numkeys))
	if err != nil || nk < 0 || nk > n-3 {
		return p, false
	}
	p.keys, p.nkeys, p.nargs = len(raw)-len(rest), nk, n-3-nk
	for range nk {
		if _, rest, ok = bulk(rest); !ok {
			return p, false
		}
	}
	p.args = len(raw) - len(rest)
	for range p.nargs {
		if _, rest, ok = bulk(rest); !ok {
			return p, false
		}
	}
	if len(rest) != 0 {
		return p, false
	}
	p.size = len(raw)
	return p, true
}

// header reads "<t><n>\r\n" at the start of b.
func header(b []byte, t byte) (n int, rest []byte, ok bool) {
	if len(b) < 4 || b[0] != t {
		return 0, nil, false
	}
	i := bytes.IndexByte(b, '\n')
	if i < 2 || b[i-1] != '\r' {
		return 0, nil, false
	}
	n, err := strconv.Atoi(string(b[1 : i-1]))
	if err != nil || n < 0 {
		return 0, nil, false
	}
	return n, b[i+1:], true
}

// bulk reads one bulk string at the start of b.
func bulk(b []byte) (s, rest []byte, ok bool) {
	n, rest, ok := header(b, '$')
	if !ok || len(rest) < n+2 || rest[n] != '\r' || rest[n+1] != '\n' {
		return nil, nil, false
	}
	return rest[:n], rest[n+2:], true
}

// appendMerged appends to dst the grouped call of the single calls in src (the parts' bytes,
// one after another).
func appendMerged(dst []byte, into string, src []byte, parts []*Request) []byte {
	nkeys, nargs := 0, 1
	for _, r := range parts {
		nkeys += r.mp.nkeys
		nargs += 2 + r.mp.nargs
	}
	dst = resp.AppendArray(dst, 3+nkeys+nargs)
	dst = resp.AppendBulkString(dst, "FCALL")
	dst = resp.AppendBulkString(dst, into)
	dst = appendBulkInt(dst, nkeys)
	at := 0
	for _, r := range parts {
		dst = append(dst, src[at+r.mp.keys:at+r.mp.args]...)
		at += r.mp.size
	}
	dst = appendBulkInt(dst, len(parts))
	at = 0
	for _, r := range parts {
		dst = appendBulkInt(dst, r.mp.nkeys)
		dst = appendBulkInt(dst, r.mp.nargs)
		dst = append(dst, src[at+r.mp.args:at+r.mp.size]...)
		at += r.mp.size
	}
	return dst
}

func appendBulkInt(b []byte, n int) []byte {
	var tmp [20]byte
	return resp.AppendBulk(b, strconv.AppendInt(tmp[:0], int64(n), 10))
}

// SubmitMerge is Submit for raw, one FCALL of the function the pool's Merge groups: next to
// other such calls in the connection's queue it goes out with them in one grouped call, and r
// gets its own element of the reply. Without Merge, or for other bytes, it is Submit.
func (c *Conn) SubmitMerge(r *Request, raw []byte) {
	m := c.p.opts.Merge
	if m == nil {
		c.Submit(r, raw)
		return
	}
	mp, ok := parseFcall(raw)
	if !ok {
		c.Submit(r, raw)
		return
	}
	r.mp = mp
	max := m.Max
	if max <= 0 {
		max = 64
	}
	c.mu.Lock()
	if !c.ready(r) {
		return
	}
	if n := len(c.segs); n > 0 {
		if s := &c.segs[n-1]; s.end == len(c.wbuf) && len(s.g.parts) < max && s.end-s.off+len(raw) <= maxMergeBytes {
			c.wbuf = append(c.wbuf, raw...)
			s.end = len(c.wbuf)
			s.g.parts = append(s.g.parts, r)
			c.mu.Unlock()
			return
		}
	}
	g := c.newGroup()
	g.n = 1
	g.parts = append(g.parts, r)
	off := len(c.wbuf)
	c.wbuf = append(c.wbuf, raw...)
	c.segs = append(c.segs, mergeSeg{off: off, end: len(c.wbuf), g: g})
	c.fifo.push(g)
	c.queued++
	c.mu.Unlock()
}

// newGroup returns a group request from the connection's free list; called with c.mu held.
func (c *Conn) newGroup() *Request {
	if n := len(c.groups); n > 0 {
		g := c.groups[n-1]
		c.groups = c.groups[:n-1]
		return g
	}
	return &Request{group: true, n: 1}
}

// freeGroupLocked returns g to the free list once its parts are complete; called with c.mu
// held.
func (c *Conn) freeGroupLocked(g *Request) {
	clear(g.parts)
	g.parts = g.parts[:0]
	g.merged = false
	if cap(g.Reply) > 64<<10 {
		g.Reply = nil
	}
	g.Reply = g.Reply[:0]
	g.n = 1
	c.groups = append(c.groups, g)
}

// encodeMerged returns the bytes to write for buf, whose mergeable runs are segs: each run of
// two calls or more as one grouped call, a run of one as it is.
func (c *Conn) encodeMerged(dst, buf []byte, segs []mergeSeg) []byte {
	into := c.p.opts.Merge.Into
	at := 0
	for _, s := range segs {
		dst = append(dst, buf[at:s.off]...)
		at = s.end
		if !s.g.merged {
			dst = append(dst, buf[s.off:s.end]...)
			continue
		}
		dst = appendMerged(dst, into, buf[s.off:s.end], s.g.parts)
	}
	return append(dst, buf[at:]...)
}

// completeGroup hands g's reply to its parts: the one reply of a run of one, else each
// element of the grouped call's array; an error reply (the whole call refused: a missing function, OOM)
// goes to every part.
func (c *Conn) completeGroup(g *Request) {
	c.mu.Lock() // parts and merged were last set under c.mu
	parts, merged := g.parts, g.merged
	c.mu.Unlock()
	if !merged {
		p := parts[0]
		p.Reply = append(p.Reply[:0], g.Reply...)
		p.finish()
		c.mu.Lock()
		c.freeGroupLocked(g)
		c.mu.Unlock()
		return
	}
	v, _, ok := resp.Parse(g.Reply)
	for i, p := range parts {
		switch {
		case ok && v.Type == '*' && len(v.Elems) == len(parts):
			p.Reply = append(p.Reply[:0], v.Elems[i].Raw...)
		case ok && v.IsError():
			p.Reply = append(p.Reply[:0], g.Reply...)
		default:
			p.Reply = append(p.Reply[:0], "-ERR redraft: unexpected reply to a grouped function call\r\n"...)
		}
		p.finish()
	}
	c.mu.Lock()
	c.freeGroupLocked(g)
	c.mu.Unlock()
}
