package xdc

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

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

// TestApplySetMatchesFullPath: APPLY's shortcut for an entry of one whole string (quickSet) has
// the same effects and answers as the full path it skips. A random history of entries (whole
// strings newer and older than the key's state, with and without the counters they saw,
// increments, element adds, keys of other types and with expiries, entries sent twice, gaps,
// bad ids, another's copy lock) goes through the batch APPLY on two databases of one server:
// on the first with no copy lock held (the shortcut taken where it can be), on the second
// holding a copy lock value that no one has set (the full path always). After every entry
// both must have answered the same and hold the same keys, values, expiries and metadata.
func TestApplySetMatchesFullPath(t *testing.T) {
	ctx := context.Background()
	s := testredis.Start(t)
	quick := client(t, s)
	full := redis.NewClient(&redis.Options{Addr: s.Addr, Protocol: 2, MaxRetries: -1, DB: 1})
	t.Cleanup(func() { _ = full.Close() })
	rng := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
	keys := []string{"{t}a", "{t}b", "{t}c"}
	seq := map[string]int{} // the last id sent per source DC
	prevOf := map[string]string{}
	srcs := []string{"dc2", "dc3", "~dc1"}
	quick.ConfigResetStat(ctx)
	shortcuts := 0 // entries the shortcut should take
	for step := range 600 {
		src := srcs[rng.IntN(len(srcs))]
		k := keys[rng.IntN(len(keys))]
		ts := strconv.Itoa((1000 + step + rng.IntN(40) - 20) * 4096)
		var cmd []string
		switch r := rng.IntN(20); {
		case r < 11:
			v := ""
			if rng.IntN(5) == 0 {
				v = "dc2 1 5\n"
			}
			px := "-1"
			if rng.IntN(6) == 0 {
				px = strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10)
			}
			cmd = []string{"~s", k, "", v, "v" + strconv.Itoa(step), px}
		case r < 13:
			cmd = []string{"~c", k, strconv.Itoa(rng.IntN(9) + 1), "-1"}
		case r < 15:
			cmd = []string{"~a", k, "set", "m" + strconv.Itoa(rng.IntN(3)), "", "-1"}
		case r < 16:
			cmd = []string{"~d", k, "", ""}
		case r < 17:
			for _, c := range []*redis.Client{quick, full} {
				c.Del(ctx, k)
				c.RPush(ctx, k, "x")
			}
			continue
		case r < 18:
			set := rng.IntN(2) == 0
			for _, c := range []*redis.Client{quick, full} {
				if set {
					c.Set(ctx, CopyLockKey(slot), "in:dc3:other", 0)
				} else {
					c.Del(ctx, CopyLockKey(slot))
				}
			}
			continue
		default:
			cmd = []string{"~s", k, "", "", "w" + strconv.Itoa(step), "-1"}
		}
		id := strconv.Itoa(seq[src]+1) + "-0"
		prev := prevOf[src]
		switch rng.IntN(12) {
		case 0: // sent again
			if seq[src] > 0 {
				id = strconv.Itoa(seq[src]) + "-0"
			}
		case 1: // after an entry that never came
			prev = "999999-0"
		case 2:
			id = "bad"
		}
		e := WireEntry{ID: id, TS: ts, Cmds: WireCmds{cmd}}
		batch := []WireBatch{{Slot: slot, Prev: prev, Entries: []WireEntry{e}}}
		if cmd[0] == "~s" && cmd[3] == "" && id != "bad" && quick.Exists(ctx, CopyLockKey(slot), ElemKey(slot, k)).Val() == 0 {
			// The shortcut's case: one whole string that had seen no counter, no copy lock, no
			// element states, and an entry that applies (neither seen nor after a gap).
			last := quick.HGet(ctx, InboxKey(slot), src).Val()
			if (last == "" || CompareIDs(id, last) > 0) && (prev == "" || prev == last) {
				shortcuts++
			}
		}
		got := applyBatch(t, quick, src, "", batch)
		want := applyBatch(t, full, src, "zz", batch)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d, %s %v from %s: shortcut answered %+v, full path %+v", step, id, cmd, src, got, want)
		}
		if got[0].Done == 1 && id == strconv.Itoa(seq[src]+1)+"-0" {
			seq[src]++
			prevOf[src] = id
		}
		if a, b := dumpDB(t, quick), dumpDB(t, full); a != b {
			t.Fatalf("step %d, %s %v from %s: the databases differ:\nshortcut:\n%s\nfull path:\n%s", step, id, cmd, src, a, b)
		}
	}
	// Only the shortcut reads the metadata by HMGET in APPLY: every entry it should take, it
	// took. (The count of such entries varies with the random history: a copy lock held for
	// long stretches leaves few.)
	if n := testredis.CommandStat(quick.Info(ctx, "commandstats").Val(), "hmget", "calls"); n != float64(shortcuts) || n == 0 {
		t.Fatalf("%v entries took the shortcut, %d should have", n, shortcuts)
	}
}

// dumpDB describes every key of c's database: its name, type, expiry and content.
func dumpDB(t *testing.T, c *redis.Client) string {
	t.Helper()
	ctx := context.Background()
	ks, err := c.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ks)
	var b strings.Builder
	for _, k := range ks {
		var v any
		switch ty := c.Type(ctx, k).Val(); ty {
		case "string":
			v = c.Get(ctx, k).Val()
		case "hash":
			v = c.HGetAll(ctx, k).Val()
		case "set":
			m := c.SMembers(ctx, k).Val()
			slices.Sort(m)
			v = m
		case "list":
			v = c.LRange(ctx, k, 0, -1).Val()
		default:
			v = ty
		}
		fmt.Fprintf(&b, "%s %v %v\n", k, c.PExpireTime(ctx, k).Val(), v)
	}
	return b.String()
}
