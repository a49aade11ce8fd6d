package xdc

import "github.com/prometheus/client_golang/prometheus"

var (
	descLag = prometheus.NewDesc("redraft_replication_lag_seconds",
		"Replication lag from this node's DC to another, from heartbeat entries, over the slots this node ships.", []string{"from", "to"}, nil)
	descLagP99 = prometheus.NewDesc("redraft_replication_entry_lag_p99_seconds",
		"99th percentile of recent entries' lag, write on the source master to the destination's ack.", []string{"from", "to"}, nil)
	descPending = prometheus.NewDesc("redraft_replication_pending_entries",
		"Outbox entries the destination DC has not applied yet (estimate).", []string{"from", "to"}, nil)
	descOutbox = prometheus.NewDesc("redraft_replication_outbox_entries",
		"Entries kept in the outboxes this node ships.", []string{"from", "to"}, nil)
	descCopying = prometheus.NewDesc("redraft_replication_copying_slots",
		"Slots being copied in full to a DC that fell behind the outbox bound.", []string{"from", "to"}, nil)
	descShipped = prometheus.NewDesc("redraft_replication_shipped_entries_total",
		"Outbox entries the destination DC applied, shipped by this node.", []string{"from", "to"}, nil)
	descLostFailover = prometheus.NewDesc("redraft_replication_lost_on_failover_entries_total",
		"Entries the destination DC applied that this DC's outbox lost with a failed-over master (DC_ONE writes its replica never got).", []string{"from", "to"}, nil)
	descCopied = prometheus.NewDesc("redraft_replication_slot_copies_total",
		"Full slot copies to the destination DC.", []string{"from", "to"}, nil)
	descLostOwn = prometheus.NewDesc("redraft_replication_copies_over_own_writes_total",
		"Full slot copies that replaced writes of this DC the source never applied (lost; two DCs cut from each other past the bound).", nil, nil)
	descDiverged = prometheus.NewDesc("redraft_replication_diverged_effects_total",
		"Remote effects that failed on this DC's data (the DCs' copies differ).", nil, nil)
	descSuperseded = prometheus.NewDesc("redraft_replication_superseded_effects_total",
		"Remote effects not applied because the key's state here is newer (last writer wins).", nil, nil)
	descConflicts = prometheus.NewDesc("redraft_replication_conflicting_effects_total",
		"Remote effects that met another state of their key than at their origin; the key's state is pulled instead.", nil, nil)
	descTombstones = prometheus.NewDesc("redraft_replication_tombstones",
		"Tombstones (stamps of deleted or expired keys) in the slots this node ships, as of the collector's last pass over each.", nil, nil)
	descCollected = prometheus.NewDesc("redraft_replication_tombstones_collected_total",
		"Tombstones collected once every other DC had applied past them.", nil, nil)
	descPulled = prometheus.NewDesc("redraft_replication_pulled_states_total",
		"Key states pulled from their origin DC after a conflict.", nil, nil)
)

// Describe implements prometheus.Collector.
func (r *Replicator) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLag, descLagP99, descPending, descOutbox, descCopying, descShipped, descCopied, descDiverged, descLostOwn, descLostFailover, descSuperseded, descConflicts, descPulled, descTombstones, descCollected} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (r *Replicator) Collect(ch chan<- prometheus.Metric) {
	for _, p := range r.Report().Pairs {
		g := func(d *prometheus.Desc, t prometheus.ValueType, v float64) {
			ch <- prometheus.MustNewConstMetric(d, t, v, p.From, p.To)
		}
		g(descLag, prometheus.GaugeValue, p.LagMS/1000)
		g(descLagP99, prometheus.GaugeValue, p.LagP99MS/1000)
		g(descPending, prometheus.GaugeValue, float64(p.Pending))
		g(descOutbox, prometheus.GaugeValue, float64(p.Outbox))
		g(descCopying, prometheus.GaugeValue, float64(p.Copying))
		g(descShipped, prometheus.CounterValue, float64(p.Shipped))
		g(descCopied, prometheus.CounterValue, float64(p.Copied))
		g(descLostFailover, prometheus.CounterValue, float64(p.LostOnFailover))
	}
	ch <- prometheus.MustNewConstMetric(descDiverged, prometheus.CounterValue, float64(r.Diverged()))
	ch <- prometheus.MustNewConstMetric(descLostOwn, prometheus.CounterValue, float64(r.lostOwn.Load()))
	ch <- prometheus.MustNewConstMetric(descSuperseded, prometheus.CounterValue, float64(r.superseded.Load()))
	ch <- prometheus.MustNewConstMetric(descConflicts, prometheus.CounterValue, float64(r.conflicts.Load()))
	ch <- prometheus.MustNewConstMetric(descPulled, prometheus.CounterValue, float64(r.pulled.Load()))
	alive, collected := r.Tombstones()
	ch <- prometheus.MustNewConstMetric(descTombstones, prometheus.GaugeValue, float64(alive))
	ch <- prometheus.MustNewConstMetric(descCollected, prometheus.CounterValue, float64(collected))
}
