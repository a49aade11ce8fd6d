package router

import (
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
)

func TestMultiKeySplitAndMerge(t *testing.T) {
	tc := startCluster(t, 3, 1, Config{})
	ctx := ctxT(t)
	c := tc.client(0)
	var keys []string
	var kv []any
	for i := 0; i < 30; i++ {
		k := fmt.Sprintf("mk:%d", i)
		keys = append(keys, k)
		kv = append(kv, k, "v"+k)
	}
	if err := c.MSet(ctx, kv...).Err(); err != nil {
		t.Fatal(err)
	}
	// Keys really spread over the three groups.
	for gi := 0; gi < 3; gi++ {
		if n := tc.direct(gi).DBSize(ctx).Val(); n == 0 || n == 30 {
			t.Fatalf("group %d holds %d of 30 keys", gi+1, n)
		}
	}
	query := append([]string{"missing"}, keys...)
	query = append(query, keys[3]) // a duplicate
	vals, err := c.MGet(ctx, query...).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(vals) != len(query) || vals[0] != nil {
		t.Fatalf("MGET returned %d values, first %v", len(vals), vals[0])
	}
	for i, k := range query[1:] {
		if vals[i+1] != "v"+k {
			t.Fatalf("MGET[%d] = %v, want v%s", i+1, vals[i+1], k)
		}
	}
	if n := c.Exists(ctx, append(append([]string(nil), query...), keys[0])...).Val(); n != int64(len(query)) {
		t.Fatalf("EXISTS = %d, want %d (duplicates count)", n, len(query))
	}
	if n := c.Touch(ctx, keys...).Val(); n != 30 {
		t.Fatalf("TOUCH = %d", n)
	}
	if n := c.Del(ctx, keys[:10]...).Val(); n != 10 {
		t.Fatalf("DEL = %d", n)
	}
	if n := c.Unlink(ctx, append(append([]string(nil), keys[5:20]...), "nope")...).Val(); n != 10 {
		t.Fatalf("UNLINK = %d", n)
	}
	if n := c.Exists(ctx, keys...).Val(); n != 10 {
		t.Fatalf("EXISTS after deletes = %d", n)
	}
	if err := c.MSet(ctx, "a", 1, "b").Err(); err == nil || !strings.Contains(err.Error(), "wrong number") {
		t.Fatalf("MSET odd args: %v", err)
	}
}

func TestCrossSlot(t *testing.T) {
	tc := startCluster(t, 2, 1, Config{})
	ctx := ctxT(t)
	c := tc.client(0)
	// Two keys in different slots, chosen in the same group: still CROSSSLOT, as in Redis Cluster.
	a := keyIn("a", 0, 2)
	b := keyIn("b", 0, 2)
	for slotOf(b) == slotOf(a) {
		b += "x"
	}
	const want = "CROSSSLOT Keys in request don't hash to the same slot"
	for _, cmd := range []*redis.Cmd{
		c.Do(ctx, "MSETNX", a, 1, b, 2),
		c.Do(ctx, "RENAME", a, b),
		c.Do(ctx, "SMOVE", a, b, "m"),
		c.Do(ctx, "SINTERSTORE", a, b),
		c.Do(ctx, "SUNIONSTORE", a, b),
		c.Do(ctx, "ZUNIONSTORE", a, 1, b),
		c.Do(ctx, "LMOVE", a, b, "LEFT", "LEFT"),
		c.Do(ctx, "BLMOVE", a, b, "LEFT", "LEFT", 0),
		c.Do(ctx, "PFMERGE", a, b),
		c.Do(ctx, "BITOP", "AND", a, b),
		c.Do(ctx, "EVAL", "return 1", 2, a, b),
		c.Do(ctx, "EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", 2, a, b),
		c.Do(ctx, "FCALL", "f", 2, a, b),
	} {
		if err := cmd.Err(); err == nil || err.Error() != want {
			t.Errorf("%v: err %v, want CROSSSLOT", cmd.Args(), err)
		}
	}
	// Same slot works.
	if err := c.Do(ctx, "MSETNX", "{t}a", 1, "{t}b", 2).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Rename(ctx, "{t}a", "{t}c").Err(); err != nil {
		t.Fatal(err)
	}
	if v := c.Eval(ctx, "return redis.call('get', KEYS[1])", []string{"{t}c"}).Val(); v != "1" {
		t.Fatalf("EVAL = %v", v)
	}
	// Reserved keys are refused, also inside multi-key commands.
	for _, cmd := range []*redis.Cmd{c.Do(ctx, "SET", "__redraft:x", 1), c.Do(ctx, "MGET", "a", "__redraft:x"), c.Do(ctx, "DEL", "__redraft:y")} {
		if err := cmd.Err(); err == nil || !strings.Contains(err.Error(), "reserved") {
			t.Errorf("%v: err %v, want reserved", cmd.Args(), err)
		}
	}
}

// TestPipelineAcrossGroups sends one pipeline whose commands alternate between groups, with
// split commands and errors mixed in, and checks every reply comes back in order.
func TestPipelineAcrossGroups(t *testing.T) {
	tc := startCluster(t, 2, 1, Config{})
	ctx := ctxT(t)
	c := tc.client(0)
	const n = 3000
	p := c.Pipeline()
	var cmds []redis.Cmder
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("p:%d", i)
		switch i % 5 {
		case 0, 1:
			cmds = append(cmds, p.Set(ctx, k, i, 0))
		case 2:
			cmds = append(cmds, p.Get(ctx, fmt.Sprintf("p:%d", i-1)))
		case 3:
			cmds = append(cmds, p.MGet(ctx, fmt.Sprintf("p:%d", i-3), fmt.Sprintf("p:%d", i-2), "none"))
		case 4:
			cmds = append(cmds, p.HGet(ctx, fmt.Sprintf("p:%d", i-4), "f")) // WRONGTYPE
		}
	}
	_, _ = p.Exec(ctx)
	for i, cmd := range cmds {
		switch i % 5 {
		case 0, 1:
			if cmd.Err() != nil {
				t.Fatalf("%d: %v", i, cmd.Err())
			}
		case 2:
			if v := cmd.(*redis.StringCmd).Val(); v != fmt.Sprint(i-1) {
				t.Fatalf("%d: GET = %q, want %d", i, v, i-1)
			}
		case 3:
			v := cmd.(*redis.SliceCmd).Val()
			if len(v) != 3 || v[0] != fmt.Sprint(i-3) || v[1] != fmt.Sprint(i-2) || v[2] != nil {
				t.Fatalf("%d: MGET = %v", i, v)
			}
		case 4:
			if err := cmd.Err(); err == nil || !strings.HasPrefix(err.Error(), "WRONGTYPE") {
				t.Fatalf("%d: err %v, want WRONGTYPE", i, err)
			}
		}
	}
}

// TestLargeValues moves multi-megabyte values both ways, alone and inside a split MGET.
func TestLargeValues(t *testing.T) {
	tc := startCluster(t, 2, 1, Config{})
	ctx := ctxT(t)
	c := tc.client(0)
	big := strings.Repeat("0123456789", 700_000) // 7 MB
	k1, k2 := keyIn("big", 0, 2), keyIn("big", 1, 2)
	if err := c.MSet(ctx, k1, big, k2, big[:1000]).Err(); err != nil {
		t.Fatal(err)
	}
	if v := c.Get(ctx, k1).Val(); v != big {
		t.Fatalf("GET returned %d bytes, want %d", len(v), len(big))
	}
	vals := c.MGet(ctx, k2, k1, k2).Val()
	if len(vals) != 3 || vals[1] != big || vals[0] != big[:1000] || vals[2] != big[:1000] {
		t.Fatal("MGET with a large value mangled the replies")
	}
	// Over the configured argument limit: an error, and the node keeps serving.
	small := startCluster(t, 1, 1, Config{MaxBulkBytes: 1 << 20})
	if err := small.client(0).Set(ctx, "k", big, 0).Err(); err == nil || !strings.Contains(err.Error(), "invalid bulk length") {
		t.Fatalf("SET over the limit: %v", err)
	}
	if err := small.client(0).Set(ctx, "k", "ok", 0).Err(); err != nil {
		t.Fatal(err)
	}
}

// GEORADIUS and GEORADIUSBYMEMBER with STORE or STOREDIST given twice are refused: Redis
// writes the last destination while its key specs name the first, so the last one escaped the
// slot check and was written on a group that does not serve its slot (b below, on g1, with
// g2 serving it). One destination is served, and a refused request in MULTI aborts the
// transaction, as a queueing error does. Fails without argsRefused.
func TestGeoStoreGivenTwiceRefused(t *testing.T) {
	tc := startCluster(t, 2, 1, Config{})
	ctx := ctxT(t)
	c := tc.client(0)
	// geo, a and the key named STORE share a slot; b is on the other group.
	geo, a, store := "{STORE}geo", "{STORE}a", "STORE"
	gi := min(slotOf(store)/(fsm.NumSlots/2), 1)
	b := keyIn("b", 1-gi, 2)
	if err := tc.direct(gi).GeoAdd(ctx, geo, &redis.GeoLocation{Name: "m", Longitude: 0, Latitude: 0}).Err(); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]any{
		{"GEORADIUS", geo, 0, 0, 1, "km", "STORE", a, "STORE", b},
		{"GEORADIUS", geo, 0, 0, 1, "km", "store", a, "COUNT", 1, "StoreDist", b},
		{"GEORADIUSBYMEMBER", geo, "m", 1, "km", "STOREDIST", a, "STORE", b},
	} {
		err := c.Do(ctx, args...).Err()
		if err == nil || !strings.Contains(err.Error(), "STORE or STOREDIST given more than once") {
			t.Errorf("%v: %v, want the refusal", args, err)
		}
	}
	for i := range 2 {
		if n := tc.direct(i).Exists(ctx, a, b).Val(); n != 0 {
			t.Fatalf("group %d holds %d of the destinations after the refusals", i, n)
		}
	}
	// One destination, as a key named STORE, is served; STORE without its key goes to Redis,
	// which answers the syntax error.
	if n, err := c.Do(ctx, "GEORADIUS", geo, 0, 0, 1, "km", "STORE", a).Int(); err != nil || n != 1 {
		t.Fatalf("one STORE: %d, %v", n, err)
	}
	if err := c.Do(ctx, "GEORADIUSBYMEMBER", geo, "m", 1, "km", "STORE", store).Err(); err != nil {
		t.Fatalf("a destination named %s: %v", store, err)
	}
	if err := c.Do(ctx, "GEORADIUS", geo, 0, 0, 1, "km", "STORE", a, "STORE").Err(); err == nil || !strings.Contains(err.Error(), "syntax") {
		t.Fatalf("STORE without its key: %v", err)
	}
	_, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Do(ctx, "GEORADIUS", geo, 0, 0, 1, "km", "STORE", a, "STORE", b)
		p.Set(ctx, a, "x", 0)
		return nil
	})
	if err == nil || !strings.HasPrefix(err.Error(), "EXECABORT") {
		t.Fatalf("MULTI with the refused request: %v", err)
	}
	if v := tc.direct(gi).Type(ctx, a).Val(); v != "zset" {
		t.Fatalf("the aborted transaction wrote %s: its type is %s", a, v)
	}
}

// TestXReadGroupStreamsNamedRefused: an XREADGROUP whose consumer is named STREAMS after other
// options is refused (its key specs name the key STREAMS, Redis reads the stream after the
// next STREAMS, which may be on another group), and nothing is read; with GROUP first the
// same names are served.
func TestXReadGroupStreamsNamedRefused(t *testing.T) {
	tc := startCluster(t, 2, 1, Config{})
	ctx := ctxT(t)
	c := tc.client(0)
	gi := min(slotOf("STREAMS")/(fsm.NumSlots/2), 1)
	s := keyIn("s", 1-gi, 2)
	if err := c.XAdd(ctx, &redis.XAddArgs{Stream: s, Values: []string{"f", "v"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.XGroupCreate(ctx, s, "g", "0").Err(); err != nil {
		t.Fatal(err)
	}
	err := c.Do(ctx, "XREADGROUP", "COUNT", "1", "GROUP", "g", "STREAMS", "streams", s, ">").Err()
	if err == nil || !strings.Contains(err.Error(), "names a group or consumer STREAMS") {
		t.Fatalf("XREADGROUP COUNT 1 GROUP g STREAMS streams s >: %v, want the refusal", err)
	}
	if n := c.XPending(ctx, s, "g").Val().Count; n != 0 {
		t.Fatalf("%d entries pending after the refusal", n)
	}
	v, err := c.Do(ctx, "XREADGROUP", "GROUP", "g", "STREAMS", "STREAMS", s, ">").Result()
	if err != nil || v == nil {
		t.Fatalf("XREADGROUP GROUP g STREAMS STREAMS s >: %v, %v", v, err)
	}
	if n := c.XPending(ctx, s, "g").Val().Count; n != 1 {
		t.Fatalf("%d entries pending after the read", n)
	}
}
