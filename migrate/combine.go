package migrate

import (
	"context"
	"sync"
)

// Migrate-on-access in rounds. Every client command on a migrating slot calls MoveKeys first,
// so with many clients there are many concurrent calls of a key or two each. Rather than one
// script (and, before, one MIGRATE) per call, concurrent calls for one database are combined:
// a call that finds maxRounds rounds running queues its keys, and the next round takes every
// queued key at once: one dump on the source, one restore on the target and one delete on the
// source for all of them. The source thus runs a few scripts per round instead of one per
// client command, and none of them waits on the target.

// combiner queues the calls of one database and runs their rounds, at most maxRounds at once.
type combiner struct {
	mu      sync.Mutex
	queue   []*onAccess
	running int
}

// maxRounds is how many rounds of one database may be in their dump step at once: a call
// waits for a round only when that many are, so it rarely waits for more than its own.
const maxRounds = 4

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
	if c.running < maxRounds {
		c.running++
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
			c.running--
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		m.round(ctx, db, calls)
	}
}

// round moves the keys of calls by batch copies, BatchKeys keys and BatchBytes at most per
// batch, and reports to every call. Only the dump steps are serialised: the restore and the
// delete of each batch run on their own goroutine, so the next round's dump (which is all that
// keys already moved need) starts as soon as this round's dumps are done. A call is answered
// as soon as all its keys are settled.
func (m *Mover) round(ctx context.Context, db int, calls []*onAccess) {
	ctx, cancel := context.WithTimeout(ctx, 2*m.cfg.IOTimeout+m.cfg.LockTTL)
	idx := map[string]int{}
	var keys []string
	for _, call := range calls {
		for _, k := range call.keys {
			if _, ok := idx[k]; !ok {
				idx[k] = len(keys)
				keys = append(keys, k)
			}
		}
	}
	// Per key, written by exactly one goroutine before the calls that hold it are answered.
	st, mem, errs := make([]int64, len(keys)), make([]int64, len(keys)), make([]error, len(keys))
	inRestore := make([]bool, len(keys))
	var wg sync.WaitGroup
	err := m.dumpKeys(ctx, db, keys, m.cfg.BatchKeys, m.cfg.BatchBytes, func(d dumped) {
		st[idx[d.key]], mem[idx[d.key]] = d.st, d.mem
	}, func(src, dst *rawPool, now int64, batch []dumped, lock string) {
		for _, d := range batch {
			inRestore[idx[d.key]] = true
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ours, err := m.restoreBatch(ctx, src, dst, now, batch, lock)
			for i, d := range batch {
				j := idx[d.key]
				switch {
				case err != nil:
					errs[j] = err
				case ours[i] == 1:
					st[j], mem[j] = stMoved, d.mem
				default:
					st[j] = stBusy // the lock lapsed: whoever holds it now moves the key again
				}
			}
		}()
	})
	answer := func(call *onAccess) {
		call.err = err
		call.st, call.mem = make([]int64, len(call.keys)), make([]int64, len(call.keys))
		for i, k := range call.keys {
			j := idx[k]
			call.st[i], call.mem[i] = st[j], mem[j]
			if errs[j] != nil && call.err == nil {
				call.err = errs[j]
			}
		}
		close(call.done)
	}
	var later []*onAccess
	for _, call := range calls {
		waits := false
		for _, k := range call.keys {
			waits = waits || inRestore[idx[k]]
		}
		if waits {
			later = append(later, call)
		} else {
			answer(call)
		}
	}
	go func() {
		wg.Wait()
		cancel()
		for _, call := range later {
			answer(call)
		}
	}()
}

// dumpKeys runs step 1 of batch copies over keys, one batch at a time: keys that need nothing
// more (stNoKey, stBusy, stBig) go to settled, and each batch of locked keys to locked, which
// must see it through steps 2 and 3.
func (m *Mover) dumpKeys(ctx context.Context, db int, keys []string, batchKeys int, budget int64,
	settled func(dumped), locked func(src, dst *rawPool, now int64, batch []dumped, lock string)) error {
	src, dst, err := m.raws(db)
	if err != nil {
		return err
	}
	for len(keys) > 0 {
		batch := keys[:min(len(keys), batchKeys)]
		now, lock, res, err := m.dumpBatch(ctx, src, batch, budget)
		if err != nil {
			return err
		}
		var later []string
		var ours []dumped
		for _, d := range res {
			switch d.st {
			case stMoved:
				ours = append(ours, d)
			case stDeferred:
				later = append(later, d.key)
			default:
				settled(d)
			}
		}
		keys = append(later, keys[len(batch):]...)
		if len(ours) > 0 {
			locked(src, dst, now, ours, lock)
		}
	}
	return nil
}
