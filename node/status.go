package node

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/redraft/redraft/fsm"
)

// statusReply is one node's own view, answered on the peer port and shown per member.
type statusReply struct {
	ID           string `json:"id"`
	DC           string `json:"dc"`
	RaftState    string `json:"raft_state"`
	Term         uint64 `json:"term"`
	AppliedIndex uint64 `json:"applied_index"`
	CommitIndex  uint64 `json:"commit_index"`
	Removed      string `json:"removed,omitempty"`
	// Acting is whether the node acts on current state (node/current.go); NotActing says why
	// not.
	Acting    bool   `json:"acting"`
	NotActing string `json:"not_acting,omitempty"`
	DataPlane any    `json:"data_plane,omitempty"`
	// Replication is this node's cross-DC shipping.
	Replication []ReplicationPair `json:"replication,omitempty"`
}

// ReplicationPair is the cross-DC replication from one DC to another: as one node ships it,
// or merged over the nodes (the largest lag, the sums, the worst state).
type ReplicationPair struct {
	From string `json:"from"`
	To   string `json:"to"`
	// LagMS is how far behind the destination is, from heartbeat entries (ms).
	LagMS float64 `json:"lag_ms"`
	// LagP50MS and LagP99MS are the median and 99th percentile of the recent entries' lag:
	// from the write on the source master to the destination's acknowledgement (ms).
	LagP50MS float64 `json:"lag_p50_ms"`
	LagP99MS float64 `json:"lag_p99_ms"`
	// Pending estimates the entries the destination has not applied yet.
	Pending int64 `json:"pending"`
	// Outbox is the number of entries kept in the shipped outboxes.
	Outbox int64 `json:"outbox"`
	// Copying is the number of slots being copied in full to the destination.
	Copying int `json:"copying"`
	// Copied counts full slot copies since the shipping nodes started.
	Copied int64 `json:"copied"`
	// Shipped counts the entries the destination applied since the shipping nodes started.
	Shipped int64 `json:"shipped"`
	// State is ok, lagging, copying or down.
	State string `json:"state"`
	// Error is the last shipping error when the pair is down.
	Error string `json:"error,omitempty"`
}

// mergePairs folds per-node reports into one per DC pair.
func mergePairs(reports [][]ReplicationPair) []ReplicationPair {
	type pk struct{ from, to string }
	rank := map[string]int{"ok": 0, "lagging": 1, "copying": 2, "down": 3}
	m := map[pk]*ReplicationPair{}
	var order []pk
	for _, rep := range reports {
		for _, p := range rep {
			k := pk{p.From, p.To}
			q := m[k]
			if q == nil {
				c := p
				m[k] = &c
				order = append(order, k)
				continue
			}
			q.LagMS = max(q.LagMS, p.LagMS)
			q.LagP50MS, q.LagP99MS = max(q.LagP50MS, p.LagP50MS), max(q.LagP99MS, p.LagP99MS)
			q.Pending += p.Pending
			q.Outbox += p.Outbox
			q.Copying += p.Copying
			q.Copied += p.Copied
			q.Shipped += p.Shipped
			if rank[p.State] > rank[q.State] {
				q.State, q.Error = p.State, p.Error
			}
		}
	}
	sort.Slice(order, func(i, j int) bool {
		if order[i].from != order[j].from {
			return order[i].from < order[j].from
		}
		return order[i].to < order[j].to
	})
	out := make([]ReplicationPair, len(order))
	for i, k := range order {
		out[i] = *m[k]
	}
	return out
}

func (n *Node) localStatus() statusReply {
	st := n.State()
	r := statusReply{
		ID: n.cfg.ID, DC: n.cfg.DC, RaftState: n.raft.State().String(),
		AppliedIndex: st.Index, CommitIndex: n.raft.CommitIndex(), Removed: n.RemovedReason(),
	}
	r.Term = n.raft.CurrentTerm()
	var why error
	if r.Acting, why = n.Acting(); why != nil {
		r.NotActing = why.Error()
	}
	if n.extraStatus != nil {
		r.DataPlane = n.extraStatus()
	}
	if n.opts.Replication != nil {
		r.Replication = n.opts.Replication()
	}
	return r
}

// Member is one node in the cluster status.
type Member struct {
	fsm.Node
	// Suffrage is "voter" or "nonvoter" ("" when not in the Raft configuration).
	Suffrage string `json:"suffrage"`
	// Role is the node's Raft state as it reports it (Leader, Follower, Candidate), or
	// "unreachable".
	Role         string `json:"role"`
	AppliedIndex uint64 `json:"applied_index"`
	// Acting and NotActing are the node's own report: whether it acts on current state.
	Acting    bool   `json:"acting"`
	NotActing string `json:"not_acting,omitempty"`
	Error     string `json:"error,omitempty"`
}

// GroupStatus is one group with the slots it serves. Its backend password shows only as
// "set" or "unset": it goes in through the admin API and never comes out.
type GroupStatus struct {
	ID       string   `json:"id"`
	Master   string   `json:"master"`
	Replicas []string `json:"replicas,omitempty"`
	// User is the backends' admin user ("" for Redis's default user).
	User     string   `json:"user,omitempty"`
	Password string   `json:"password"`
	Slots    int      `json:"slots"`
	Ranges   []string `json:"ranges"`
}

// DCStatus is one datacenter in the cluster status.
type DCStatus struct {
	Name  string   `json:"name"`
	Nodes []string `json:"nodes"`
	// Owners is, per node of the DC, how many slots it owns on the DC's token ring (it ships
	// their outboxes to the other DCs).
	Owners     map[string]int `json:"slot_owners"`
	Groups     []GroupStatus  `json:"groups"`
	Unassigned int            `json:"unassigned_slots"`
}

// Status is the cluster as one node sees it.
type Status struct {
	Node         string            `json:"node"`
	Leader       string            `json:"leader"`
	LeaderPeer   string            `json:"leader_peer"`
	Term         uint64            `json:"term"`
	AppliedIndex uint64            `json:"applied_index"`
	Members      []Member          `json:"members"`
	DCs          []DCStatus        `json:"dcs"`
	Settings     map[string]string `json:"settings"`
	Migrations   []*fsm.Migration  `json:"migrations,omitempty"`
	// Replication is the cross-DC replication per DC pair, merged over the members that
	// answered.
	Replication []ReplicationPair `json:"replication,omitempty"`
	// MigrationWaiting lists, per frozen migration id, the nodes whose freeze ack it still
	// waits for (a node that does not answer blocks it until it is back or removed).
	MigrationWaiting map[uint64][]string `json:"migration_waiting_for,omitempty"`
}

// Status gathers the cluster status: the state plus each member's own report (asked in
// parallel, one second at most).
func (n *Node) Status(ctx context.Context) Status {
	st := n.State()
	addr, id := n.raft.LeaderWithID()
	out := Status{
		Node: n.cfg.ID, Leader: string(id), LeaderPeer: string(addr), Term: n.raft.CurrentTerm(),
		AppliedIndex: st.Index, Settings: map[string]string{},
	}
	for _, k := range fsm.SettingKeys() {
		out.Settings[k] = st.Setting(k)
	}
	suffrage := map[string]string{}
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				suffrage[string(s.ID)] = "voter"
			} else {
				suffrage[string(s.ID)] = "nonvoter"
			}
		}
	}
	ids := st.NodeIDs()
	out.Members = make([]Member, len(ids))
	reports := make([][]ReplicationPair, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		m := &out.Members[i]
		m.Node, m.Suffrage = *st.Nodes[id], suffrage[id]
		if id == n.cfg.ID {
			r := n.localStatus()
			m.Role, m.AppliedIndex, m.Acting, m.NotActing, reports[i] = r.RaftState, r.AppliedIndex, r.Acting, r.NotActing, r.Replication
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			var r statusReply
			if err := n.peers.call(cctx, m.Peer, rpcStatus, struct{}{}, &r); err != nil {
				m.Role, m.Error = "unreachable", err.Error()
				return
			}
			m.Role, m.AppliedIndex, m.Acting, m.NotActing, reports[i] = r.RaftState, r.AppliedIndex, r.Acting, r.NotActing, r.Replication
		}()
	}
	wg.Wait()
	out.Replication = mergePairs(reports)
	for _, name := range st.DCNames() {
		dc := st.DCs[name]
		ds := DCStatus{Name: name, Nodes: []string{}, Groups: []GroupStatus{}, Owners: map[string]int{}}
		if ring := st.Ring(name); len(ring) > 0 {
			for slot := 0; slot < fsm.NumSlots; slot++ {
				ds.Owners[fsm.OwnerIn(ring, slot)]++
			}
		}
		for _, id := range ids {
			if st.Nodes[id].DC == name {
				ds.Nodes = append(ds.Nodes, id)
			}
		}
		ranges := dc.SlotRanges()
		for _, r := range ranges[""] {
			ds.Unassigned += r.To - r.From + 1
		}
		for _, gid := range dc.GroupIDs() {
			g := dc.Groups[gid]
			gs := GroupStatus{ID: g.ID, Master: g.Master, Replicas: g.Replicas, User: g.User, Password: SecretState(g.Password), Ranges: []string{}}
			for _, r := range ranges[gid] {
				gs.Slots += r.To - r.From + 1
				gs.Ranges = append(gs.Ranges, r.String())
			}
			ds.Groups = append(ds.Groups, gs)
		}
		out.DCs = append(out.DCs, ds)
	}
	for _, m := range st.Migrations {
		out.Migrations = append(out.Migrations, m)
		if w := st.FreezeWaiting(m); len(w) > 0 {
			if out.MigrationWaiting == nil {
				out.MigrationWaiting = map[uint64][]string{}
			}
			out.MigrationWaiting[m.ID] = w
		}
	}
	sort.Slice(out.Migrations, func(i, j int) bool { return out.Migrations[i].ID < out.Migrations[j].ID })
	return out
}
