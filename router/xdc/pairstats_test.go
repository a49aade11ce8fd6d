package xdc

import (
	"strings"
	"testing"
	"time"
)

// TestLaggingPairSaysWhy: a pair whose ranges are held, or whose log reads fail, shows as
// lagging with the reason as its error (it showed a growing lag only, the cause in the log
// alone); an entry applied clears it; a down pair keeps its own error.
func TestLaggingPairSaysWhy(t *testing.T) {
	hb := 100 * time.Millisecond
	now := time.Now()
	s := pairStats{started: now.Add(-time.Minute)}
	s.stall("range held why=HOLD redraft: entry 5-0 waits")
	var p PairReport
	s.report(&p, now, hb, true, false)
	if p.State != "lagging" || !strings.Contains(p.Error, "HOLD redraft") {
		t.Fatalf("held pair: state %q, error %q", p.State, p.Error)
	}
	// An entry applied: shipping moves again, and the reason goes.
	s.applied("1-0", true, now)
	p = PairReport{}
	s.report(&p, now.Add(time.Minute), hb, true, false)
	if p.State != "lagging" || p.Error != "" {
		t.Fatalf("after an entry applied: state %q, error %q", p.State, p.Error)
	}
	// A failing pair is down with its error, whatever stalled it before.
	s.stall("cannot read the log err=EOF")
	s.failed("send failed", now.Add(-time.Second))
	p = PairReport{}
	s.report(&p, now, hb, true, false)
	if p.State != "down" || p.Error != "send failed" {
		t.Fatalf("failing pair: state %q, error %q", p.State, p.Error)
	}
	// An ok pair shows no error.
	ok := pairStats{started: now}
	ok.stall("waiting at a handoff")
	p = PairReport{}
	ok.report(&p, now, hb, true, false)
	if (p.State != "" && p.State != "ok") || p.Error != "" {
		t.Fatalf("ok pair: state %q, error %q", p.State, p.Error)
	}
}
