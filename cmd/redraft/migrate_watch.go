package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/redraft/redraft/node"
)

// watcher polls migrations and draws one progress line: keys moved over the mover's estimate
// of the total, keys/s and ETA. On a terminal the line is redrawn in place; otherwise a line
// is printed when the state changes and every 5 s.
type watcher struct {
	cl       *node.Client
	ids      []uint64
	out      io.Writer
	tty      bool
	interval time.Duration
	// giveUp is how long the admin API may fail before watching stops.
	giveUp time.Duration

	samples   []speedSample // keys moved as this watcher saw them, for the speed fallback
	lastState string
	lastPrint time.Time
	drawn     bool
}

type speedSample struct {
	at    time.Time
	moved int64
}

func newWatcher(cl *node.Client, ids []uint64, out *os.File) *watcher {
	tty := false
	if fi, err := out.Stat(); err == nil {
		tty = fi.Mode()&os.ModeCharDevice != 0
	}
	return &watcher{cl: cl, ids: ids, out: out, tty: tty, interval: 500 * time.Millisecond, giveUp: time.Minute}
}

// run polls until every migration has ended (migrated or cancelled) and returns them, or
// until ctx ends.
func (w *watcher) run(ctx context.Context) ([]node.MigrationInfo, error) {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	defer w.endLine()
	var failingSince time.Time
	for {
		ms, err := w.poll(ctx)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var ae *node.APIError
		switch {
		case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
			return nil, err
		case err != nil:
			if failingSince.IsZero() {
				failingSince = time.Now()
			}
			if time.Since(failingSince) > w.giveUp {
				return nil, fmt.Errorf("gave up watching after %v without an answer: %w (the migration goes on; 'redraft migrate watch %s' when the node is back)", w.giveUp, err, idList(w.ids))
			}
			w.show(fmt.Sprintf("cannot ask the node, retrying: %v", err), "error")
		default:
			failingSince = time.Time{}
			line, state, done := w.render(ms, time.Now())
			w.show(line, state)
			if done {
				return ms, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

func (w *watcher) poll(ctx context.Context) ([]node.MigrationInfo, error) {
	out := make([]node.MigrationInfo, 0, len(w.ids))
	for _, id := range w.ids {
		cx, cancel := context.WithTimeout(ctx, 5*time.Second)
		m, err := w.cl.Migration(cx, id)
		cancel()
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// render returns the progress line, a summary of the states (a change prints a new line when
// not on a terminal) and whether every migration has ended.
func (w *watcher) render(ms []node.MigrationInfo, now time.Time) (line, state string, done bool) {
	var moved, total int64
	var speed float64
	ended := 0
	var states, waiting []string
	for _, m := range ms {
		moved += m.KeysMoved
		if m.Active() {
			total += max(m.KeysTotal, m.KeysMoved)
			speed += m.KeysPerSec
		} else {
			total += m.KeysMoved
			ended++
		}
		states = append(states, stateText(m))
		waiting = append(waiting, m.WaitingFor...)
	}
	if own := w.speed(moved, now); speed == 0 {
		speed = own
	}
	pct := 0.0
	switch {
	case ended == len(ms):
		pct = 1
	case total > 0:
		pct = min(float64(moved)/float64(total), 1)
	}
	title := fmt.Sprintf("migration %d", ms[0].ID)
	state = stateText(ms[0])
	if len(ms) > 1 {
		title = fmt.Sprintf("%d migrations", len(ms))
		state = fmt.Sprintf("%d/%d ended", ended, len(ms))
	}
	if len(waiting) > 0 {
		state += ", waiting for freeze acks from " + strings.Join(dedupe(waiting), ",")
	}
	eta := "-"
	if speed > 0 && total > moved && ended < len(ms) {
		eta = (time.Duration(float64(total-moved)/speed) * time.Second).Round(time.Second).String()
	}
	line = fmt.Sprintf("%s %s %3.0f%%  %d/%d keys  %.0f keys/s  ETA %s  %s", title, bar(pct, 30), 100*pct, moved, total, speed, eta, state)
	return line, strings.Join(states, " ") + state, ended == len(ms)
}

// speed is keys/s over the last 10 s of this watcher's own observations (the fallback when
// the node reports none).
func (w *watcher) speed(moved int64, now time.Time) float64 {
	if n := len(w.samples); n > 0 && moved < w.samples[n-1].moved {
		w.samples = nil // counting restarted (keys moving back after a cancel)
	}
	if n := len(w.samples); n == 0 || moved != w.samples[n-1].moved {
		w.samples = append(w.samples, speedSample{at: now, moved: moved})
	}
	for len(w.samples) > 2 && now.Sub(w.samples[1].at) > 10*time.Second {
		w.samples = w.samples[1:]
	}
	first, last := w.samples[0], w.samples[len(w.samples)-1]
	dt := last.at.Sub(first.at).Seconds()
	if dt < 1 || now.Sub(last.at) > 5*time.Second {
		return 0
	}
	return float64(last.moved-first.moved) / dt
}

func (w *watcher) show(line, state string) {
	if w.tty {
		fmt.Fprintf(w.out, "\r%s\x1b[K", line)
		w.drawn = true
		return
	}
	if state != w.lastState || time.Since(w.lastPrint) >= 5*time.Second {
		fmt.Fprintln(w.out, line)
		w.lastState, w.lastPrint = state, time.Now()
	}
}

func (w *watcher) endLine() {
	if w.drawn {
		fmt.Fprintln(w.out)
		w.drawn = false
	}
}

// bar draws [=====>    ] of width cells for a fraction 0..1.
func bar(frac float64, width int) string {
	full := int(frac * float64(width))
	var b strings.Builder
	b.WriteByte('[')
	for i := 0; i < width; i++ {
		switch {
		case i < full:
			b.WriteByte('=')
		case i == full && frac < 1:
			b.WriteByte('>')
		default:
			b.WriteByte(' ')
		}
	}
	b.WriteByte(']')
	return b.String()
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
