// Package failover heals a DC's groups: every node watches its DC's Redis servers, votes a
// master down through Raft, promotes a replica when it runs the failover, and fences old masters.
package failover

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/migrate"
)

// Cluster is what the watcher needs of its node: the state it acts on (node.Current), the one
// proposal path, its identity and the peer calls.
type Cluster interface {
	State() *fsm.State
	Propose(ctx context.Context, cmd fsm.Command) error
	ID() string
	DC() string
	CallPeer(ctx context.Context, addr, name string, in, out any) error
}

// Gate is the data plane's side of a switchover: it returns once the node's routing holds every
// slot of slots and no request for them is in flight (router.Server.WaitIdle).
type Gate interface {
	WaitIdle(ctx context.Context, slots *migrate.SlotSet) error
}

// Config configures a Watcher.
type Config struct {
	Cluster Cluster
	Gate    Gate
	Logger  *slog.Logger
	// Interval is how often every server is probed (default 250 ms).
	Interval time.Duration
	// OnFresh, when set, is told after every probe, per replica that may serve reads, a time
	// before which every write its master acknowledged is on it (router.SetReplicaFresh).
	OnFresh func(map[string]time.Time)
	// LeaseWait is how long a node cut off from the Raft leader may keep acting on its state
	// (node.RemoveGrace: its lease, plus a deposed leader's step-down). Before an unplanned failover promotes a replica, every node of the
	// DC is asked to hold the group; when one does not answer, the executor waits this long
	// from the failover's start, so that a node that never applied it has stopped routing to
	// the old master by then (0: no wait, for tests of one node).
	LeaseWait time.Duration
	// SwitchoverGiveUp is how long a planned switchover may fail to go on before its executor
	// cancels it (default 10 s): while it runs, the group's requests are held everywhere and
	// no unplanned failover can start, so one that cannot finish (the master died meanwhile,
	// no replica in sync) must end by itself.
	SwitchoverGiveUp time.Duration
}

// offsetSample is a master's replication offset and a time before which every write it
// acknowledged counts in it (when the INFO was sent).
type offsetSample struct {
	at  time.Time
	off int64
}

// maxSamples bounds the master offsets kept per group: a minute at the default interval.
const maxSamples = 240

// RPCDrain is the peer call a switchover's executor makes on every node of the DC: it answers
// once the node holds the group's requests and none is in flight.
const RPCDrain = "failover.drain"

// ServerView is one server as this node sees it.
type ServerView struct {
	Group string `json:"group"`
	Addr  string `json:"addr"`
	// Listed is the server's place in the group: master, replica or fenced.
	Listed string `json:"listed"`
	Up     bool   `json:"up"`
	// Role, MasterAddr and Link are what the server says (link: up, down, syncing).
	Role       string `json:"role,omitempty"`
	MasterAddr string `json:"master_addr,omitempty"`
	Link       string `json:"link,omitempty"`
	Offset     int64  `json:"offset"`
	// LagBytes is how far a replica is behind the group's master (-1 unknown).
	LagBytes int64 `json:"lag_bytes"`
	Loading  bool  `json:"loading,omitempty"`
	// DownMS is how long the node has not reached the server (0 while it answers).
	DownMS int64  `json:"down_ms,omitempty"`
	Error  string `json:"error,omitempty"`
	// UsedMemory (bytes), Keys and OpsPerSec are what the server's last INFO said.
	UsedMemory int64 `json:"used_memory,omitempty"`
	Keys       int64 `json:"keys"`
	OpsPerSec  int64 `json:"ops_per_sec"`
	// Policy is the server's maxmemory-policy (kept noeviction with several DCs).
	Policy string `json:"maxmemory_policy,omitempty"`
}

// serverState is the watcher's memory of one server.
type serverState struct {
	info   Info
	err    error
	lastOK time.Time // last answer (the watcher's start before the first)
	// lastSeen is the last answer of any kind, a -BUSY included (busy.go): what the down
	// vote goes by.
	lastSeen  time.Time
	runID     string    // the run id of the last answer
	roleSince time.Time // since when it answers the same role
}

// Watcher is one node's failover duties for its DC's groups.
type Watcher struct {
	cfg Config
	cl  Cluster
	log *slog.Logger
	adm admins

	mu sync.Mutex
	// probed is when the last probe was sent: a probe long after it (the node did not act on
	// the cluster state meanwhile, or a tick ran late) saw nothing of the time in between.
	probed  time.Time
	servers map[string]*serverState
	samples map[string][]offsetSample // by master address
	busy    map[string]bool           // proposals and promotions in flight, by key
	execs   map[string]*execWatch     // executors of failovers run by others, by group
	votedAt map[string]time.Time      // when this node last cast or renewed its down vote, by group
	// busyReply is, by server, what keepBusyReply last checked (busy.go).
	busyReply map[string]busyCheck
	// held marks the failovers ("group/epoch") whose hold every node confirmed (promote).
	held map[string]bool
	view atomic.Pointer[[]ServerView]
	kick chan struct{}

	failovers atomic.Int64 // failovers this node ran to a promotion
	noEvicts  atomic.Int64 // servers this node set to noeviction (policy.go)
}

// New returns a watcher; call Run once and Notify on every new state.
func New(cfg Config) *Watcher {
	if cfg.Interval <= 0 {
		cfg.Interval = 250 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.SwitchoverGiveUp <= 0 {
		cfg.SwitchoverGiveUp = 10 * time.Second
	}
	w := &Watcher{cfg: cfg, cl: cfg.Cluster, log: cfg.Logger.With("part", "failover"),
		servers: map[string]*serverState{}, samples: map[string][]offsetSample{}, busy: map[string]bool{}, execs: map[string]*execWatch{}, votedAt: map[string]time.Time{}, busyReply: map[string]busyCheck{}, held: map[string]bool{}, kick: make(chan struct{}, 1)}
	w.adm.timeout = max(cfg.Interval*2, 500*time.Millisecond)
	empty := []ServerView{}
	w.view.Store(&empty)
	return w
}

// Notify tells the watcher the state changed; it never blocks.
func (w *Watcher) Notify(*fsm.State) {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// View returns the servers of the node's DC as this node last saw them.
func (w *Watcher) View() []ServerView { return *w.view.Load() }

// Failovers returns how many failovers this node ran to a promotion since it started.
func (w *Watcher) Failovers() int64 { return w.failovers.Load() }

// RPC returns the watcher's peer calls, by name.
func (w *Watcher) RPC() map[string]func(ctx context.Context, body json.RawMessage) (any, error) {
	return map[string]func(ctx context.Context, body json.RawMessage) (any, error){
		RPCDrain: w.handleDrain, RPCExecuting: w.handleExecuting}
}

// Run probes and acts every Interval, and at once on a state change, until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	defer w.adm.close()
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	for {
		w.tick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-w.kick:
		}
	}
}

// tick probes every server of the DC's groups, then votes, fences and runs failovers.
func (w *Watcher) tick(ctx context.Context) {
	st := w.cl.State()
	dc := st.DCs[w.cl.DC()]
	if dc == nil {
		w.adm.forget(nil)
		return
	}
	w.probe(ctx, dc)
	w.keepBusyReply(ctx, st, dc)
	if st.SeveralDCs() {
		w.keepNoEviction(ctx, dc)
	}
	for _, id := range dc.GroupIDs() {
		g := dc.Groups[id]
		w.vote(ctx, st, g)
		if f := g.Failover; f != nil {
			if f.Executor == w.cl.ID() {
				w.execute(ctx, g.ID, f.Epoch)
			} else {
				w.watchExecutor(ctx, st, g)
			}
			continue
		}
		w.fence(ctx, g)
	}
}

// probeGap is the time between two probes past which the watcher takes itself to have seen
// nothing in between: four ticks and a probe's timeout.
func probeGap(interval, timeout time.Duration) time.Duration { return 4*interval + timeout }

// probe asks every server of dc for INFO in parallel and refreshes the view.
func (w *Watcher) probe(ctx context.Context, dc *fsm.DC) {
	type job struct {
		g    *fsm.Group
		addr string
	}
	var jobs []job
	keep := map[string]bool{}
	for _, id := range dc.GroupIDs() {
		g := dc.Groups[id]
		for _, a := range g.Servers() {
			jobs = append(jobs, job{g, a})
			keep[a] = true
		}
	}
	infos := make([]Info, len(jobs))
	errs := make([]error, len(jobs))
	pctx, cancel := context.WithTimeout(ctx, w.adm.timeout)
	defer cancel()
	sent := time.Now()
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			infos[i], errs[i] = w.adm.info(pctx, j.g, j.addr)
		}()
	}
	wg.Wait()
	now := time.Now()
	w.mu.Lock()
	for a := range w.servers {
		if !keep[a] {
			delete(w.servers, a)
			delete(w.busyReply, a)
		}
	}
	// After a gap in the probes no server is taken to have been down through it: its time
	// without an answer counts again from this probe, as for a server probed the first time.
	// Until session 45 the first failed probe after the node acted again (or after its start,
	// for a group registered later) voted the master down at once.
	gap := w.probed.IsZero() || sent.Sub(w.probed) > probeGap(w.cfg.Interval, w.adm.timeout)
	w.probed = sent
	if gap {
		// Nor is an executor taken to have been silent through it (handover.go): it is
		// asked again, and taken over only once it has not confirmed for the full wait.
		for _, ew := range w.execs {
			ew.seen = sent
		}
	}
	for i, j := range jobs {
		s := w.servers[j.addr]
		if s == nil {
			s = &serverState{lastOK: sent, lastSeen: sent}
			w.servers[j.addr] = s
		} else if gap {
			s.lastOK, s.lastSeen, s.roleSince = sent, sent, sent
		}
		s.err = errs[i]
		if isBusy(errs[i]) {
			s.lastSeen = now
		}
		if errs[i] != nil {
			continue
		}
		if s.info.Role != infos[i].Role || s.roleSince.IsZero() {
			s.roleSince = now
		}
		s.info, s.lastOK, s.lastSeen, s.runID = infos[i], now, now, infos[i].RunID
	}
	fresh := w.freshness(dc, sent)
	w.mu.Unlock()
	w.adm.forget(keep)
	w.view.Store(w.buildView(dc, now))
	if w.cfg.OnFresh != nil {
		w.cfg.OnFresh(fresh)
	}
}

// freshness records each master's offset as of sent and returns, per listed replica that is
// linked to its group's master, loaded and in sync, the latest sample time whose offset it has
// reached: every write acknowledged before then is on it. Called under w.mu.
func (w *Watcher) freshness(dc *fsm.DC, sent time.Time) map[string]time.Time {
	fresh := map[string]time.Time{}
	masters := map[string]bool{}
	for _, id := range dc.GroupIDs() {
		g := dc.Groups[id]
		masters[g.Master] = true
		m := w.servers[g.Master]
		if m == nil || m.err != nil || m.info.Role != "master" || m.lastOK.Before(sent) {
			continue
		}
		ss := append(w.samples[g.Master], offsetSample{sent, m.info.Offset})
		if len(ss) > maxSamples {
			ss = ss[len(ss)-maxSamples:]
		}
		w.samples[g.Master] = ss
		for _, a := range g.Replicas {
			r := w.servers[a]
			if r == nil || r.err != nil || r.lastOK.Before(sent) || r.info.Role != "slave" || r.info.MasterAddr != g.Master ||
				!r.info.LinkUp || r.info.Loading || r.info.Syncing {
				continue
			}
			for i := len(ss) - 1; i >= 0; i-- {
				if ss[i].off <= r.info.Offset {
					fresh[a] = ss[i].at
					break
				}
			}
		}
	}
	for a := range w.samples {
		if !masters[a] {
			delete(w.samples, a)
		}
	}
	return fresh
}

func (w *Watcher) buildView(dc *fsm.DC, now time.Time) *[]ServerView {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := []ServerView{}
	for _, id := range dc.GroupIDs() {
		g := dc.Groups[id]
		var masterOff int64 = -1
		if s := w.servers[g.Master]; s != nil && s.err == nil && s.info.Role == "master" {
			masterOff = s.info.Offset
		}
		for _, a := range g.Servers() {
			s := w.servers[a]
			v := ServerView{Group: id, Addr: a, Listed: listed(g, a), LagBytes: -1}
			if s != nil {
				v.Up = s.err == nil
				if s.err != nil {
					v.Error = s.err.Error()
					v.DownMS = now.Sub(s.lastOK).Milliseconds()
				}
				v.Role, v.MasterAddr, v.Offset, v.Loading = s.info.Role, s.info.MasterAddr, s.info.Offset, s.info.Loading
				v.UsedMemory, v.Keys, v.OpsPerSec, v.Policy = s.info.UsedMemory, s.info.Keys, s.info.OpsPerSec, s.info.Policy
				if s.info.Role == "slave" {
					v.Link = "down"
					switch {
					case s.info.Syncing:
						v.Link = "syncing"
					case s.info.LinkUp:
						v.Link = "up"
					}
					if masterOff >= 0 && s.info.MasterAddr == g.Master {
						v.LagBytes = max(masterOff-s.info.Offset, 0)
					}
				}
			}
			out = append(out, v)
		}
	}
	return &out
}

func listed(g *fsm.Group, a string) string {
	switch {
	case a == g.Master:
		return "master"
	case slices.Contains(g.Fenced, a):
		return "fenced"
	}
	return "replica"
}

// server returns a copy of what the watcher knows of addr.
func (w *Watcher) server(addr string) (serverState, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.servers[addr]
	if s == nil {
		return serverState{}, false
	}
	return *s, true
}

// vote reports the group's master down once this node has not reached it for
// master_down_after, or it has answered as a replica for master_down_after and two ticks (as
// Sentinel takes a master reporting itself a replica for down: every write to it fails with
// READONLY, say a promoted master restarted with the replicaof line of its configuration file),
// renews that vote every fsm.DownVoteRenew while no failover runs (an old vote counts for
// none), and withdraws it once the master answers again, as a master.
func (w *Watcher) vote(ctx context.Context, st *fsm.State, g *fsm.Group) {
	me := w.cl.ID()
	s, ok := w.server(g.Master)
	if !ok {
		return
	}
	now := time.Now()
	mda := st.SettingDuration("master_down_after")
	unreached := s.err != nil && now.Sub(s.lastSeen) >= mda
	// Not for a group without replicas: its failover has nothing to promote and would hold
	// the reads the master still serves.
	replica := s.err == nil && s.info.Role == "slave" && now.Sub(s.roleSince) >= mda+2*w.cfg.Interval && len(g.Replicas) > 0
	down := unreached || replica
	w.mu.Lock()
	renew := now.Sub(w.votedAt[g.ID]) >= fsm.DownVoteRenew
	w.mu.Unlock()
	switch voted := g.DownVotes[me]; {
	case down && (voted != g.Master || renew && g.Failover == nil):
		if voted != g.Master && unreached {
			w.log.Warn("master not reached: voting it down", "group", g.ID, "master", g.Master,
				"for", now.Sub(s.lastOK).Round(time.Millisecond), "err", s.err)
		} else if voted != g.Master {
			w.log.Warn("master answers as a replica: voting it down", "group", g.ID, "master", g.Master,
				"replicates", s.info.MasterAddr, "for", now.Sub(s.roleSince).Round(time.Millisecond))
		}
		w.mu.Lock()
		w.votedAt[g.ID] = now
		w.mu.Unlock()
		w.propose(ctx, "vote/"+g.ID, &fsm.ReportServer{DC: w.cl.DC(), Group: g.ID, Node: me, Addr: g.Master, Down: true,
			RunID: s.runID, At: now.UnixMilli()})
	case !down && s.err == nil && voted != "":
		w.log.Info("master answers again: vote withdrawn", "group", g.ID, "master", voted)
		w.propose(ctx, "vote/"+g.ID, &fsm.ReportServer{DC: w.cl.DC(), Group: g.ID, Node: me, Addr: voted})
	}
}

// fence makes every listed replica and fenced server that answers replicate the group's master,
// and lists a fenced server among the replicas again once its link is up. A replica that claims
// to be a master is demoted only after a second of it (a node a moment behind on the state
// must not undo a promotion it has not applied yet; promotions run only while the group's
// failover is in progress, when no node fences the group).
func (w *Watcher) fence(ctx context.Context, g *fsm.Group) {
	for _, a := range g.Servers() {
		if a == g.Master {
			continue
		}
		s, ok := w.server(a)
		if !ok || s.err != nil {
			continue
		}
		isFenced := slices.Contains(g.Fenced, a)
		switch {
		case s.info.Role == "master" && (isFenced || time.Since(s.roleSince) >= time.Second):
			w.log.Warn("fencing: a server of the group acts as a master; making it a replica", "group", g.ID,
				"server", a, "listed", listed(g, a), "master", g.Master)
			w.repoint(ctx, g, a)
		case s.info.Role == "slave" && s.info.MasterAddr != g.Master:
			w.log.Info("pointing a replica at the group's master", "group", g.ID, "server", a,
				"was", s.info.MasterAddr, "master", g.Master)
			w.repoint(ctx, g, a)
		case isFenced && s.info.Role == "slave" && s.info.LinkUp:
			w.log.Info("fenced server replicates the master: listed as a replica again", "group", g.ID, "server", a)
			w.propose(ctx, "rejoin/"+a, &fsm.RejoinServer{DC: w.cl.DC(), Group: g.ID, Addr: a})
		}
	}
}

// repoint runs REPLICAOF master on a, once at a time per server.
func (w *Watcher) repoint(ctx context.Context, g *fsm.Group, a string) {
	gc := *g
	w.async(ctx, "repoint/"+a, func(ctx context.Context) {
		if err := w.adm.replicaOf(ctx, &gc, a, gc.Master); err != nil {
			w.log.Warn("REPLICAOF failed", "group", gc.ID, "server", a, "master", gc.Master, "err", err)
		}
	})
}

// propose commits cmd in the background, one proposal per key at a time.
func (w *Watcher) propose(ctx context.Context, key string, cmd fsm.Command) {
	w.async(ctx, key, func(ctx context.Context) {
		if err := w.cl.Propose(ctx, cmd); err != nil {
			w.log.Warn("failover step not committed", "step", cmd.Name(), "err", err)
		}
	})
}

// async runs f in a goroutine unless one for key still runs; f gets 10 s.
func (w *Watcher) async(ctx context.Context, key string, f func(ctx context.Context)) {
	w.alone(key, func() {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		f(cctx)
	})
}

// alone runs f in a goroutine unless one for key still runs.
func (w *Watcher) alone(key string, f func()) {
	w.mu.Lock()
	if w.busy[key] {
		w.mu.Unlock()
		return
	}
	w.busy[key] = true
	w.mu.Unlock()
	go func() {
		defer func() {
			w.mu.Lock()
			delete(w.busy, key)
			w.mu.Unlock()
		}()
		f()
	}()
}

// group returns the current state's group id of the node's DC, or nil.
func (w *Watcher) group(id string) (*fsm.State, *fsm.Group) {
	st := w.cl.State()
	dc := st.DCs[w.cl.DC()]
	if dc == nil {
		return st, nil
	}
	return st, dc.Groups[id]
}

// slotsOf returns the slots whose requests may reach the group in dc: those it serves, and
// those of every active migration of dc from or to it, as the router's hold covers them
// (markFailovers). Until session 46 a migration's slots were left out while they still
// belonged to its source: a write on its way to the target (moved there first) was not
// waited for, the failover of the target promoted a replica without it, and the client had
// been told it was written.
func slotsOf(st *fsm.State, dc, group string) *migrate.SlotSet {
	var s migrate.SlotSet
	d := st.DCs[dc]
	if d == nil {
		return &s
	}
	for i, o := range d.Slots {
		if o == group {
			s.Add(i)
		}
	}
	for _, m := range st.Migrations {
		if m.Active() && m.DC == dc && (m.Source() == group || m.Target() == group) {
			s.AddRanges(m.Slots)
		}
	}
	return &s
}

// drainRequest asks a node to hold a group's requests and drain them for a switchover.
type drainRequest struct {
	Group string `json:"group"`
	Epoch uint64 `json:"epoch"`
}

// handleDrain answers once this node's routing holds the group's slots (it has applied the
// switchover's start) and none of its requests is in flight.
func (w *Watcher) handleDrain(ctx context.Context, body json.RawMessage) (any, error) {
	var req drainRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("failover: bad drain request: %w", err)
	}
	return struct{}{}, w.drainLocal(ctx, req)
}

func (w *Watcher) drainLocal(ctx context.Context, req drainRequest) error {
	// The switchover's start may not be applied here yet: wait for it, bounded by ctx.
	for {
		st, g := w.group(req.Group)
		if g == nil {
			return fmt.Errorf("failover: group %s is not in this node's current state", req.Group)
		}
		if f := g.Failover; f != nil && f.Epoch == req.Epoch {
			return w.cfg.Gate.WaitIdle(ctx, slotsOf(st, w.cl.DC(), req.Group))
		}
		if g.Epoch >= req.Epoch {
			return nil // already over
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("failover: switchover of group %s (epoch %d) not applied here: %w", req.Group, req.Epoch, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// sortCandidates orders promotion candidates: highest offset, then lowest priority, then address.
func sortCandidates(g *fsm.Group, c []candidate) {
	sort.Slice(c, func(i, j int) bool {
		if c[i].info.Offset != c[j].info.Offset {
			return c[i].info.Offset > c[j].info.Offset
		}
		pi, pj := g.PriorityOf(c[i].addr), g.PriorityOf(c[j].addr)
		if pi != pj {
			return pi < pj
		}
		return c[i].addr < c[j].addr
	})
}
