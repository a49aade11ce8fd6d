package xdc

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
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
// checked a destination's position there (at its start, after a failed call or a gap, and
// after a full copy), the master's run_id (checkedKey). A promoted replica or a restarted
// master has another run_id, so until its shipper checked again the record is stale, and a
// full copy into the group from that destination's DC is refused, to be tried again
// (HandleLogCopy, refuseUnchecked). A record that is missing (a log shipped by an older
// build, or never) does not refuse. When both groups' masters changed (both copies come from
// unchecked groups, LogCopyRequest.Unchecked), the copy from the DC whose name sorts first
// is taken, so that one of them ends: its shipper then checks, and the other is taken.

// checkedKey records, on a group's master, the run_id of the master on which the group log's
// shipper last checked destination dest's position in that database. It starts with LogKey:
// it belongs to the server, and migrations do not move it.
func checkedKey(dest string) string { return LogKey + ":checked:" + dest }

// runID returns the run_id of c's server (INFO server): it changes when the process does.
func runID(ctx context.Context, c *redis.Client) (string, error) {
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return "", err
	}
	return infoField(info, "run_id")
}

// infoField returns field's value in an INFO reply.
func infoField(info, field string) (string, error) {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("INFO has no %s", field)
}

// checkedHere reports whether the record of c's master toward dest names the master running
// now (a missing record counts as checked: nothing says otherwise).
func checkedHere(ctx context.Context, c *redis.Client, dest string) (bool, error) {
	pipe := c.Pipeline()
	rec := pipe.Get(ctx, checkedKey(dest))
	info := pipe.Info(ctx, "server")
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return false, err
	}
	if errors.Is(rec.Err(), redis.Nil) {
		return true, nil
	}
	id, err := infoField(info.Val(), "run_id")
	if err != nil {
		return false, err
	}
	return rec.Val() == id, nil
}

// refuseUnchecked refuses a chunk of req's full copy into this DC while a group that serves
// one of its slots has a master its shipper toward the copy's DC has not checked (see the
// top of this file).
func (r *Replicator) refuseUnchecked(ctx context.Context, dc *fsm.DC, req LogCopyRequest) error {
	src, own := req.Log.DC, r.cfg.Cluster.DC()
	if req.Unchecked && src < own {
		return nil // both unchecked: the copy from the DC that sorts first goes first
	}
	seen := map[string]bool{}
	for _, cs := range req.Slots {
		gid := dc.Slots[cs.Slot]
		if seen[gid] || dc.Groups[gid] == nil {
			continue
		}
		seen[gid] = true
		ok, err := checkedHere(ctx, r.client(serverOf(dc.Groups[gid]), req.DB), src)
		if err != nil {
			return fmt.Errorf("xdc: whether group %s checked its log toward %s: %w", gid, src, err)
		}
		if !ok {
			return fmt.Errorf("xdc: group %s of %s has a new master whose log's shipper has not checked %s's position yet (a copy it makes after a failover's loss goes first); try again", gid, own, src)
		}
	}
	return nil
}
