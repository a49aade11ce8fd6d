package node

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/redraft/redraft/failover"
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
	// Servers are its DC's Redis servers as its failover watcher sees them.
	Servers []ServerView `json:"servers,omitempty"`
}

// ServerView is one Redis server of a group as a node of its DC sees it: the failover
// watcher's view, shown as it is.
type ServerView = failover.ServerView

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
	// LostOnFailover counts the entries the destination applied that the source's outbox lost
	// with a failed-over master (docs/replication.md).
	LostOnFailover int64 `json:"lost_on_failover,omitempty"`
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
			q.LostOnFailover += p.LostOnFailover
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
	if n.opts.Servers != nil {
		r.Servers = n.opts.Servers()
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
	// DataPlane is the node's data-plane counters (router.Stats: clients, requests, latency
	// buckets), for the dashboard.
	DataPlane any `json:"data_plane,omitempty"`
}

// GroupStatus is one group with the slots it serves. Its backend password shows only as
// "set" or "unset": it goes in through the admin API and never comes out.
type GroupStatus struct {
	ID       string   `json:"id"`
	Master   string   `json:"master"`
	Replicas []string `json:"replicas,omitempty"`
	// Fenced are former masters waiting to replicate the new one (docs/failover.md).
	Fenced   []string       `json:"fenced,omitempty"`
	Priority map[string]int `json:"priority,omitempty"`
	// User is the backends' admin user ("" for Redis's default user).
	User     string   `json:"user,omitempty"`
	Password string   `json:"password"`
	Slots    int      `json:"slots"`
	Ranges   []string `json:"ranges"`
	// Epoch and Failovers count the group's failovers (started; promoted).
	Epoch     uint64 `json:"epoch,omitempty"`
	Failovers uint64 `json:"failovers,omitempty"`
	// LostBytes sums the replication stream old masters took with them (docs/failover.md).
	LostBytes int64 `json:"lost_bytes,omitempty"`
	// DownVotes are the nodes that have not reached the master for master_down_after.
	DownVotes    []string      `json:"down_votes,omitempty"`
	Failover     *fsm.Failover `json:"failover,omitempty"`
	LastFailover *fsm.Failover `json:"last_failover,omitempty"`
	// Servers are the group's servers as a node of its DC (Seen) sees them: role, link, lag.
	Servers []ServerView `json:"servers,omitempty"`
	Seen    string       `json:"seen_by,omitempty"`
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
	// DataFormat is the data format every node reads and writes (fsm/cmd_format.go); each
	// member shows the highest it runs and the one it reported acting on.
	DataFormat int `json:"data_format"`
	// DataFormatWaiting says, while some member runs a newer format than the cluster's, why
	// the leader does not raise it yet (a member on an older build, or one that has not
	// reported acting on the current format).
	DataFormatWaiting string           `json:"data_format_waiting,omitempty"`
	Migrations        []*fsm.Migration `json:"migrations,omitempty"`
	// Replication is the cross-DC replication per DC pair, merged over the members that
	// answered.
	Replication []ReplicationPair `json:"replication,omitempty"`
	// MigrationWaiting lists, per frozen migration id, the nodes whose freeze ack it still
	// waits for (a node that does not answer blocks it until it is back or removed).
	MigrationWaiting map[uint64][]string `json:"migration_waiting_for,omitempty"`
	// Flush is the cluster's current or last FLUSHDB/FLUSHALL, Flushes how many were done,
	// and FlushWaiting the nodes a frozen flush still waits for (fsm/cmd_flush.go).
	Flush        *fsm.Flush `json:"flush,omitempty"`
	Flushes      uint64     `json:"flushes,omitempty"`
	FlushWaiting []string   `json:"flush_waiting_for,omitempty"`
}

// groupServers returns the group's servers as the first member of its DC that reported them
// sees them (this node first when it is in the DC: ids puts no node first, so look for it).
func groupServers(ids []string, st *fsm.State, dc, group string, servers [][]ServerView) (string, []ServerView) {
	for i, id := range ids {
		if st.Nodes[id].DC != dc {
			continue
		}
		var out []ServerView
		for _, v := range servers[i] {
			if v.Group == group {
				out = append(out, v)
			}
		}
		if len(out) > 0 {
			return id, out
		}
	}
	return "", nil
}

// Status gathers the cluster status: the state plus each member's own report (asked in
// parallel, one second at most).
func (n *Node) Status(ctx context.Context) Status {
	st := n.State()
	addr, id := n.raft.LeaderWithID()
	out := Status{
		Node: n.cfg.ID, Leader: string(id), LeaderPeer: string(addr), Term: n.raft.CurrentTerm(),
		AppliedIndex: st.Index, Settings: map[string]string{}, DataFormat: st.Format(),
	}
	for _, k := range fsm.SettingKeys() {
		out.Settings[k] = st.Setting(k)
	}
	out.DataFormatWaiting = formatWaiting(st)
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
	servers := make([][]ServerView, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		m := &out.Members[i]
		m.Node, m.Suffrage = *st.Nodes[id], suffrage[id]
		if id == n.cfg.ID {
			r := n.localStatus()
			m.Role, m.AppliedIndex, m.Acting, m.NotActing, m.DataPlane = r.RaftState, r.AppliedIndex, r.Acting, r.NotActing, r.DataPlane
			reports[i], servers[i] = r.Replication, r.Servers
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
			m.Role, m.AppliedIndex, m.Acting, m.NotActing, m.DataPlane = r.RaftState, r.AppliedIndex, r.Acting, r.NotActing, r.DataPlane
			reports[i], servers[i] = r.Replication, r.Servers
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
			gs := GroupStatus{ID: g.ID, Master: g.Master, Replicas: g.Replicas, Fenced: g.Fenced, Priority: g.Priority,
				User: g.User, Password: SecretState(g.Password), Ranges: []string{}, Epoch: g.Epoch, Failovers: g.Failovers, LostBytes: g.LostBytes,
				DownVotes: st.MasterDownVoters(name, g), Failover: g.Failover, LastFailover: g.LastFailover}
			gs.Seen, gs.Servers = groupServers(ids, st, name, gid, servers)
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
	out.Flush, out.Flushes, out.FlushWaiting = st.Flush, st.Flushes, st.FlushWaiting()
	return out
}
