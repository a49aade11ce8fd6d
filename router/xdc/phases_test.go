package xdc

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// Phases log their percentiles at debug level; a phase without samples since the last line is
// left out of the next one (it once indexed an empty window).
func TestPhasesLog(t *testing.T) {
	var buf bytes.Buffer
	ph := newPhases(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), "test")
	for i := 1; i <= 100; i++ {
		ph.add("read", time.Duration(i)*time.Millisecond)
	}
	ph.add("send", time.Millisecond)
	ph.mu.Lock()
	ph.flush(time.Now())
	ph.mu.Unlock()
	if got := buf.String(); !strings.Contains(got, "read n=100 p50=51.00ms p99=100.00ms max=100.00ms;") || !strings.Contains(got, "send n=1") {
		t.Fatalf("first line: %s", got)
	}
	buf.Reset()
	ph.add("read", 2*time.Millisecond)
	ph.mu.Lock()
	ph.flush(time.Now())
	ph.mu.Unlock()
	if got := buf.String(); !strings.Contains(got, "read n=1 p50=2.00ms") || strings.Contains(got, "send") {
		t.Fatalf("second line: %s", got)
	}
	off := newPhases(slog.New(slog.NewTextHandler(&buf, nil)), "off")
	if off.enabled() {
		t.Fatal("phases recorded at info level")
	}
}
