package router

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testredis"
	"github.com/redraft/redraft/router/xdc"
)

// addDC2 adds a second DC (one group on its own redis-server, owning every slot) to st, which
// makes the cluster multi-DC: writes of dc1's routers go through WRITE.
func addDC2(t testing.TB, st *fsm.State) *fsm.State { return addDC(t, st, "dc2", "h1") }

// addDC adds DC dc with one group (id group, on its own redis-server) owning every slot.
func addDC(t testing.TB, st *fsm.State, dc, group string) *fsm.State {
	t.Helper()
	r := testredis.Start(t)
	st, err := fsm.ApplyCommand(st, st.Index+1, &fsm.AddGroup{DC: dc, Group: fsm.Group{ID: group, Master: r.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	st, err = fsm.ApplyCommand(st, st.Index+1, &fsm.AssignSlots{DC: dc, Group: group, Ranges: []fsm.SlotRange{{From: 0, To: fsm.NumSlots - 1}}})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// startXDC starts dc1 with ngroups groups and one router, in a cluster that also has dc2.
func startXDC(t testing.TB, ngroups int, cfg Config) *testCluster {
	t.Helper()
	tc := startCluster(t, ngroups, 0, cfg)
	tc.st = addDC2(t, tc.st)
	tc.addNode(cfg)
	return tc
}

// outbox reads slot's outbox from the dc1 group serving it (of n groups).
func (tc *testCluster) outbox(t *testing.T, slot int) []xdc.Entry {
	t.Helper()
	gi := min(slot/(fsm.NumSlots/len(tc.redis)), len(tc.redis)-1)
	es, err := xdc.ReadOutbox(context.Background(), tc.direct(gi), slot, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// lastEffects returns the commands of slot's newest outbox entry, space-joined.
func (tc *testCluster) lastEffects(t *testing.T, slot int) []string {
	t.Helper()
	es := tc.outbox(t, slot)
	if len(es) == 0 {
		t.Fatalf("slot %d: empty outbox", slot)
	}
	e := es[len(es)-1]
	if e.DC != "dc1" {
		t.Errorf("entry %s from DC %q", e.ID, e.DC)
	}
	var out []string
	for _, c := range e.Cmds {
		out = append(out, strings.Join(plainEffect(c), " "))
	}
	return out
}

// plainEffect turns a stamped effect (xdc's "~" forms, docs/convergence.md) into the plain
// command it stands for: ~o's command, ~s as SET [PXAT], ~c as INCRBY, ~d as DEL, ~r as
// RESTORE ... REPLACE ABSTTL, ~a and ~x as the add or remove of one element.
func plainEffect(c []string) []string {
	switch c[0] {
	case "~o":
		return c[4:]
	case "~s":
		if c[5] != "-1" {
			return []string{"set", c[1], c[4], "pxat", c[5]}
		}
		return []string{"set", c[1], c[4]}
	case "~c":
		return []string{"incrby", c[1], c[2]}
	case "~a":
		switch c[2] {
		case "hash":
			return []string{"HSET", c[1], c[3], c[4]}
		case "set":
			return []string{"SADD", c[1], c[3]}
		}
		return []string{"ZADD", c[1], c[4], c[3]}
	case "~x":
		return []string{map[string]string{"hash": "HDEL", "set": "SREM", "zset": "ZREM"}[c[2]], c[1], c[3]}
	case "~d":
		return []string{"del", c[1]}
	case "~r":
		ttl := c[4]
		if ttl == "-1" {
			ttl = "0"
		}
		return []string{"restore", c[1], ttl, c[5], "replace", "absttl"}
	}
	return c
}

func wantEffects(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, " | ") != strings.Join(want, " | ") {
		t.Errorf("%s: effects %q, want %q", what, got, want)
	}
}

// TestXDCWriteEffects: with two DCs, writes answer as without redraft and record their
// effects in the slot's outbox, per slot, on the group serving it.
func TestXDCWriteEffects(t *testing.T) {
	tc := startXDC(t, 2, Config{})
	ctx := ctxT(t)
	c := tc.client(0)
	if !tc.servers[0].snap.Load().multiDC {
		t.Fatal("MultiDC false with two DCs")
	}

	k := keyIn("k", 0, 2)
	if err := c.Set(ctx, k, "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	wantEffects(t, "SET", tc.lastEffects(t, slotOf(k)), "set "+k+" v")
	if e := tc.outbox(t, slotOf(k)); e[len(e)-1].TS == "" {
		t.Errorf("SET recorded without a stamp")
	}
	if n, err := c.Incr(ctx, "{"+k+"}n").Result(); err != nil || n != 1 {
		t.Fatalf("INCR = %d, %v", n, err)
	}
	wantEffects(t, "INCR", tc.lastEffects(t, slotOf(k)), "incrby {"+k+"}n 1")
	before := time.Now().UnixMilli()
	if ok, err := c.Expire(ctx, k, 100*time.Second).Result(); err != nil || !ok {
		t.Fatalf("EXPIRE = %v, %v", ok, err)
	}
	eff := tc.lastEffects(t, slotOf(k))
	f := strings.Fields(eff[0])
	if len(f) != 5 || f[0] != "set" || f[1] != k || f[3] != "pxat" {
		t.Fatalf("EXPIRE recorded as %q", eff)
	}
	if at, _ := strconv.ParseInt(f[4], 10, 64); at < before+99_000 || at > time.Now().UnixMilli()+100_000 {
		t.Errorf("EXPIRE recorded at %s, want now+100s", f[2])
	}
	if ttl := c.PTTL(ctx, k).Val(); ttl < 99*time.Second {
		t.Errorf("PTTL after EXPIRE = %s", ttl)
	}

	// MSET and DEL over two groups: one entry per slot.
	a, b := keyIn("a", 0, 2), keyIn("b", 1, 2)
	if err := c.MSet(ctx, a, "1", b, "2").Err(); err != nil {
		t.Fatal(err)
	}
	wantEffects(t, "MSET a", tc.lastEffects(t, slotOf(a)), "set "+a+" 1")
	wantEffects(t, "MSET b", tc.lastEffects(t, slotOf(b)), "set "+b+" 2")
	if got := c.MGet(ctx, a, b).Val(); len(got) != 2 || got[0] != "1" || got[1] != "2" {
		t.Errorf("MGET = %v", got)
	}
	// Two keys of one group, different slots: still one entry each.
	a2 := keyIn("a2", 0, 2)
	for slotOf(a2) == slotOf(a) {
		a2 += "x"
	}
	if n, err := c.Del(ctx, a, b, a2).Result(); err != nil || n != 2 {
		t.Fatalf("DEL = %d, %v", n, err)
	}
	wantEffects(t, "DEL a", tc.lastEffects(t, slotOf(a)), "del "+a)
	wantEffects(t, "DEL b", tc.lastEffects(t, slotOf(b)), "del "+b)
	if es := tc.outbox(t, slotOf(a2)); len(es) != 0 {
		t.Errorf("DEL of a missing key recorded %v", es)
	}

	// SPOP records what it popped.
	s := keyIn("s", 1, 2)
	c.SAdd(ctx, s, "m1", "m2")
	m, err := c.SPop(ctx, s).Result()
	if err != nil {
		t.Fatal(err)
	}
	wantEffects(t, "SPOP", tc.lastEffects(t, slotOf(s)), "SREM "+s+" "+m)

	// A MULTI block is one unit: EXEC's replies, one entry with the writes only.
	tk := "{" + keyIn("t", 0, 2) + "}"
	cmds, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, tk+"x", "1", 0)
		p.Get(ctx, tk+"x")
		p.Incr(ctx, tk+"y")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if cmds[0].(*redis.StatusCmd).Val() != "OK" || cmds[1].(*redis.StringCmd).Val() != "1" || cmds[2].(*redis.IntCmd).Val() != 1 {
		t.Errorf("EXEC replies %v", cmds)
	}
	wantEffects(t, "MULTI", tc.lastEffects(t, slotOf(tk)), "set "+tk+"x 1", "incrby "+tk+"y 1")

	// User scripts: recorded as the state of the keys they declare (docs/convergence.md).
	body := "return redis.call('SET', KEYS[1], ARGV[1])"
	e := keyIn("e", 1, 2)
	if err := c.Eval(ctx, body, []string{e}, "v1").Err(); err != nil {
		t.Fatal(err)
	}
	if eff := tc.lastEffects(t, slotOf(e)); len(eff) != 1 || !strings.HasPrefix(eff[0], "restore "+e+" 0 ") {
		t.Errorf("EVAL: effects %q, want the state of %s", eff, e)
	}
	body2 := "return redis.call('INCRBY', KEYS[1], ARGV[1])"
	sha, err := c.ScriptLoad(ctx, body2).Result()
	if err != nil {
		t.Fatal(err)
	}
	if n, err := c.EvalSha(ctx, strings.ToUpper(sha), []string{e + "n"}, 5).Int64(); err != nil || n != 5 {
		t.Fatalf("EVALSHA = %d, %v", n, err)
	}
	if eff := tc.lastEffects(t, slotOf(e+"n")); len(eff) != 1 || !strings.HasPrefix(eff[0], "restore "+e+"n 0 ") {
		t.Errorf("EVALSHA: effects %q, want the state of %sn", eff, e)
	}
	if err := c.Eval(ctx, "return 1", nil).Err(); err == nil || !strings.Contains(err.Error(), "without keys") {
		t.Errorf("keyless EVAL: %v", err)
	}
	n0 := len(tc.outbox(t, slotOf(e)))
	if v, err := c.EvalRO(ctx, "return redis.call('GET', KEYS[1])", []string{e}).Text(); err != nil || v != "v1" {
		t.Errorf("EVAL_RO = %q, %v", v, err)
	}
	if n := len(tc.outbox(t, slotOf(e))); n != n0 {
		t.Errorf("EVAL_RO recorded an entry")
	}

	// Reads record nothing; commands WRITE cannot replicate answer a clear error.
	n0 = len(tc.outbox(t, slotOf(k)))
	c.Get(ctx, k)
	if n := len(tc.outbox(t, slotOf(k))); n != n0 {
		t.Error("GET recorded an entry")
	}
}

// TestXDCConsumerGroups: XREADGROUP with several DCs is recorded as what it changed in the
// consumer group (consumer, pending entries, last delivered id), so a copy that applies the
// slot's outbox has the same group state; BLOCK is served by polling, NOACK adds nothing
// pending, and a read of the consumer's history records the entries delivered again.
func TestXDCConsumerGroups(t *testing.T) {
	tc := startXDC(t, 1, Config{})
	ctx := ctxT(t)
	c := tc.client(0)
	g := "{cg}s"
	if err := c.XGroupCreateMkStream(ctx, g, "grp", "0").Err(); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := 0; i < 3; i++ {
		ids = append(ids, c.XAdd(ctx, &redis.XAddArgs{Stream: g, Values: []string{"n", strconv.Itoa(i)}}).Val())
	}
	got, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "grp", Consumer: "c1", Streams: []string{g, ">"}, Count: 2, Block: -1}).Result()
	if err != nil || len(got) != 1 || len(got[0].Messages) != 2 || got[0].Messages[1].ID != ids[1] {
		t.Fatalf("XREADGROUP COUNT 2 = %v, %v", got, err)
	}
	wantEffects(t, "XREADGROUP >", tc.lastEffects(t, slotOf(g)), "XGROUP CREATECONSUMER "+g+" grp c1",
		"XCLAIM "+g+" grp c1 0 "+ids[0]+" "+ids[1]+" FORCE JUSTID", "XGROUP SETID "+g+" grp "+ids[1])
	// Each effect is a stamped command effect on the stream (docs/convergence.md), which a
	// DC applies only over the state it changed at its origin.
	if es := tc.outbox(t, slotOf(g)); len(es) > 0 {
		for _, e := range es[len(es)-1].Cmds {
			if len(e) < 4 || e[0] != "~o" || e[1] != g {
				t.Errorf("XREADGROUP's effect %q is not a ~o effect on %s", e, g)
			}
		}
	}
	// NOACK: delivered, nothing pending.
	if got, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "grp", Consumer: "c2", Streams: []string{g, ">"}, NoAck: true, Block: -1}).Result(); err != nil || len(got[0].Messages) != 1 {
		t.Fatalf("XREADGROUP NOACK = %v, %v", got, err)
	}
	wantEffects(t, "XREADGROUP NOACK", tc.lastEffects(t, slotOf(g)), "XGROUP CREATECONSUMER "+g+" grp c2", "XGROUP SETID "+g+" grp "+ids[2])
	// The consumer's history: delivered again.
	if got, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "grp", Consumer: "c1", Streams: []string{g, "0"}, Block: -1}).Result(); err != nil || len(got[0].Messages) != 2 {
		t.Fatalf("XREADGROUP history = %v, %v", got, err)
	}
	wantEffects(t, "XREADGROUP 0", tc.lastEffects(t, slotOf(g)), "XCLAIM "+g+" grp c1 0 "+ids[0]+" "+ids[1]+" JUSTID")
	// Nothing new: the null reply, nothing recorded.
	n0 := len(tc.outbox(t, slotOf(g)))
	if err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "grp", Consumer: "c1", Streams: []string{g, ">"}, Block: -1}).Err(); err != redis.Nil {
		t.Fatalf("XREADGROUP on nothing new: %v, want nil", err)
	}
	// BLOCK: polled until an entry comes.
	done := make(chan []redis.XStream, 1)
	go func() {
		res, _ := tc.client(0).XReadGroup(ctx, &redis.XReadGroupArgs{Group: "grp", Consumer: "c3", Streams: []string{g, ">"}, Block: 5 * time.Second}).Result()
		done <- res
	}()
	waitFor(t, "XREADGROUP BLOCK polling", func() bool { return tc.servers[0].pollers.Load() >= 1 })
	last := c.XAdd(ctx, &redis.XAddArgs{Stream: g, Values: []string{"n", "3"}}).Val()
	if res := <-done; len(res) != 1 || len(res[0].Messages) != 1 || res[0].Messages[0].ID != last {
		t.Fatalf("XREADGROUP BLOCK = %v", res)
	}
	if n := len(tc.outbox(t, slotOf(g))); n != n0+2 {
		t.Errorf("%d entries after the empty read, the XADD and the blocked read; want %d", n, n0+2)
	}

	// Claims are recorded as the claims made (min-idle-time 0, JUSTID), not as the command: a
	// copy applying them at once sees idle times near 0 and would claim nothing.
	waitFor(t, "entries idle 150 ms", func() bool {
		ps := c.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: g, Group: "grp", Start: "-", End: "+", Count: 10, Idle: 150 * time.Millisecond}).Val()
		return len(ps) == 3
	})
	if got, err := c.XClaim(ctx, &redis.XClaimArgs{Stream: g, Group: "grp", Consumer: "c4", MinIdle: 100 * time.Millisecond, Messages: []string{ids[0]}}).Result(); err != nil || len(got) != 1 {
		t.Fatalf("XCLAIM = %v, %v", got, err)
	}
	wantEffects(t, "XCLAIM", tc.lastEffects(t, slotOf(g)), "XCLAIM "+g+" grp c4 0 "+ids[0]+" JUSTID")
	// A deleted entry is dropped from the pending list, and so recorded.
	c.XDel(ctx, g, ids[1])
	if got, err := c.XClaimJustID(ctx, &redis.XClaimArgs{Stream: g, Group: "grp", Consumer: "c4", MinIdle: 100 * time.Millisecond, Messages: []string{ids[1]}}).Result(); err != nil || len(got) != 0 {
		t.Fatalf("XCLAIM of a deleted entry = %v, %v", got, err)
	}
	wantEffects(t, "XCLAIM of a deleted entry", tc.lastEffects(t, slotOf(g)), "XCLAIM "+g+" grp c4 0 "+ids[1]+" JUSTID")
	if got, _, err := c.XAutoClaim(ctx, &redis.XAutoClaimArgs{Stream: g, Group: "grp", Consumer: "c5", MinIdle: 100 * time.Millisecond, Start: last}).Result(); err != nil || len(got) != 1 || got[0].ID != last {
		t.Fatalf("XAUTOCLAIM = %v, %v", got, err)
	}
	wantEffects(t, "XAUTOCLAIM", tc.lastEffects(t, slotOf(g)), "XCLAIM "+g+" grp c5 0 "+last+" JUSTID")

	// A copy that applies the outbox in order has the group's state.
	copyc := redis.NewClient(&redis.Options{Addr: testredis.Start(t).Addr})
	defer copyc.Close()
	for _, e := range tc.outbox(t, slotOf(g)) {
		for _, cmd := range e.Cmds {
			cmd = plainEffect(cmd)
			args := make([]any, len(cmd))
			for i, a := range cmd {
				args[i] = a
			}
			if err := copyc.Do(ctx, args...).Err(); err != nil {
				t.Fatalf("apply %v: %v", cmd, err)
			}
		}
	}
	src := tc.direct(0)
	groupState := func(r *redis.Client) string {
		gs := r.XInfoGroups(ctx, g).Val()
		pend := r.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: g, Group: "grp", Start: "-", End: "+", Count: 100}).Val()
		var b strings.Builder
		for _, x := range gs {
			fmt.Fprintf(&b, "group %s last %s consumers %d pending %d; ", x.Name, x.LastDeliveredID, x.Consumers, x.Pending)
		}
		for _, p := range pend {
			fmt.Fprintf(&b, "%s@%s ", p.ID, p.Consumer)
		}
		return b.String()
	}
	if a, b := groupState(src), groupState(copyc); a != b {
		t.Errorf("group state after applying the outbox:\n dc1:  %s\n copy: %s", a, b)
	}
}

// TestOneDCNoOutbox: with one DC writes are forwarded as they are: no outbox.
func TestOneDCNoOutbox(t *testing.T) {
	tc := startCluster(t, 1, 1, Config{})
	ctx := ctxT(t)
	c := tc.client(0)
	if tc.servers[0].snap.Load().multiDC {
		t.Fatal("MultiDC true with one DC")
	}
	k := "plain"
	c.Set(ctx, k, "v", 0)
	c.MSet(ctx, "x", "1", "y", "2")
	c.Eval(ctx, "return redis.call('SET', KEYS[1], 'z')", []string{"z"})
	for _, key := range []string{k, "x", "y", "z"} {
		if n := tc.direct(0).Exists(ctx, xdc.OutboxKey(slotOf(key))).Val(); n != 0 {
			t.Errorf("outbox of %s's slot exists", key)
		}
	}
}

// TestXDCWatchExec: WATCH with a changed key answers the null array; unchanged, the block
// runs as a unit and is recorded.
func TestXDCWatchExec(t *testing.T) {
	tc := startXDC(t, 1, Config{})
	ctx := ctxT(t)
	c, other := tc.client(0), tc.client(0)
	k := "{w}k"
	c.Set(ctx, k, "0", 0)
	err := c.Watch(ctx, func(tx *redis.Tx) error {
		if err := other.Set(ctx, k, "changed", 0).Err(); err != nil {
			return err
		}
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error { p.Set(ctx, k, "mine", 0); return nil })
		return err
	}, k)
	if err != redis.TxFailedErr {
		t.Fatalf("EXEC after a watched key changed: %v", err)
	}
	if v := c.Get(ctx, k).Val(); v != "changed" {
		t.Errorf("value %q", v)
	}
	err = c.Watch(ctx, func(tx *redis.Tx) error {
		cmds, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, k, "mine", 0)
			p.Incr(ctx, "{w}n")
			return nil
		})
		if err == nil && cmds[1].(*redis.IntCmd).Val() != 1 {
			t.Errorf("INCR in EXEC = %v", cmds[1])
		}
		return err
	}, k)
	if err != nil {
		t.Fatal(err)
	}
	wantEffects(t, "watched EXEC", tc.lastEffects(t, slotOf(k)), "set "+k+" mine", "incrby {w}n 1")
}

// TestXDCBlockingPoll: blocking pops are served by polling through WRITE, with the blocking
// reply shapes and the null array on timeout.
func TestXDCBlockingPoll(t *testing.T) {
	tc := startXDC(t, 1, Config{})
	ctx := ctxT(t)
	c, pusher := tc.client(0), tc.client(0)
	got := make(chan []string, 1)
	go func() { got <- c.BLPop(ctx, 5*time.Second, "{b}l1", "{b}l2").Val() }()
	waitFor(t, "BLPOP polling", func() bool { return infoStat(tc.direct(0), "cmdstat_fcall") >= 2 })
	if err := pusher.RPush(ctx, "{b}l2", "x").Err(); err != nil {
		t.Fatal(err)
	}
	if v := <-got; len(v) != 2 || v[0] != "{b}l2" || v[1] != "x" {
		t.Errorf("BLPOP = %q", v)
	}
	wantEffects(t, "BLPOP", tc.lastEffects(t, slotOf("{b}l1")), "LPOP {b}l2 1")
	start := time.Now()
	if err := c.Do(ctx, "BRPOP", "{b}l1", "0.15").Err(); err != redis.Nil {
		t.Errorf("BRPOP on nothing: %v", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 2*time.Second {
		t.Errorf("BRPOP timed out after %s", d)
	}
	c.ZAdd(ctx, "{b}z", redis.Z{Score: 1.5, Member: "m"})
	if v, err := c.BZPopMin(ctx, time.Second, "{b}z").Result(); err != nil || v.Key != "{b}z" || v.Member != "m" || v.Score != 1.5 {
		t.Errorf("BZPOPMIN = %+v, %v", v, err)
	}
	c.RPush(ctx, "{b}src", "y")
	if v, err := c.BLMove(ctx, "{b}src", "{b}dst", "LEFT", "RIGHT", time.Second).Result(); err != nil || v != "y" {
		t.Errorf("BLMOVE = %q, %v", v, err)
	}
	// LMOVE changes two keys: each one's state is recorded (the source emptied: a delete).
	if eff := tc.lastEffects(t, slotOf("{b}src")); len(eff) != 2 || eff[0] != "del {b}src" || !strings.HasPrefix(eff[1], "restore {b}dst 0 ") {
		t.Errorf("BLMOVE: effects %q, want the delete of {b}src and the state of {b}dst", eff)
	}
}

// infoStat returns the calls= count of an INFO commandstats line.
func infoStat(c *redis.Client, name string) int {
	return int(testredis.CommandStat(c.Info(context.Background(), "commandstats").Val(), strings.TrimPrefix(name, "cmdstat_"), "calls"))
}

// TestXDCCopyLockRetry: a write WRITE refuses while the slot's copy lock is set is retried
// until the lock goes (then succeeds), or answers -TRYAGAIN after FreezeWait.
func TestXDCCopyLockRetry(t *testing.T) {
	tc := startXDC(t, 1, Config{FreezeWait: 3 * time.Second})
	ctx := ctxT(t)
	c, d := tc.client(0), tc.direct(0)
	k := "{cl}k"
	lock := xdc.CopyLockKey(slotOf(k))
	d.Set(ctx, lock, "1", 0)
	calls := infoStat(d, "cmdstat_fcall")
	done := make(chan error, 1)
	go func() { done <- c.Set(ctx, k, "v", 0).Err() }()
	waitFor(t, "the write retried", func() bool { return infoStat(d, "cmdstat_fcall") >= calls+2 })
	d.Del(ctx, lock)
	if err := <-done; err != nil {
		t.Fatalf("SET after the lock went: %v", err)
	}
	if v := c.Get(ctx, k).Val(); v != "v" {
		t.Errorf("value %q", v)
	}

	// A lock that stays: -TRYAGAIN after FreezeWait, for writes and for scripts.
	tc.addNode(Config{FreezeWait: 100 * time.Millisecond})
	sc := tc.client(1)
	d.Set(ctx, lock, "1", 0)
	if err := sc.Set(ctx, k, "w", 0).Err(); !isTryAgain(err) {
		t.Errorf("SET under a lock: %v", err)
	}
	if err := sc.Eval(ctx, "return redis.call('SET', KEYS[1], 'x')", []string{k}).Err(); !isTryAgain(err) {
		t.Errorf("EVAL under a lock: %v", err)
	}
	if v := c.Get(ctx, k).Val(); v != "v" {
		t.Errorf("value %q after refused writes", v)
	}
}

// TestXDCScripts: a missing WRITE function (FUNCTION FLUSH on the backend) is a clear error
// and heals; SCRIPT FLUSH through the node leaves WRITE alone, FUNCTION FLUSH and RESTORE
// through it load WRITE again; a restarted backend gets it at dial.
func TestXDCScripts(t *testing.T) {
	tc := startXDC(t, 1, Config{})
	ctx := ctxT(t)
	c, d := tc.client(0), tc.direct(0)
	c.Set(ctx, "s1", "v", 0)
	d.FunctionFlush(ctx)
	if err := c.Set(ctx, "s1", "v", 0).Err(); err == nil || !strings.Contains(err.Error(), "WRITE is not loaded") {
		t.Errorf("SET after a backend FUNCTION FLUSH: %v", err)
	}
	waitFor(t, "WRITE reloaded", func() bool { return c.Set(ctx, "s1", "v", 0).Err() == nil })
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, "s2", "v", 0).Err(); err != nil {
		t.Errorf("SET after SCRIPT FLUSH through redraft: %v", err)
	}
	// A client's FUNCTION FLUSH, or RESTORE with FLUSH, through the node loads the library
	// again before it answers: the next write finds it.
	dump, err := c.FunctionDump(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, flush := range []func() error{
		func() error { return c.FunctionFlush(ctx).Err() },
		func() error { return c.Do(ctx, "FUNCTION", "RESTORE", dump, "FLUSH").Err() },
	} {
		if err := flush(); err != nil {
			t.Fatal(err)
		}
		if err := c.Set(ctx, "s2", "v", 0).Err(); err != nil {
			t.Errorf("SET after FUNCTION FLUSH or RESTORE through redraft: %v", err)
		}
	}
	if err := tc.redis[0].Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a write after the restart", func() bool {
		err := c.Set(ctx, "s3", "v", 0).Err()
		if err != nil && strings.Contains(err.Error(), "not loaded") {
			t.Fatalf("SET after a restart: %v", err)
		}
		return err == nil
	})
}

func TestAppendWriteCall(t *testing.T) {
	calls := []xdc.Call{{Plan: "t3z", Args: []string{"PEXPIREAT", "k", "1000"}, Keys: []string{"k"}},
		{Plan: "n", Args: []string{"GET", "k"}, Keys: []string{"k"}}}
	for _, unit := range []bool{false, true} {
		keys, argv := xdc.WriteArgs(7, "dc1", 1000, unit, calls[:1+btoi(unit)])
		want := []string{"FCALL", xdc.WriteFunc, itoa(len(keys))}
		want = append(want, keys...)
		for _, a := range argv {
			want = append(want, a.(string))
		}
		got := appendWriteCall(nil, 7, "dc1", writeOpts{maxLen: "1000"}, unit, calls[:1+btoi(unit)])
		if string(got) != string(appendCommand(nil, want)) {
			t.Errorf("unit=%v: %q\nwant %q", unit, got, appendCommand(nil, want))
		}
	}
	// With the setting convergence off, the plans go without their class.
	conv := []xdc.Call{{Plan: "t3z/e2", Args: []string{"PEXPIREAT", "k", "1000"}, Keys: []string{"k"}}}
	if got := string(appendWriteCall(nil, 7, "dc1", writeOpts{maxLen: "1000", plain: true}, false, conv)); !strings.Contains(got, "$3\r\nt3z\r\n") {
		t.Errorf("plain: %q", got)
	}
	if got := string(appendWriteCall(nil, 7, "dc1", writeOpts{maxLen: "1000"}, false, conv)); !strings.Contains(got, "$6\r\nt3z/e2\r\n") {
		t.Errorf("converging: %q", got)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestXDCKeylessScriptsInMulti: with several DCs a script cannot run inside MULTI, a block of
// keyless scripts included (it has no slot to build WRITE calls for, and ran raw on a group:
// its write applied in this DC and recorded for no other). EXEC refuses it and nothing runs.
func TestXDCKeylessScriptsInMulti(t *testing.T) {
	tc := startXDC(t, 1, Config{})
	ctx := ctxT(t)
	c := tc.client(0)
	for _, script := range [][]any{
		{"EVAL", "redis.call('SET', 'tx:raw', 'v') return 1", "0"},
		{"EVAL_RO", "return 1", "0"},
	} {
		_, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Do(ctx, script...)
			return nil
		})
		if err == nil || !strings.Contains(err.Error(), "cannot run inside MULTI") {
			t.Fatalf("MULTI %v EXEC: %v, want it refused", script[0], err)
		}
	}
	if n := tc.direct(0).Exists(ctx, "tx:raw").Val(); n != 0 {
		t.Fatal("a keyless script in MULTI wrote the master raw")
	}
	if err := c.Set(ctx, "tx:after", "v", 0).Err(); err != nil {
		t.Fatalf("the session after the refused blocks: %v", err)
	}
}
