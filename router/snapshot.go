package router

import (
	"cmp"
	"context"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/backendacl"
	"github.com/redraft/redraft/router/backend"
	"github.com/redraft/redraft/router/xdc"
)

// group is one group of the node's DC as the data path sees it.
type group struct {
	id   string
	idx  int // position in snapshot.groups (sorted by id)
	addr string
	// pool authenticates as the restricted client user (forwarded client commands, user
	// scripts); ipool as the internal user (WRITE calls, Internal, flushes, CLIENT UNBLOCK).
	// See backendusers.go.
	pool, ipool *backend.Pool
	// authClient and authInternal are AUTH commands for the two users, for switching users
	// inside a MULTI block (user scripts with several DCs).
	authClient, authInternal []byte
	// quorum is how many replicas acknowledge a DC_QUORUM write: a majority of the group's
	// listed replicas, 0 when it lists none.
	quorum int
	// reads are the servers reads may go to (replicaread.go); nil for a replica's own group.
	reads *readSet
}

// migState is a slot's step in a migration, as the data path acts on it.
type migState uint8

const (
	migNone      migState = iota // served by its owner
	migFrozen                    // held (the barrier), then -TRYAGAIN
	migMigrating                 // keys moved on access, served by the target
)

// slotEntry is one slot's routing: a lookup is one array index.
type slotEntry struct {
	g *group    // the owner in the slot table (pub/sub uses it)
	m *migEntry // the active migration covering the slot, or nil
}

// state returns the slot's migration step.
func (e *slotEntry) state() migState {
	if e.m == nil {
		return migNone
	}
	return e.m.state
}

// group returns the group a keyed request for the slot is sent to: the target while the slot
// is migrating, else the owner.
func (e *slotEntry) group() *group {
	if e.m != nil && e.m.state == migMigrating {
		return e.m.dst
	}
	return e.g
}

// fillOwners fills the owner table from the slot entries, once they are complete.
func (snap *snapshot) fillOwners() {
	if len(snap.groups) >= 256 {
		return // every request reads its slot entry
	}
	for i := range snap.slots {
		e := &snap.slots[i]
		if e.g != nil && e.m == nil && e.g.idx < len(snap.groups) && snap.groups[e.g.idx] == e.g {
			snap.owner[i] = uint8(e.g.idx + 1)
		}
	}
}

// routeSig identifies how a slot's keyed requests are served; WATCH compares it at EXEC.
type routeSig struct {
	pool *backend.Pool
	mig  migState
	id   uint64
	back bool
}

func (e *slotEntry) sig() routeSig {
	s := routeSig{mig: e.state()}
	if g := e.group(); g != nil {
		s.pool = g.pool
	}
	if e.m != nil {
		s.id, s.back = e.m.id, e.m.back
	}
	return s
}

// snapshot is an immutable routing table for the node's DC, built from one fsm.State and
// swapped atomically; the request path reads it without a lock.
type snapshot struct {
	index uint64
	slots [fsm.NumSlots]slotEntry
	// owner is, per slot without a migration or failover entry, 1 + the index in groups of
	// its owner (0: read slots). The hot path reads this byte instead of the 16-byte entry:
	// random keys touch random slots, and 16 KiB stays in cache where 256 KiB does not
	// (enterOwned).
	owner  [fsm.NumSlots]uint8
	groups []*group // sorted by id
	// groupsPrint is a fingerprint of groups' ids, which SCAN cursors carry (fanout.go).
	groupsPrint uint64
	// pubsub is the group carrying the DC's non-sharded pub/sub: the owner of slot 0, else the
	// first group by id.
	pubsub *group
	flush  bool
	// configSet is the setting config_set: CONFIG SET of data-path parameters is served.
	configSet bool
	// multiDC is set when the cluster has more than one DC: writes then go through the WRITE
	// script (xdcwrite.go). level is the cluster's default write consistency, outboxMax the
	// outbox bound (setting outbox_max_entries) as WRITE's argument, with the setting
	// convergence.
	multiDC   bool
	level     level
	outboxMax writeOpts
	// flushing is the active flush: keyed client requests for its databases are held (flush.go).
	flushing *fsm.Flush
	// migrating is the number of slots an active migration covers (0: no check needed).
	migrating int
	// readFrom and maxLag are the settings read_from and replica_max_lag (replicaread.go).
	readFrom string
	maxLag   time.Duration
	// changed is closed when a newer snapshot replaces this one (held requests wait on it).
	changed chan struct{}
	// hold, when set, makes this a snapshot that routes nothing: the node is not acting on
	// current cluster state (Hold), and keyed requests wait for the next snapshot, bounded.
	hold *holdReason
}

// holdReason is why a held snapshot routes nothing; the node refreshes the text while it
// catches up ("applied X of Y").
type holdReason struct{ msg atomic.Pointer[string] }

// down returns why snap serves no request: not started, held, or no group in the DC; nil when
// it routes.
func (snap *snapshot) down() error {
	switch {
	case snap == nil:
		return errStarting
	case snap.hold != nil:
		return &replyError{*snap.hold.msg.Load()}
	case len(snap.groups) == 0:
		return errNoGroups
	}
	return nil
}

// downPubsub is down for the DC's classic pub/sub group.
func (snap *snapshot) downPubsub() error {
	if err := snap.down(); err != nil {
		return err
	}
	if snap.pubsub == nil {
		return errNoGroups
	}
	return nil
}

// Hold makes the server route nothing until the next SetState: the node is not acting on
// current cluster state (it is catching up after a start, or lost its lease: node/current.go),
// and reason's text is what keyed requests answer after waiting FreezeWait for it to end. It
// keeps the backend pools, and sessions already subscribed or blocked, for when routing
// resumes; a later Hold only updates the reason.
func (s *Server) Hold(reason error) {
	msg := reason.Error()
	if !strings.HasPrefix(msg, "CLUSTERDOWN ") && !strings.HasPrefix(msg, "TRYAGAIN ") {
		msg = "CLUSTERDOWN " + msg
	}
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	if s.isClosed() {
		return
	}
	prev := s.snap.Load()
	if prev != nil && prev.hold != nil {
		prev.hold.msg.Store(&msg)
		return
	}
	snap := &snapshot{changed: make(chan struct{}), hold: &holdReason{}}
	snap.hold.msg.Store(&msg)
	if prev != nil {
		snap.index = prev.index
	}
	s.swap(snap)
}

// isClosed reports whether Close was called.
func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// swap publishes snap (under stateMu) and wakes whoever waits on the one it replaces.
func (s *Server) swap(snap *snapshot) *snapshot {
	prev := s.snap.Swap(snap)
	if prev != nil {
		close(prev.changed)
	} else {
		close(s.ready)
	}
	return prev
}

// poolKey identifies a pool that can be reused across snapshots.
type poolKey struct{ id, addr, user, password string }

// SetState builds the routing snapshot of cfg.DC from st and swaps it in. Pools whose group
// kept its master and password are reused; pools of removed or changed groups are closed.
// Active migrations of the DC mark their slots frozen or migrating; a migrating migration's
// mover is reused while its id, direction and groups stay the same.
func (s *Server) SetState(st *fsm.State) {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	if s.isClosed() {
		return
	}
	snap := &snapshot{index: st.Index, flush: st.Setting("flush_enabled") == "true", changed: make(chan struct{}),
		configSet: st.Setting("config_set") == "true", multiDC: st.SeveralDCs(),
		level: levelFromSetting(cmp.Or(s.cfg.WriteConsistency, st.Setting("write_consistency"))),
		outboxMax: writeOpts{maxLen: strconv.FormatInt(st.SettingInt("outbox_max_entries"), 10), plain: st.Setting("convergence") != "true",
			log: st.Format() >= xdc.LogDataFormat},
		readFrom: st.Setting("read_from"), maxLag: st.SettingDuration("replica_max_lag"), flushing: activeFlush(st)}
	pools := map[poolKey]*backend.Pool{}
	movers := map[moverKey]*moverRef{}
	if dc := st.DCs[s.cfg.DC]; dc != nil {
		byID := map[string]*group{}
		for _, id := range dc.GroupIDs() {
			fg := dc.Groups[id]
			acc := backendacl.ForGroup(fg)
			cli, in := acc.Client(), acc.Internal()
			g := &group{id: id, idx: len(snap.groups), addr: fg.Master, quorum: quorumOf(len(fg.Replicas)),
				pool: s.userPool(pools, acc, fg.Master, cli, nil), ipool: s.userPool(pools, acc, fg.Master, in, backendLibraries),
				authClient: backendacl.AuthCommand(cli), authInternal: backendacl.AuthCommand(in)}
			snap.groups = append(snap.groups, g)
			byID[id] = g
		}
		for i, id := range dc.Slots {
			if id != "" {
				snap.slots[i].g = byID[id]
			}
		}
		snap.pubsub = snap.slots[0].g
		if snap.pubsub == nil && len(snap.groups) > 0 {
			snap.pubsub = snap.groups[0]
		}
		s.markMigrations(st, dc, byID, snap, movers)
		markFailovers(dc, snap)
		s.readSets(st, dc, byID, pools)
	}
	sort.Slice(snap.groups, func(i, j int) bool { return snap.groups[i].id < snap.groups[j].id })
	snap.groupsPrint = groupsPrint(snap.groups)
	snap.fillOwners()
	old := s.pools
	s.pools = pools
	oldMovers := s.movers
	s.movers = movers
	s.swap(snap)
	for k, p := range old {
		if pools[k] != p {
			p.Close()
		}
	}
	for k, r := range oldMovers {
		if movers[k] != r {
			r.retire()
		}
	}
	s.notifyClients(snap)
}

// notifyClients acts on sessions the new snapshot affects: subscribers whose subscriptions
// no longer live on the group that publishes now reach are disconnected (clients reconnect and
// subscribe again, as after a backend failure, instead of silently missing messages); sessions
// blocked on a slot that is now frozen or served by another group are released.
func (s *Server) notifyClients(snap *snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.clients {
		if c.pubsubMoved(snap) {
			c.closeConn()
		}
		if op := c.blk.Load(); op != nil && (op.stale(snap) || snap.flushing != nil) {
			op.release(s, c)
		}
	}
}

// userPool returns the pool for master as user cr: the current one when the group kept its
// master and credentials, else a new one that creates the users when the backend refuses cr.
// It records the pool in pools.
func (s *Server) userPool(pools map[poolKey]*backend.Pool, acc backendacl.Access, master string, cr backendacl.Creds, libs []string) *backend.Pool {
	k := poolKey{acc.Group, master, cr.User, cr.Password}
	p := s.pools[k]
	if p == nil {
		timeout := s.cfg.BackendTimeout
		p = backend.NewPool(backend.Options{Group: acc.Group, Addr: master, User: cr.User, Password: cr.Password,
			Ensure:  func(ctx context.Context) error { return acc.Ensure(ctx, master, cr, timeout) },
			Timeout: timeout, ConnsPerDB: s.cfg.BackendConns, Databases: s.cfg.Databases,
			Stats: &s.bstats, Counters: s.gstats.of(acc.Group), Libraries: libs})
	}
	pools[k] = p
	return p
}
