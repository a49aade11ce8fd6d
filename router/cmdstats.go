package router

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/redraft/redraft/router/command"
)

// LatencyBounds are the upper bounds, in seconds, of the per-command latency histograms
// (redraft_command_duration_seconds): 50 µs to 5 s, then +Inf.
var LatencyBounds = []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// boundsNS are LatencyBounds in nanoseconds, for the request path.
var boundsNS = func() []int64 {
	out := make([]int64, len(LatencyBounds))
	for i, b := range LatencyBounds {
		out[i] = int64(b * 1e9)
	}
	return out
}()

// cmdStat is one command's counters: calls per latency bucket (not cumulative; the last is
// +Inf) and the latencies' sum.
type cmdStat struct {
	buckets [17]atomic.Uint64
	sumNS   atomic.Uint64
}

// cmdStats holds a cmdStat per command, indexed by command.Spec.ID: the request path adds to
// two atomics per command and takes no lock.
type cmdStats struct {
	per []cmdStat
}

func newCmdStats() *cmdStats { return &cmdStats{per: make([]cmdStat, command.Count())} }

// observe counts the commands ids (Spec.IDs), each answered after d.
func (s *cmdStats) observe(ids []uint16, d time.Duration) {
	ns := int64(d)
	b := 0
	for b < len(boundsNS) && ns > boundsNS[b] {
		b++
	}
	// A run of one command (a pipeline of GETs) is counted with two atomic adds, not two per
	// command.
	for i := 0; i < len(ids); {
		id, k := ids[i], 1
		for i+k < len(ids) && ids[i+k] == id {
			k++
		}
		i += k
		st := &s.per[id]
		st.buckets[b].Add(uint64(k))
		st.sumNS.Add(uint64(k) * uint64(ns))
	}
}

// total returns the calls per bucket summed over every command (not cumulative).
func (s *cmdStats) total() []uint64 {
	out := make([]uint64, len(boundsNS)+1)
	for i := range s.per {
		for b := range out {
			out[b] += s.per[i].buckets[b].Load()
		}
	}
	return out
}

var (
	descCommands = prometheus.NewDesc("redraft_commands_total",
		"Commands received from clients, by command name (subcommands as container|sub).", []string{"command"}, nil)
	descCommandDuration = prometheus.NewDesc("redraft_command_duration_seconds",
		"Time from reading a command's batch to writing its reply, by command name.", []string{"command"}, nil)
)

// collect sends the counter and histogram of every command called at least once.
func (s *cmdStats) collect(ch chan<- prometheus.Metric) {
	names := make([]string, len(s.per))
	for _, sp := range command.All() {
		names[sp.ID] = sp.Name
	}
	for i := range s.per {
		st := &s.per[i]
		var count uint64
		cum := make(map[float64]uint64, len(LatencyBounds))
		for b, ub := range LatencyBounds {
			count += st.buckets[b].Load()
			cum[ub] = count
		}
		count += st.buckets[len(LatencyBounds)].Load()
		if count == 0 {
			continue
		}
		name := names[i]
		ch <- prometheus.MustNewConstMetric(descCommands, prometheus.CounterValue, float64(count), name)
		ch <- prometheus.MustNewConstHistogram(descCommandDuration, count, float64(st.sumNS.Load())/1e9, cum, name)
	}
}
