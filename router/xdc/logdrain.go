package xdc

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Raising the data format to group logs on a cluster that replicated before: the slots'
// outboxes may still hold entries a destination has not applied when the writes start going
// to the logs, and the logs' shippers are faster to start than the per-slot loops are to
// drain them. A destination that applied a slot's later writes (from the log) before its
// earlier ones (from the outbox) would apply the earlier ones over them. So a log shipper
// ships nothing to a destination until that destination applied every entry of the
// outboxes of the group's slots (the per-slot loops go on shipping them at format 3, and
// nothing writes them any more), and then records it on the master, in the log's database
// (drainedKey), so that it checks only once: a replica promoted later has the record too.

// drainedKey records, on a group's master, that destination dest applied every entry of the
// group's outboxes in that database. It starts with LogKey: it belongs to the server, and
// migrations do not move it.
func drainedKey(dest string) string { return LogKey + ":drained:" + dest }

// OutboxesClosedKey is set, on a group's master in each database its log is written, by the
// log's first write (the WRITE function) and by the drain check before it reads the outboxes:
// from then on WRITE puts a write meant for a slot's outbox in the log instead. Nodes apply
// the raise to group logs at different moments (and a batch admitted before it may reach the
// master after), so without it a node still at the older format could append to an outbox
// after the log's shippers found the outboxes drained, or after a later write went to the
// log: that entry would reach the other DCs out of order, or after the drain record said
// there was nothing left. With it, every outbox entry on the server precedes the log's first
// write and the drain check's read. It starts with LogKey: it belongs to the server, and
// migrations do not move it.
const OutboxesClosedKey = LogKey + ":outboxes-closed"

// drainChunk bounds the outboxes one pipeline reads.
const drainChunk = 1024

// errOutboxesUndrained says a destination has not applied the group's outboxes yet.
var errOutboxesUndrained = errors.New("the destination has not applied every entry of the group's outboxes yet (the per-slot loops ship them first)")

// outboxesDrained returns nil once the shipper's destination applied every entry the
// group's outboxes hold, errOutboxesUndrained while it has not, or what failed. It reads the
// outboxes on the master directly, so it waits while a migration of this DC moves them
// between groups (an outbox already moved would read as empty), and checks after the reads
// that none began.
func (s *logShipper) outboxesDrained(ctx context.Context) error {
	g := s.g
	key := drainedKey(s.dest)
	if n, err := g.c.Exists(ctx, key).Result(); err != nil || n == 1 {
		return err
	}
	if err := g.c.Set(ctx, OutboxesClosedKey, "1", 0).Err(); err != nil {
		return fmt.Errorf("close the outboxes: %w", err)
	}
	own := g.r.cfg.Cluster.DC()
	st := g.r.cfg.Cluster.State()
	dc := st.DCs[own]
	if dc == nil {
		return fmt.Errorf("xdc: DC %s is not in the cluster state", own)
	}
	if m := activeMigration(st, own); m != 0 {
		return fmt.Errorf("migration %d of this DC moves outboxes: %w", m, errOutboxesUndrained)
	}
	var slots []int
	for slot, gid := range dc.Slots {
		if gid == g.log.Group {
			slots = append(slots, slot)
		}
	}
	var held []int     // slots whose outbox holds entries
	var lasts []string // their last entries
	for lo := 0; lo < len(slots); lo += drainChunk {
		chunk := slots[lo:min(lo+drainChunk, len(slots))]
		pipe := g.c.Pipeline()
		tails := make([]*redis.XMessageSliceCmd, len(chunk))
		for i, slot := range chunk {
			tails[i] = pipe.XRevRangeN(ctx, OutboxKey(slot), "+", "-", 1)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("read the outboxes' last entries: %w", err)
		}
		for i, slot := range chunk {
			if m := tails[i].Val(); len(m) > 0 {
				held, lasts = append(held, slot), append(lasts, m[0].ID)
			}
		}
	}
	if len(held) > 0 {
		applied, err := g.r.lastApplied(ctx, s.dest, g.db, held)
		if err != nil {
			return fmt.Errorf("ask for the applied outbox entries: %w", err)
		}
		for i := range held {
			if applied[i] == "" || CompareIDs(applied[i], lasts[i]) < 0 {
				return fmt.Errorf("slot %d: %w", held[i], errOutboxesUndrained)
			}
		}
	}
	if cur := g.r.cfg.Cluster.State(); cur.NextMigrationID != st.NextMigrationID {
		return fmt.Errorf("a migration began while the outboxes were read: %w", errOutboxesUndrained)
	}
	return g.c.Set(ctx, key, "1", 0).Err()
}
