package router

import (
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/redraft/redraft/router/backend"
)

var (
	descClientPanics = prometheus.NewDesc("redraft_client_panics_total",
		"Panics while serving a client; each closed that client's connection, nothing else.", nil, nil)
	descClientConns = prometheus.NewDesc("redraft_client_connections",
		"Client connections open now.", nil, nil)
	descClientConnsTotal = prometheus.NewDesc("redraft_client_connections_total",
		"Client connections accepted.", nil, nil)
	descErrorReplies = prometheus.NewDesc("redraft_error_replies_total",
		"Error replies sent to clients.", nil, nil)
	descHeld = prometheus.NewDesc("redraft_held_requests_total",
		"Requests held because their slot was frozen (a migration's freeze barrier or a failover).", nil, nil)
	descTryAgain = prometheus.NewDesc("redraft_tryagain_replies_total",
		"-TRYAGAIN replies sent to clients (freeze wait over, key being moved, blocked client released).", nil, nil)
	descHandedOver = prometheus.NewDesc("redraft_level_missed_handed_over_total",
		"Pops (and GETDEL, GETSET) answered with what they removed although their write consistency level was not reached: an error would have lost it.", nil, nil)
	descBackendConns = prometheus.NewDesc("redraft_backend_connections",
		"Backend connections open now, by kind: shared (pipelined) or dedicated (blocking, WATCH, pub/sub).", []string{"kind"}, nil)
	descBackendConnects = prometheus.NewDesc("redraft_backend_connects_total",
		"Shared backend connections established, by group (the first one and every reconnect).", []string{"group"}, nil)
	descBackendDialErrors = prometheus.NewDesc("redraft_backend_dial_errors_total",
		"Backend dials or handshakes that failed, by group.", []string{"group"}, nil)
	descBackendDrops = prometheus.NewDesc("redraft_backend_connection_drops_total",
		"Shared backend connections that broke while up (read error, reply timeout), by group.", []string{"group"}, nil)
)

// groupStats holds a backend.GroupStats per group id, created on first use and kept for the
// server's life, so the counts survive the group's pools being replaced.
type groupStats struct {
	m sync.Map // group id -> *backend.GroupStats
}

// of returns the counters of group id.
func (g *groupStats) of(id string) *backend.GroupStats {
	if v, ok := g.m.Load(id); ok {
		return v.(*backend.GroupStats)
	}
	v, _ := g.m.LoadOrStore(id, new(backend.GroupStats))
	return v.(*backend.GroupStats)
}

// Describe implements prometheus.Collector: the node registers the Server with its /metrics.
func (s *Server) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descClientPanics, descClientConns, descClientConnsTotal, descErrorReplies,
		descHeld, descTryAgain, descHandedOver, descBackendConns, descBackendConnects, descBackendDialErrors, descBackendDrops,
		descCommands, descCommandDuration} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (s *Server) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter(descClientPanics, float64(s.panics.Load()))
	gauge(descClientConns, float64(s.conns.Load()))
	counter(descClientConnsTotal, float64(s.connsTotal.Load()))
	counter(descErrorReplies, float64(s.errs.Load()))
	counter(descHeld, float64(s.held.Load()))
	counter(descTryAgain, float64(s.tryAgain.Load()))
	counter(descHandedOver, float64(s.handedOver.Load()))
	gauge(descBackendConns, float64(s.bstats.BackendConns.Load()), "shared")
	gauge(descBackendConns, float64(s.bstats.Dedicated.Load()), "dedicated")
	var ids []string
	s.gstats.m.Range(func(k, _ any) bool { ids = append(ids, k.(string)); return true })
	sort.Strings(ids)
	for _, id := range ids {
		g := s.gstats.of(id)
		counter(descBackendConnects, float64(g.Connects.Load()), id)
		counter(descBackendDialErrors, float64(g.DialErrors.Load()), id)
		counter(descBackendDrops, float64(g.Drops.Load()), id)
	}
	s.cmds.collect(ch)
}
