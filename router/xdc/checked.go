package xdc

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/migrate"
)

// Full copies crossing after a failover (data format 3). When a group's master fails over
// and its promoted replica lacks writes the other DCs applied, two copies start at once: the
// group's shipper finds the destination's position missing from the new master's log (the
// loss) and copies the group out to it, and that destination's shipper finds this DC's new
// master standing behind its own trimmed log (the promoted replica's positions are old) and
// copies its group in. Each copy replaces whole slots, counters merging by each DC's highest
// contribution; when the copy in lands first, this DC takes back the writes it lost, and its
// own increments since the failover vanish under the old, higher contribution (220 instead
// of 80 in TestXDCLogFailoverSourceLostEntries, in both DCs once the loss's copy follows).
//
// So the loss's copy goes first. A group log's shipper records on the master, once it
// checked a destination's position there (at its start, after a failed read or call, a gap,
// and after a full copy), which master process it checked (checkedKey: the run_id and the
// replication id, which a promotion changes), and, when the check found a loss, that a loss's
// copy is under way ("loss"). A promoted replica or a restarted master is another process, so
// until its shipper checked again the record is stale, and a full copy into the group from
// that destination's DC is refused, to be tried again (HandleLogCopy, refuseUnchecked): the
// source then stops its copy and tries again after its pause (copyGroup). A record that is
// missing (a log shipped by an older build, or never) refuses nothing. When both groups'
// masters changed (the copy says it comes from an unchecked master, LogCopyRequest.Unchecked),
// a loss's copy (LogCopyRequest.Loss) is taken into a group with no loss recorded, and
// otherwise the copy from the DC whose name sorts first, so that one of them ends: its shipper
// then checks, and the other is taken. A failed record does not stop shipping: it is written
// again before each range until it is.

// checkedKey records, on a group's master, the master process on which the group log's
// shipper last checked destination dest's position in that database (checkedProcess), or
// lossRecord while its copy after a loss is under way. It starts with LogKey: it belongs to
// the server, and migrations do not move it.
func checkedKey(dest string) string { return LogKey + ":checked:" + dest }

// lossRecord is checkedKey's value while the group's copy to dest after a loss is under way.
const lossRecord = "loss"

// checkedProcess returns what names c's server process in checkedKey: its run_id (changed by
// a restart) and its replication id (changed by a promotion).
func checkedProcess(ctx context.Context, c *redis.Client) (string, error) {
	info, err := c.Info(ctx, "server", "replication").Result()
	if err != nil {
		return "", err
	}
	return processOf(info)
}

// processOf reads checkedProcess's value from an INFO reply with the server and replication
// sections.
func processOf(info string) (string, error) {
	f := migrate.InfoFields(info)
	run, repl := f["run_id"], f["master_replid"]
	if run == "" || repl == "" {
		return "", errors.New("INFO has no run_id or master_replid")
	}
	return run + ":" + repl, nil
}

// checkState is what a group's record toward a destination says of its master.
type checkState int

const (
	checkedNow   checkState = iota // the record names the master running now, or is missing
	checkedStale                   // the record names another process: not checked since
	checkedLoss                    // a copy after a loss is under way
)

// checkedHere reads the record of c's master toward dest.
func checkedHere(ctx context.Context, c *redis.Client, dest string) (checkState, error) {
	pipe := c.Pipeline()
	rec := pipe.Get(ctx, checkedKey(dest))
	info := pipe.Info(ctx, "server", "replication")
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return checkedStale, err
	}
	switch {
	case errors.Is(rec.Err(), redis.Nil):
		return checkedNow, nil
	case rec.Val() == lossRecord:
		return checkedLoss, nil
	}
	id, err := processOf(info.Val())
	if err != nil {
		return checkedStale, err
	}
	if rec.Val() != id {
		return checkedStale, nil
	}
	return checkedNow, nil
}

// uncheckedRefusal starts the error refuseUnchecked answers; the source stops its copy on it
// (copyGroup) rather than trying the chunk again at once.
const uncheckedRefusal = "xdc: not checked since its master changed"

// refuseUnchecked refuses a chunk of req's full copy into this DC while a group that serves
// one of its slots has a master its shipper toward the copy's DC has not checked (see the
// top of this file).
func (r *Replicator) refuseUnchecked(ctx context.Context, dc *fsm.DC, req LogCopyRequest) error {
	src, own := req.Log.DC, r.cfg.Cluster.DC()
	seen := map[string]bool{}
	for _, cs := range req.Slots {
		gid := dc.Slots[cs.Slot]
		if seen[gid] || dc.Groups[gid] == nil {
			continue
		}
		seen[gid] = true
		state, err := checkedHere(ctx, r.client(serverOf(dc.Groups[gid]), req.DB), src)
		if err != nil {
			return fmt.Errorf("xdc: whether group %s checked its log toward %s: %w", gid, src, err)
		}
		admit := state == checkedNow
		switch {
		case admit || !req.Unchecked:
		case state == checkedStale:
			admit = req.Loss || src < own
		case state == checkedLoss:
			admit = req.Loss && src < own
		}
		if !admit {
			return fmt.Errorf("%s: group %s of %s has a new master whose log's shipper has not checked %s's position yet (a copy it makes after a failover's loss goes first); try again", uncheckedRefusal, gid, own, src)
		}
	}
	return nil
}
