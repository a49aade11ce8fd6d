package migrate

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"
)

// feed gives both servers of p n probes of rtt in the current window.
func feed(p *pacer, n int, rtt time.Duration) {
	for range n {
		p.sample(0, time.Now(), rtt)
		p.sample(1, time.Now(), rtt)
	}
}

// TestPacerFollowsTheServersLatency drives the control steps by hand: the rate falls while the
// probes take over LatencyFactor times the reference, grows while they stay well under it (but
// not past twice what the mover reached), and stays within [MinRate, maxPace].
func TestPacerFollowsTheServersLatency(t *testing.T) {
	p := newPacer(1.5, 2000, slog.New(slog.NewTextHandler(io.Discard, nil)))
	// A rest measures the reference: 1 ms on both servers.
	p.startRest(time.Now().Add(-restSettle)) // probes from now on count
	feed(p, 20, time.Millisecond)
	p.endRest()
	start := p.rate.Load()

	feed(p, 20, 3*time.Millisecond) // 3x the reference
	p.used.Store(start / 10)
	p.step(100 * time.Millisecond)
	if got := p.rate.Load(); got != start*3/4 {
		t.Fatalf("slow probes: rate %d, want %d", got, start*3/4)
	}
	for range 50 {
		feed(p, 20, 3*time.Millisecond)
		p.step(100 * time.Millisecond)
	}
	if got := p.rate.Load(); got != 2000 {
		t.Fatalf("persistently slow probes: rate %d, want the floor 2000", got)
	}

	// Probes at 1.3x: within the factor, over 0.8 of it: the rate holds.
	feed(p, 20, 1300*time.Microsecond)
	p.used.Store(200)
	p.step(100 * time.Millisecond)
	if got := p.rate.Load(); got != 2000 {
		t.Fatalf("probes within the band: rate %d, want it held at 2000", got)
	}

	// Fast probes: the rate grows by a quarter while the mover keeps up with it...
	feed(p, 20, time.Millisecond)
	p.used.Store(200) // 2000 keys/s reached
	p.step(100 * time.Millisecond)
	if got := p.rate.Load(); got != 2500 {
		t.Fatalf("fast probes: rate %d, want 2500", got)
	}
	// ...and no further than twice what it reached.
	for range 20 {
		feed(p, 20, time.Millisecond)
		p.used.Store(150) // 1500 keys/s reached
		p.step(100 * time.Millisecond)
	}
	if got := p.rate.Load(); got != 3000 {
		t.Fatalf("fast probes, mover at 1500 keys/s: rate %d, want 3000", got)
	}
	for range 100 {
		feed(p, 20, time.Millisecond)
		p.used.Store(1 << 30)
		p.step(100 * time.Millisecond)
	}
	if got := p.rate.Load(); got != maxPace {
		t.Fatalf("fast probes, mover keeping up: rate %d, want the cap %d", got, maxPace)
	}

	// Too few probes decide nothing.
	feed(p, minProbes-1, 10*time.Millisecond)
	p.step(100 * time.Millisecond)
	if got := p.rate.Load(); got != maxPace {
		t.Fatalf("too few probes moved the rate to %d", got)
	}
}

// TestPacerSlackOnFastServers checks the absolute slack: on servers answering in 50 µs, probes
// at 400 µs (8x) are within max(1.5x, +0.5 ms) and do not slow the mover; at 700 µs they do.
func TestPacerSlackOnFastServers(t *testing.T) {
	p := newPacer(1.5, 2000, slog.New(slog.NewTextHandler(io.Discard, nil)))
	p.startRest(time.Now().Add(-restSettle))
	feed(p, 20, 50*time.Microsecond)
	p.endRest()
	start := p.rate.Load()
	feed(p, 20, 400*time.Microsecond)
	p.used.Store(1 << 30)
	p.step(100 * time.Millisecond)
	if got := p.rate.Load(); got < start {
		t.Fatalf("probes within the slack: rate %d, down from %d", got, start)
	}
	start = p.rate.Load()
	feed(p, 20, 700*time.Microsecond)
	p.step(100 * time.Millisecond)
	if got := p.rate.Load(); got >= start {
		t.Fatalf("probes past the slack: rate %d, want under %d", got, start)
	}
}

// TestPacerRests checks that MoveSlots' pacer holds new batches during a rest and lets them go
// after it.
func TestPacerRests(t *testing.T) {
	p := newPacer(1.5, 2000, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t0 := time.Now()
	p.startRest(t0)
	if err := p.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(t0); took < restFor {
		t.Fatalf("wait returned after %v, during the %v rest", took, restFor)
	}
	p.endRest()
	t1 := time.Now()
	if err := p.wait(context.Background()); err != nil || time.Since(t1) > 10*time.Millisecond {
		t.Fatalf("wait after the rest: %v after %v", err, time.Since(t1))
	}
}
