package xdc

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// A failover that lost only heartbeats. A group log's heartbeat entry is appended by the
// shipping node on the master and shipped like any entry, so a destination can apply one
// that the master's replica never received. When that replica is promoted, the destination's
// position is missing from the new master's log, which, for an entry with effects, means the
// DC applied a write the new master lost: the shipper stops and the group needs a full copy.
// For heartbeats nothing was lost. The shipping process tells the two apart by what it
// shipped: a logMemo follows each destination's position through the answers this process
// got, across the logGroups a failover replaces, and keeps the last entries with effects
// among the entries applied (their ids and digests). When the destination stands at P, the
// new log's entries up to P are heartbeats down to L, L is an entry the destination applied
// (a write the memo saw applied, same id and same digest, the memo's start, or the log's first
// entry: trims cut only what every destination applied), and no entry
// with effects was applied after L, then everything the new log lacks up to P was
// heartbeats: the shipper appends a heartbeat with the id just after P (so that every later
// id of the new master is above P, whatever its clock) and ships on from P. When some were,
// the memo counts them: the writes the destination applied that the new master lost
// (LostOnFailover).
//
// L must be an entry the destination applied, not merely the new log's last entry before P:
// a node that has not planned the failover yet can still append a heartbeat to the old
// master, and ship it, after the routers wrote to the new one. The new master's own entries
// then have ids below P (its clock) or P itself (the same millisecond), and shipping on from
// P would skip them. So an entry with effects below P that the destination never applied (and
// an entry at P other than the one it applied, which the shipper's check compares by digest:
// differs) sends the group to a full copy instead (failoverLoss.unshipped).

// logMemoKey names one destination's position in one log, in one database.
type logMemoKey struct {
	log  LogID
	db   int
	dest string
}

// logMemo is what this process knows of a destination's position in a log: the answers it
// got moved it from `from` to `pos` without a gap, and writes are the last entries with
// effects (not heartbeats) the destination applied meanwhile, oldest first, at most
// memoWrites of them. posKnown is set when the memo saw the entry at pos applied: the last of
// writes when it had effects, else a heartbeat. counted is the position whose loss was last
// counted.
type logMemo struct {
	from, pos string
	writes    []memoWrite
	posKnown  bool
	counted   string
}

// memoWrite is an entry with effects a destination applied: its id and its digest.
type memoWrite struct {
	id  string
	sum uint64
}

// memoWrites bounds the writes a memo keeps, to count what a failover lost.
const memoWrites = 1024

// lossWalk bounds the entries loss reads down from a destination's position.
const (
	lossWalk     = 4096
	lossWalkPage = 256
)

// sumSeed seeds entrySum: digests are compared within one process only.
var sumSeed = maphash.MakeSeed()

// entrySum is a digest of an entry's contents (origin, stamp, effects), not of its id: it
// tells the entry a destination applied from another with the same id in a promoted
// replica's log.
func entrySum(e Entry) uint64 {
	var h maphash.Hash
	h.SetSeed(sumSeed)
	var b [8]byte
	num := func(v int) {
		for i := range b {
			b[i] = byte(v >> (8 * i))
		}
		_, _ = h.Write(b[:])
	}
	str := func(s string) {
		num(len(s))
		_, _ = h.WriteString(s)
	}
	str(e.DC)
	str(e.TS)
	num(len(e.Cmds))
	for _, c := range e.Cmds {
		num(len(c))
		for _, a := range c {
			str(a)
		}
	}
	return h.Sum64()
}

// sumOf returns the digest of the write id the memo saw applied, when it did.
func (m *logMemo) sumOf(id string) (uint64, bool) {
	i, ok := slices.BinarySearchFunc(m.writes, id, func(w memoWrite, id string) int { return CompareIDs(w.id, id) })
	if !ok {
		return 0, false
	}
	return m.writes[i].sum, true
}

// applied reports whether the memo saw e applied: a write with its id and digest.
func (m *logMemo) applied(e Entry) bool {
	sum, ok := m.sumOf(e.ID)
	return ok && sum == entrySum(e)
}

// logMemos are the memos of one process.
type logMemos struct {
	mu sync.Mutex
	m  map[logMemoKey]*logMemo
	// walked, when set (tests), runs after loss's walk of the log.
	walked func()
}

// started notes the position the destination answered a shipper that starts: a memo that
// does not stand there is stale (another node shipped meanwhile) and starts again.
func (ms *logMemos) started(k logMemoKey, pos string) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.m == nil {
		ms.m = map[logMemoKey]*logMemo{}
	}
	if m := ms.m[k]; m == nil || m.pos != pos {
		ms.m[k] = &logMemo{from: pos, pos: pos}
	}
}

// answered notes the destination's answer pos to a range of entries after prev.
func (ms *logMemos) answered(k logMemoKey, prev string, entries []Entry, pos string) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.m == nil {
		ms.m = map[logMemoKey]*logMemo{}
	}
	m := ms.m[k]
	if m == nil || m.pos != prev {
		m = &logMemo{from: prev, pos: prev}
		ms.m[k] = m
	}
	if pos == "" || (prev != "" && CompareIDs(pos, prev) < 0) { // a gap: it lost what it had
		ms.m[k] = &logMemo{from: pos, pos: pos}
		return
	}
	if n := len(entries); n > 0 && CompareIDs(pos, entries[n-1].ID) > 0 {
		// Past the range: another node shipped the entries after it, which this memo never
		// saw. Kept from prev, its walk after a failover to a copy that lacked them found only
		// heartbeats past the last write it knew, and the writes the other node shipped were
		// neither counted nor copied (until session 47).
		ms.m[k] = &logMemo{from: pos, pos: pos}
		return
	}
	if pos != m.pos {
		m.posKnown = false
	}
	for _, e := range entries {
		c := CompareIDs(e.ID, pos)
		if c > 0 {
			break
		}
		m.posKnown = m.posKnown || c == 0
		if len(e.Cmds) > 0 {
			if len(m.writes) == memoWrites {
				m.writes = append(m.writes[:0], m.writes[memoWrites/2:]...)
				m.from = m.writes[0].id // what came before is no longer known entry by entry
			}
			m.writes = append(m.writes, memoWrite{id: e.ID, sum: entrySum(e)})
		}
	}
	m.pos = pos
}

// differs reports whether e, the log's entry at pos, is not the entry the destination applied
// there, as far as this process saw it applied: a promoted replica wrote one of its own with
// that id.
func (ms *logMemos) differs(k logMemoKey, pos string, e Entry) bool {
	ms.mu.Lock()
	m := ms.m[k]
	if m == nil || m.pos != pos || !m.posKnown {
		ms.mu.Unlock()
		return false
	}
	sum, write := m.sumOf(pos)
	ms.mu.Unlock()
	if !write { // a heartbeat was applied there
		return len(e.Cmds) > 0
	}
	return entrySum(e) != sum
}

// failoverLoss is what a destination standing at pos applied that the log on c (a promoted
// replica's) lacks, as far as this process knows (see above).
type failoverLoss struct {
	known bool // the memo followed the destination from an entry the new log holds
	lost  int  // entries with effects lost (when known)
	// count is set the first time a loss at this position is reported (counted once).
	count bool
	// unshipped is set when the new log holds an entry with effects at or below pos that
	// the destination never applied (the new master's own): the group must be copied.
	unshipped string
}

// loss tells what the destination at pos applied that the log on c no longer holds; it first
// makes every later id of the log above pos.
func (ms *logMemos) loss(ctx context.Context, c *redis.Client, k logMemoKey, pos string) (failoverLoss, error) {
	ms.mu.Lock()
	m := ms.m[k]
	var memo logMemo
	if m != nil {
		memo = *m
		memo.writes = slices.Clone(m.writes)
	}
	ms.mu.Unlock()
	if m == nil || pos == "" || pos == "0-0" || memo.pos != pos {
		return failoverLoss{}, nil
	}
	// Every id the log gives from now on is above pos, before the walk reads it: a write
	// that came between the walk and this entry (XADD *, from a master whose last id was below
	// pos) took an id below pos, which the walk had not seen and no range after pos carries
	// (session 42). A write before it is one the walk meets: unshipped, the group is copied.
	next, err := idAfter(pos)
	if err != nil {
		return failoverLoss{}, err
	}
	args := []any{"XADD", LogKey, next}
	for _, f := range EntryFields(k.log.DC, nil) {
		args = append(args, f)
	}
	if err := c.Do(ctx, args...).Err(); err != nil && !strings.Contains(err.Error(), "equal or smaller") {
		return failoverLoss{}, err // (an id above pos already: the new master's later ids are too)
	}
	anchor, out, err := memo.walk(ctx, c, pos)
	if ms.walked != nil {
		ms.walked()
	}
	if err != nil || !out.known {
		return out, err
	}
	for _, w := range memo.writes {
		if CompareIDs(w.id, anchor) > 0 {
			out.lost++
		}
	}
	if out.lost > 0 {
		ms.mu.Lock()
		if m := ms.m[k]; m != nil && m.pos == pos && m.counted != pos {
			m.counted, out.count = pos, true
		}
		ms.mu.Unlock()
	}
	return out, nil
}

// walk reads the log on c down from pos (included) to the last entry the destination applied
// that it holds: past heartbeats, to a write the memo saw applied, to the memo's start, or to
// the log's first entry. It answers that entry's id (anchor), known when it found one, and
// unshipped (the entry's id) when it met an entry with effects the destination never applied.
func (m *logMemo) walk(ctx context.Context, c *redis.Client, pos string) (anchor string, out failoverLoss, err error) {
	hi, oldest := pos, ""
	for read := 0; read < lossWalk; {
		raw, err := c.Do(ctx, "XREVRANGE", LogKey, hi, "-", "COUNT", lossWalkPage).Slice()
		if err != nil {
			return "", failoverLoss{}, err
		}
		entries, err := parseRange(raw)
		if err != nil {
			return "", failoverLoss{}, err
		}
		if len(entries) > 0 {
			oldest = entries[len(entries)-1].ID
		}
		for _, e := range entries {
			after := m.from == "" || CompareIDs(e.ID, m.from) > 0
			switch {
			case e.ID == m.from && m.from != "":
				return e.ID, failoverLoss{known: true}, nil
			case !after:
				return "", failoverLoss{}, nil // the log lacks the memo's start: unknown
			case len(e.Cmds) == 0: // a heartbeat, the old master's or the new one's
			case m.applied(e):
				return e.ID, failoverLoss{known: true}, nil
			default:
				return "", failoverLoss{unshipped: e.ID}, nil
			}
		}
		read += len(entries)
		if len(entries) < lossWalkPage {
			if read == 0 {
				return "", failoverLoss{}, nil // no log: unknown
			}
			// The log's first entry, a heartbeat: the promoted replica's log begins with what it
			// replicated, after the trims it replicated too, which only ever cut what every
			// destination had applied. What came before it was applied and kept.
			return oldest, failoverLoss{known: true}, nil
		}
		hi = "(" + oldest
	}
	return "", failoverLoss{}, nil
}

// idAfter returns the stream id right after id.
func idAfter(id string) (string, error) {
	ms, seq, ok := strings.Cut(id, "-")
	n, err := strconv.ParseUint(seq, 10, 64)
	if !ok || err != nil {
		return "", fmt.Errorf("xdc: bad stream id %q", id)
	}
	if n == ^uint64(0) {
		return "", errors.New("xdc: stream id " + id + " has no successor in its millisecond")
	}
	return ms + "-" + strconv.FormatUint(n+1, 10), nil
}
