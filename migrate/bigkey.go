package migrate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// moveLocked moves one key under its lock on the source: it waits for the lock, then copies
// the key in chunks (a small one in one chunk). It reports whether the key was on the source
// (and is now on the target only) and its MEMORY USAGE.
func (m *Mover) moveLocked(ctx context.Context, src, dst *redis.Client, db int, key string) (bool, int64, error) {
	token, lock := m.newToken(), []string{LocksKey, key}
	if err := m.acquire(ctx, src, lock, token); err != nil {
		return false, 0, fmt.Errorf("migrate: key %q: %w", key, err)
	}
	held := true
	defer func() {
		if held {
			m.cleanup(ctx, func(ctx context.Context) error {
				return unlockScript.Run(ctx, src, lock, token).Err()
			})
		}
	}()
	st, mem, err := m.runCheck(ctx, src, key, token)
	if err != nil {
		return false, 0, err
	}
	switch st {
	case stNoKey:
		return false, 0, nil
	case stBusy:
		// Our lock lapsed before the check (a stall past LockTTL) and another mover took it.
		return false, 0, fmt.Errorf("migrate: key %q: lock lost before the copy: %w", key, ErrKeyBusy)
	case stMoved:
		// A type the chunked copy does not know (a module's), never big: a batch copy takes it
		// once our lock is released.
		if err := unlockScript.Run(ctx, src, lock, token).Err(); err != nil {
			return false, 0, fmt.Errorf("migrate: key %q: release the lock: %w", key, err)
		}
		held = false
		st, mem, err := m.combined(ctx, db, []string{key})
		switch {
		case err != nil:
			return false, 0, err
		case st[0] != stMoved && st[0] != stNoKey:
			return false, 0, fmt.Errorf("migrate: key %q: status %d from its batch copy: %w", key, st[0], ErrKeyBusy)
		}
		return st[0] == stMoved, mem[0], nil
	case stBig:
	default:
		return false, 0, fmt.Errorf("migrate: key %q: unexpected status %d under its lock", key, st)
	}
	kept := false
	if m.cfg.KeepTarget {
		// After a source failover a copy on the target was moved there before: keep it.
		n, err := dst.Exists(ctx, key).Result()
		if err != nil {
			return false, 0, fmt.Errorf("migrate: key %q on the target: %w", key, err)
		}
		kept = n == 1
	}
	c := &copier{m: m, src: src, dst: dst, key: key, lock: lock, token: token,
		tmp: tmpKey(key), fence: fenceKey(key), mem: mem}
	start := time.Now()
	if err := c.runUnless(ctx, kept); err != nil {
		m.cleanup(ctx, func(ctx context.Context) error {
			return abortScript.Run(ctx, dst, []string{c.tmp, c.fence}, token).Err()
		})
		if errors.Is(err, errGone) {
			return false, 0, nil
		}
		m.log.Warn("big key move failed; it starts over on the next try", "db", db, "key", key, "err", err)
		return false, 0, fmt.Errorf("migrate: key %q: chunked copy: %w", key, err)
	}
	ok, err := finishScript.Run(ctx, src, lock, token).Int()
	if err != nil {
		return false, 0, fmt.Errorf("migrate: key %q: finish on source: %w", key, err)
	}
	held = false
	if ok != 1 {
		// The target has a committed copy, but the lock expired under us: whoever holds it now
		// starts over and replaces that copy. Nobody was told the key moved, so nothing is lost.
		return false, 0, fmt.Errorf("migrate: key %q: lock lost before the source copy was deleted: %w", key, ErrKeyBusy)
	}
	m.log.Debug("big key moved", "db", db, "key", key, "type", c.typ, "elements", c.elems,
		"bytes", c.mem, "took", time.Since(start), "kept_target_copy", kept)
	return true, c.mem, nil
}

// runUnless runs the chunked copy unless the target's copy is kept (Config.KeepTarget).
func (c *copier) runUnless(ctx context.Context, kept bool) error {
	if kept {
		return nil
	}
	return c.run(ctx)
}

// acquire takes the lock, polling with backoff for at most LockWait.
func (m *Mover) acquire(ctx context.Context, src *redis.Client, lock []string, token string) error {
	deadline := time.Now().Add(m.cfg.LockWait)
	backoff := time.Millisecond
	for {
		now, err := lockScript.Run(ctx, src, lock, token, ms(m.cfg.LockTTL), "1", m.cfg.Fence).Int64()
		if err != nil {
			return fmt.Errorf("take lock: %w", runOver(err))
		}
		if now > 0 {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return ErrKeyBusy
		}
		if err := SleepCtx(ctx, min(backoff, left)); err != nil {
			return err
		}
		backoff = min(backoff*2, 50*time.Millisecond)
	}
}

// cleanup runs f with a short timeout even when ctx is already cancelled; errors are logged
// only (the lock and the temp key expire by themselves).
func (m *Mover) cleanup(ctx context.Context, f func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.IOTimeout)
	defer cancel()
	if err := f(ctx); err != nil {
		m.log.Warn("migrate cleanup failed", "err", err)
	}
}

// copier copies one big key from the source into a temp key on the target, then renames the
// temp key onto the key. It holds the key's lock on the source and refreshes it on every chunk
// read; every write on the target is fenced by its token.
type copier struct {
	m                      *Mover
	src, dst               *redis.Client
	key, tmp, fence, token string
	lock                   []string // KEYS of the lock scripts: LocksKey, key
	typ                    string
	mem, elems             int64
	chunk                  int   // elements per chunk
	expireAt               int64 // the source's PEXPIRETIME (-1: none)
}

// errGone means the key expired between the check and the copy: nothing to move.
var errGone = errors.New("key expired before the copy")

// errLockLost means the lock expired while the copy ran (refresh found another value).
var errLockLost = fmt.Errorf("lock lost during the copy: %w", ErrKeyBusy)

func (c *copier) run(ctx context.Context) error {
	// The type, expiry and size, and a fresh lease.
	p := c.src.Pipeline()
	lease := lockScript.Eval(ctx, p, c.lock, c.token, ms(c.m.cfg.LockTTL), "0", c.m.cfg.Fence)
	typ := p.Type(ctx, c.key)
	// PEXPIRETIME as a raw integer (ms): go-redis's PExpireTime makes a time.Duration of it,
	// which wraps for an expiry past year 2262 (session 43).
	exp := p.Do(ctx, "PEXPIRETIME", c.key)
	sent := time.Now()
	if _, err := p.Exec(ctx); err != nil {
		return runOver(err)
	}
	srcNow, _ := lease.Int64()
	if srcNow <= 0 {
		return errLockLost
	}
	c.typ = typ.Val()
	if c.typ == "none" {
		return errGone
	}
	at, err := exp.Int64()
	if err != nil {
		return fmt.Errorf("PEXPIRETIME: %w", err)
	}
	c.expireAt = max(at, -1) // -1: none
	if err := c.size(ctx); err != nil {
		return err
	}
	// Drop stale leftovers on the target and set the fence. The target refuses if its clock is
	// past half the lease (the lock may have lapsed and the key moved since we looked).
	half := c.m.cfg.LockTTL / 2
	if time.Since(sent) > half {
		return errLockLost
	}
	err = initScript.Run(ctx, c.dst, []string{c.tmp, c.fence, c.key},
		c.token, ms(c.fenceTTL()), srcNow+half.Milliseconds(), c.m.cfg.Fence).Err()
	if err != nil {
		return busyIfOurs(err)
	}
	if err := c.pipe(ctx); err != nil {
		return err
	}
	// The commit, as the start, must land within half the lease of the lock's last refresh.
	sent = time.Now()
	now, err := lockScript.Run(ctx, c.src, c.lock, c.token, ms(c.m.cfg.LockTTL), "0", c.m.cfg.Fence).Int64()
	if err != nil {
		return err
	} else if now <= 0 || time.Since(sent) > half {
		return errLockLost
	}
	err = commitScript.Run(ctx, c.dst, []string{c.tmp, c.fence, c.key}, c.token, c.expireAt, c.m.cfg.Fence, now+half.Milliseconds(), c.elems, c.typ).Err()
	return busyIfOurs(err)
}

// busyIfOurs turns the scripts' "someone else moved it" errors into ErrKeyBusy.
func busyIfOurs(err error) error {
	if err == nil || errors.Is(runOver(err), ErrRunOver) {
		return runOver(err)
	}
	// REDRAFTSHORT: the copy was dropped; the key is moved again from the start (or found
	// gone, if it expired).
	for _, p := range []string{"REDRAFTFENCED", "REDRAFTEXISTS", "REDRAFTLEASE", "REDRAFTSHORT"} {
		if strings.HasPrefix(err.Error(), p) {
			return fmt.Errorf("%v: %w", err, ErrKeyBusy)
		}
	}
	return err
}

func (c *copier) fenceTTL() time.Duration { return 2 * c.m.cfg.LockTTL }

// size reads the element count and picks the chunk size: ChunkElements, fewer when elements
// are large (so a chunk stays near ChunkBytes).
func (c *copier) size(ctx context.Context) error {
	var cmd *redis.IntCmd
	switch c.typ {
	case "hash":
		cmd = c.src.HLen(ctx, c.key)
	case "set":
		cmd = c.src.SCard(ctx, c.key)
	case "zset":
		cmd = c.src.ZCard(ctx, c.key)
	case "list":
		cmd = c.src.LLen(ctx, c.key)
	case "stream":
		cmd = c.src.XLen(ctx, c.key)
	case "string":
		cmd = c.src.StrLen(ctx, c.key)
	default:
		return fmt.Errorf("type %q cannot be copied in chunks", c.typ)
	}
	n, err := cmd.Result()
	if err != nil {
		return err
	}
	c.elems = n
	// Each element is up to two script arguments, and Lua unpacks at most ~8000 at a time.
	c.chunk = min(c.m.cfg.ChunkElements, 3000)
	if c.typ == "string" {
		c.chunk = c.m.cfg.ChunkBytes
	} else if n > 0 {
		per := max(c.mem/n, 1)
		c.chunk = int(min(int64(c.chunk), max(int64(c.m.cfg.ChunkBytes)/per, 10)))
	}
	return nil
}

// Chunks in flight. A chunk's read or write is one round trip; several at once overlap their
// waits, each on its own connection so other clients' commands interleave between them.
const (
	// readsInFlight is how many chunks of a zset, list or string are read at once (by rank or
	// offset; a hash's or set's SCAN cursor allows only one).
	readsInFlight = 4
	// writesInFlight is how many chunks are written at once where their order does not matter
	// (HSET, SADD, ZADD, SETRANGE of disjoint ranges); a list's RPUSH and a stream's XADD go
	// one at a time, in order.
	writesInFlight = 4
)

// pipe runs the reader (source) and the writers (target) concurrently, so chunks are written
// while the next ones are read. The first error stops both.
func (c *copier) pipe(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := make(chan *batch, 4)
	writers := writesInFlight
	if c.typ == "list" || c.typ == "stream" {
		writers = 1
	}
	werr := make(chan error, writers)
	for range writers {
		go func() {
			var err error
			for b := range out {
				if err == nil {
					if err = busyIfOurs(writeScript.Run(ctx, c.dst, []string{c.tmp, c.fence}, b.argv...).Err()); err != nil {
						cancel()
					}
				}
			}
			werr <- err
		}()
	}
	emit := func(b *batch) error {
		if b.empty() {
			return nil
		}
		select {
		case out <- b:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var rerr error
	switch c.typ {
	case "hash", "set":
		rerr = c.readScan(ctx, emit)
	case "zset":
		rerr = c.ranged(ctx, emit, c.zsetChunk)
	case "list":
		rerr = c.ranged(ctx, emit, c.listChunk)
	case "string":
		rerr = c.ranged(ctx, emit, c.stringChunk)
	case "stream":
		rerr = c.readStream(ctx, emit)
	}
	if rerr != nil {
		cancel()
	}
	close(out)
	var first error
	for range writers {
		if err := <-werr; err != nil && first == nil && (rerr == nil || !errors.Is(err, context.Canceled)) {
			first = err
		}
	}
	if first != nil {
		return first
	}
	return rerr
}

// ranged reads chunks 0, 1, 2, ... of a key addressed by rank or offset, readsInFlight at once,
// and emits them in order until read reports the last one (reads past the end are empty).
func (c *copier) ranged(ctx context.Context, emit func(*batch) error, read func(ctx context.Context, n int64) (*batch, bool, error)) error {
	type chunk struct {
		b    *batch
		last bool
		err  error
	}
	for n := int64(0); ; n += readsInFlight {
		var got [readsInFlight]chunk
		var wg sync.WaitGroup
		for i := range got {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[i].b, got[i].last, got[i].err = read(ctx, n+int64(i))
			}()
		}
		wg.Wait()
		for _, ch := range got {
			if ch.err != nil {
				return ch.err
			}
			if err := emit(ch.b); err != nil {
				return err
			}
			if ch.last {
				return nil
			}
		}
	}
}

// read runs one read command on the source in a pipeline with the lock refresh.
func (c *copier) read(ctx context.Context, args ...any) (any, error) {
	p := c.src.Pipeline()
	lease := lockScript.Eval(ctx, p, c.lock, c.token, ms(c.m.cfg.LockTTL), "0", c.m.cfg.Fence)
	cmd := p.Do(ctx, args...)
	if _, err := p.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, runOver(err)
	}
	if n, _ := lease.Int64(); n <= 0 {
		return nil, errLockLost
	}
	v, err := cmd.Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	return v, err
}

// readScan copies a hash (HSCAN → HSET) or a set (SSCAN → SADD). SCAN may return an element
// twice; both writes are idempotent.
func (c *copier) readScan(ctx context.Context, emit func(*batch) error) error {
	scan, write := "HSCAN", "HSET"
	if c.typ == "set" {
		scan, write = "SSCAN", "SADD"
	}
	cursor := "0"
	for {
		v, err := c.read(ctx, scan, c.key, cursor, "COUNT", c.chunk)
		if err != nil {
			return err
		}
		r, ok := v.([]any)
		if !ok || len(r) != 2 {
			return fmt.Errorf("%s: unexpected reply %T", scan, v)
		}
		cursor, _ = r[0].(string)
		items, _ := r[1].([]any)
		b := c.newBatch()
		b.add(write, items...)
		if err := emit(b); err != nil {
			return err
		}
		if cursor == "0" {
			return nil
		}
	}
}

// zsetChunk reads chunk n of a sorted set by rank (ZRANGE i j WITHSCORES → ZADD score member);
// scores travel as Redis formats them, so they round-trip exactly.
func (c *copier) zsetChunk(ctx context.Context, n int64) (*batch, bool, error) {
	i := n * int64(c.chunk)
	v, err := c.read(ctx, "ZRANGE", c.key, i, i+int64(c.chunk)-1, "WITHSCORES")
	if err != nil {
		return nil, false, err
	}
	items, _ := v.([]any)
	b := c.newBatch()
	args := make([]any, 0, len(items))
	for j := 0; j+1 < len(items); j += 2 {
		args = append(args, items[j+1], items[j])
	}
	b.add("ZADD", args...)
	return b, len(items) < 2*c.chunk, nil
}

// listChunk reads chunk n of a list (LRANGE i j → RPUSH); the chunks are written in order.
func (c *copier) listChunk(ctx context.Context, n int64) (*batch, bool, error) {
	i := n * int64(c.chunk)
	v, err := c.read(ctx, "LRANGE", c.key, i, i+int64(c.chunk)-1)
	if err != nil {
		return nil, false, err
	}
	items, _ := v.([]any)
	b := c.newBatch()
	b.add("RPUSH", items...)
	return b, len(items) < c.chunk, nil
}

// stringChunk reads chunk n of a string (GETRANGE → SETRANGE at the same offset).
func (c *copier) stringChunk(ctx context.Context, n int64) (*batch, bool, error) {
	off := n * int64(c.chunk)
	b := c.newBatch()
	if off >= c.elems {
		return b, true, nil
	}
	v, err := c.read(ctx, "GETRANGE", c.key, off, off+int64(c.chunk)-1)
	if err != nil {
		return nil, false, err
	}
	s, _ := v.(string)
	if s != "" {
		b.add("SETRANGE", off, s)
	}
	return b, s == "" || off+int64(c.chunk) >= c.elems, nil
}

// batch is the ARGV of one writeScript call: token, fence TTL, then command groups.
type batch struct {
	argv []any
	cmds int
}

func (c *copier) newBatch() *batch {
	return &batch{argv: []any{c.token, ms(c.fenceTTL()), c.m.cfg.Fence}}
}

// add appends one command on the temp key; a data command without arguments is skipped.
func (b *batch) add(cmd string, args ...any) {
	if len(args) == 0 {
		return
	}
	b.argv = append(b.argv, len(args)+1, cmd)
	b.argv = append(b.argv, args...)
	b.cmds++
}

func (b *batch) empty() bool { return b.cmds == 0 }
