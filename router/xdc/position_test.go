package xdc

import (
	"io"
	"log/slog"
	"testing"
)

// TestLoopPosition: a loop finds a shipped slot's outbox by its key, and nothing for another
// slot's outbox or another key of a shipped slot.
func TestLoopPosition(t *testing.T) {
	r := &Replicator{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	l := newLoop(r, loopKey{server: server{group: "g1"}, dest: "dc2"}, []int{7, 0, 16383})
	for i, s := range l.slots {
		if p, ok := l.position(OutboxKey(s)); !ok || p != i {
			t.Errorf("slot %d's outbox: position %d, %v; want %d", s, p, ok, i)
		}
	}
	if p, ok := l.position(OutboxKey(8)); ok {
		t.Errorf("slot 8's outbox, not shipped: position %d", p)
	}
	// A key of slot 7 that is not its outbox (the tag alone, the inbox).
	for _, k := range []string{OutboxKey(7)[len(OutboxKey(7))-5:], InboxKey(7), ""} {
		if p, ok := l.position(k); ok {
			t.Errorf("%q: position %d", k, p)
		}
	}
}
