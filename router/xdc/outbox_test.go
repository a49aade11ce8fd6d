package xdc

import (
	"testing"
	"time"

	"github.com/redraft/redraft/migrate"
)

func TestOutboxKeysHashToTheirSlot(t *testing.T) {
	seen := map[string]bool{}
	for s := range migrate.NumSlots {
		ob, in := OutboxKey(s), InboxKey(s)
		if got := migrate.SlotString(ob); got != s {
			t.Fatalf("OutboxKey(%d) = %q hashes to %d", s, ob, got)
		}
		if got := migrate.SlotString(in); got != s {
			t.Fatalf("InboxKey(%d) = %q hashes to %d", s, in, got)
		}
		if len(SlotTag(s)) > 3 || seen[ob] {
			t.Fatalf("slot %d: tag %q too long or key repeated", s, SlotTag(s))
		}
		seen[ob] = true
	}
	if OutboxKey(0) != "__redraft:ob:{"+SlotTag(0)+"}" {
		t.Fatalf("OutboxKey(0) = %q", OutboxKey(0))
	}
}

func TestSlotTagsDeterministicAndFast(t *testing.T) {
	best := time.Hour
	for range 5 {
		start := time.Now()
		got := slotTags()
		best = min(best, time.Since(start))
		if *got != *tags {
			t.Fatal("slotTags is not deterministic")
		}
	}
	limit := 20 * time.Millisecond
	if raceEnabled {
		limit *= 10 // the race detector slows the loop several times
	}
	if best > limit {
		t.Fatalf("slotTags took %v, want < %v", best, limit)
	}
	t.Logf("slotTags: %v", best)
}

func TestSlotOutOfRangePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("OutboxKey(16384) did not panic")
		}
	}()
	OutboxKey(migrate.NumSlots)
}
