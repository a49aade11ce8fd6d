package migrate

import (
	"context"
	"sync"
)

// Migrate-on-access in rounds. Every client command on a migrating slot calls MoveKeys first,
// so with many clients there are many concurrent calls of a key or two each. Rather than one
// script (and, before, one MIGRATE) per call, concurrent calls for one database are combined:
// a call that finds a round running queues its keys, and the next round takes every queued
// key at once: one dump on the source, one restore on the target and one delete on the
// source for all of them. The source thus runs a few scripts per round instead of one per
// client command, and none of them waits on the target.

// combiner queues the calls of one database and runs their rounds.
type combiner struct {
	mu      sync.Mutex
	queue   []*onAccess
	running bool
}

// onAccess is one MoveKeys call waiting for its round.
type onAccess struct {
	keys []string
	done chan struct{}
	// Filled by the round: per key a status (stNoKey, stMoved, stBusy or stBig) and the bytes
	// moved; err fails the whole call.
	st  []int64
	mem []int64
	err error
}

// combined runs keys through the next round for db and returns each key's status.
func (m *Mover) combined(ctx context.Context, db int, keys []string) ([]int64, []int64, error) {
	m.mu.Lock()
	c := m.combiners[db]
	if c == nil {
		c = &combiner{}
		m.combiners[db] = c
	}
	m.mu.Unlock()
	call := &onAccess{keys: keys, done: make(chan struct{})}
	c.mu.Lock()
	c.queue = append(c.queue, call)
	if !c.running {
		c.running = true
		go m.rounds(context.WithoutCancel(ctx), c, db)
	}
	c.mu.Unlock()
	select {
	case <-call.done:
		return call.st, call.mem, call.err
	case <-ctx.Done():
		// The round goes on without us; its keys end up moved or untouched, both fine.
		return nil, nil, ctx.Err()
	}
}

// rounds runs rounds while calls are queued.
func (m *Mover) rounds(ctx context.Context, c *combiner, db int) {
	for {
		c.mu.Lock()
		calls := c.queue
		c.queue = nil
		if len(calls) == 0 {
			c.running = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		m.round(ctx, db, calls)
	}
}

// round moves the keys of calls by batch copies, BatchKeys keys and BatchBytes at most per
// batch, and reports to every call.
func (m *Mover) round(ctx context.Context, db int, calls []*onAccess) {
	ctx, cancel := context.WithTimeout(ctx, 2*m.cfg.IOTimeout+m.cfg.LockTTL)
	defer cancel()
	type result struct{ st, mem int64 }
	res := map[string]result{}
	var keys []string
	for _, call := range calls {
		for _, k := range call.keys {
			if _, ok := res[k]; !ok {
				res[k] = result{}
				keys = append(keys, k)
			}
		}
	}
	err := m.copyKeys(ctx, db, keys, m.cfg.BatchKeys, m.cfg.BatchBytes, func(d dumped) {
		res[d.key] = result{d.st, d.mem}
	})
	for _, call := range calls {
		call.err = err
		if err == nil {
			call.st, call.mem = make([]int64, len(call.keys)), make([]int64, len(call.keys))
			for i, k := range call.keys {
				r := res[k]
				call.st[i], call.mem[i] = r.st, r.mem
			}
		}
		close(call.done)
	}
}

// copyKeys moves keys by batch copies, one batch at a time, and reports every key's final
// status: stNoKey, stMoved, stBusy or stBig (the last two are left to the caller).
func (m *Mover) copyKeys(ctx context.Context, db int, keys []string, batchKeys int, budget int64, report func(dumped)) error {
	src, dst, err := m.clients(db)
	if err != nil {
		return err
	}
	for len(keys) > 0 {
		batch := keys[:min(len(keys), batchKeys)]
		token := m.newToken()
		now, res, err := m.dumpBatch(ctx, src, batch, token, budget)
		if err != nil {
			return err
		}
		var later []string
		var locked []dumped
		for _, d := range res {
			switch d.st {
			case stMoved:
				locked = append(locked, d)
			case stDeferred:
				later = append(later, d.key)
			default:
				report(d)
			}
		}
		keys = append(later, keys[len(batch):]...)
		if len(locked) == 0 {
			continue
		}
		ours, err := m.restoreBatch(ctx, src, dst, now, locked, token)
		if err != nil {
			return err
		}
		for i, d := range locked {
			if ours[i] != 1 {
				d.st = stBusy // the lock lapsed: whoever holds it now moves the key again
			}
			report(d)
		}
	}
	return nil
}
