package router

import "github.com/prometheus/client_golang/prometheus"

var descClientPanics = prometheus.NewDesc("redraft_client_panics_total",
	"Panics while serving a client; each closed that client's connection, nothing else.", nil, nil)

// Describe implements prometheus.Collector: the node registers the Server with its /metrics.
func (s *Server) Describe(ch chan<- *prometheus.Desc) { ch <- descClientPanics }

// Collect implements prometheus.Collector.
func (s *Server) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descClientPanics, prometheus.CounterValue, float64(s.panics.Load()))
}
