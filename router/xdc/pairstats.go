package xdc

import "time"

// pairStats is what a shipper (a per-slot loop, or a group log's logShipper) knows of its
// destination for the status report: when it last had entries applied, their recent lags,
// and the error shipping fails with, if it does. Its owner's lock guards it.
type pairStats struct {
	started    time.Time
	lastAck    time.Time
	lastSample time.Duration   // the lag of the last heartbeat entry applied
	lags       []time.Duration // recent entry lags, a ring of lagWindow
	lagNext    int
	lastErr    string
	errSince   time.Time
	// stalled is why the shipper's last round applied nothing, when it was not an error that
	// makes the pair down (a range held, a failed read of the log, a wait for the outboxes);
	// cleared when an entry is applied. The report gives it as the error of a lagging pair.
	stalled string
}

// stall records why a round applied nothing.
func (s *pairStats) stall(why string) { s.stalled = why }

// applied records an entry applied by the destination at now: its id's lag, which a
// heartbeat's (an entry without effects) also makes the pair's current lag.
func (s *pairStats) applied(id string, heartbeat bool, now time.Time) {
	lag := LagOf(id, now)
	if len(s.lags) < lagWindow {
		s.lags = append(s.lags, lag)
	} else {
		s.lags[s.lagNext%lagWindow] = lag
	}
	s.lagNext++
	s.stalled = ""
	if heartbeat {
		s.lastSample = lag
	}
	s.lastAck = now
}

// failed records a shipping error.
func (s *pairStats) failed(err string, now time.Time) {
	if s.lastErr == "" {
		s.errSince = now
	}
	s.lastErr = err
}

// recovered clears the last error: the shipper reached the destination again, whether or not
// it has anything to ship (a per-slot loop at data format 3 has nothing, and its error from a
// start during an outage reported the pair down long after it).
func (s *pairStats) recovered() { s.lastErr = "" }

// down reports whether shipping has been failing for longer than twice the heartbeat.
func (s *pairStats) down(now time.Time, hb time.Duration) bool {
	return s.lastErr != "" && now.Sub(s.errSince) > 2*hb
}

// report adds the pair's lag and state to p: the last heartbeat's lag, or, when beats is set
// (the shipper follows a stream that gets heartbeats) and nothing was applied for three
// heartbeats, the time since; a failing shipper's lag grows from its first error. copying
// says slots are being copied in full.
func (s *pairStats) report(p *PairReport, now time.Time, hb time.Duration, beats, copying bool) {
	lag := s.lastSample
	if beats {
		since := s.lastAck
		if since.IsZero() {
			since = s.started
		}
		if d := now.Sub(since); d > 3*hb {
			lag = max(lag, d)
		}
	} else if s.lastErr != "" {
		lag = max(lag, now.Sub(s.errSince))
	}
	p.LagMS = max(p.LagMS, float64(lag.Microseconds())/1000)
	state := "ok"
	switch {
	case s.down(now, hb):
		state = "down"
	case copying:
		state = "copying"
	case lag > 5*time.Second:
		state = "lagging"
	}
	rank := map[string]int{"ok": 0, "lagging": 1, "copying": 2, "down": 3}
	if rank[state] > rank[p.State] {
		p.State = state
		if state == "down" {
			p.Error = s.lastErr
		}
	}
	// A lagging pair says why, when its shipper knows: a range held for good, or reads of the
	// log that fail, showed only a growing lag, the cause in the node's log alone.
	if state != "ok" && state != "down" && p.State != "down" && p.Error == "" && s.stalled != "" {
		p.Error = s.stalled
	}
}

// recentLags returns a copy of the recent entry lags.
func (s *pairStats) recentLags() []time.Duration {
	return append([]time.Duration(nil), s.lags...)
}
