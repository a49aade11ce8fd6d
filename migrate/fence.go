package migrate

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
	"github.com/redraft/redraft/fsm"
)

// Migration fences (DESIGN.md, "Which cluster state a node acts on": background duties are
// fenced). A node acts only on current cluster state (node/current.go), but a mover that was
// live when it started can outlive its run: a process stopped (SIGSTOP, a long GC pause) and
// resumed, or a step already on the wire when the node lost its lease. So the end of every run
// is also recorded on the Redis servers it moves between, and every step a mover takes there
// (checkScript, and the big-key lock, init, write and commit scripts) first checks, inside the
// same script, that its run is not over. A stale step can then never move or write data.
//
// A run is one direction of one migration: FenceField(id, back). It is marked over
//   - by its own mover, on source and target, once no key of its slots is left on the source,
//     just before the switch is committed (so a mover that finds its run over has finished and
//     only the commit may be missing);
//   - by the mover of the run back (a cancel after keys moved), for the forward run, before it
//     moves anything back.
//
// The marks live in the hash FenceKey of every database on each server. The movers never move
// it (ScanSlots skips it), cross-DC copies never copy it, and clients cannot reach it (an
// internal key). A mark is a few bytes per migration and is kept.

// FenceKey is the hash that records, per database of a Redis server, the migration runs that are
// over there.
const FenceKey = "__redraft:fence"

// DirtyKey is the stream of every database on a master that names, per outbox append, the
// outbox written (cross-DC replication's change feed, router/xdc). It belongs to the server,
// not to a slot: the movers never move it, like FenceKey.
const DirtyKey = "__redraft:dirty"

// LogKey is the group's log of cross-DC replication at data format 3 (router/xdc, grouplog.go)
// in every database of a master, and LogInboxPrefix starts the keys of a receiving master's
// positions in other groups' logs. Both belong to the server, not to a slot: the movers never
// move them, like DirtyKey, nor any key that starts with LogKey (a log's records of its own,
// such as router/xdc's drainedKey).
const (
	LogKey         = "__redraft:log"
	LogInboxPrefix = "__redraft:lin:"
)

// ErrRunOver means the mover's migration run is recorded as over on a server it moves between:
// the mover acts for state that is no longer current, and must stop.
var ErrRunOver = errors.New("migrate: this migration run is over")

// FenceField names one run of a migration: forward (source to target), or back (a cancel), in
// the form of builds before migrations had a nonce (RunFence).
func FenceField(id uint64, back bool) string {
	if back {
		return fmt.Sprintf("m%d:back", id)
	}
	return fmt.Sprintf("m%d:fwd", id)
}

// RunFence names one run of m (back: the run back of a cancel). With m's nonce the name is
// unique to this migration: migration ids start at 1 in every cluster, and the marks are kept
// on the servers, so a cluster built again over the same Redis servers (or one that loaded
// another's RDB) found its migration 1 "over" before it moved anything and switched the slots
// with every key left on the source. A migration without a nonce (started by an older build)
// keeps FenceField's name.
func RunFence(m *fsm.Migration, back bool) string {
	if m.Nonce == "" {
		return FenceField(m.ID, back)
	}
	if back {
		return fmt.Sprintf("m%d:%s:back", m.ID, m.Nonce)
	}
	return fmt.Sprintf("m%d:%s:fwd", m.ID, m.Nonce)
}

// runOver maps a script's REDRAFTOVER error to ErrRunOver.
func runOver(err error) error {
	if err != nil && strings.HasPrefix(err.Error(), "REDRAFTOVER") {
		return fmt.Errorf("%v: %w", err, ErrRunOver)
	}
	return err
}

// markScript records ARGV[1] as over in the hash KEYS[1] of every database of the server (up
// to ARGV[2]); SELECT inside a script changes only the script's database (Redis 7). It allows
// OOM (allowOOM): a run back marks the forward run over on its source first, which may be full.
var markScript = newScript(allowOOM + `
local n = 0
for db = 0, tonumber(ARGV[2]) - 1 do
  local ok = redis.pcall('SELECT', db)
  if type(ok) == 'table' and ok.err then break end
  redis.call('HSET', KEYS[1], ARGV[1], 'over')
  n = n + 1
end
return n
`)

// maxDatabases bounds the databases markScript visits (redis-server's default is 16).
const maxDatabases = 1024

// MarkOver records run field as over on the mover's source and target, in every database.
func (m *Mover) MarkOver(ctx context.Context, field string) error {
	src, dst, err := m.clients(0)
	if err != nil {
		return err
	}
	for _, c := range []*redis.Client{src, dst} {
		if err := markScript.Run(ctx, c, []string{FenceKey}, field, maxDatabases).Err(); err != nil {
			return fmt.Errorf("migrate: mark %s over on %s: %w", field, c.Options().Addr, err)
		}
	}
	return nil
}

// Over reports whether run field is recorded as over on the mover's source and on its target
// (database 0). MarkOver marks the source first, so a run over on the target only is one whose
// source lost the mark: a replica promoted before the mark reached it.
func (m *Mover) Over(ctx context.Context, field string) (onSource, onTarget bool, err error) {
	src, dst, err := m.clients(0)
	if err != nil {
		return false, false, err
	}
	if onSource, err = src.HExists(ctx, FenceKey, field).Result(); err != nil {
		return false, false, err
	}
	onTarget, err = dst.HExists(ctx, FenceKey, field).Result()
	return onSource, onTarget, err
}
