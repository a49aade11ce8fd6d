package migrate

import (
	"context"
	"errors"
	"fmt"
)

// The batch copy: how MoveSlots moves small keys (DESIGN.md, "Small keys: batch copies").
// MIGRATE blocks the source for a whole round trip to the target and for the target's
// RESTOREs, which on a busy host is milliseconds per call, and clients of the source wait
// behind it. Here the source only ever runs short scripts of its own work (lock and read, then
// delete), and the mover carries the payloads to the target itself, over raw connections
// (resp.go):
//
//  1. dumpScript on the source: per key, whether it exists and how big it is, then a lock (the same
//     per-key lock a big key's copy takes), PEXPIRETIME and the value (MGET, or DUMP), in one atomic
//     step.
//  2. restoreTx on the target: the writes in one MULTI/EXEC, which aborts when the target's
//     clock is past the source's clock at step 1 plus LockTTL/2 (the locks might have lapsed).
//  3. unlockDeleteScript on the source: delete each key whose lock is still ours, and the lock.
//
// While a key is locked nobody else moves it (dumpScript and checkScript see the lock: busy),
// so no client has touched the target's copy before step 2 replaces it; the source's copy is
// the authoritative one until step 3 deletes it, and MoveKeys callers wait for the lock.

// dumped is one key of a batch after step 1.
type dumped struct {
	key     string
	st, mem int64
	str     bool // payload is a string's value (SET on the target), not a DUMP (RESTORE)
	payload []byte
	// expireAt is the source's PEXPIRETIME (-1: none): the copy keeps the absolute expiry, as
	// the other DCs' copies do (cross-DC effects carry PXAT/ABSTTL), so that neither the copy's
	// latency nor a move there and back shifts it.
	expireAt int64
}

// guardPrefix names a dump's guard key on the source (dumpScript); it starts with lockPrefix,
// so SCAN passes never move one, and the script leaves none behind.
const guardPrefix = lockPrefix + ":guard:"

// dumpBatch runs step 1 for keys with a fresh token and returns the source's clock, the
// batch's lock value (what steps 2 and 3, and unlockBatch, take as the batch's lock) and each
// key's result, values included. One round trip: WATCH of the guard key, the dump script
// (locks; DUMP of the locked keys that are not strings), and MULTI, MGET of the batch's keys,
// EXEC, which the script aborts when MGET would read a string too big for the batch
// (dumpScript); then the locked strings are read alone in a second round trip. A key that
// expired between the script and the read is reported missing (stNoKey) and its lock released.
func (m *Mover) dumpBatch(ctx context.Context, src *rawPool, keys []string, budget int64) (int64, string, []dumped, error) {
	token := m.newToken()
	guard := guardPrefix + token
	lkeys := lockedKeys(keys)
	args := []any{m.cfg.BigKeyElements, m.cfg.BigKeyBytes, budget, token, m.cfg.LockTTL.Milliseconds(), m.cfg.Fence, guard}
	res, err := src.do(ctx, func(c *rawConn) {
		c.cmd("WATCH", guard)
		c.evalsha(dumpScript, lkeys, args...)
		c.cmd("MULTI")
		c.begin(1 + len(keys))
		c.arg("MGET")
		for _, k := range keys {
			c.arg(k)
		}
		c.cmd("EXEC")
	})
	var reply rval
	var vals []rval // MGET's values, one per key; nil: not read
	if err == nil {
		reply = res[1]
		if exec := res[4]; exec.kind == '*' && len(exec.arr) == 1 && len(exec.arr[0].arr) == len(keys) {
			vals = exec.arr[0].arr
		}
		if isNoScript(reply) { // the script did not run (and MGET did, unguarded): run it, then read
			args[len(args)-1] = ""
			reply, err = src.script(ctx, dumpScript, lkeys, args...)
			vals = nil
		}
	}
	if err == nil {
		err = reply.err()
	}
	if err != nil {
		return 0, "", nil, fmt.Errorf("migrate: dump %d key(s): %w", len(keys), runOver(err))
	}
	if len(reply.arr) != 2+5*len(keys) {
		return 0, "", nil, fmt.Errorf("migrate: dump script answered %d values for %d keys", len(reply.arr), len(keys))
	}
	now, lock := reply.arr[0].num, string(reply.arr[1].str)
	out := make([]dumped, len(keys))
	var unread []int // locked strings MGET did not read
	var gone []dumped
	for i, k := range keys {
		r := reply.arr[2+5*i:]
		d := dumped{key: k, st: r[0].num, mem: r[1].num, str: r[2].num == 1, expireAt: r[3].num, payload: r[4].str}
		if d.st == stMoved {
			switch {
			case !d.str:
				if r[4].kind != '$' || r[4].null {
					gone = append(gone, d)
					d.st, d.mem = stNoKey, 0
				}
			case vals == nil:
				unread = append(unread, i)
			case vals[i].kind != '$' || vals[i].null:
				gone = append(gone, d) // expired between the script and MGET
				d.st, d.mem = stNoKey, 0
			default:
				d.payload = vals[i].str
			}
		}
		out[i] = d
	}
	if len(unread) > 0 {
		g, err := m.readStrings(ctx, src, out, unread, lock)
		if err != nil {
			return 0, "", nil, err
		}
		gone = append(gone, g...)
	}
	if len(gone) > 0 {
		m.unlockBatch(ctx, src, gone, lock)
	}
	return now, lock, out, nil
}

// readStrings reads the values of the locked strings out[i] for i in idx by one MGET; a key
// gone meanwhile (expired) becomes stNoKey and is returned, for its lock to be released. On an
// error every lock of the batch is released.
func (m *Mover) readStrings(ctx context.Context, src *rawPool, out []dumped, idx []int, lock string) ([]dumped, error) {
	res, err := src.do(ctx, func(c *rawConn) {
		c.begin(1 + len(idx))
		c.arg("MGET")
		for _, i := range idx {
			c.arg(out[i].key)
		}
	})
	if err == nil && len(res[0].arr) != len(idx) {
		err = fmt.Errorf("MGET answered %d values for %d keys", len(res[0].arr), len(idx))
	}
	if err != nil {
		m.unlockBatch(ctx, src, lockedOf(out), lock)
		return nil, fmt.Errorf("migrate: read %d locked key(s): %w", len(idx), err)
	}
	var gone []dumped
	for j, i := range idx {
		v := res[0].arr[j]
		if v.kind != '$' || v.null {
			gone = append(gone, out[i])
			out[i].st, out[i].mem = stNoKey, 0
			continue
		}
		out[i].payload = v.str
	}
	return gone, nil
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
func (m *Mover) restoreBatch(ctx context.Context, src, dst *rawPool, srcNow int64, batch []dumped, lock string) ([]int64, error) {
	if err := m.restore(ctx, src, dst, srcNow, batch, lock); err != nil {
		return nil, err
	}
	return m.finish(ctx, src, batch, lock)
}

// restore is step 2; on an error it releases the batch's locks. With KeepTarget it runs
// restoreScript (a key the target holds is kept, per key); else restoreTx, the same writes
// without carrying the payloads through Lua.
func (m *Mover) restore(ctx context.Context, src, dst *rawPool, srcNow int64, batch []dumped, lock string) error {
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
		args = append(args, kind, d.expireAt, d.payload)
	}
	r, err := dst.script(ctx, restoreScript, keys, args...)
	if err == nil {
		err = r.err()
	}
	if err != nil {
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
//	MULTI; MSET ...; SET k v PXAT at ...; RESTORE k at payload REPLACE ABSTTL ...; DEL lease; EXEC
//
// EXEC runs the writes only if neither watched key changed since WATCH, and (Redis >= 6.0.9)
// if the lease key did not expire meanwhile: so the writes happen, atomically, only while the
// target's clock is at or before the deadline and the run is not recorded over, as in
// restoreScript. The check must be EVAL, not EVALSHA: a NOSCRIPT reply would skip it and let
// EXEC through.
func (m *Mover) restoreTx(ctx context.Context, dst *rawPool, srcNow int64, batch []dumped, lock string) error {
	lease := leasePrefix + lock
	deadline := srcNow + (m.cfg.LockTTL / 2).Milliseconds()
	nstr := 0
	for _, d := range batch {
		if d.str && d.expireAt < 0 {
			nstr++
		}
	}
	res, err := dst.do(ctx, func(c *rawConn) {
		c.cmd("SET", lease, 1, "PXAT", deadline)
		c.cmd("WATCH", lease, FenceKey)
		c.eval(leaseCheck, []string{lease, FenceKey}, m.cfg.Fence)
		c.cmd("MULTI")
		if nstr > 0 {
			c.begin(1 + 2*nstr)
			c.arg("MSET")
			for _, d := range batch {
				if d.str && d.expireAt < 0 {
					c.arg(d.key)
					c.arg(d.payload)
				}
			}
		}
		for _, d := range batch {
			at := d.expireAt
			if at == 0 {
				at = 1
			}
			switch {
			case d.str && at < 0:
			case d.str:
				c.cmd("SET", d.key, d.payload, "PXAT", at)
			case at < 0:
				c.cmd("RESTORE", d.key, 0, d.payload, "REPLACE")
			default:
				c.cmd("RESTORE", d.key, at, d.payload, "REPLACE", "ABSTTL")
			}
		}
		c.cmd("DEL", lease)
		c.cmd("EXEC")
	})
	if err != nil {
		return err
	}
	if err := res[2].err(); err != nil {
		return err
	}
	exec := res[len(res)-1]
	if exec.kind == '*' && exec.null {
		return errors.New("REDRAFTLEASE the batch lease ran out before the restore (the lease key expired or the run was marked over during it)")
	}
	for _, r := range res[:len(res)-1] {
		if err := r.err(); err != nil {
			return err // a command refused at MULTI: EXEC aborts (EXECABORT) and wrote nothing
		}
	}
	if err := exec.err(); err != nil {
		return err
	}
	for _, r := range exec.arr {
		if err := r.err(); err != nil {
			return err
		}
	}
	return nil
}

// leaseCheck is restoreTx's check, run after WATCH: when the run is recorded over on the
// target or the lease key is gone (its deadline passed), it writes and drops the lease key,
// which makes the EXEC that follows abort, and answers why.
// KEYS: lease key, FenceKey. ARGV: fence field.
var leaseCheck = newScript(`
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
`)

// finish is step 3: per key 1 if it moved, 0 if its lock lapsed first.
func (m *Mover) finish(ctx context.Context, src *rawPool, batch []dumped, lock string) ([]int64, error) {
	ours, err := m.finishMany(ctx, src, [][]dumped{batch}, []string{lock})
	if err != nil {
		return nil, err
	}
	return ours[0], nil
}

// finishMany runs step 3 for several batches (with their lock values) in one round trip.
func (m *Mover) finishMany(ctx context.Context, src *rawPool, batches [][]dumped, locks []string) ([][]int64, error) {
	res, err := src.do(ctx, func(c *rawConn) {
		for i, b := range batches {
			c.evalsha(unlockDeleteScript, lockArgs(b), locks[i], "1")
		}
	})
	if err != nil {
		return nil, fmt.Errorf("migrate: delete moved keys on the source: %w", err)
	}
	out := make([][]int64, len(batches))
	for i, b := range batches {
		r := res[i]
		if isNoScript(r) { // EVALSHA did nothing: run it again
			if r, err = src.script(ctx, unlockDeleteScript, lockArgs(b), locks[i], "1"); err != nil {
				return nil, fmt.Errorf("migrate: delete %d moved key(s) on the source: %w", len(b), err)
			}
		}
		if err := r.err(); err != nil {
			return nil, fmt.Errorf("migrate: delete %d moved key(s) on the source: %w", len(b), err)
		}
		out[i] = make([]int64, len(b))
		if r.kind == ':' && r.num == 1 { // all ours, all deleted
			for j := range out[i] {
				out[i][j] = 1
			}
			continue
		}
		if len(r.arr) != len(b) {
			return nil, fmt.Errorf("migrate: delete script answered %d values for %d keys", len(r.arr), len(b))
		}
		for j, v := range r.arr {
			out[i][j] = v.num
		}
	}
	return out, nil
}

// unlockBatch releases a batch's locks, keeping the keys on the source (best effort: the locks
// expire anyway).
func (m *Mover) unlockBatch(ctx context.Context, src *rawPool, batch []dumped, lock string) {
	m.cleanup(ctx, func(ctx context.Context) error {
		r, err := src.script(ctx, unlockDeleteScript, lockArgs(batch), lock, "0")
		if err == nil {
			err = r.err()
		}
		return err
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
