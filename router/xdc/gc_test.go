package xdc

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/internal/testredis"
)

// TestCollectorKeepsRemovesOfAddsInFlight: the tombstone of a set emptied by a remove is kept
// while that remove's record of an add (seen in another DC, still on its way here) is newer
// than a DC's position, although the key's own stamp is old: collecting it took the record
// with it, and the add, arriving later, made the set live here only. Once every position is
// past the record, it goes.
func TestCollectorKeepsRemovesOfAddsInFlight(t *testing.T) {
	srv := testredis.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rc.Close()
	ctx := context.Background()
	k := "{g}s"
	slot := slotString(k)
	meta := MetaKey(slot)
	ek := ElemPrefix + meta[12:] + ":" + k
	now := time.Now().UnixMilli()
	ts := func(ms int64) string { return strconv.FormatInt(ms*4096, 10) }
	pullRecord, pending := false, int64(0)
	collect := func(addSeen int64) int64 {
		t.Helper()
		if err := rc.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		rc.HSet(ctx, meta, "s:"+k, ts(now-60_000)+":dc2")
		// The remove's state of member m: it had seen dc3's add at addSeen.
		err := rc.Eval(ctx, `redis.call('HSET', KEYS[1], 'm', cmsgpack.pack({a = {dc3 = {tonumber(ARGV[1]), ''}}, r = {dc3 = tonumber(ARGV[1])}, ib = false, b = '', t = 'set'})) return 1`,
			[]string{ek}, ts(addSeen)).Err()
		if err != nil {
			t.Fatal(err)
		}
		rc.HSet(ctx, InboxKey(slot), "dc2", strconv.FormatInt(now, 10)+"-0", "dc3", strconv.FormatInt(now-10_000, 10)+"-0")
		if pullRecord {
			rc.HSet(ctx, PullKey(slot), k, ts(now-1_000)+":dc3")
		}
		res, err := gcScript.Run(ctx, rc, []string{meta, InboxKey(slot), PullKey(slot)}, "0", "500", "5000", "600000", "dc2", "dc3").Int64Slice()
		if err != nil {
			t.Fatal(err)
		}
		pending = res[3]
		return res[2]
	}
	// dc3's add at now-2 s is past dc3's position (now-10 s): in flight, so kept.
	if n := collect(now - 2_000); n != 0 || rc.Exists(ctx, ek).Val() != 1 || rc.HExists(ctx, meta, "s:"+k).Val() != true {
		t.Fatalf("a tombstone whose remove saw an add in flight: %d collected", n)
	}
	// The add at now-30 s is applied here already: collected, with its states.
	if n := collect(now - 30_000); n != 1 || rc.Exists(ctx, ek).Val() != 0 || rc.HExists(ctx, meta, "s:"+k).Val() {
		t.Fatalf("a tombstone older than every position: %d collected", n)
	}
	// The same with a pull of the key pending: kept, since the pull compares the pulled
	// state's stamp with the tombstone's, and without it an older state would come back.
	pullRecord = true
	if n := collect(now - 30_000); n != 0 || rc.HExists(ctx, meta, "s:"+k).Val() != true || pending != 1 {
		t.Fatalf("a tombstone of a key with a pull record: %d collected, pull pending reported %d", n, pending)
	}
}
