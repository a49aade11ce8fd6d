package router

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/redraft/redraft/router/command"
)

func TestCmdStatsHistogram(t *testing.T) {
	s := newCmdStats()
	get, set := uint16(command.ByName("get").ID), uint16(command.ByName("set").ID)
	s.observe([]uint16{get, set, get}, 70*time.Microsecond) // bucket <= 100 µs
	s.observe([]uint16{get}, 3*time.Second)                 // bucket <= 5 s
	s.observe([]uint16{set}, time.Minute)                   // +Inf
	ch := make(chan prometheus.Metric, 64)
	s.collect(ch)
	close(ch)
	counts := map[string]float64{}
	hists := map[string]*dto.Histogram{}
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		name := pb.GetLabel()[0].GetValue()
		if pb.Counter != nil {
			counts[name] = pb.Counter.GetValue()
		} else {
			hists[name] = pb.Histogram
		}
	}
	if len(counts) != 2 || counts["get"] != 3 || counts["set"] != 2 {
		t.Fatalf("commands_total = %v, want get 3, set 2", counts)
	}
	h := hists["get"]
	if h.GetSampleCount() != 3 || h.GetSampleSum() < 3.00014 || h.GetSampleSum() > 3.00015 {
		t.Fatalf("get histogram count %d sum %v, want 3 and 3.00014", h.GetSampleCount(), h.GetSampleSum())
	}
	for _, b := range h.GetBucket() {
		want := uint64(0)
		switch {
		case b.GetUpperBound() >= 5:
			want = 3
		case b.GetUpperBound() >= 0.0001:
			want = 2
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("get bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	if hs := hists["set"]; hs.GetSampleCount() != 2 || hs.GetBucket()[len(LatencyBounds)-1].GetCumulativeCount() != 1 {
		t.Fatalf("set histogram: count %d, le=5 %d; want 2 and 1 (the minute is only in +Inf)",
			hs.GetSampleCount(), hs.GetBucket()[len(LatencyBounds)-1].GetCumulativeCount())
	}
	tot := s.total()
	if tot[1] != 3 || tot[len(LatencyBounds)-1] != 1 || tot[len(LatencyBounds)] != 1 {
		t.Fatalf("total = %v", tot)
	}
}

// TestCmdStatsRuns: a batch with runs of one command counts each command once per call, and
// its latency once per call, as one add per command would.
func TestCmdStatsRuns(t *testing.T) {
	s := newCmdStats()
	get, set := uint16(command.ByName("get").ID), uint16(command.ByName("set").ID)
	s.observe([]uint16{get, get, set, get, get, get}, time.Millisecond) // bucket <= 1 ms
	for _, c := range []struct {
		id   uint16
		want uint64
	}{{get, 5}, {set, 1}} {
		st := &s.per[c.id]
		for b := range st.buckets {
			want := uint64(0)
			if b == 4 {
				want = c.want
			}
			if got := st.buckets[b].Load(); got != want {
				t.Errorf("command %d bucket %d: %d, want %d", c.id, b, got, want)
			}
		}
		if got := st.sumNS.Load(); got != c.want*uint64(time.Millisecond) {
			t.Errorf("command %d sum %d ns, want %d ms", c.id, got, c.want)
		}
	}
}

// BenchmarkCmdStatsObserve is the request path's cost of counting one command and its latency,
// with every core counting the same command (the worst case: one cache line shared).
func BenchmarkCmdStatsObserve(b *testing.B) {
	s := newCmdStats()
	ids := []uint16{uint16(command.ByName("get").ID)}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.observe(ids, 180*time.Microsecond)
		}
	})
}

// BenchmarkCmdStatsObserveBatch counts a pipelined batch of 16 commands with one latency.
func BenchmarkCmdStatsObserveBatch(b *testing.B) {
	s := newCmdStats()
	ids := make([]uint16, 16)
	for i := range ids {
		ids[i] = uint16(command.ByName("set").ID)
	}
	for b.Loop() {
		s.observe(ids, 400*time.Microsecond)
	}
}
