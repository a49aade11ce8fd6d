package migrate

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// The batch copy: how MoveSlots moves small keys (DESIGN.md, "Small keys in bulk"). MIGRATE
// blocks the source for a whole round trip to the target and for the target's RESTOREs, which
// on a busy host is milliseconds per call, and clients of the source wait behind it. Here the
// source only ever runs short scripts of its own work (lock and DUMP, then delete), and the
// mover carries the payloads to the target itself:
//
//  1. dumpScript on the source: per key, the checks moveScript makes, then a lock (the same
//     per-key lock a big key's copy takes) and DUMP with PTTL, all in one atomic step.
//  2. restoreScript on the target: RESTORE ... REPLACE of every key, refused when the target's
//     clock is past the source's clock at step 1 plus LockTTL/2 (the locks might have lapsed).
//  3. unlockDeleteScript on the source: delete each key whose lock is still ours, and the lock.
//
// While a key is locked nobody else moves it (moveScript and dumpScript see the lock: busy),
// so no client has touched the target's copy before step 2 replaces it; the source's copy is
// the authoritative one until step 3 deletes it, and MoveKeys callers wait for the lock.

// dumped is one key of a batch after step 1.
type dumped struct {
	key     string
	st, mem int64
	str     bool // payload is a string's value (SET on the target), not a DUMP (RESTORE)
	payload string
	pttl    int64
}

// dumpBatch runs step 1 for keys with a fresh token and returns the source's clock, the
// batch's lock value (what steps 2 and 3, and unlockBatch, take as the batch's lock) and each
// key's result: the dump script locks the keys, then one pipeline reads the locked keys'
// values (MGET of the strings, DUMP of the rest). A key that expired in between is reported
// missing (stNoKey) and its lock released.
func (m *Mover) dumpBatch(ctx context.Context, src *redis.Client, keys []string, budget int64) (int64, string, []dumped, error) {
	token := m.newToken()
	res, err := dumpScript.Run(ctx, src, lockedKeys(keys), m.cfg.BigKeyElements, m.cfg.BigKeyBytes, budget, token,
		m.cfg.LockTTL.Milliseconds(), m.cfg.Fence).Slice()
	if err != nil {
		return 0, "", nil, fmt.Errorf("migrate: dump %d key(s): %w", len(keys), runOver(err))
	}
	if len(res) != 2+4*len(keys) {
		return 0, "", nil, fmt.Errorf("migrate: dump script answered %d values for %d keys", len(res), len(keys))
	}
	now, _ := res[0].(int64)
	lock, _ := res[1].(string)
	out := make([]dumped, len(keys))
	var strs []string
	taken := 0
	for i, k := range keys {
		r := res[2+4*i:]
		d := dumped{key: k}
		d.st, _ = r[0].(int64)
		d.mem, _ = r[1].(int64)
		kind, _ := r[2].(int64)
		d.str = kind == 1
		d.pttl, _ = r[3].(int64)
		out[i] = d
		if d.st == stMoved {
			taken++
			if d.str {
				strs = append(strs, k)
			}
		}
	}
	if taken == 0 {
		return now, lock, out, nil
	}
	if err := m.readLocked(ctx, src, out, strs, lock); err != nil {
		return 0, "", nil, err
	}
	return now, lock, out, nil
}

// readLocked reads the values of the keys of out that the dump script locked (stMoved) with
// lock value lock: one MGET for the strings (strs, in order), a DUMP for each other key, in one
// pipeline. A key gone meanwhile (expired) becomes stNoKey and its lock is released; on an
// error every lock is.
func (m *Mover) readLocked(ctx context.Context, src *redis.Client, out []dumped, strs []string, lock string) error {
	p := src.Pipeline()
	var mget *redis.SliceCmd
	if len(strs) > 0 {
		mget = p.MGet(ctx, strs...)
	}
	dumps := map[int]*redis.StringCmd{}
	for i, d := range out {
		if d.st == stMoved && !d.str {
			dumps[i] = p.Dump(ctx, d.key)
		}
	}
	_, err := p.Exec(ctx)
	if err != nil && !errors.Is(err, redis.Nil) {
		m.unlockBatch(ctx, src, lockedOf(out), lock)
		return fmt.Errorf("migrate: read %d locked key(s): %w", len(strs)+len(dumps), err)
	}
	var vals []any
	if mget != nil {
		vals = mget.Val()
		if len(vals) != len(strs) {
			m.unlockBatch(ctx, src, lockedOf(out), lock)
			return fmt.Errorf("migrate: MGET answered %d values for %d keys", len(vals), len(strs))
		}
	}
	var gone []dumped
	j := 0
	for i := range out {
		d := &out[i]
		if d.st != stMoved {
			continue
		}
		ok := false
		if d.str {
			d.payload, ok = vals[j].(string)
			j++
		} else {
			var err error
			d.payload, err = dumps[i].Result()
			ok = err == nil
		}
		if !ok {
			gone = append(gone, *d)
			d.st, d.mem = stNoKey, 0
		}
	}
	if len(gone) > 0 {
		m.unlockBatch(ctx, src, gone, lock)
	}
	return nil
}

// lockedOf returns the keys of out the dump script locked.
func lockedOf(out []dumped) []dumped {
	var l []dumped
	for _, d := range out {
		if d.st == stMoved {
			l = append(l, d)
		}
	}
	return l
}

// restoreBatch runs steps 2 and 3 for the keys dumpBatch locked (status stMoved) and returns,
// per key, 1 if it moved and 0 if its lock lapsed before the delete (whoever holds it now moves
// the key again, replacing our copy; nobody was told it moved). On an error the locks are
// released and the keys stay on the source (a stale copy on the target is replaced by the
// next move).
func (m *Mover) restoreBatch(ctx context.Context, src, dst *redis.Client, srcNow int64, batch []dumped, lock string) ([]int64, error) {
	if err := m.restore(ctx, src, dst, srcNow, batch, lock); err != nil {
		return nil, err
	}
	return m.finish(ctx, src, batch, lock)
}

// restore is step 2; on an error it releases the batch's locks. With KeepTarget it runs
// restoreScript (a key the target holds is kept, per key); else restoreTx, the same writes
// without carrying the payloads through Lua.
func (m *Mover) restore(ctx context.Context, src, dst *redis.Client, srcNow int64, batch []dumped, lock string) error {
	if !m.cfg.KeepTarget {
		if err := m.restoreTx(ctx, dst, srcNow, batch, lock); err != nil {
			m.unlockBatch(ctx, src, batch, lock)
			return fmt.Errorf("migrate: restore %d key(s) on the target: %w", len(batch), busyIfOurs(err))
		}
		return nil
	}
	keys := make([]string, 0, len(batch))
	args := make([]any, 0, 3+3*len(batch))
	keep := "0"
	if m.cfg.KeepTarget {
		keep = "1"
	}
	args = append(args, srcNow+(m.cfg.LockTTL/2).Milliseconds(), keep, m.cfg.Fence)
	for _, d := range batch {
		keys = append(keys, d.key)
		kind := 0
		if d.str {
			kind = 1
		}
		args = append(args, kind, d.pttl, d.payload)
	}
	if err := restoreScript.Run(ctx, dst, keys, args...).Err(); err != nil {
		m.unlockBatch(ctx, src, batch, lock)
		return fmt.Errorf("migrate: restore %d key(s) on the target: %w", len(keys), busyIfOurs(err))
	}
	return nil
}

// leasePrefix names a batch restore's lease key on the target (restoreTx). It starts with
// lockPrefix, so SCAN passes never move one (the target may be a source later).
const leasePrefix = lockPrefix + ":lease:"

// restoreTx is step 2 without Lua for the values: the target's Lua made a string of each
// payload (ARGV) and a Redis object of it again (MSET's arguments), about 4.5 µs per 512 B key,
// most of the target's work for a moved key (DESIGN.md, "CPU per moved key"). The lease and the
// fence are checked by WATCH instead, in one pipeline on one connection:
//
//	SET lease 1 PXAT deadline    absent when the target's clock is already past the deadline
//	WATCH lease FenceKey
//	EVAL leaseCheckLua           lease absent or run over: touch lease (EXEC will abort), error
//	MULTI; MSET ...; SET k v PX ttl ...; RESTORE k ttl payload REPLACE ...; DEL lease; EXEC
//
// EXEC runs the writes only if neither watched key changed since WATCH, and (Redis >= 6.0.9)
// if the lease key did not expire meanwhile: so the writes happen, atomically, only while the
// target's clock is at or before the deadline and the run is not recorded over, as in
// restoreScript. The check must be EVAL, not EVALSHA: a NOSCRIPT reply would skip it and let
// EXEC through.
func (m *Mover) restoreTx(ctx context.Context, dst *redis.Client, srcNow int64, batch []dumped, lock string) error {
	lease := leasePrefix + lock
	deadline := srcNow + (m.cfg.LockTTL / 2).Milliseconds()
	conn := dst.Conn()
	defer conn.Close()
	var check, exec *redis.Cmd
	_, err := conn.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Do(ctx, "SET", lease, 1, "PXAT", deadline)
		p.Do(ctx, "WATCH", lease, FenceKey)
		check = p.Do(ctx, "EVAL", leaseCheckLua, 2, lease, FenceKey, m.cfg.Fence)
		p.Do(ctx, "MULTI")
		mset := []any{"MSET"}
		for _, d := range batch {
			ttl := d.pttl
			if ttl == 0 {
				ttl = 1
			}
			switch {
			case d.str && ttl < 0:
				mset = append(mset, d.key, d.payload)
			case d.str:
				p.Do(ctx, "SET", d.key, d.payload, "PX", ttl)
			default:
				p.Do(ctx, "RESTORE", d.key, max(ttl, 0), d.payload, "REPLACE")
			}
		}
		if len(mset) > 1 {
			p.Do(ctx, mset...)
		}
		p.Do(ctx, "DEL", lease)
		exec = p.Do(ctx, "EXEC")
		return nil
	})
	if err := check.Err(); err != nil {
		return err
	}
	if errors.Is(exec.Err(), redis.Nil) {
		return errors.New("REDRAFTLEASE the batch lease ran out before the restore (the lease key expired or the run was marked over during it)")
	}
	if err != nil {
		return err
	}
	res, _ := exec.Val().([]any)
	for _, r := range res {
		if e, ok := r.(error); ok {
			return e
		}
	}
	return nil
}

// leaseCheckLua is restoreTx's check, run after WATCH: when the run is recorded over on the
// target or the lease key is gone (its deadline passed), it writes and drops the lease key,
// which makes the EXEC that follows abort, and answers why.
// KEYS: lease key, FenceKey. ARGV: fence field.
const leaseCheckLua = `
local why
if ARGV[1] ~= '' and redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  why = 'REDRAFTOVER ' .. ARGV[1] .. ' is over: this mover acts for a migration run that is no longer live'
elseif redis.call('EXISTS', KEYS[1]) == 0 then
  why = 'REDRAFTLEASE the batch lease ran out before the restore (or the target clock is ahead of the source clock)'
end
if why then
  redis.call('SET', KEYS[1], 'x')
  redis.call('DEL', KEYS[1])
  return redis.error_reply(why)
end
return 1
`

// finish is step 3: per key 1 if it moved, 0 if its lock lapsed first.
func (m *Mover) finish(ctx context.Context, src *redis.Client, batch []dumped, lock string) ([]int64, error) {
	ours, err := unlockDeleteScript.Run(ctx, src, lockArgs(batch), lock, "1").Int64Slice()
	if err != nil {
		return nil, fmt.Errorf("migrate: delete %d moved key(s) on the source: %w", len(batch), err)
	}
	if len(ours) != len(batch) {
		return nil, fmt.Errorf("migrate: delete script answered %d values for %d keys", len(ours), len(batch))
	}
	return ours, nil
}

// unlockBatch releases a batch's locks, keeping the keys on the source (best effort: the locks
// expire anyway).
func (m *Mover) unlockBatch(ctx context.Context, src *redis.Client, batch []dumped, lock string) {
	m.cleanup(ctx, func(ctx context.Context) error {
		return unlockDeleteScript.Run(ctx, src, lockArgs(batch), lock, "0").Err()
	})
}

// lockArgs returns the KEYS of unlockDeleteScript for a batch: LocksKey, then each key.
func lockArgs(batch []dumped) []string {
	out := make([]string, 0, 1+len(batch))
	out = append(out, LocksKey)
	for _, d := range batch {
		out = append(out, d.key)
	}
	return out
}

// lockedKeys returns the KEYS of the scripts that lock keys: LocksKey, then the keys.
func lockedKeys(keys []string) []string {
	return append(append(make([]string, 0, 1+len(keys)), LocksKey), keys...)
}
