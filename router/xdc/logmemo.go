package xdc

import (
	"context"
	"errors"
	"fmt"
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
// got, across the logGroups a failover replaces, and keeps the ids of the last entries with
// effects among the entries applied. When the destination stands at P, the memo followed it
// from at or before L, the new log's last entry before P, and no entry with effects was
// applied after L, then everything the new log lacks up to P was heartbeats: the shipper
// appends a heartbeat with the id just after P (so that every later id of the new master is
// above P, whatever its clock) and ships on from P. When some were, the memo counts them:
// the writes the destination applied that the new master lost (LostOnFailover).

// logMemoKey names one destination's position in one log, in one database.
type logMemoKey struct {
	log  LogID
	db   int
	dest string
}

// logMemo is what this process knows of a destination's position in a log: the answers it
// got moved it from `from` to `pos` without a gap, and writes are the ids of the last entries
// with effects (not heartbeats) the destination applied meanwhile, oldest first, at most
// memoWrites of them. counted is the position whose loss was last counted.
type logMemo struct {
	from, pos string
	writes    []string
	counted   string
}

// memoWrites bounds the writes a memo keeps, to count what a failover lost.
const memoWrites = 1024

// logMemos are the memos of one process.
type logMemos struct {
	mu sync.Mutex
	m  map[logMemoKey]*logMemo
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
	for _, e := range entries {
		if CompareIDs(e.ID, pos) > 0 {
			break
		}
		if len(e.Cmds) > 0 {
			if len(m.writes) == memoWrites {
				m.writes = append(m.writes[:0], m.writes[memoWrites/2:]...)
				m.from = m.writes[0] // what came before is no longer known entry by entry
			}
			m.writes = append(m.writes, e.ID)
		}
	}
	m.pos = pos
}

// failoverLoss is what a destination standing at pos applied that the log on c (a promoted
// replica's) lacks, as far as this process knows (see above).
type failoverLoss struct {
	known bool // the memo followed the destination from before the new log's last entry
	lost  int  // entries with effects lost (when known)
	// count is set the first time a loss at this position is reported (counted once).
	count bool
}

// loss tells what the destination at pos applied that the log on c no longer holds, and when
// that was heartbeats only, makes every later id of the log above pos.
func (ms *logMemos) loss(ctx context.Context, c *redis.Client, k logMemoKey, pos string) (failoverLoss, error) {
	ms.mu.Lock()
	m := ms.m[k]
	var memo logMemo
	if m != nil {
		memo = *m
		memo.writes = append([]string(nil), m.writes...)
	}
	ms.mu.Unlock()
	if m == nil || pos == "" || pos == "0-0" || memo.pos != pos {
		return failoverLoss{}, nil
	}
	before, err := c.XRevRangeN(ctx, LogKey, "("+pos, "-", 1).Result()
	if err != nil || len(before) == 0 {
		return failoverLoss{}, err // nothing before pos: the log was cut past it (its MAXLEN), or is new
	}
	l := before[0].ID
	if CompareIDs(memo.from, l) > 0 {
		return failoverLoss{}, nil
	}
	out := failoverLoss{known: true}
	for _, id := range memo.writes {
		if CompareIDs(id, l) > 0 {
			out.lost++
		}
	}
	if out.lost > 0 {
		ms.mu.Lock()
		if m := ms.m[k]; m != nil && m.pos == pos && m.counted != pos {
			m.counted, out.count = pos, true
		}
		ms.mu.Unlock()
		return out, nil
	}
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
	return out, nil
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
