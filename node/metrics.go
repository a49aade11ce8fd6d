package node

import (
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics is the node's Prometheus registry.
type metrics struct {
	reg *prometheus.Registry
}

// Register adds a collector (the data plane's, for one) to the node's /metrics.
func (n *Node) Register(c prometheus.Collector) error { return n.metrics.reg.Register(c) }

func newMetrics(n *Node) *metrics {
	reg := prometheus.NewRegistry()
	// The scheduler's metrics add go_sched_latencies_seconds, how long goroutines waited to run:
	// a node short of CPU (or of threads, procs) shows it there first.
	reg.MustRegister(collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsScheduler)),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	labels := prometheus.Labels{"node": n.cfg.ID, "dc": n.cfg.DC}
	gauge := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, f))
	}
	gauge("redraft_raft_state", "Raft state: 0 follower, 1 candidate, 2 leader, 3 shutdown.", func() float64 {
		return float64(n.raft.State())
	})
	gauge("redraft_raft_leader", "1 when this node is the Raft leader.", func() float64 {
		if n.raft.State() == raft.Leader {
			return 1
		}
		return 0
	})
	gauge("redraft_raft_term", "Current Raft term.", func() float64 { return float64(n.raft.CurrentTerm()) })
	gauge("redraft_raft_applied_index", "Index of the last entry applied to the cluster state.", func() float64 {
		return float64(n.State().Index)
	})
	gauge("redraft_raft_commit_index", "Raft commit index.", func() float64 { return float64(n.raft.CommitIndex()) })
	gauge("redraft_node_acting", "1 while this node acts on current cluster state (caught up, lease held: node/current.go).", func() float64 {
		if acting, _ := n.Acting(); acting {
			return 1
		}
		return 0
	})
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "redraft_node_stopped_acting_total",
		Help: "Times this node stopped acting on its state after acting (its lease lapsed).", ConstLabels: labels},
		func() float64 { return float64(n.cur.changes.Load()) }))
	gauge("redraft_cluster_nodes", "Nodes in the cluster state.", func() float64 { return float64(len(n.State().Nodes)) })
	reg.MustRegister(&appliedCollector{n: n, desc: prometheus.NewDesc("redraft_fsm_commands_applied_total",
		"Commands applied to the cluster state, by type.", []string{"type"}, labels)})
	reg.MustRegister(&failoverCollector{n: n,
		total: prometheus.NewDesc("redraft_failovers_total", "Failovers that promoted a replica, by datacenter and group.", []string{"datacenter", "group"}, labels),
		busy:  prometheus.NewDesc("redraft_group_failing_over", "1 while the group fails over.", []string{"datacenter", "group"}, labels),
		lost: prometheus.NewDesc("redraft_failover_lost_bytes_total", "Replication stream of old masters their promoted replicas never got (writes acknowledged at DC_ONE, lost; a lower bound).",
			[]string{"datacenter", "group"}, labels)})
	return &metrics{reg: reg}
}

// failoverCollector exports the groups' failover counts from the state.
type failoverCollector struct {
	n                 *Node
	total, busy, lost *prometheus.Desc
}

// Describe implements prometheus.Collector.
func (c *failoverCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.total
	ch <- c.busy
	ch <- c.lost
}

// Collect implements prometheus.Collector.
func (c *failoverCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.n.State()
	for _, name := range st.DCNames() {
		for id, g := range st.DCs[name].Groups {
			ch <- prometheus.MustNewConstMetric(c.total, prometheus.CounterValue, float64(g.Failovers), name, id)
			ch <- prometheus.MustNewConstMetric(c.lost, prometheus.CounterValue, float64(g.LostBytes), name, id)
			busy := 0.0
			if g.Failover != nil {
				busy = 1
			}
			ch <- prometheus.MustNewConstMetric(c.busy, prometheus.GaugeValue, busy, name, id)
		}
	}
}

// appliedCollector exports the state's per-type apply counters.
type appliedCollector struct {
	n    *Node
	desc *prometheus.Desc
}

// Describe implements prometheus.Collector.
func (c *appliedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *appliedCollector) Collect(ch chan<- prometheus.Metric) {
	for typ, v := range c.n.State().Applied {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(v), typ)
	}
}
