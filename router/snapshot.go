package router

import (
	"sort"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/router/backend"
)

// group is one group of the node's DC as the data path sees it.
type group struct {
	id   string
	idx  int // position in snapshot.groups (sorted by id)
	addr string
	pool *backend.Pool
}

// slotEntry is one slot's routing. Migration state (frozen, migrating and the target group)
// will live here, so a lookup stays one array index.
type slotEntry struct {
	g *group
}

// snapshot is an immutable routing table for the node's DC, built from one fsm.State and
// swapped atomically; the request path reads it without a lock.
type snapshot struct {
	index  uint64
	slots  [fsm.NumSlots]slotEntry
	groups []*group // sorted by id
	// pubsub is the group carrying the DC's non-sharded pub/sub: the owner of slot 0, else the
	// first group by id.
	pubsub *group
	flush  bool
}

// poolKey identifies a pool that can be reused across snapshots.
type poolKey struct{ id, addr, password string }

// SetState builds the routing snapshot of cfg.DC from st and swaps it in. Pools whose group
// kept its master and password are reused; pools of removed or changed groups are closed.
func (s *Server) SetState(st *fsm.State) {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return
	}
	snap := &snapshot{index: st.Index, flush: st.Setting("flush_enabled") == "true"}
	pools := map[poolKey]*backend.Pool{}
	if dc := st.DCs[s.cfg.DC]; dc != nil {
		byID := map[string]*group{}
		for _, id := range dc.GroupIDs() {
			fg := dc.Groups[id]
			k := poolKey{id, fg.Master, fg.Password}
			p := s.pools[k]
			if p == nil {
				p = backend.NewPool(backend.Options{Group: id, Addr: fg.Master, Password: fg.Password,
					Timeout: s.cfg.BackendTimeout, ConnsPerDB: s.cfg.BackendConns, Databases: s.cfg.Databases,
					Stats: &s.bstats})
			}
			pools[k] = p
			g := &group{id: id, idx: len(snap.groups), addr: fg.Master, pool: p}
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
	}
	sort.Slice(snap.groups, func(i, j int) bool { return snap.groups[i].id < snap.groups[j].id })
	old := s.pools
	s.pools = pools
	s.snap.Store(snap)
	for k, p := range old {
		if pools[k] != p {
			p.Close()
		}
	}
	s.rehomeSubscribers(snap)
}

// rehomeSubscribers disconnects subscribed clients whose subscriptions no longer live on the
// group that publishes now reach; clients reconnect and subscribe again (as after a backend
// failure), instead of silently missing messages.
func (s *Server) rehomeSubscribers(snap *snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.clients {
		if p := c.psMain.Load(); p != nil && (snap.pubsub == nil || snap.pubsub.pool != p) {
			c.closeConn()
		}
		if ss := c.psShard.Load(); ss != nil {
			if g := snap.slots[ss.slot].g; g == nil || g.pool != ss.pool {
				c.closeConn()
			}
		}
	}
}
