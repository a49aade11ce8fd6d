package router

import (
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/backendacl"
	"github.com/redraft/redraft/router/backend"
	"github.com/redraft/redraft/router/command"
	"github.com/redraft/redraft/router/resp"
)

// Reads from replicas (docs/failover.md, "Reads from replicas"). The cluster setting read_from
// says where a connection's reads go by default: master, replica (a replica of the node's rack
// first, then any of the DC's) or nearest (a server of the node's rack first, master
// included). READONLY makes a connection read from replicas, READWRITE from masters, as in
// Redis Cluster. A read is a forwarded command without the write flag (GET, HGETALL, ...) on
// a slot with no migration; multi-key splits, scripts, transactions and blocking commands
// always go to the master.
//
// A replica serves a read only while it is fresh: the failover watcher tells the router
// (SetReplicaFresh), per replica, a time before which every write acknowledged by the master
// is on the replica (it compares the replica's offset with the master offsets it sampled, and
// leaves out replicas that are loading, syncing or not linked to the group's master). A read
// goes to a replica only when that time is less than replica_max_lag ago, so a replica read
// never misses a write acknowledged longer ago than replica_max_lag. Otherwise it goes to
// the master. A client's own write followed by a read of it may read from a replica that has
// not got it yet: that is what reading from replicas means.

// readMode is a connection's choice (READONLY, READWRITE) over the setting.
type readMode uint8

const (
	readDefault readMode = iota
	readReplicas
	readMasters
)

// readSet is a group's servers for reads: replicas of the node's rack, the others, and whether
// the master is in the node's rack.
type readSet struct {
	near, far  []*group
	masterNear bool
}

var descReplicaReads = prometheus.NewDesc("redraft_replica_reads_total",
	"Reads served by a replica (read_from, READONLY).", nil, nil)

// ReplicaReadMetrics returns the collector of redraft_replica_reads_total, for the node's
// /metrics.
func (s *Server) ReplicaReadMetrics() prometheus.Collector { return replicaReadMetrics{s} }

type replicaReadMetrics struct{ s *Server }

// Describe implements prometheus.Collector.
func (m replicaReadMetrics) Describe(ch chan<- *prometheus.Desc) { ch <- descReplicaReads }

// Collect implements prometheus.Collector.
func (m replicaReadMetrics) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descReplicaReads, prometheus.CounterValue, float64(m.s.replicaReads.Load()))
}

func registerReadMode() {
	handle("readonly", func(c *client, _ *command.Spec, _ resp.Command) {
		c.readMode = readReplicas
		c.reply([]byte("+OK\r\n"))
	})
	handle("readwrite", func(c *client, _ *command.Spec, _ resp.Command) {
		c.readMode = readMasters
		c.reply([]byte("+OK\r\n"))
	})
}

// SetReplicaFresh tells the router, per replica address, the time before which every write
// acknowledged by its master is on it; replicas not listed serve no reads.
func (s *Server) SetReplicaFresh(fresh map[string]time.Time) {
	s.fresh.Store(&fresh)
}

// readSets builds, per group of dc, the servers reads may go to, reusing or adding pools.
func (s *Server) readSets(st *fsm.State, dc *fsm.DC, byID map[string]*group, pools map[poolKey]*backend.Pool) {
	racks := map[string]string{} // host -> rack of a node of the DC there
	for _, n := range st.Nodes {
		if n.DC != s.cfg.DC {
			continue
		}
		if h, _, err := net.SplitHostPort(n.Listen); err == nil {
			racks[h] = n.Rack
		}
	}
	near := func(addr string) bool {
		h, _, err := net.SplitHostPort(addr)
		r, ok := racks[h]
		return err == nil && ok && r == s.cfg.Rack
	}
	for id, g := range byID {
		fg := dc.Groups[id]
		rs := &readSet{masterNear: near(fg.Master)}
		acc := backendacl.ForGroup(fg)
		for _, a := range fg.Replicas {
			rg := &group{id: id, idx: g.idx, addr: a, pool: s.userPool(pools, acc, a, acc.Client(), nil)}
			if near(a) {
				rs.near = append(rs.near, rg)
			} else {
				rs.far = append(rs.far, rg)
			}
		}
		g.reads = rs
	}
}

// readGroup returns the group (master or replica) a read of spec on e goes to; g is the
// slot's group for a write.
func (c *client) readGroup(spec *command.Spec, e *slotEntry) *group {
	return c.readGroupOf(spec, e.group(), e.m != nil)
}

// readGroupOf is readGroup for a slot served by g, with a migration or failover entry or not.
// A session that watches keys reads from the master: WATCH runs there, and a check-and-set
// that read a replica's older value would commit over a write the replica had not seen.
func (c *client) readGroupOf(spec *command.Spec, g *group, migrating bool) *group {
	snap := c.snap
	if g == nil || g.reads == nil || spec.Write || spec.Kind != command.Forward || migrating || snap == nil ||
		c.watch != nil || c.watchLost {
		return g
	}
	mode := snap.readFrom
	switch c.readMode {
	case readReplicas:
		if mode == fsm.ReadMaster {
			mode = fsm.ReadReplica
		}
	case readMasters:
		mode = fsm.ReadMaster
	}
	if mode == fsm.ReadMaster || mode == fsm.ReadNearest && g.reads.masterNear {
		return g
	}
	fresh := c.s.fresh.Load()
	if fresh == nil {
		return g
	}
	now := time.Now()
	for _, tier := range [2][]*group{g.reads.near, g.reads.far} {
		n := len(tier)
		for i := range n {
			r := tier[(int(c.id)+i)%n]
			if at, ok := (*fresh)[r.addr]; ok && now.Sub(at) <= snap.maxLag {
				c.s.replicaReads.Add(1)
				return r
			}
		}
	}
	return g
}
