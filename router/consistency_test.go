package router

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testredis"
	"github.com/redraft/redraft/router/xdc"
)

// TestConsistencyCommands: REDRAFT CONSISTENCY sets and answers the session's level,
// DYNO_CONFIG:CONN_CONSISTENCY takes Dynomite's names, and a bad level is a clear error.
func TestConsistencyCommands(t *testing.T) {
	tc := startXDC(t, 1, Config{})
	ctx := ctxT(t)
	c := tc.client(0).Conn() // one session
	defer c.Close()
	get := func() string { return c.Do(ctx, "REDRAFT", "CONSISTENCY").Val().(string) }
	if v := get(); v != "DC_ONE" {
		t.Errorf("default level %q", v)
	}
	for _, tt := range []struct{ cmd, level, want string }{
		{"REDRAFT", "dc_quorum", "DC_QUORUM"},
		{"REDRAFT", "DC_each_safe_quorum", "DC_EACH_SAFE_QUORUM"},
		{"DYNO_CONFIG:CONN_CONSISTENCY", "dc_safe_quorum", "DC_QUORUM"},
		{"dyno_config:conn_consistency", "DC_ONE", "DC_ONE"},
		{"REDRAFT", "default", "DC_ONE"},
	} {
		args := []any{tt.cmd, tt.level}
		if tt.cmd == "REDRAFT" {
			args = []any{tt.cmd, "CONSISTENCY", tt.level}
		}
		if v, err := c.Do(ctx, args...).Text(); err != nil || v != "OK" {
			t.Errorf("%v = %q, %v", args, v, err)
		}
		if v := get(); v != tt.want {
			t.Errorf("after %v: level %q, want %s", args, v, tt.want)
		}
	}
	for _, args := range [][]any{{"REDRAFT", "CONSISTENCY", "ALL"}, {"DYNO_CONFIG:CONN_CONSISTENCY", "nope"}} {
		err := c.Do(ctx, args...).Err()
		if err == nil || !strings.Contains(err.Error(), "accepted: DC_ONE, DC_QUORUM, DC_SAFE_QUORUM, DC_EACH_SAFE_QUORUM") {
			t.Errorf("%v: %v", args, err)
		}
	}
	// The cluster's default comes from the setting.
	st, err := fsm.ApplyCommand(tc.st, tc.st.Index+1, &fsm.SetSetting{Key: "write_consistency", Value: "dc_quorum"})
	if err != nil {
		t.Fatal(err)
	}
	tc.servers[0].SetState(st)
	c.Ping(ctx) // a new batch reads the new snapshot
	if v := get(); v != "DC_QUORUM" {
		t.Errorf("level with write_consistency DC_QUORUM: %q", v)
	}
}

// setReplicas lists replicas for group g1 of tc's state and gives it to the routers.
func setReplicas(t *testing.T, tc *testCluster, replicas ...string) {
	t.Helper()
	g := *tc.st.DCs["dc1"].Groups["g1"]
	g.Replicas = replicas
	st, err := fsm.ApplyCommand(tc.st, tc.st.Index+1, &fsm.UpdateGroup{DC: "dc1", Group: g})
	if err != nil {
		t.Fatal(err)
	}
	tc.st = st
	for _, s := range tc.servers {
		s.SetState(st)
	}
}

// TestQuorumNotReached: a DC_QUORUM write whose group lists a replica that is not connected
// answers, within the timeout, an error saying so; the write was applied.
func TestQuorumNotReached(t *testing.T) {
	tc := startCluster(t, 1, 1, Config{QuorumTimeout: 200 * time.Millisecond})
	setReplicas(t, tc, "127.0.0.1:1")
	ctx := ctxT(t)
	c := tc.client(0).Conn()
	defer c.Close()
	if err := c.Do(ctx, "REDRAFT", "CONSISTENCY", "DC_QUORUM").Err(); err != nil {
		t.Fatal(err)
	}
	for _, write := range []func() error{
		func() error { return c.Set(ctx, "q", "v", 0).Err() },
		func() error { return c.MSet(ctx, "q1", "1", "q2", "2").Err() },
		func() error {
			_, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error { p.Incr(ctx, "qn"); return nil })
			return err
		},
		// Writes that answer a null, and a keyless MULTI block: until session 43 answered
		// at once, without their WAIT.
		func() error { return c.SetArgs(ctx, "qnx", "v", redis.SetArgs{Mode: "NX", Get: true}).Err() },
		func() error { return c.Eval(ctx, "redis.call('INCR', KEYS[1])", []string{"qs"}).Err() },
		func() error {
			_, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Eval(ctx, "redis.call('INCR', 'qk') return 1", nil)
				return nil
			})
			return err
		},
	} {
		start := time.Now()
		err := write()
		if err == nil || !strings.Contains(err.Error(), "write consistency DC_QUORUM not reached (0 of 1 replicas acknowledged in 200ms); the write was applied on the master and may still replicate") {
			t.Errorf("DC_QUORUM write: %v", err)
		}
		if d := time.Since(start); d < 200*time.Millisecond || d > 3*time.Second {
			t.Errorf("DC_QUORUM write answered after %s", d)
		}
	}
	// A pop whose level is missed answers what it removed: the error alone lost it for good.
	// Counted and logged instead.
	if err := c.RPush(ctx, "ql", "a", "b", "c").Err(); err == nil || !strings.Contains(err.Error(), "not reached") {
		t.Fatalf("RPUSH at DC_QUORUM: %v", err)
	}
	before := tc.servers[0].handedOver.Load()
	if v, err := c.LPop(ctx, "ql").Result(); err != nil || v != "a" {
		t.Errorf("LPOP with the level missed = %q, %v; want the element", v, err)
	}
	if v, err := c.BLPop(ctx, time.Second, "ql").Result(); err != nil || len(v) != 2 || v[1] != "b" {
		t.Errorf("BLPOP with the level missed = %q, %v; want the element", v, err)
	}
	if v, err := c.GetDel(ctx, "q").Result(); err != nil || v != "v" {
		t.Errorf("GETDEL with the level missed = %q, %v; want the value", v, err)
	}
	if n := tc.servers[0].handedOver.Load() - before; n != 3 {
		t.Errorf("%d pops counted as handed over with their level missed, want 3", n)
	}
	c.Set(ctx, "q", "v", 0)
	// A write whose null says it changed nothing (a pop of nothing) does not wait.
	if err := c.LPop(ctx, "qempty").Err(); err != redis.Nil {
		t.Errorf("LPOP of nothing at DC_QUORUM: %v, want a null at once", err)
	}
	if v := c.Get(ctx, "q").Val(); v != "v" {
		t.Errorf("GET after the write = %q", v)
	}
	if v := c.Get(ctx, "qn").Val(); v != "1" {
		t.Errorf("GET qn = %q", v)
	}
	// DC_ONE does not wait.
	c.Do(ctx, "REDRAFT", "CONSISTENCY", "DC_ONE")
	if err := c.Set(ctx, "q", "w", 0).Err(); err != nil {
		t.Errorf("DC_ONE write: %v", err)
	}
}

// TestQuorumReached: with a real replica, DC_QUORUM writes through WRITE succeed.
func TestQuorumReached(t *testing.T) {
	tc := startXDC(t, 1, Config{QuorumTimeout: 5 * time.Second})
	tc.direct(0).ConfigSet(context.Background(), "repl-diskless-sync-delay", "0")
	replica := testredis.Start(t, testredis.WithArgs("--replicaof", "127.0.0.1", strconv.Itoa(tc.redis[0].Port)))
	setReplicas(t, tc, replica.Addr)
	ctx := ctxT(t)
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr})
	defer rc.Close()
	waitFor(t, "the replica in sync", func() bool {
		return strings.Contains(rc.Info(ctx, "replication").Val(), "master_link_status:up")
	})
	c := tc.client(0, func(o *redis.Options) { o.ReadTimeout = 10 * time.Second }).Conn()
	defer c.Close()
	c.Do(ctx, "REDRAFT", "CONSISTENCY", "DC_QUORUM")
	if err := c.Set(ctx, "r", "v", 0).Err(); err != nil {
		t.Fatalf("DC_QUORUM write: %v", err)
	}
	if v := rc.Get(ctx, "r").Val(); v != "v" {
		t.Errorf("replica has %q right after the DC_QUORUM write", v)
	}
	if es := tc.outbox(t, slotOf("r")); len(es) != 1 {
		t.Errorf("outbox %v", es)
	}
}

// TestEachSafeQuorum: a DC_EACH_SAFE_QUORUM write calls AwaitDCs with an id at or after its
// outbox entry, and answers AwaitDCs's failure (or timeout) as the level not reached.
func TestEachSafeQuorum(t *testing.T) {
	var mu sync.Mutex
	var gotSlot int
	var gotID, gotGroup string
	var fail error
	await := func(ctx context.Context, db, slot int, group, id string) error {
		mu.Lock()
		gotSlot, gotID, gotGroup = slot, id, group
		err := fail
		mu.Unlock()
		if errors.Is(err, context.DeadlineExceeded) {
			<-ctx.Done()
			return ctx.Err()
		}
		return err
	}
	tc := startXDC(t, 1, Config{AwaitDCs: await, EachDCTimeout: 150 * time.Millisecond})
	ctx := ctxT(t)
	c := tc.client(0).Conn()
	defer c.Close()
	c.Do(ctx, "REDRAFT", "CONSISTENCY", "DC_EACH_SAFE_QUORUM")
	k := "each"
	if err := c.Set(ctx, k, "v", 0).Err(); err != nil {
		t.Fatalf("DC_EACH_SAFE_QUORUM write: %v", err)
	}
	es := tc.outbox(t, slotOf(k))
	mu.Lock()
	if len(es) != 1 || gotSlot != slotOf(k) || gotGroup != "" || xdc.CompareIDs(gotID, es[0].ID) < 0 {
		t.Errorf("AwaitDCs(slot %d, group %q, %s), outbox %v", gotSlot, gotGroup, gotID, es)
	}
	fail = errors.New("dc2 is down")
	mu.Unlock()
	err := c.Set(ctx, k, "w", 0).Err()
	if err == nil || !strings.Contains(err.Error(), "write consistency DC_EACH_SAFE_QUORUM not reached") || !strings.Contains(err.Error(), "dc2 is down") {
		t.Errorf("write with AwaitDCs failing: %v", err)
	}
	mu.Lock()
	fail = context.DeadlineExceeded
	mu.Unlock()
	err = c.Incr(ctx, "{each}n").Err()
	if err == nil || !strings.Contains(err.Error(), "within 150ms") {
		t.Errorf("write with AwaitDCs timing out: %v", err)
	}
	if v := c.Get(ctx, "{each}n").Val(); v != "1" {
		t.Errorf("the write was not applied: %q", v)
	}
	// Pops through WRITE (and a blocking one, polled) answer what they removed with the level
	// missed: the error alone lost the element in every DC.
	mu.Lock()
	fail = errors.New("dc2 is down")
	mu.Unlock()
	c.RPush(ctx, "{each}l", "a", "b")
	if v, err := c.RPop(ctx, "{each}l").Result(); err != nil || v != "b" {
		t.Errorf("RPOP with the level missed = %q, %v; want the element", v, err)
	}
	if v, err := c.BRPop(ctx, time.Second, "{each}l").Result(); err != nil || len(v) != 2 || v[1] != "a" {
		t.Errorf("BRPOP with the level missed = %q, %v; want the element", v, err)
	}
	// In RESP3 shape (this client speaks RESP3): the score a double, not a bulk string.
	c.ZAdd(ctx, "{each}z", redis.Z{Score: 1.5, Member: "m"})
	if v, err := c.Do(ctx, "ZPOPMIN", "{each}z").Slice(); err != nil || len(v) != 2 || v[0] != "m" || v[1] != 1.5 {
		t.Errorf("ZPOPMIN with the level missed = %#v, %v; want [m 1.5] with a double", v, err)
	}
}

// TestInternalDuringMigration: Internal runs on the target of a migrating slot after moving
// its keys, with reserved keys allowed, and runs APPLY (loaded on every connection).
func TestInternalDuringMigration(t *testing.T) {
	mt := newXDCMigTest(t)
	ctx := ctxT(t)
	s, c := mt.tc.servers[0], mt.tc.client(0)
	k := keysIn("in", 0, 99, 1)[0]
	slot := slotOf(k)
	if err := c.Set(ctx, k, "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	id := mt.start(0, 99)
	mt.ack(id)
	raw, err := s.Internal(ctx, 0, slot, []string{k}, []string{"GET", k})
	if err != nil || string(raw) != "$1\r\nv\r\n" {
		t.Fatalf("Internal GET = %q, %v", raw, err)
	}
	if mt.tc.direct(0).Exists(ctx, k).Val() != 0 || mt.tc.direct(1).Exists(ctx, k).Val() != 1 {
		t.Error("the key did not move to the target")
	}
	e := xdc.Entry{ID: "5-1", DC: "dc2", Cmds: [][]string{{"SET", k, "remote"}}}
	keys, argv := xdc.ApplyArgs(slot, e, "", "")
	args := []string{"FCALL", xdc.ApplyFunc, strconv.Itoa(len(keys))}
	args = append(args, keys...)
	for _, a := range argv {
		args = append(args, a.(string))
	}
	raw, err = s.Internal(ctx, 0, slot, keys, args)
	if err != nil || !strings.HasPrefix(string(raw), "*5\r\n$7\r\napplied\r\n:0\r\n") {
		t.Fatalf("Internal APPLY = %q, %v", raw, err)
	}
	if v := mt.tc.direct(1).Get(ctx, k).Val(); v != "remote" {
		t.Errorf("after APPLY the target has %q", v)
	}
	inbox := xdc.InboxKey(slot)
	raw, err = s.Internal(ctx, 0, slot, []string{inbox}, []string{"HGET", inbox, "dc2"})
	if err != nil || string(raw) != "$3\r\n5-1\r\n" {
		t.Errorf("Internal HGET inbox = %q, %v", raw, err)
	}
	// A write through the router moves the outbox to the target before appending to it; the
	// applied remote write is not recorded.
	if err := c.Set(ctx, k, "again", 0).Err(); err != nil {
		t.Fatal(err)
	}
	es, err := xdc.ReadOutbox(ctx, mt.tc.direct(1), slot, "", 10)
	if err != nil || len(es) != 2 || es[0].Cmds[0][4] != "v" || es[1].Cmds[0][4] != "again" {
		t.Errorf("outbox on the target: %v, %v", es, err)
	}
	if n := mt.tc.direct(0).Exists(ctx, xdc.OutboxKey(slot)).Val(); n != 0 {
		t.Error("the outbox is still on the source")
	}
	if _, err := s.Internal(ctx, 0, slot, []string{"elsewhere"}, []string{"GET", "elsewhere"}); err == nil {
		t.Error("Internal with a key of another slot succeeded")
	}
	// Concurrent use.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if raw, err := s.Internal(ctx, 0, slot, []string{k}, []string{"GET", k}); err != nil || string(raw) != "$5\r\nagain\r\n" {
				t.Errorf("goroutine %d: %q, %v", i, raw, err)
			}
		}()
	}
	wg.Wait()
}

// TestSplitWriteSendsEveryPiece: an MSET over two groups at DC_QUORUM, one of whose groups
// misses its quorum, still sets every key: the error says the write was applied, and it is,
// all of it. Until session 43 the pieces after the one that missed were never sent.
func TestSplitWriteSendsEveryPiece(t *testing.T) {
	tc := startCluster(t, 2, 1, Config{QuorumTimeout: 200 * time.Millisecond})
	setReplicas(t, tc, "127.0.0.1:1") // g1's quorum is missed; g2 has no replica to wait for
	ctx := ctxT(t)
	c := tc.client(0).Conn()
	defer c.Close()
	if err := c.Do(ctx, "REDRAFT", "CONSISTENCY", "DC_QUORUM").Err(); err != nil {
		t.Fatal(err)
	}
	a, b := keyIn("split", 0, 2), keyIn("split", 1, 2)
	for round, keys := range [][]string{{a, b}, {b, a}} {
		err := c.MSet(ctx, keys[0], round, keys[1], round).Err()
		if err == nil || !strings.Contains(err.Error(), "DC_QUORUM not reached") {
			t.Fatalf("MSET %v: %v; want DC_QUORUM not reached", keys, err)
		}
		for _, k := range keys {
			if v := c.Get(ctx, k).Val(); v != strconv.Itoa(round) {
				t.Fatalf("after MSET %v (round %d): %s = %q", keys, round, k, v)
			}
		}
	}
	n, err := c.Del(ctx, a, b).Result()
	if err == nil || !strings.Contains(err.Error(), "DC_QUORUM not reached") {
		t.Fatalf("DEL: %d, %v; want DC_QUORUM not reached", n, err)
	}
	if n := c.Exists(ctx, a, b).Val(); n != 0 {
		t.Fatalf("after DEL: %d keys left", n)
	}
}

// TestNodeWriteConsistency: a node's own write_consistency (Config.WriteConsistency) is its
// sessions' default level in place of the cluster's setting; a session's own level and
// DEFAULT work as before.
func TestNodeWriteConsistency(t *testing.T) {
	tc := startXDC(t, 1, Config{WriteConsistency: fsm.DCEachSafeQuorum})
	ctx := ctxT(t)
	c := tc.client(0).Conn()
	defer c.Close()
	get := func() string { return c.Do(ctx, "REDRAFT", "CONSISTENCY").Val().(string) }
	if v := get(); v != "DC_EACH_SAFE_QUORUM" {
		t.Fatalf("default level with the node's DC_EACH_SAFE_QUORUM: %q", v)
	}
	c.Do(ctx, "REDRAFT", "CONSISTENCY", "DC_ONE")
	if v := get(); v != "DC_ONE" {
		t.Fatalf("session level: %q", v)
	}
	c.Do(ctx, "REDRAFT", "CONSISTENCY", "DEFAULT")
	if v := get(); v != "DC_EACH_SAFE_QUORUM" {
		t.Fatalf("DEFAULT: %q, want the node's level", v)
	}
}

// TestReleasedBlockingWriteReportsItsLevel: a blocking write served and then released (its
// slot frozen) before its WAIT lost its connection; it was answered as if DC_QUORUM had been
// reached. It now says the level is not known, and a pop hands over its element.
func TestReleasedBlockingWriteReportsItsLevel(t *testing.T) {
	mt := newMigTest(t, 1, Config{QuorumTimeout: 200 * time.Millisecond})
	g := *mt.st.DCs["dc1"].Groups["g1"]
	g.Replicas = []string{"127.0.0.1:1"}
	mt.apply(&fsm.UpdateGroup{DC: "dc1", Group: g})
	ctx := ctxT(t)
	c := mt.tc.client(0).Conn()
	defer c.Close()
	if err := c.Do(ctx, "REDRAFT", "CONSISTENCY", "DC_QUORUM").Err(); err != nil {
		t.Fatal(err)
	}
	k, k2 := "{r1}src", "{r1}dst"
	slot := slotOf(k)
	if mt.st.DCs["dc1"].Slots[slot] != "g1" {
		t.Fatalf("slot %d is not g1's", slot)
	}
	c.RPush(ctx, k, "a", "b") // its own level error: applied
	frozen, err := fsm.ApplyCommand(mt.st, mt.st.Index+1, &fsm.StartMigration{DC: "dc1", Slots: []fsm.SlotRange{{From: slot, To: slot}}, To: "g2"})
	if err != nil {
		t.Fatal(err)
	}
	release := func() { mt.tc.servers[0].SetState(frozen) }
	afterBlockingReply.Store(&release)
	defer afterBlockingReply.Store(nil)
	err = c.BLMove(ctx, k, k2, "LEFT", "LEFT", time.Second).Err()
	if err == nil || !strings.Contains(err.Error(), "write consistency DC_QUORUM not known") {
		t.Fatalf("BLMOVE released before its WAIT: %v, want the level not known", err)
	}
	mt.tc.servers[0].SetState(mt.st)
	before := mt.tc.servers[0].handedOver.Load()
	if v, err := c.BLPop(ctx, time.Second, k).Result(); err != nil || len(v) != 2 || v[1] != "b" {
		t.Fatalf("BLPOP released before its WAIT = %q, %v; want the element", v, err)
	}
	if mt.tc.servers[0].handedOver.Load() != before+1 {
		t.Error("the pop's unknown level is not counted")
	}
	if v := mt.tc.direct(0).LRange(ctx, k2, 0, -1).Val(); len(v) != 1 || v[0] != "a" {
		t.Errorf("BLMOVE's destination holds %q", v)
	}
}
