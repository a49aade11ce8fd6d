package migrate

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/redraft/redraft/fsm"
)

// Cluster is what the coordinator needs of its node: the state, the one proposal path and the
// node's identity.
type Cluster interface {
	State() *fsm.State
	Propose(ctx context.Context, cmd fsm.Command) error
	ID() string
	DC() string
}

// Gate is the data plane's side of the freeze barrier.
type Gate interface {
	// WaitIdle returns once no request for a slot in slots that was routed by a state older
	// than the freeze is still in flight to a backend.
	WaitIdle(ctx context.Context, slots *SlotSet) error
}

// Replication is what cross-DC replication needs of a migration in this DC (router/xdc,
// migration.go): a handoff entry in the target group's log once no write to the slots runs on
// the source group any more, and the positions of the other DCs' logs carried from the source
// group to the target at the switch.
type Replication interface {
	// AckLast reports whether, in st, the slot owner must ack a freeze after every other node
	// of the DC, running Frozen first.
	AckLast(st *fsm.State) bool
	// Frozen runs on the slot owner once every other node of the DC acked m's freeze and this
	// node's data plane drained the slots, before its own ack lets writes reach the target.
	Frozen(ctx context.Context, st *fsm.State, m *fsm.Migration) error
	// Moved runs on the slot owner once the mover moved every key of m, before the switch is
	// proposed; it must be idempotent (a new owner runs it again).
	//
	// Frozen and Moved read the state they are given, which the coordinator reads just
	// before: they must fail, not do nothing, when it lacks m's DC (the empty state a node
	// reads while it does not act), or the ack or the switch would go ahead without them.
	Moved(ctx context.Context, st *fsm.State, m *fsm.Migration) error
}

// Job is one run of the mover for a migration: everything it needs, read from the state.
type Job struct {
	Migration *fsm.Migration
	Source    fsm.Group
	Target    fsm.Group
	// KeepTarget is Config.KeepTarget: the source failed over since the migration started.
	KeepTarget bool
	Slots      *SlotSet
	// Rate returns the current throttle in keys/s (0: none); Paused whether to wait.
	Rate   func() int64
	Paused func() bool
	// Progress receives the mover's counts; the coordinator reports them into the state.
	Progress func(Progress)
	// Logger receives the mover's log (Config.Logger); the coordinator sets its own, with the
	// migration's id. Nil: discarded.
	Logger *slog.Logger
	// Owner names the mover in lock values (Config.Owner): the node id.
	Owner string
}

// RunMover moves every key of a job's slots from source to target and returns when the source
// holds none (the default is MoveJob).
type RunMover func(ctx context.Context, job Job) error

// Coordinator runs a node's duties in slot migrations: it acks freezes once the data plane has
// drained, and, for migrations whose first slot this node owns on its DC's token ring, runs the
// mover and commits the switch. Everything it does is idempotent, so a new owner resumes.
type Coordinator struct {
	cl    Cluster
	gate  Gate
	mover RunMover
	log   *slog.Logger
	repl  Replication // nil: none

	kick chan struct{}

	mu      sync.Mutex
	acking  map[uint64]bool
	running map[uint64]*moverRun
	// switched are the migrations whose switch this node's mover committed, until the state
	// shows them over: the state read next can still show one migrating (Raft applies the
	// commit here after the proposal returns), and a mover started on it would run a last
	// pass over the source for nothing.
	switched map[uint64]bool
}

// moverRun is one mover goroutine: cancel stops it, done closes when it has stopped.
type moverRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// NewCoordinator returns a coordinator; call Notify on every new state and Run once.
func NewCoordinator(cl Cluster, gate Gate, mover RunMover, log *slog.Logger) *Coordinator {
	return &Coordinator{
		cl: cl, gate: gate, mover: mover, log: log.With("part", "migrate"),
		kick: make(chan struct{}, 1), acking: map[uint64]bool{}, running: map[uint64]*moverRun{},
		switched: map[uint64]bool{},
	}
}

// SetReplication gives the coordinator cross-DC replication's part in migrations; call it
// before Run.
func (c *Coordinator) SetReplication(r Replication) { c.repl = r }

// Notify tells the coordinator the state changed; it never blocks (Raft's apply path calls it).
func (c *Coordinator) Notify(*fsm.State) {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Run reconciles on every state change and every second until ctx ends.
func (c *Coordinator) Run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	defer c.stopAll()
	for {
		c.reconcile(ctx)
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		case <-t.C:
		}
	}
}

func (c *Coordinator) stopAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, r := range c.running {
		r.cancel()
		delete(c.running, id)
	}
}

// stopMover stops this node's mover of migration id, if any, and waits until it has stopped.
func (c *Coordinator) stopMover(id uint64) {
	c.mu.Lock()
	r := c.running[id]
	c.mu.Unlock()
	if r != nil {
		r.cancel()
		<-r.done
	}
}

func (c *Coordinator) reconcile(ctx context.Context) {
	st := c.cl.State()
	me, dc := c.cl.ID(), c.cl.DC()
	ring := st.Ring(dc)
	wanted := map[uint64]bool{}
	for _, m := range st.Migrations {
		if !m.Active() || m.DC != dc {
			continue
		}
		if m.State == fsm.MigrationFrozen {
			if _, acked := m.FreezeAcks[me]; !acked {
				c.ack(ctx, st, m)
			}
			continue
		}
		if fsm.OwnerIn(ring, m.Slots[0].From) == me {
			wanted[m.ID] = true
			c.startMover(ctx, st, m)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, r := range c.running {
		if !wanted[id] {
			r.cancel()
		}
	}
	for id := range c.switched {
		if m := st.Migrations[id]; m == nil || !m.Active() {
			delete(c.switched, id)
		}
	}
}

// ack waits for the data plane to drain the migration's slots, then reports the freeze applied.
// st is the state that shows m frozen: whether this node acks last is decided on it, not on a
// later read, which may be the empty state of a node that stopped acting meanwhile.
func (c *Coordinator) ack(ctx context.Context, st *fsm.State, m *fsm.Migration) {
	c.mu.Lock()
	if c.acking[m.ID] {
		c.mu.Unlock()
		return
	}
	c.acking[m.ID] = true
	c.mu.Unlock()
	slots := SlotSetOf(m.Slots)
	id, run := m.ID, m.Run()
	go func() {
		defer func() {
			c.mu.Lock()
			delete(c.acking, id)
			c.mu.Unlock()
		}()
		// A mover still running here (the forward run of a migration being cancelled) must stop
		// before this node vouches that nothing touches the slots.
		c.stopMover(id)
		last := c.repl != nil && c.repl.AckLast(st) && c.owns(st, m)
		if last && !c.othersAcked(ctx, id) {
			return
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := c.gate.WaitIdle(wctx, slots); err != nil {
			c.log.Warn("freeze not acked: requests still in flight", "migration", id, "err", err)
			return
		}
		if last {
			// Frozen refuses the empty state of a node that stopped acting meanwhile.
			if err := c.repl.Frozen(wctx, c.cl.State(), m); err != nil {
				c.log.Warn("freeze not acked: replication's handoff failed", "migration", id, "err", err)
				return
			}
		}
		err := c.cl.Propose(wctx, &fsm.AckFreeze{ID: id, Node: c.cl.ID(), Run: run})
		if fsm.RefusedAsUnknownField(err) {
			// An older leader (a rolling upgrade): the ack as its build knows it.
			err = c.cl.Propose(wctx, &fsm.AckFreeze{ID: id, Node: c.cl.ID()})
		}
		if err != nil {
			c.log.Warn("freeze ack not committed", "migration", id, "err", err)
		}
	}()
}

// owns reports whether this node is m's slot owner (it runs the mover) in st.
func (c *Coordinator) owns(st *fsm.State, m *fsm.Migration) bool {
	return fsm.OwnerIn(st.Ring(c.cl.DC()), m.Slots[0].From) == c.cl.ID()
}

// othersAcked waits until every other node of the DC acked migration id's freeze, and reports
// whether this node should ack now: false when the freeze is over or ctx ended. It also
// answers true when this node stopped being the slot owner meanwhile (the new owner waits for
// this node's ack).
func (c *Coordinator) othersAcked(ctx context.Context, id uint64) bool {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	me := c.cl.ID()
	for {
		st := c.cl.State()
		m := st.Migrations[id]
		if m == nil || m.State != fsm.MigrationFrozen {
			return false
		}
		if w := st.FreezeWaiting(m); len(w) == 0 || (len(w) == 1 && w[0] == me) || !c.owns(st, m) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// startMover runs the mover for m unless it already runs here.
func (c *Coordinator) startMover(ctx context.Context, st *fsm.State, m *fsm.Migration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.running[m.ID]; ok || c.switched[m.ID] {
		return
	}
	d := st.DCs[m.DC]
	src, dst := d.Groups[m.Source()], d.Groups[m.Target()]
	if src == nil || dst == nil {
		c.log.Error("migration groups are gone", "migration", m.ID)
		return
	}
	mctx, cancel := context.WithCancel(ctx)
	run := &moverRun{cancel: cancel, done: make(chan struct{})}
	c.running[m.ID] = run
	id := m.ID
	current := func() *fsm.Migration { return c.cl.State().Migrations[id] }
	var (
		repMu   sync.Mutex
		lastRep time.Time
		// base is what the migration's earlier runs moved (the state's counts when this run
		// began): a mover started again, here or on another node, counts from zero, and its
		// reports add to what was moved before rather than replace it.
		base Progress
	)
	reports := newReporter(mctx, func(ctx context.Context, p Progress) {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_ = c.cl.Propose(rctx, &fsm.ReportMigration{ID: id, KeysMoved: p.KeysMoved, BytesMoved: p.BytesMoved, KeysTotal: p.KeysTotal})
	})
	job := Job{
		Migration: m, Source: *src, Target: *dst, Slots: SlotSetOf(m.Slots),
		Logger: c.log.With("migration", id), Owner: c.cl.ID(),
		Rate: func() int64 {
			if cur := current(); cur != nil {
				return cur.Rate
			}
			return 0
		},
		// A failover of the source or target group pauses the mover (docs/failover.md).
		Paused: func() bool {
			cur := current()
			return cur != nil && cur.Paused || failingOver(c.cl.State(), m)
		},
		Progress: func(p Progress) {
			repMu.Lock()
			if time.Since(lastRep) < time.Second && !p.Done {
				repMu.Unlock()
				return
			}
			lastRep = time.Now()
			p.KeysMoved += base.KeysMoved
			p.BytesMoved += base.BytesMoved
			p.KeysTotal += base.KeysMoved
			repMu.Unlock()
			reports.send(p)
		},
	}
	c.log.Info("mover starts", "migration", m.String())
	go func() {
		defer func() {
			c.mu.Lock()
			if c.running[id] == run {
				delete(c.running, id)
			}
			c.mu.Unlock()
			cancel()
			close(run.done)
		}()
		backoff := 500 * time.Millisecond
		for mctx.Err() == nil {
			// The groups' masters as of now: a failover since the last try replaced one.
			if st := c.cl.State(); st.DCs[m.DC] != nil && st.DCs[m.DC].Groups[m.Source()] != nil && st.DCs[m.DC].Groups[m.Target()] != nil {
				d := st.DCs[m.DC]
				job.Source, job.Target = *d.Groups[m.Source()], *d.Groups[m.Target()]
				job.KeepTarget = st.SourceFailedOver(m)
			}
			if cur := current(); cur != nil {
				repMu.Lock()
				base = Progress{KeysMoved: cur.KeysMoved, BytesMoved: cur.BytesMoved}
				repMu.Unlock()
			}
			// The steps' times go into the switch's log line, and into the line of a mover
			// stopped before it: a migration that stays migrating says where its time goes.
			began := time.Now()
			err := c.mover(mctx, job)
			moved := time.Now()
			var flushed, positions time.Time
			if err == nil {
				reports.flush(mctx, 2*time.Second)
				flushed = time.Now()
			}
			if err == nil && c.repl != nil {
				err = c.repl.Moved(mctx, c.cl.State(), m)
				positions = time.Now()
			}
			steps := func() []any {
				out := []any{"migration", id, "keys", moved.Sub(began).Round(time.Millisecond)}
				if !flushed.IsZero() {
					out = append(out, "report", flushed.Sub(moved).Round(time.Millisecond))
				}
				if !positions.IsZero() {
					out = append(out, "positions", positions.Sub(flushed).Round(time.Millisecond))
				}
				return append(out, "total", time.Since(began).Round(time.Millisecond))
			}
			if err == nil {
				err = c.cl.Propose(mctx, &fsm.FinishMigration{ID: id, Run: m.Run()})
				if err == nil {
					c.log.Info("migration switched", steps()...)
					c.mu.Lock()
					c.switched[id] = true
					c.mu.Unlock()
					return
				}
			}
			if mctx.Err() != nil {
				c.log.Info("mover stopped", steps()...)
				return
			}
			if errors.Is(err, ErrRunOver) {
				c.log.Warn("mover stops: its migration run is over on the servers", "migration", id, "run", m.Run(), "err", err)
				return
			}
			c.log.Warn("mover failed, retrying", "migration", id, "err", err)
			select {
			case <-mctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 10*time.Second)
		}
	}()
}

// failingOver reports whether the source or target group of m is failing over in st.
func failingOver(st *fsm.State, m *fsm.Migration) bool {
	d := st.DCs[m.DC]
	if d == nil {
		return false
	}
	for _, id := range []string{m.Source(), m.Target()} {
		if g := d.Groups[id]; g != nil && g.Failover != nil {
			return true
		}
	}
	return false
}
