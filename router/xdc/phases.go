package xdc

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// phaseWindow is how many recent samples a phase keeps for its percentiles.
const phaseWindow = 4096

// phaseEvery is how often a phase log line is written (at debug level only).
const phaseEvery = 10 * time.Second

// phases times the steps of shipping (a loop's read and send, a receiver's apply) for the
// debug log: where a write's lag goes, measured rather than guessed. It records only when the
// logger has debug enabled, so it costs nothing otherwise.
type phases struct {
	log  *slog.Logger
	what string

	mu    sync.Mutex
	on    bool
	names []string
	win   map[string][]time.Duration
	next  map[string]int
	count map[string]int
	last  time.Time
}

func newPhases(log *slog.Logger, what string) *phases {
	return &phases{log: log, what: what, on: log.Enabled(context.Background(), slog.LevelDebug),
		win: map[string][]time.Duration{}, next: map[string]int{}, count: map[string]int{}, last: time.Now()}
}

// enabled reports whether samples are recorded.
func (ph *phases) enabled() bool { return ph != nil && ph.on }

// add records one sample of phase name, and logs the percentiles of every phase when
// phaseEvery has passed since the last line.
func (ph *phases) add(name string, d time.Duration) {
	if !ph.enabled() {
		return
	}
	ph.mu.Lock()
	defer ph.mu.Unlock()
	w, ok := ph.win[name]
	if !ok {
		ph.names = append(ph.names, name)
	}
	if len(w) < phaseWindow {
		ph.win[name] = append(w, d)
	} else {
		w[ph.next[name]%phaseWindow] = d
	}
	ph.next[name]++
	ph.count[name]++
	if now := time.Now(); now.Sub(ph.last) >= phaseEvery {
		ph.flush(now)
	}
}

// flush logs one line: per phase, samples since the last line, p50, p99 and max of the
// window. Called with mu held.
func (ph *phases) flush(now time.Time) {
	var b strings.Builder
	for _, n := range ph.names {
		w := slices.Clone(ph.win[n])
		if len(w) == 0 {
			continue // no sample since the last line
		}
		slices.Sort(w)
		fmt.Fprintf(&b, " %s n=%d p50=%s p99=%s max=%s;", n, ph.count[n],
			ms(w[len(w)/2]), ms(w[min(len(w)-1, len(w)*99/100)]), ms(w[len(w)-1]))
		ph.count[n] = 0
	}
	ph.log.Debug("xdc phases "+ph.what+":"+b.String(), "seconds", now.Sub(ph.last).Seconds())
	ph.last = now
	for _, n := range ph.names {
		ph.win[n], ph.next[n] = ph.win[n][:0], 0
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }
