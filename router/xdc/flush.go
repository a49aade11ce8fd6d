package xdc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/migrate"
)

// A flush's node side (fsm/cmd_flush.go has the protocol, docs/commands.md "Flushing" the
// meaning). Every node runs it from its replicator, which knows the shipping loops to drain
// and holds the internal user's connections:
//
//   - frozen: once the router holds the flushed databases' keyed requests and has none in
//     flight (FlushGate), no slot copy into this node is running, and every entry already in
//     the outboxes this node ships has been applied in every other DC, it acks (AckFlush).
//     A flush still frozen flush_timeout after this node first saw it is aborted by it.
//   - deleting: the node deletes the data keys of the flushed databases on every group of its
//     DC (SCAN, then DEL or UNLINK in batches through a script fenced by the key
//     __redraft:flush), and reports its DC done (FinishFlush). Every node of the DC does this,
//     so a node that dies mid-way does not stall the flush; the fence makes the first to
//     finish end the others' batches, so none deletes after its DC was reported done.

// FlushGate is the router's side of a flush: WaitFlushIdle returns once the node's routing
// holds flush id's keyed requests and none admitted before is in flight.
type FlushGate interface {
	WaitFlushIdle(ctx context.Context, id uint64) error
}

// Proposer proposes a command to the cluster state (the node's one proposal path).
type Proposer interface {
	Propose(ctx context.Context, cmd fsm.Command) error
}

func (r *Replicator) propose(ctx context.Context, cmd fsm.Command) error {
	if r.cfg.Proposer == nil {
		return errors.New("xdc: no proposer configured: flushes need the node")
	}
	return r.cfg.Proposer.Propose(ctx, cmd)
}

// FlushFenceKey is the key, in each flushed database of each master, that records the flush
// being deleted there ("<id>:deleting") or done ("<id>:done").
const FlushFenceKey = InternalPrefix + "flush"

// flushDeleteBatch is how many keys one fenced delete step removes.
const flushDeleteBatch = 1000

// flushLua runs one fenced step of a flush on a master: ARGV[1] the flush id, ARGV[2] the
// step ("begin", "end", or "del"/"unlink" with the keys in ARGV[3..]). begin answers 1 when
// the deletion of this flush runs (or may start) here, 0 when it is done or a later flush owns
// the fence; the other steps answer -1 once the fence is not this flush's deletion any more.
var flushLua = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
local id = tonumber(ARGV[1])
local cid, phase = -1, ''
if cur then
  local a, b = string.match(cur, '^(%d+):(%a+)$')
  if a then cid, phase = tonumber(a), b end
end
local op = ARGV[2]
if op == 'begin' then
  if cid < id then
    redis.call('SET', KEYS[1], ARGV[1] .. ':deleting')
    return 1
  end
  if cid == id and phase == 'deleting' then return 1 end
  return 0
end
if cid ~= id or phase ~= 'deleting' then return -1 end
if op == 'end' then
  redis.call('SET', KEYS[1], ARGV[1] .. ':done')
  return 1
end
local n = 0
for i = 3, #ARGV do n = n + redis.call(op, ARGV[i]) end
return n
`)

// flusher is the Replicator's flush state.
type flusher struct {
	copyIn atomic.Int64 // slot copies into this node being applied

	mu       sync.Mutex
	changed  chan struct{}        // closed and replaced on every Notify
	running  map[string]bool      // "ack:<id>", "del:<id>": work under way
	seen     map[uint64]time.Time // when this node first saw each frozen flush
	aborted  map[uint64]bool      // flushes this node proposed to abort
	lastErr  map[string]string    // the last error of each piece of work, for an abort's reason
	draining string               // what the drain waits for after a failed try ("": nothing)
	finished map[string]bool      // work done: this node's state may show its result a moment later
	runCtx   context.Context      // the replicator's Run context, for re-planning loops
}

// wake returns the channel the next Notify closes.
func (f *flusher) wake() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.changed == nil {
		f.changed = make(chan struct{})
	}
	return f.changed
}

// notify wakes whoever waits for a state change.
func (f *flusher) notify() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.changed != nil {
		close(f.changed)
	}
	f.changed = make(chan struct{})
}

// Flush runs FLUSHDB (db) or FLUSHALL (fsm.FlushAllDBs) as a cluster operation: it proposes
// the flush and returns once it is done in every DC, or the error that made it fail (nothing
// was deleted then). A request that finds a flush of its database under way is served by it.
func (r *Replicator) Flush(ctx context.Context, db int, async bool) error {
	me := r.cfg.Cluster.ID()
	token := me + ":" + strconv.FormatInt(time.Now().UnixNano(), 36)
	for {
		st := r.cfg.Cluster.State()
		if cur := st.Flush; cur.Active() {
			end, err := r.awaitFlush(ctx, func(st *fsm.State) *fsm.Flush {
				if f := st.Flush; f != nil && f.ID == cur.ID && f.Active() {
					return nil
				}
				return st.Flush
			})
			if err != nil {
				return err
			}
			if end.ID == cur.ID && end.Phase == fsm.FlushDone && (cur.DB == fsm.FlushAllDBs || cur.DB == db) {
				return nil // the flush under way emptied this database after the request came
			}
			continue
		}
		err := r.propose(ctx, &fsm.StartFlush{Token: token, DB: db, Async: async, Node: me})
		if err != nil && st.Setting("flush_enabled") != "true" {
			return err // refused for good: no need to look for it in the state
		}
		if err == nil || r.flushStarted(ctx, token) {
			// (An error with the flush started: a proposal retried after its first try
			// committed, answered busy or exists. The flush it started is the answer.)
			break
		}
		if now := r.cfg.Cluster.State().Flush; now.Active() && now.Token != token {
			continue // another flush won the race: wait for it
		}
		// The proposal's outcome may be unknown (a leader lost after it appended the entry):
		// the flush may still start. Said so, since a client that sends it again would flush
		// the writes acknowledged in between (until session 43 this read as a refusal).
		return fmt.Errorf("%w (the flush was not seen to start, but it may still: look for a flush under way in the status before sending it again)", err)
	}
	end, err := r.awaitFlush(ctx, func(st *fsm.State) *fsm.Flush {
		if f := st.Flush; f != nil && f.Token == token && !f.Active() {
			return f
		}
		return nil
	})
	if err != nil {
		return err
	}
	if end.Phase == fsm.FlushFailed {
		return fmt.Errorf("flush failed, nothing was deleted: %s", end.Reason)
	}
	return nil
}

// flushStarted reports whether a flush with token shows in the node's state within a moment
// (the proposal's error may come back before this node applied the entry that started it).
func (r *Replicator) flushStarted(ctx context.Context, token string) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	f, err := r.awaitFlush(ctx, func(st *fsm.State) *fsm.Flush {
		if f := st.Flush; f != nil && f.Token == token {
			return f
		}
		return nil
	})
	return err == nil && f != nil
}

// awaitFlush waits until done returns a flush for the node's state.
func (r *Replicator) awaitFlush(ctx context.Context, done func(*fsm.State) *fsm.Flush) (*fsm.Flush, error) {
	for {
		wake := r.fl.wake()
		if f := done(r.cfg.Cluster.State()); f != nil {
			return f, nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// runFlushes acts on the flush in the node's state whenever it changes, and every second for
// the timeout, until ctx ends.
func (r *Replicator) runFlushes(ctx context.Context) {
	r.fl.mu.Lock()
	r.fl.runCtx = ctx
	r.fl.mu.Unlock()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		wake := r.fl.wake()
		r.stepFlush(ctx, r.cfg.Cluster.State())
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-tick.C:
		}
	}
}

// stepFlush starts this node's part of st's flush, and aborts a freeze that took too long.
func (r *Replicator) stepFlush(ctx context.Context, st *fsm.State) {
	f := st.Flush
	if !f.Active() || r.cfg.Proposer == nil {
		if len(st.DCs) > 0 { // a current state with no flush to act on: forget the past ones
			r.fl.mu.Lock()
			r.fl.seen, r.fl.aborted, r.fl.lastErr, r.fl.finished = nil, nil, nil, nil
			r.fl.mu.Unlock()
		}
		return
	}
	me := r.cfg.Cluster.ID()
	switch f.Phase {
	case fsm.FlushFrozen:
		r.fl.mu.Lock()
		if r.fl.seen == nil {
			r.fl.seen, r.fl.aborted = map[uint64]time.Time{}, map[uint64]bool{}
		}
		seen, ok := r.fl.seen[f.ID]
		if !ok {
			seen = time.Now()
			r.fl.seen[f.ID] = seen
		}
		timeout := st.SettingDuration("flush_timeout")
		abort := time.Since(seen) > timeout && !r.fl.aborted[f.ID]
		if abort {
			r.fl.aborted[f.ID] = true
		}
		r.fl.mu.Unlock()
		if _, acked := f.Acks[me]; !acked {
			r.flushWork(ctx, "ack", f, timeout, r.ackFlush)
		}
		if abort {
			reason := fmt.Sprintf("node(s) %s did not hold their requests and drain their replication within flush_timeout %s (down, or a DC they ship to is unreachable)",
				strings.Join(st.FlushWaiting(), ", "), timeout)
			r.fl.mu.Lock()
			if e := r.fl.lastErr["ack:"+strconv.FormatUint(f.ID, 10)]; e != "" {
				reason += "; " + me + ": " + e
			} else if r.fl.draining != "" {
				reason += "; " + me + ": " + r.fl.draining
			}
			r.fl.mu.Unlock()
			go func() {
				if err := r.propose(ctx, &fsm.AbortFlush{ID: f.ID, Reason: reason}); err != nil {
					r.log.Debug("flush abort not committed", "flush", f.ID, "err", err)
				} else {
					r.log.Warn("flush aborted, nothing deleted", "flush", f.ID, "reason", reason)
				}
			}()
		}
	case fsm.FlushDeleting:
		if f.Deleted[r.cfg.Cluster.DC()] == "" {
			r.flushWork(ctx, "del", f, 0, r.deleteFlush)
		}
	}
}

// flushWork runs step for f in the background unless it runs already, retrying while f is
// still in the phase it was started for. timeout bounds one try (0: unbounded).
func (r *Replicator) flushWork(ctx context.Context, kind string, f *fsm.Flush, timeout time.Duration,
	step func(context.Context, *fsm.Flush) error) {
	key := kind + ":" + strconv.FormatUint(f.ID, 10)
	r.fl.mu.Lock()
	if r.fl.running == nil {
		r.fl.running = map[string]bool{}
	}
	if r.fl.running[key] || r.fl.finished[key] {
		r.fl.mu.Unlock()
		return
	}
	r.fl.running[key] = true
	r.fl.mu.Unlock()
	go func() {
		defer func() {
			r.fl.mu.Lock()
			delete(r.fl.running, key)
			r.fl.mu.Unlock()
			r.fl.notify() // look again: the phase may call for more
		}()
		backoff := 50 * time.Millisecond
		for ctx.Err() == nil {
			cur := r.cfg.Cluster.State().Flush
			if cur == nil || cur.ID != f.ID || cur.Phase != f.Phase {
				return
			}
			tctx, cancel := ctx, context.CancelFunc(func() {})
			if timeout > 0 {
				tctx, cancel = context.WithTimeout(ctx, timeout)
			}
			err := step(tctx, cur)
			cancel()
			if err == nil {
				r.fl.mu.Lock()
				if r.fl.finished == nil {
					r.fl.finished = map[string]bool{}
				}
				r.fl.finished[key] = true
				r.fl.mu.Unlock()
				return
			}
			r.log.Warn("flush step failed; retrying", "flush", f.ID, "step", kind, "err", err)
			r.fl.mu.Lock()
			if r.fl.lastErr == nil {
				r.fl.lastErr = map[string]string{}
			}
			r.fl.lastErr[key] = err.Error()
			r.fl.mu.Unlock()
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			backoff = min(2*backoff, time.Second)
		}
	}()
}

// ackFlush waits until this node may ack f's freeze, then acks it.
func (r *Replicator) ackFlush(ctx context.Context, f *fsm.Flush) error {
	start := time.Now()
	if r.cfg.FlushGate != nil {
		if err := r.cfg.FlushGate.WaitFlushIdle(ctx, f.ID); err != nil {
			return err
		}
	}
	// Copies into this node that started before it saw the flush; later ones are refused.
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for r.fl.copyIn.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("a slot copy into this DC is still running: %w", ctx.Err())
		case <-t.C:
		}
	}
	idle := time.Since(start)
	if err := r.drainForFlush(ctx); err != nil {
		return err
	}
	drained := time.Since(start)
	if err := r.propose(ctx, &fsm.AckFlush{ID: f.ID, Node: r.cfg.Cluster.ID()}); err != nil {
		return err
	}
	r.log.Info("flush freeze acked", "flush", f.ID, "idle_after", idle.Round(time.Millisecond),
		"drained_after", drained.Round(time.Millisecond), "acked_after", time.Since(start).Round(time.Millisecond))
	return nil
}

// drainForFlush returns once every entry now in the outboxes and group logs this node ships
// has been applied in every other DC.
func (r *Replicator) drainForFlush(ctx context.Context) error {
	st, err := r.actingState(ctx, flushAwaitTry)
	if err != nil {
		return err
	}
	if len(r.destinations(st)) == 0 {
		return nil
	}
	r.scanDatabases(ctx)
	r.fl.mu.Lock()
	runCtx := r.fl.runCtx
	r.fl.mu.Unlock()
	if runCtx != nil {
		r.plan(runCtx) // loops for databases written since the last scan
	}
	type source struct {
		server
		db int
	}
	r.mu.Lock()
	if !r.acting(r.planned.st) {
		// The loops and logs were planned from the empty state of a node that stopped
		// acting: none run, which is not every entry shipped.
		r.mu.Unlock()
		return errNotActing
	}
	slots := map[source][]int{}
	for k, l := range r.loops {
		slots[source{k.server, k.db}] = l.slots
	}
	var logs []*logGroup
	for _, l := range r.logs {
		logs = append(logs, l.g)
	}
	r.mu.Unlock()
	for src, sl := range slots {
		pipe := r.client(src.server, src.db).Pipeline()
		tails := make([]*redis.XMessageSliceCmd, len(sl))
		for i, s := range sl {
			tails[i] = pipe.XRevRangeN(ctx, OutboxKey(s), "+", "-", 1)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("read outbox tails on %s: %w", src.group, err)
		}
		for i, s := range sl {
			msgs := tails[i].Val()
			if len(msgs) == 0 {
				continue
			}
			if err := r.awaitShipped(ctx, src.db, s, "", msgs[0].ID); err != nil {
				return fmt.Errorf("draining slot %d of database %d: %w", s, src.db, err)
			}
		}
	}
	for _, g := range logs {
		msgs, err := g.c.XRevRangeN(ctx, LogKey, "+", "-", 1).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("read the tail of log %s in database %d: %w", g.log, g.db, err)
		}
		if len(msgs) == 0 {
			continue
		}
		if err := r.awaitShipped(ctx, g.db, 0, g.log.Group, msgs[0].ID); err != nil {
			return fmt.Errorf("draining log %s of database %d: %w", g.log, g.db, err)
		}
	}
	return nil
}

// flushAwaitTry bounds one wait for a slot's shipping; then the slot's owner is looked up
// again (a node that came back, or one that stopped answering, moves slots between loops).
const flushAwaitTry = 2 * time.Second

// awaitShipped waits until every other DC applied id of (db, slot)'s outbox, or of group's
// log when group is set, as the node shipping it in this DC knows it, until ctx ends.
func (r *Replicator) awaitShipped(ctx context.Context, db, slot int, group, id string) error {
	for {
		err := r.Await(ctx, db, slot, group, id, flushAwaitTry)
		r.fl.mu.Lock()
		r.fl.draining = ""
		if err != nil {
			what := fmt.Sprintf("entries of slot %d", slot)
			if group != "" {
				what = "entries of group " + group + "'s log"
			}
			r.fl.draining = fmt.Sprintf("%s of database %d not yet applied in every other DC (%v)", what, db, err)
		}
		r.fl.mu.Unlock()
		if err == nil || ctx.Err() != nil {
			return err
		}
	}
}

// flushDatabases is how many databases a client may select through a node (the router's
// Config.Databases, which nodes leave at its default, as redis-server's): a FLUSHALL fences
// each of them.
const flushDatabases = 16

// checkDB refuses a peer request's database outside the ones a client may select: each
// (server, database) keeps a client for good, and go-redis takes a negative one for 0.
func checkDB(db int) error {
	if db < 0 || db >= flushDatabases {
		return fmt.Errorf("xdc: database %d out of range (0-%d)", db, flushDatabases-1)
	}
	return nil
}

// deleteFlush deletes f's data keys on every group of this node's DC, then reports the DC.
func (r *Replicator) deleteFlush(ctx context.Context, f *fsm.Flush) error {
	st := r.cfg.Cluster.State()
	dc := st.DCs[r.cfg.Cluster.DC()]
	if dc == nil {
		return errors.New("this node's DC is not in its state")
	}
	start := time.Now()
	keys := 0
	for _, gid := range dc.GroupIDs() {
		srv := serverOf(dc.Groups[gid])
		dbs := []int{f.DB}
		if f.DB == fsm.FlushAllDBs {
			info, err := r.client(srv, 0).Info(ctx, "keyspace").Result()
			if err != nil {
				return fmt.Errorf("group %s: %w", gid, err)
			}
			// Every database a client may select gets the fence, the empty ones too: a node
			// whose pass is late lists the databases again, and one empty at the first pass
			// but written after the flush's +OK would have no fence, and its new writes be
			// deleted (until session 43 only the databases in use were fenced).
			dbs = keyspaceDBs(info)
			for db := range flushDatabases {
				if !slices.Contains(dbs, db) {
					dbs = append(dbs, db)
				}
			}
		}
		for _, db := range dbs {
			n, err := r.deleteDB(ctx, f, r.client(srv, db))
			if err != nil {
				return fmt.Errorf("group %s, database %d: %w", gid, db, err)
			}
			keys += n
		}
	}
	if err := r.propose(ctx, &fsm.FinishFlush{ID: f.ID, Node: r.cfg.Cluster.ID()}); err != nil {
		return err
	}
	r.log.Info("flush deleted in this DC", "flush", f.ID, "db", f.DB, "keys", keys, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// deleteDB deletes the data keys of c's database under f's fence and returns how many this
// node deleted.
func (r *Replicator) deleteDB(ctx context.Context, f *fsm.Flush, c *redis.Client) (int, error) {
	id := strconv.FormatUint(f.ID, 10)
	fence := []string{FlushFenceKey}
	ok, err := flushLua.Run(ctx, c, fence, id, "begin").Int()
	if err != nil || ok != 1 {
		return 0, err // 0: deleted already, by another node of the DC
	}
	op := "del"
	if f.Async {
		op = "unlink"
	}
	deleted := 0
	var cursor uint64
	for {
		batch, next, err := c.Scan(ctx, cursor, "", flushDeleteBatch).Result()
		if err != nil {
			return deleted, err
		}
		args := []any{id, op}
		for _, k := range batch {
			if !isInternal(k) || convergeState(k) {
				args = append(args, k)
			}
		}
		if len(args) > 2 {
			n, err := flushLua.Run(ctx, c, fence, args...).Int()
			if err != nil {
				return deleted, err
			}
			if n < 0 {
				return deleted, nil // another node of the DC finished this database
			}
			deleted += n
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	_, err = flushLua.Run(ctx, c, fence, id, "end").Int()
	return deleted, err
}

// keyspaceDBs returns the databases INFO keyspace lists, and 0, sorted.
func keyspaceDBs(info string) []int {
	dbs := []int{0}
	for db := range migrate.Keyspace(info) {
		if db > 0 {
			dbs = append(dbs, db)
		}
	}
	sort.Ints(dbs)
	return dbs
}

// usedDatabases returns the databases of srv that INFO keyspace lists and that hold a key
// besides the server's own marks, and 0, sorted. A migration's FenceKey lands in every
// database of both masters, a flush's FlushFenceKey in every database it flushed: counting
// those as in use started log shippers and per-slot loops for each of the server's 16
// databases. A database whose only keys are the marks is left out (an error keeps it in); the
// next scan sees it once a client writes there, as it sees any database first written to.
func (r *Replicator) usedDatabases(ctx context.Context, srv server) ([]int, error) {
	info, err := r.client(srv, 0).Info(ctx, "keyspace").Result()
	if err != nil {
		return nil, err
	}
	dbs := []int{0}
	for db, keys := range migrate.Keyspace(info) {
		if db <= 0 {
			continue
		}
		if keys >= 0 && keys <= 2 {
			marks, err := r.client(srv, db).Exists(ctx, migrate.FenceKey, FlushFenceKey).Result()
			if err == nil && marks >= keys {
				continue
			}
		}
		dbs = append(dbs, db)
	}
	sort.Ints(dbs)
	return dbs, nil
}

// enterCopy counts a slot copy into this node, or refuses it while a flush is active or when
// it was read before a flush this node has seen (flushes: the source's count of flushes done):
// a copy must never bring back data a flush deleted. leaveCopy ends what enterCopy admitted.
func (r *Replicator) enterCopy(flushes uint64) error {
	r.fl.copyIn.Add(1)
	st := r.cfg.Cluster.State()
	switch {
	case len(st.DCs) == 0:
		r.fl.copyIn.Add(-1)
		return errors.New("xdc: this node is not acting on current cluster state; try the copy again")
	case st.Flush.Active():
		r.fl.copyIn.Add(-1)
		return fmt.Errorf("xdc: %s is in progress; try the copy again after it", st.Flush)
	case flushes < st.Flushes:
		r.fl.copyIn.Add(-1)
		return fmt.Errorf("xdc: the copy was read before flush %d of this cluster (it saw %d): read it again", st.Flushes, flushes)
	}
	return nil
}

func (r *Replicator) leaveCopy() { r.fl.copyIn.Add(-1) }
