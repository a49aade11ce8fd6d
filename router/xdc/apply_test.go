package xdc

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redraft/redraft/internal/testredis"
	"github.com/redraft/redraft/migrate"
	"github.com/redraft/redraft/router/resp"
)

// applyBatch runs the batch APPLY on c and parses its reply.
func applyBatch(t *testing.T, c Doer, src, lock string, batches []WireBatch) []BatchApplied {
	t.Helper()
	keys, argv := ApplyBatchArgs(src, lock, batches)
	if err := LoadLibrary(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	args := []any{"FCALL", ApplyBatchFunc, len(keys)}
	args = append(args, toAny(keys)...)
	args = append(args, argv...)
	v, err := c.Do(context.Background(), args...).Result()
	if err != nil {
		t.Fatalf("batch APPLY: %v", err)
	}
	raw := encodeReply(nil, v)
	pv, _, ok := resp.Parse(raw)
	if !ok {
		t.Fatalf("unparsable reply %q", raw)
	}
	res, err := ParseApplyBatch(pv, len(batches))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestApplyBatch: one call applies several slots' entries; a batch that is refused (a gap, a
// copy lock held by someone else) stops at the refused entry and leaves the other batches
// applied; a batch sent again is skipped entry by entry, so nothing applies twice.
func TestApplyBatch(t *testing.T) {
	ctx := context.Background()
	b := client(t, testredis.Start(t))
	su, sv := migrate.SlotString("{u}"), migrate.SlotString("{v}")
	incr := func(k string) WireCmds { return WireCmds{{"INCR", k}} }
	good := WireBatch{Slot: slot, Entries: []WireEntry{{ID: "1-0", Cmds: incr("{t}a")}, {ID: "2-0", Cmds: incr("{t}a")}}}
	gap := WireBatch{Slot: su, Prev: "7-0", Entries: []WireEntry{{ID: "8-0", Cmds: incr("{u}a")}}}
	locked := WireBatch{Slot: sv, Entries: []WireEntry{{ID: "1-0", Cmds: incr("{v}a")}}}
	b.Set(ctx, CopyLockKey(sv), "in:dc3:x", time.Minute)

	res := applyBatch(t, b, "dc2", "", []WireBatch{good, gap, locked})
	if res[0].Done != 2 || res[0].Refused != "" {
		t.Fatalf("good batch: %+v", res[0])
	}
	if res[1].Done != 0 || !strings.HasPrefix(res[1].Refused, "GAP ") {
		t.Fatalf("batch after a gap: %+v", res[1])
	}
	if res[2].Done != 0 || !strings.HasPrefix(res[2].Refused, "TRYAGAIN") {
		t.Fatalf("batch under another's copy lock: %+v", res[2])
	}
	if n, _ := b.Get(ctx, "{t}a").Int(); n != 2 {
		t.Fatalf("{t}a = %d, want 2", n)
	}
	if n, _ := b.Exists(ctx, "{u}a", "{v}a").Result(); n != 0 {
		t.Fatalf("refused batches changed %d keys", n)
	}
	// Sent again, with one more entry: the first two are skipped, the third applies.
	good.Entries = append(good.Entries, WireEntry{ID: "3-0", Cmds: incr("{t}a")})
	res = applyBatch(t, b, "dc2", "", []WireBatch{good})
	if res[0].Done != 3 || res[0].Refused != "" {
		t.Fatalf("batch sent again: %+v", res[0])
	}
	if n, _ := b.Get(ctx, "{t}a").Int(); n != 3 {
		t.Fatalf("{t}a = %d after the batch was sent again, want 3", n)
	}
	// An entry in the middle that does not follow: the ones before it stay applied.
	mid := WireBatch{Slot: slot, Prev: "3-0", Entries: []WireEntry{{ID: "4-0", Cmds: incr("{t}a")}, {ID: "bad", Cmds: incr("{t}a")}, {ID: "6-0", Cmds: incr("{t}a")}}}
	res = applyBatch(t, b, "dc2", "", []WireBatch{mid})
	if res[0].Done != 1 || !strings.Contains(res[0].Refused, "bad entry id") {
		t.Fatalf("batch with a bad id: %+v", res[0])
	}
	if n, _ := b.Get(ctx, "{t}a").Int(); n != 4 {
		t.Fatalf("{t}a = %d, want 4", n)
	}
	if last, _ := b.HGet(ctx, InboxKey(slot), "dc2").Result(); last != "4-0" {
		t.Fatalf("inbox %q, want 4-0", last)
	}
	// The lock's holder applies under its lock; failed effects are counted, not fatal.
	b.Set(ctx, "{v}s", "x", 0)
	locked.Entries = append(locked.Entries, WireEntry{ID: "2-0", Cmds: WireCmds{{"INCR", "{v}s"}, {"INCR", "{v}a"}}})
	res = applyBatch(t, b, "dc2", "in:dc3:x", []WireBatch{locked})
	if res[0].Done != 2 || res[0].Errors != 1 || !strings.Contains(res[0].FirstError, "not an integer") {
		t.Fatalf("the lock's holder: %+v", res[0])
	}
	if n, _ := b.Get(ctx, "{v}a").Int(); n != 2 {
		t.Fatalf("{v}a = %d, want 2", n)
	}
	// An entry twice in a batch, and the same slot's batch twice in a call: each applies once
	// (the slot's inbox, read once per batch, follows what the batch applied).
	twice := WireBatch{Slot: slot, Prev: "4-0", Entries: []WireEntry{{ID: "5-0", Cmds: incr("{t}a")}, {ID: "5-0", Cmds: incr("{t}a")}, {ID: "6-0", Cmds: incr("{t}a")}}}
	res = applyBatch(t, b, "dc2", "", []WireBatch{twice, twice})
	if res[0].Done != 3 || res[0].Refused != "" || res[1].Done != 3 || res[1].Refused != "" {
		t.Fatalf("entries and batches twice: %+v", res)
	}
	if n, _ := b.Get(ctx, "{t}a").Int(); n != 6 {
		t.Fatalf("{t}a = %d after entries 5-0 and 6-0 each sent four times, want 6", n)
	}
	if last, _ := b.HGet(ctx, InboxKey(slot), "dc2").Result(); last != "6-0" {
		t.Fatalf("inbox %q, want 6-0", last)
	}
}

// TestApplyChunks: no call carries more than applyChunk entries unless one batch alone does,
// and the chunks keep every batch, in order.
func TestApplyChunks(t *testing.T) {
	var bs []WireBatch
	for i, n := range []int{1, 30, 40, 100, 2, 63, 1} {
		bs = append(bs, WireBatch{Slot: i, Entries: make([]WireEntry, n)})
	}
	var got []int
	for _, ch := range applyChunks(bs) {
		n := 0
		for _, b := range ch {
			n += len(b.Entries)
			got = append(got, b.Slot)
		}
		if n > applyChunk && len(ch) > 1 {
			t.Fatalf("a chunk of %d entries over %d batches", n, len(ch))
		}
	}
	if len(got) != len(bs) {
		t.Fatalf("chunks keep %v", got)
	}
	for i := range got {
		if got[i] != i {
			t.Fatalf("chunks reorder: %v", got)
		}
	}
}
