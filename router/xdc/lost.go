package xdc

import (
	"context"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Entries lost with a failed-over master (docs/replication.md, "Failovers"). A group's master
// may ship an entry to another DC and die before its replica got it (a DC_ONE write): after
// the failover the destination has applied an entry the new master's outbox lacks. The
// shipper notices it when the destination's last applied id is not in the outbox (nor trimmed
// from it) of a group that has failed over, on a slot no migration covers (lossPossible). It
// counts the lost entries per destination DC: it knows the ordinal (the outbox's
// entries-added) of the last entry the destination applied, from reads that reached the
// outbox's end, and the new master's outbox says how many of the old master's entries it kept
// (when the ordinal is unknown, the shipping node changed too, one entry is counted: a lower
// bound). The destination holds the lost entries' effects, which the source no longer has:
// the slot is copied in full from the new master (copy.go), so both DCs agree again, without
// the lost writes, and nothing is applied twice (the copy sets the destination's inbox).

// lostKey is one slot's outbox shipped to one destination DC.
type lostKey struct {
	dest     string
	db, slot int
}

// ordMark is an outbox entry id with its ordinal: the stream's entries-added when it was added.
// wrote is the ordinal of the last entry with effects shipped through it, -1 when unknown:
// the entries after wrote, through ord, are heartbeats, and a failed-over master that lost
// only those lost no write.
type ordMark struct {
	id    string
	ord   int64
	wrote int64
}

// lostBook is the replicator's memory for counting entries lost with a master.
type lostBook struct {
	mu    sync.Mutex
	marks map[lostKey]ordMark // the last applied entry's ordinal, when known
	seen  map[lostKey]string  // the last applied id already reported missing
}

// ordinal returns the ordinal of entries[i] of a read (i = -1: the id read after), when the
// read reached the outbox's end (topOrd >= 0).
func (g *slotRead) ordinal(i int) (int64, bool) {
	if g.topOrd < 0 {
		return 0, false
	}
	return g.topOrd - int64(len(g.entries)-1-i), true
}

// shipped records the ordinal of last, the destination's last applied id after a round that
// read g after prev: from g when it reached the outbox's end, else by counting on from prev's.
func (b *lostBook) shipped(k lostKey, prev, last string, g *slotRead) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.marks == nil {
		b.marks = map[lostKey]ordMark{}
	}
	m, had := b.marks[k]
	had = had && m.id == prev && !g.missing
	if last == prev {
		if !g.missing {
			if o, ok := g.ordinal(-1); ok && prev != "" {
				wrote := int64(-1)
				if had && m.ord == o {
					wrote = m.wrote
				}
				b.marks[k] = ordMark{prev, o, wrote}
			}
		}
		return
	}
	for i, e := range g.entries {
		if e.ID != last {
			continue
		}
		var o int64
		if ord, ok := g.ordinal(i); ok {
			o = ord
		} else if had {
			o = m.ord + int64(i+1)
		} else {
			delete(b.marks, k)
			return
		}
		wrote := int64(-1)
		for j := i; j >= 0; j-- {
			if len(g.entries[j].Cmds) > 0 {
				wrote = o - int64(i-j)
				break
			}
		}
		if wrote < 0 && had && m.ord == o-int64(i+1) {
			wrote = m.wrote // heartbeats only since the mark
		}
		b.marks[k] = ordMark{last, o, wrote}
		return
	}
	delete(b.marks, k)
}

// known reports whether the ordinal of id, the last applied entry of k, is known (then a
// read after it needs no XINFO: the next entries' ordinals are counted on from it).
func (b *lostBook) known(k lostKey, id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	m, ok := b.marks[k]
	return ok && m.id == id
}

// missing returns, once per last applied id, how many entries the destination applied that
// the source outbox (read in g after it) lacks, and whether the count is exact. An exact count
// of entries that were all heartbeats is 0: no write was lost.
func (b *lostBook) missing(k lostKey, after string, g *slotRead) (n int64, exact, report bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.seen == nil {
		b.seen = map[lostKey]string{}
	}
	if b.seen[k] == after {
		return 0, false, false
	}
	b.seen[k] = after
	m, ok := b.marks[k]
	delete(b.marks, k)
	// The new master kept the old one's entries up to its own count less its entries after
	// the lost id (all written since it took over).
	if kept, known := g.ordinal(-1); ok && known && m.id == after && m.ord > kept {
		if m.wrote >= 0 && m.wrote <= kept {
			return 0, true, true
		}
		return m.ord - kept, true, true
	}
	return 1, false, true
}

// noteLost counts and logs, once, the entries the destination applied that the source outbox
// lacks: lost with a failed-over master (the read g after the destination's last id after).
func (r *Replicator) noteLost(k loopKey, slot int, after string, g *slotRead) {
	n, exact, report := r.lost.missing(lostKey{k.dest, k.db, slot}, after, g)
	if !report {
		return
	}
	next := ""
	if len(g.entries) > 0 {
		next = g.entries[0].ID
	}
	if n == 0 {
		r.log.Info("the destination's last applied entries were heartbeats the failed-over master's replica lacked; copying the slot in full so the DCs chain on",
			"dest", k.dest, "group", k.group, "master", k.master, "db", k.db, "slot", slot, "dest_last_applied", after, "next_entry", next)
		return
	}
	r.counter(k.dest).lost.Add(n)
	r.log.Warn("the destination applied entries this DC's outbox lost with a failed-over master: counted; copying the slot in full so the DCs agree",
		"dest", k.dest, "group", k.group, "master", k.master, "db", k.db, "slot", slot, "dest_last_applied", after,
		"next_entry", next, "lost_entries", n, "exact", exact)
}

// lossPossible reports whether a last applied entry missing from slot's outbox can only mean
// it was lost with a failed-over master: the loop's group serves the slot with the loop's
// master, it has failed over at least once, and no migration in the DC covers the slot (a
// migration moves the outbox to its target, so the source's is gone, not lost).
func (l *loop) lossPossible(slot int) bool {
	st := l.r.cfg.Cluster.State()
	dc := st.DCs[l.r.cfg.Cluster.DC()]
	if dc == nil || dc.Slots[slot] != l.key.group {
		return false
	}
	if g := dc.Groups[l.key.group]; g == nil || g.Master != l.key.master || g.Failovers == 0 {
		return false
	}
	for _, m := range st.Migrations {
		if m.Active() && m.DC == dc.Name && m.Covers(slot) {
			return false
		}
	}
	return true
}

// copyLost queues slot for a full copy to the destination, after a loss noteLost counted.
// An outbox the new master never had gets a heartbeat entry first: the copy ships on from
// the outbox's last id. It reports false when it failed (and recorded it: l.fail).
func (l *loop) copyLost(ctx context.Context, src *redis.Client, slot int, g *slotRead, copies chan<- int) bool {
	l.mu.Lock()
	busy := l.copying[slot]
	l.mu.Unlock()
	if busy {
		return true
	}
	if g.topOrd == 0 {
		vals := []any{}
		for _, f := range EntryFields(l.r.cfg.Cluster.DC(), nil) {
			vals = append(vals, f)
		}
		if err := src.XAdd(ctx, &redis.XAddArgs{Stream: OutboxKey(slot), Values: vals}).Err(); err != nil {
			l.fail(fmt.Errorf("outbox of slot %d: %w", slot, err))
			return false
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.copying[slot] {
		l.copying[slot] = true
		copies <- slot
	}
	return true
}
