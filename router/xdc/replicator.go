package xdc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/backendacl"
)

// Config configures a Replicator.
type Config struct {
	// Cluster is the node: its state, id and DC.
	Cluster Cluster
	// noLogShipping keeps Run from shipping group logs (tests that ship them by hand).
	noLogShipping bool
	// Peers calls other nodes' replication RPC.
	Peers Peers
	// Local runs the receiving side's commands through this node's router.
	Local Local
	// FlushGate is the router's side of a flush (flush.go); nil: nothing to wait for.
	FlushGate FlushGate
	// Proposer proposes the flush commands; nil: this replicator takes no part in flushes.
	Proposer Proposer
	// Logger receives the replicator's logs (default slog.Default()).
	Logger *slog.Logger
	// BatchSize bounds the entries per slot per shipping round (default 256).
	BatchSize int64
	// Heartbeat is the interval of heartbeat entries and liveness pings (default 1 s).
	Heartbeat time.Duration
	// DownAfter is how long a node of this DC may not answer pings before its slots are
	// shipped by the next node on the ring (default 3 s).
	DownAfter time.Duration
	// Block bounds one wait for new entries (default 1 s).
	Block time.Duration
	// OutboxScan is how often the outboxes' lengths are read and the bound enforced
	// (default 5 s).
	OutboxScan time.Duration
	// CollectEvery is how often the tombstone collector looks at its next slots (gc.go;
	// default 2 s).
	CollectEvery time.Duration
	// TombstoneMargin covers the clocks of different masters when tombstones are collected
	// (gc.go; default 5 s).
	TombstoneMargin time.Duration
	// CounterMargin replaces TombstoneMargin for a key that kept counters (gc.go; default
	// 10 min).
	CounterMargin time.Duration
}

// Replicator ships the outboxes of the slots this node owns in its DC to every other DC,
// and applies what other DCs ship to it (the Handle methods, served on the peer port).
type Replicator struct {
	cfg Config
	log *slog.Logger

	kick chan struct{}

	// logReps caches, per cluster state, a few slots of each group of this DC
	// (*groupSlots: HandleLog).
	logReps atomic.Value
	// trimWarned is the last copy whose own entries a trimmed log may lack that was logged
	// (ownLogEntries): once per copy, not per chunk.
	trimWarned sync.Map

	// memos are what this process knows of each destination's position in each log, kept
	// across the logGroups a failover replaces (logmemo.go).
	memos logMemos

	mu    sync.Mutex
	loops map[loopKey]*loop
	logs  map[logKey]*runningLog // the group logs this node ships (data format 3)
	// retired are the stopped group logs' ends until they end: a log started again, on any
	// master (a failover's new one), waits for its predecessors (planLogs).
	retired map[logKey]retiredLog
	clients map[clientKey]*redis.Client
	alive   map[string]time.Time // DC peers' last answer to a ping
	dbs     map[string][]int     // group master -> databases holding keys
	dbsGen  uint64               // bumped whenever dbs changes
	planned planInputs           // what the last plan was made from
	// acks are, per database, an array by slot of the last id each destination DC applied
	// (as this node's loops know it) and the outbox's trimming: one lookup per ack
	// (recordAck); trimming and DC_EACH_SAFE_QUORUM read it.
	acks map[int]*dbAcks
	// progress is closed and replaced whenever acks advance while awaiting > 0 (awaitLocal).
	progress chan struct{}
	awaiting int

	// logsSeen is set once a state this node read had group logs (LogDataFormat): a cluster's
	// format only rises (groupLogs).
	logsSeen atomic.Bool

	diverged atomic.Int64
	// superseded, conflicts and pulled count effects older than their key's state here,
	// effects that met another state than their origin's, and states pulled (pull.go).
	superseded, conflicts, pulled atomic.Int64
	pulls                         pullSet
	gc                            collector    // gc.go
	lostOwn                       atomic.Int64 // full copies that replaced this DC's own unshipped writes
	lost                          lostBook     // entries lost with a failed-over master (lost.go)

	counters sync.Map // destination DC -> *pairCounters

	fl flusher // flush.go

	// oldWire are the destination nodes that refused the current form of an apply request
	// (a version before it), with the form they get (wireV1 or wireJSON).
	oldWire sync.Map
	// recvPh times the receiving side's applies for the debug log (phases.go).
	recvPh *phases

	hints   atomic.Pointer[hintIndex]
	hintGen uint64                  // plans that built a hint index (under mu): the newest one's is stored
	dests   atomic.Pointer[destsOf] // destinations' last answer
	fwdMu   sync.Mutex
	fwd     map[string][]HintSlot // hints gathered per owner's peer address
}

type dbSlot struct{ db, slot int }

// pairCounters count, per destination DC, what this node shipped since it started (loops
// come and go with slot ownership; the counts stay).
type pairCounters struct{ shipped, copied, lost atomic.Int64 }

// groupLogs reports whether the cluster's data format has group logs (LogDataFormat). A node that
// stops acting reads an empty state (format 1) until it acts again; a duty that reads the state
// meanwhile must not take that for the cluster below group logs (a per-slot loop would copy a
// slot behind the logs' back), and a cluster's format never goes back, so once seen it holds.
func (r *Replicator) groupLogs() bool {
	if r.logsSeen.Load() {
		return true
	}
	if r.cfg.Cluster.State().Format() >= LogDataFormat {
		r.logsSeen.Store(true)
		return true
	}
	return false
}

func (r *Replicator) counter(dest string) *pairCounters {
	if c, ok := r.counters.Load(dest); ok {
		return c.(*pairCounters)
	}
	c, _ := r.counters.LoadOrStore(dest, &pairCounters{})
	return c.(*pairCounters)
}

type clientKey struct {
	server
	db int
}

// server is a group's master with the group's admin credentials, from which the internal
// user's are derived (internal/backendacl).
type server struct {
	group, master, user, password string
}

// serverOf returns g's master as a server.
func serverOf(g *fsm.Group) server { return server{g.ID, g.Master, g.User, g.Password} }

// New returns a Replicator; Run starts its work.
func New(cfg Config) *Replicator {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 256
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = time.Second
	}
	if cfg.DownAfter <= 0 {
		cfg.DownAfter = 3 * cfg.Heartbeat
	}
	if cfg.Block <= 0 {
		cfg.Block = time.Second
	}
	if cfg.OutboxScan <= 0 {
		cfg.OutboxScan = 5 * time.Second
	}
	if cfg.CollectEvery <= 0 {
		cfg.CollectEvery = 2 * time.Second
	}
	if cfg.TombstoneMargin <= 0 {
		cfg.TombstoneMargin = 5 * time.Second
	}
	if cfg.CounterMargin <= 0 {
		cfg.CounterMargin = 10 * time.Minute
	}
	log := cfg.Logger.With("part", "xdc")
	return &Replicator{
		cfg: cfg, log: log, kick: make(chan struct{}, 1), recvPh: newPhases(log, "receiving"),
		loops: map[loopKey]*loop{}, clients: map[clientKey]*redis.Client{}, alive: map[string]time.Time{},
		dbs: map[string][]int{}, acks: map[int]*dbAcks{},
		progress: make(chan struct{}), pulls: pullSet{wake: make(chan struct{}, 1)},
	}
}

// Notify tells the replicator the state changed; it re-plans its shipping loops.
func (r *Replicator) Notify(*fsm.State) {
	r.fl.notify()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Diverged counts the remote effects that failed on this DC's data (the DCs' copies differ,
// e.g. WRONGTYPE after concurrent writes to one key in two DCs).
func (r *Replicator) Diverged() int64 { return r.diverged.Load() }

// Run plans and runs the shipping loops, heartbeats and liveness pings until ctx is done.
func (r *Replicator) Run(ctx context.Context) {
	tick := time.NewTicker(r.cfg.Heartbeat)
	defer tick.Stop()
	beats := 0
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, f := range []func(context.Context){r.runFlushes, r.runPulls, func(ctx context.Context) { r.runCollector(ctx, r.cfg.CollectEvery) }} {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	for {
		r.plan(ctx)
		select {
		case <-ctx.Done():
			r.mu.Lock()
			for k, l := range r.loops {
				l.stop()
				delete(r.loops, k)
			}
			r.planLogs(ctx, nil, nil)
			retired := slices.Collect(maps.Values(r.retired))
			r.mu.Unlock()
			for _, l := range retired {
				<-l.done
			}
			r.mu.Lock()
			for _, c := range r.clients {
				_ = c.Close()
			}
			r.clients = map[clientKey]*redis.Client{}
			r.mu.Unlock()
			return
		case <-r.kick:
		case <-tick.C:
			r.ping(ctx)
			r.heartbeat(ctx)
			if beats++; beats%5 == 0 {
				r.scanDatabases(ctx)
			}
		}
	}
}

// destinations returns the other DCs that have groups to ship to.
func (r *Replicator) destinations(st *fsm.State) []string {
	if c := r.dests.Load(); c != nil && c.st == st {
		return c.dests
	}
	var out []string
	for _, name := range st.DCNames() {
		if name != r.cfg.Cluster.DC() && len(st.DCs[name].Groups) > 0 {
			out = append(out, name)
		}
	}
	r.dests.Store(&destsOf{st, out})
	return out
}

// errNotActing is why a wait on the other DCs cannot be answered: the node reads the empty
// state of a node that stopped acting (node/current.go), which knows no other DC.
var errNotActing = errors.New("this node is not acting on current cluster state")

// acting reports whether st is a state this node acts on: one that holds this node's DC. The
// empty state a node reads while it does not act has no DC, hence no destinations, and a wait
// on the other DCs must not take that for none to wait for.
func (r *Replicator) acting(st *fsm.State) bool {
	return st != nil && st.DCs[r.cfg.Cluster.DC()] != nil
}

// actingState returns the state this node acts on, waiting up to d while it does not act.
func (r *Replicator) actingState(ctx context.Context, d time.Duration) (*fsm.State, error) {
	if st := r.cfg.Cluster.State(); r.acting(st) {
		return st, nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	tick := time.NewTicker(logAwaitPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
			return nil, errNotActing
		case <-tick.C:
		}
		if st := r.cfg.Cluster.State(); r.acting(st) {
			return st, nil
		}
	}
}

// destsOf is the destinations of one cluster state, kept until the state changes: every
// ack asks (recordAck). Callers must not change the slice.
type destsOf struct {
	st    *fsm.State
	dests []string
}

// liveRing is this DC's token ring without the nodes that stopped answering pings.
func (r *Replicator) liveRing(st *fsm.State, dc string) []fsm.RingEntry {
	ring := st.Ring(dc)
	if dc != r.cfg.Cluster.DC() {
		return ring
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	live := ring[:0:0]
	for _, e := range ring {
		if e.Node == r.cfg.Cluster.ID() {
			live = append(live, e)
			continue
		}
		if t, ok := r.alive[e.Node]; ok && now.Sub(t) < r.cfg.DownAfter {
			live = append(live, e)
		}
	}
	if len(live) == 0 {
		return ring
	}
	return live
}

// plan starts, keeps or stops shipping loops so that there is one per group of this DC
// holding slots this node owns, per destination DC and per database in use.
func (r *Replicator) plan(ctx context.Context) {
	st := r.cfg.Cluster.State()
	me, dc := r.cfg.Cluster.ID(), r.cfg.Cluster.DC()
	ring := r.liveRing(st, dc)
	r.mu.Lock()
	in := planInputs{st: st, ring: ring, dbsGen: r.dbsGen}
	same := r.planned.equal(in)
	r.mu.Unlock()
	if same {
		return // every second on an idle node: walking 16,384 slots twice was a third of its CPU
	}
	want := map[loopKey][]int{}
	wantLogs := map[logKey]LogID{}
	if own := st.DCs[dc]; own != nil {
		dests := r.destinations(st)
		if len(dests) > 0 {
			byGroup := map[string][]int{}
			for slot, gid := range own.Slots {
				if gid != "" && fsm.OwnerIn(ring, slot) == me {
					byGroup[gid] = append(byGroup[gid], slot)
				}
			}
			if st.Format() >= LogDataFormat && !r.cfg.noLogShipping {
				for gid, slot := range r.representatives(st).ship {
					if g := own.Groups[gid]; g != nil && fsm.OwnerIn(ring, slot) == me {
						for _, db := range r.databases(g.Master) {
							wantLogs[logKey{server: serverOf(g), db: db, epoch: g.Epoch}] = LogID{DC: dc, Group: gid}
						}
					}
				}
			}
			for gid, slots := range byGroup {
				g := own.Groups[gid]
				if g == nil {
					continue
				}
				for _, db := range r.databases(g.Master) {
					for _, d := range dests {
						want[loopKey{server: serverOf(g), dest: d, db: db}] = slots
					}
				}
			}
		}
	}
	r.mu.Lock()
	for k, l := range r.loops {
		if slots, ok := want[k]; !ok || !sameSlots(slots, l.slots) {
			l.stop()
			delete(r.loops, k)
		}
	}
	for k, slots := range want {
		if r.loops[k] == nil {
			l := newLoop(r, k, slots)
			r.loops[k] = l
			go l.run(ctx)
		}
	}
	r.planLogs(ctx, wantLogs, r.destinations(st))
	loops := maps.Clone(r.loops)
	r.planned = in
	r.hintGen++
	gen := r.hintGen
	r.mu.Unlock()
	// Outside the lock: the slots' owners are 16,384 lookups. A plan that ran meanwhile (a
	// flush's, beside Run's) stored newer loops' index, which this one must not replace.
	idx := r.buildHints(st, ring, loops)
	r.mu.Lock()
	if r.hintGen == gen {
		r.hints.Store(idx)
	}
	r.mu.Unlock()
}

// planInputs is what plan decides from: the cluster state (immutable, a new pointer per
// change), the live ring of this DC and the databases in use.
type planInputs struct {
	st     *fsm.State
	ring   []fsm.RingEntry
	dbsGen uint64
}

func (a planInputs) equal(b planInputs) bool {
	return a.st != nil && a.st == b.st && a.dbsGen == b.dbsGen && slices.Equal(a.ring, b.ring)
}

func sameSlots(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// databases returns the databases of master that hold keys (0 always), as last scanned.
func (r *Replicator) databases(master string) []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d, ok := r.dbs[master]; ok {
		return d
	}
	return []int{0}
}

// scanDatabases reads INFO keyspace on the masters of this DC to find databases in use.
func (r *Replicator) scanDatabases(ctx context.Context) {
	st := r.cfg.Cluster.State()
	own := st.DCs[r.cfg.Cluster.DC()]
	if own == nil || len(r.destinations(st)) == 0 {
		return
	}
	changed := false
	for _, g := range own.Groups {
		dbs, err := r.usedDatabases(ctx, serverOf(g))
		if err != nil {
			continue
		}
		r.mu.Lock()
		if fmt.Sprint(r.dbs[g.Master]) != fmt.Sprint(dbs) {
			r.dbs[g.Master], changed = dbs, true
			r.dbsGen++
		}
		r.mu.Unlock()
	}
	if changed {
		r.Notify(nil)
	}
}

// client returns a shared go-redis client for a master and database, as redraft's internal
// ACL user (created with the group's admin credentials when the server lacks it).
func (r *Replicator) client(s server, db int) *redis.Client {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.clientLocked(s, db)
}

// clientLocked is client with r.mu held.
func (r *Replicator) clientLocked(s server, db int) *redis.Client {
	k := clientKey{s, db}
	c := r.clients[k]
	if c == nil {
		acc := backendacl.Access{Group: s.group, Admin: backendacl.Creds{User: s.user, Password: s.password}}
		c = redis.NewClient(acc.InternalOptions(&redis.Options{Addr: s.master, DB: db,
			ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, PoolSize: 32, // one blocked feed read per destination DC, then the rounds
			MaxRetries: -1, DisableIdentity: true}))
		r.clients[k] = c
	}
	return c
}

// ping asks the other nodes of this DC whether they are up.
func (r *Replicator) ping(ctx context.Context) {
	st := r.cfg.Cluster.State()
	if len(r.destinations(st)) == 0 {
		return
	}
	var wg sync.WaitGroup
	before := r.liveSet(st)
	for _, id := range st.NodeIDs() {
		n := st.Nodes[id]
		if n.DC != r.cfg.Cluster.DC() || id == r.cfg.Cluster.ID() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, r.cfg.Heartbeat)
			defer cancel()
			if err := r.cfg.Peers.CallPeer(cctx, n.Peer, RPCPing, struct{}{}, nil); err == nil {
				r.mu.Lock()
				r.alive[id] = time.Now()
				r.mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if r.liveSet(st) != before {
		r.Notify(nil)
	}
}

func (r *Replicator) liveSet(st *fsm.State) string {
	var b strings.Builder
	for _, e := range r.liveRing(st, r.cfg.Cluster.DC()) {
		b.WriteString(e.Node)
		b.WriteByte(',')
	}
	return b.String()
}

// heartbeat appends a heartbeat entry (no commands) to the outbox of the first slot of each
// group this node ships from, database 0: its applied time gives the lag per DC pair. Not at
// data format 3, where the group logs have theirs.
func (r *Replicator) heartbeat(ctx context.Context) {
	st := r.cfg.Cluster.State()
	if r.groupLogs() {
		return // every group log gets its own (logGroup.run)
	}
	if !r.acting(st) {
		// The loops planned before go on, but the empty state knows no migration to keep
		// the heartbeats out of.
		return
	}
	dc := r.cfg.Cluster.DC()
	bound := st.SettingInt("outbox_max_entries")
	type target struct {
		srv  server
		slot int
	}
	seen := map[string]target{}
	r.mu.Lock()
	for k, l := range r.loops {
		if k.db != 0 {
			continue
		}
		// The heartbeat is written on the master directly, so never into a slot that a
		// migration moves: an outbox written on the source after it moved would be moved
		// again later, over the target's. Nor into one the loop's group no longer serves
		// (a migration that ended before the loops were planned again).
		for _, s := range l.slots {
			if migrationOf(st, dc, s) != 0 || st.DCs[dc] == nil || st.DCs[dc].Slots[s] != k.group {
				continue
			}
			if t, ok := seen[k.group]; !ok || s < t.slot {
				seen[k.group] = target{k.server, s}
			}
			break
		}
	}
	r.mu.Unlock()
	fields := EntryFields(r.cfg.Cluster.DC(), nil)
	for _, t := range seen {
		args := make([]any, 0, len(fields))
		for _, f := range fields {
			args = append(args, f)
		}
		pipe := r.client(t.srv, 0).TxPipeline()
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: OutboxKey(t.slot), MaxLen: bound, Approx: true, Values: args})
		pipe.Do(ctx, dirtyArgs(t.slot)...)
		_, err := pipe.Exec(ctx)
		if err != nil && ctx.Err() == nil {
			r.log.Debug("heartbeat", "master", t.srv.master, "err", err)
		}
		r.Wrote(0, t.slot)
	}
}

// recordAck notes that dest applied id on (db, slot) and trims the outbox when every
// destination applied past the last trim.
//
// The trim goes to c: a loop passes a pipeline and sends the trims of a whole round at once.
//
// master is the master c reaches: a trim left waiting is sent later only to that master (after
// a failover the new master's outbox may lack entries the destination applied, and trimming
// what it kept below the applied id would hide that loss as a trimmed outbox: lost.go).
func (r *Replicator) recordAck(ctx context.Context, c redis.Cmdable, master, dest string, db, slot int, id string) {
	k := dbSlot{db, slot}
	st := r.cfg.Cluster.State()
	dests := r.destinations(st)
	r.mu.Lock()
	a := r.acksFor(k)
	if cur := a.get(dest); cur != "" && CompareIDs(id, cur) <= 0 {
		r.mu.Unlock()
		return
	}
	a.set(dest, id)
	ids := make([]string, 0, len(dests))
	for _, d := range dests {
		ids = append(ids, a.get(d))
	}
	low := lowest(ids)
	ts := &a.trim
	trim := low != "" && CompareIDs(low, ts.decided) > 0
	if trim {
		ts.decided = low
		// An XTRIM costs the master about 5 us, as much as reading the entry: a slot's
		// trims wait for trimEvery of them, or for the loops' next outbox scan (takeTrims).
		if ts.waiting++; ts.waiting < trimEvery {
			ts.due, ts.master = ids, master
			trim = false
		} else {
			ts.waiting, ts.due = 0, nil
		}
	}
	if r.awaiting > 0 {
		close(r.progress)
		r.progress = make(chan struct{})
	}
	r.mu.Unlock()
	if trim {
		r.trimNow(ctx, c, k, ids)
	}
}

// dbAcks are a database's slotAcks, indexed by slot: at random keys every ack is another
// slot's, and an index finds it with fewer cache misses than a map.
type dbAcks [fsm.NumSlots]slotAcks

// acksFor returns k's acks, making its database's array on the first ack (r.mu held).
func (r *Replicator) acksFor(k dbSlot) *slotAcks {
	d := r.acks[k.db]
	if d == nil {
		d = new(dbAcks)
		r.acks[k.db] = d
	}
	return &d[k.slot]
}

// ackedOf returns k's acks, nil when nothing was acked in its database (r.mu held).
func (r *Replicator) ackedOf(k dbSlot) *slotAcks {
	if d := r.acks[k.db]; d != nil {
		return &d[k.slot]
	}
	return nil
}

// slotAcks is what this node's loops know of one outbox: the last id each destination DC
// applied, and its trimming.
type slotAcks struct {
	// The first destination DC's applied id is kept inline, others in more: at random keys
	// every ack reads another slot's, and each pointer followed is a cache miss.
	one  destID
	more []destID
	trim trimState
}

type destID struct{ dest, id string }

// get returns the last id dest applied ("" when none is known).
func (a *slotAcks) get(dest string) string {
	if a == nil {
		return ""
	}
	if a.one.dest == dest {
		return a.one.id
	}
	for _, d := range a.more {
		if d.dest == dest {
			return d.id
		}
	}
	return ""
}

func (a *slotAcks) set(dest, id string) {
	if a.one.dest == dest || a.one.dest == "" {
		a.one = destID{dest, id}
		return
	}
	for i := range a.more {
		if a.more[i].dest == dest {
			a.more[i].id = id
			return
		}
	}
	a.more = append(a.more, destID{dest, id})
}

// trimState is one outbox's trimming: the last trim decided (the smallest id every
// destination applied then), and the DCs' applied ids of the trim not sent yet (nil: none),
// one of waiting decided since the last trim sent.
type trimState struct {
	decided string
	due     []string
	master  string // the master due was decided on
	waiting int
}

// trimEvery is how many trims of one slot's outbox wait before one is sent; the loops' outbox
// scan (every OutboxScan) sends those still waiting. An outbox keeps at most that many entries
// every DC applied, and those for at most OutboxScan.
const trimEvery = 16

// trimNow trims k's outbox to the smallest of ids (queued on c).
func (r *Replicator) trimNow(ctx context.Context, c redis.Cmdable, k dbSlot, ids []string) {
	if _, err := Trim(ctx, c, k.slot, ids); err != nil && ctx.Err() == nil {
		r.log.Debug("trim", "slot", k.slot, "err", err)
	}
	if idx := r.hints.Load(); idx != nil { // their next outbox scan reads the new length
		idx.each(k.db, k.slot, func(l *loop) { l.touch(k.slot) })
	}
}

// dueTrim is a trim decided and not sent yet: the outbox and the DCs' applied ids.
type dueTrim struct {
	k   dbSlot
	ids []string
}

// takeTrims returns, and forgets, the waiting trims of db's outboxes among slots
// decided on master; those decided on another master (before a failover) are forgotten.
func (r *Replicator) takeTrims(master string, db int, slots []int) []dueTrim {
	r.mu.Lock()
	defer r.mu.Unlock()
	var due []dueTrim
	d := r.acks[db]
	if d == nil {
		return nil
	}
	for _, slot := range slots {
		ts := &d[slot].trim
		if ts.due == nil {
			continue
		}
		if ts.master == master {
			due = append(due, dueTrim{dbSlot{db, slot}, ts.due})
		}
		ts.waiting, ts.due = 0, nil
	}
	return due
}

// trimToLive trims (db, slot)'s outbox, longer than the bound, to the smallest id the DCs
// that are up have applied; DCs whose shipping is failing are left out, and if none is up
// nothing is trimmed (the entries wait for the first DC back).
func (r *Replicator) trimToLive(ctx context.Context, src *redis.Client, db, slot int) {
	st := r.cfg.Cluster.State()
	now := time.Now()
	down := map[string]bool{}
	var downLoops []*loop
	r.mu.Lock()
	for k, l := range r.loops {
		if k.db == db && indexOf(l.slots, slot) >= 0 && l.down(now) {
			down[k.dest] = true
			downLoops = append(downLoops, l)
		}
	}
	a := r.ackedOf(dbSlot{db, slot})
	var ids []string
	for _, d := range r.destinations(st) {
		if !down[d] {
			ids = append(ids, a.get(d))
		}
	}
	r.mu.Unlock()
	if len(ids) == 0 || len(down) == 0 {
		return
	}
	if n, err := Trim(ctx, src, slot, ids); err == nil && n > 0 {
		for _, l := range downLoops { // the entries they hold are gone from the outbox
			l.forgetFed(slot)
		}
		r.log.Info("outbox over its bound trimmed past a DC that is down; it will get the slot copied in full",
			"slot", slot, "db", db, "trimmed", n, "down", fmt.Sprint(keys(down)))
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// lowest returns the smallest id, or "" when one is empty (a DC applied nothing yet).
func lowest(ids []string) string {
	low := ""
	for i, id := range ids {
		if id == "" || id == "0-0" {
			return ""
		}
		if i == 0 || CompareIDs(id, low) < 0 {
			low = id
		}
	}
	return low
}

// Await waits until every other DC applied entry id of (db, slot)'s outbox, or, when group
// is set (data format 3), of that group's log, asking the node that ships it in this DC when
// that is another node; it is DC_EACH_SAFE_QUORUM's wait.
func (r *Replicator) Await(ctx context.Context, db, slot int, group, id string, timeout time.Duration) error {
	st, err := r.actingState(ctx, timeout)
	if err != nil {
		return err
	}
	if len(r.destinations(st)) == 0 {
		return nil
	}
	shipper := slot
	if group != "" {
		shipper = r.representatives(st).ship[group]
	}
	req := AwaitRequest{DB: db, Slot: slot, Group: group, ID: id, TimeoutMS: timeout.Milliseconds()}
	owner := fsm.OwnerIn(r.liveRing(st, r.cfg.Cluster.DC()), shipper)
	if owner == r.cfg.Cluster.ID() || owner == "" || st.Nodes[owner] == nil {
		return r.awaitHere(ctx, req)
	}
	cctx, cancel := context.WithTimeout(ctx, timeout+time.Second)
	defer cancel()
	return r.cfg.Peers.CallPeer(cctx, st.Nodes[owner].Peer, RPCAwait, req, nil)
}

// awaitHere is Await on the node that ships the entry.
func (r *Replicator) awaitHere(ctx context.Context, req AwaitRequest) error {
	if err := checkDB(req.DB); err != nil {
		return err
	}
	if req.Group == "" && (req.Slot < 0 || req.Slot >= len(tags)) {
		// Checked before awaitLocal takes r.mu: an index out of range there unwound through
		// a deferred Lock of the mutex it held, and the node's replication hung for good.
		return fmt.Errorf("xdc: slot %d out of range", req.Slot)
	}
	if req.Group != "" {
		return r.awaitLog(ctx, req.DB, req.Group, req.ID, msDuration(req.TimeoutMS))
	}
	return r.awaitLocal(ctx, req.DB, req.Slot, req.ID, msDuration(req.TimeoutMS))
}

func (r *Replicator) awaitLocal(ctx context.Context, db, slot int, id string, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	r.mu.Lock()
	r.awaiting++
	defer func() {
		r.mu.Lock()
		r.awaiting--
		r.mu.Unlock()
	}()
	for {
		st := r.cfg.Cluster.State()
		a := r.ackedOf(dbSlot{db, slot})
		var missing []string
		for _, d := range r.destinations(st) {
			if got := a.get(d); got == "" || CompareIDs(got, id) < 0 {
				missing = append(missing, d)
			}
		}
		wait := r.progress
		r.mu.Unlock()
		acting := r.acting(st)
		if acting && len(missing) == 0 {
			return nil
		}
		var poll <-chan time.Time
		if !acting {
			poll = time.After(logAwaitPoll)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			if !acting {
				return errNotActing
			}
			return fmt.Errorf("not applied in DC %s within %s", strings.Join(missing, ", "), timeout.Round(time.Millisecond))
		case <-wait:
		case <-poll:
		}
		r.mu.Lock()
	}
}

// Report returns this node's shipping per DC pair.
func (r *Replicator) Report() Report {
	out := Report{Node: r.cfg.Cluster.ID(), Pairs: []PairReport{}}
	r.mu.Lock()
	loops := make([]*loop, 0, len(r.loops))
	for _, l := range r.loops {
		loops = append(loops, l)
	}
	var shippers []*logShipper
	for _, l := range r.logs {
		shippers = append(shippers, l.g.shippers...)
	}
	r.mu.Unlock()
	byDest := map[string]*PairReport{}
	lags := map[string][]time.Duration{}
	now := time.Now()
	pair := func(dest string) *PairReport {
		p := byDest[dest]
		if p == nil {
			p = &PairReport{From: r.cfg.Cluster.DC(), To: dest, State: "ok"}
			byDest[dest] = p
		}
		return p
	}
	for _, l := range loops {
		l.report(pair(l.key.dest), now)
		lags[l.key.dest] = append(lags[l.key.dest], l.recentLags()...)
	}
	for _, s := range shippers {
		lags[s.dest] = append(lags[s.dest], s.report(pair(s.dest), now)...)
	}
	for d, p := range byDest {
		c := r.counter(d)
		p.Shipped, p.Copied, p.LostOnFailover = c.shipped.Load(), c.copied.Load(), c.lost.Load()
		if ls := lags[d]; len(ls) > 0 {
			sort.Slice(ls, func(i, j int) bool { return ls[i] < ls[j] })
			p.LagP50MS = float64(ls[len(ls)/2].Microseconds()) / 1000
			p.LagP99MS = float64(ls[len(ls)*99/100].Microseconds()) / 1000
		}
		out.Pairs = append(out.Pairs, *p)
	}
	sort.Slice(out.Pairs, func(i, j int) bool { return out.Pairs[i].To < out.Pairs[j].To })
	return out
}

func msDuration(ms int64) time.Duration {
	if ms <= 0 {
		return 5 * time.Second
	}
	return time.Duration(ms) * time.Millisecond
}
