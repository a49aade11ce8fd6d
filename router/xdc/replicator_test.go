package xdc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testredis"
	"github.com/redraft/redraft/migrate"
)

// testDC is one DC of the in-process replication tests: a node id, a replicator and one
// redis-server serving every slot.
type testDC struct {
	name, node string
	redis      *testredis.Server
	rc         *redis.Client
	repl       *Replicator
	down       atomic.Bool // its peer calls fail, in both directions
	// deaf, when set, names a DC whose peer calls to this one fail (a one-way cut).
	deaf atomic.Value
	// held: its node is not acting on the cluster state (node/current.go), and the replicator
	// reads an empty state, as a node's does then.
	held atomic.Bool
	// old: its apply handler refuses the binary form, as a node of a version before it does;
	// v1: it refuses the binary request that asks for a binary answer ("XA2"), as a node of a
	// version before binary answers does.
	old, v1 atomic.Bool
	// answered, when set, runs after its handler of an RPC answered and before the caller
	// gets the answer (a func(name string)).
	answered atomic.Value
}

// testNet is the peers and the shared cluster state of the test DCs.
type testNet struct {
	mu  sync.Mutex
	st  *fsm.State
	dcs map[string]*testDC // by node peer address
}

func (n *testNet) State() *fsm.State { n.mu.Lock(); defer n.mu.Unlock(); return n.st }

// apply commits c to the shared state, as the cluster's Raft log would.
func (n *testNet) apply(t *testing.T, c fsm.Command) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	st, err := fsm.ApplyCommand(n.st, n.st.Index+1, c)
	if err != nil {
		t.Fatal(err)
	}
	n.st = st
}

// nodeOf is what a replicator sees of its node.
type nodeOf struct {
	net *testNet
	dc  *testDC
}

func (c nodeOf) State() *fsm.State {
	if c.dc.held.Load() {
		return fsm.New()
	}
	return c.net.State()
}
func (c nodeOf) ID() string { return c.dc.node }
func (c nodeOf) DC() string { return c.dc.name }

// CallPeer runs the named handler of the node at addr with a JSON round trip, as the peer
// port would.
func (c nodeOf) CallPeer(ctx context.Context, addr, name string, in, out any) error {
	to := c.net.dcs[addr]
	if to == nil {
		return fmt.Errorf("node at %s: unknown", addr)
	}
	if to.down.Load() || c.dc.down.Load() || to.deaf.Load() == c.dc.name {
		return fmt.Errorf("node at %s: connection refused", addr)
	}
	var body []byte
	if raw, ok := in.(interface{ PeerBody() []byte }); ok { // as node.CallPeer posts it
		body = raw.PeerBody()
	} else {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	if name == RPCApply && (to.old.Load() || to.v1.Load() && bytes.HasPrefix(body, []byte(applyMagic))) {
		var req ApplyRequest // what a node before the binary form (or this one) does with the body
		if err := json.Unmarshal(body, &req); err != nil {
			return fmt.Errorf("xdc: bad request: %w", err)
		}
	}
	res, err := to.repl.RPC()[name](ctx, body)
	if f, ok := to.answered.Load().(func(string)); ok && f != nil {
		f(name)
	}
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if raw, ok := res.(interface{ PeerBody() []byte }); ok { // as the node answers it
		if ra, ok := out.(interface{ SetPeerAnswer([]byte) error }); ok {
			return ra.SetPeerAnswer(raw.PeerBody())
		}
		return fmt.Errorf("a binary answer to %s for a caller that reads JSON only", name)
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// InternalOwned serves every assigned slot from the DC's one redis-server, as one group; an
// unassigned slot is left in rest, as the router leaves a slot without an owner.
func (c nodeOf) InternalOwned(ctx context.Context, db int, slots []int, build func(pos, rest []int) [][]string) ([]OwnedReplies, []int, error) {
	var pos, rest []int
	own := c.net.State().DCs[c.dc.name]
	for i, s := range slots {
		if own != nil && own.Slots[s] == "" {
			rest = append(rest, i)
		} else {
			pos = append(pos, i)
		}
	}
	if len(pos) == 0 {
		return nil, rest, nil
	}
	replies, err := c.InternalBatch(ctx, db, 0, nil, build(pos, rest))
	return []OwnedReplies{{Pos: pos, Replies: replies, Err: err}}, rest, nil
}

// InternalBatch runs cmds on the DC's one redis-server (no routing to do with one group).
func (c nodeOf) InternalBatch(ctx context.Context, db, _ int, _ []string, cmds [][]string) ([][]byte, error) {
	// Pipelined, as the router sends a batch to a group.
	out := make([][]byte, len(cmds))
	pipe := c.dc.rc.Pipeline()
	sent := make([]*redis.Cmd, len(cmds))
	for i, args := range cmds {
		a := make([]any, len(args))
		for j, s := range args {
			a[j] = s
		}
		sent[i] = pipe.Do(ctx, a...)
	}
	_, _ = pipe.Exec(ctx) // each command's outcome is its own
	for i, cmd := range sent {
		v, err := cmd.Result()
		var rerr redis.Error
		switch {
		case errors.Is(err, redis.Nil):
			out[i] = []byte("$-1\r\n")
		case errors.As(err, &rerr):
			out[i] = []byte("-" + rerr.Error() + "\r\n")
		case err != nil:
			return nil, err
		default:
			out[i] = encodeReply(nil, v)
		}
	}
	return out, nil
}

func encodeReply(b []byte, v any) []byte {
	switch x := v.(type) {
	case string:
		return fmt.Appendf(b, "$%d\r\n%s\r\n", len(x), x)
	case int64:
		return fmt.Appendf(b, ":%d\r\n", x)
	case []any:
		b = fmt.Appendf(b, "*%d\r\n", len(x))
		for _, e := range x {
			b = encodeReply(b, e)
		}
		return b
	case map[any]any: // a RESP3 map (HGETALL): flattened as RESP2 answers it
		b = fmt.Appendf(b, "*%d\r\n", 2*len(x))
		for k, e := range x {
			b = encodeReply(encodeReply(b, k), e)
		}
		return b
	case nil:
		return append(b, "$-1\r\n"...)
	}
	return fmt.Appendf(b, "+%v\r\n", v)
}

// testLogger is the replicators' logger in tests, each with its DC's name ("dc"); debug
// level with XDC_TEST_DEBUG set.
var testLogger = func() *slog.Logger {
	if os.Getenv("XDC_TEST_DEBUG") == "" {
		return slog.Default()
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}()

// startDCs starts one DC per name, all slots on its one group, and a replicator each.
func startDCs(t *testing.T, names ...string) (*testNet, []*testDC) {
	t.Helper()
	return startDCsWith(t, nil, names...)
}

// startDCsWith is startDCs with each replicator's Config changed by tune first (nil: as is).
func startDCsWith(t *testing.T, tune func(*Config), names ...string) (*testNet, []*testDC) {
	t.Helper()
	n := &testNet{st: fsm.New(), dcs: map[string]*testDC{}}
	var dcs []*testDC
	idx := uint64(0)
	apply := func(c fsm.Command) {
		idx++
		st, err := fsm.ApplyCommand(n.st, idx, c)
		if err != nil {
			t.Fatal(err)
		}
		n.st = st
	}
	for i, name := range names {
		d := &testDC{name: name, node: fmt.Sprintf("n%d", i+1), redis: testredis.Start(t)}
		d.rc = redis.NewClient(&redis.Options{Addr: d.redis.Addr})
		t.Cleanup(func() { d.rc.Close() })
		peer := fmt.Sprintf("peer-%d", i+1)
		apply(&fsm.AddNode{Node: fsm.Node{ID: d.node, DC: name, Peer: peer, Listen: "l" + peer, Admin: "a" + peer}})
		apply(&fsm.AddGroup{DC: name, Group: fsm.Group{ID: "g-" + name, Master: d.redis.Addr}})
		apply(&fsm.AssignSlots{DC: name, Group: "g-" + name, Ranges: []fsm.SlotRange{{From: 0, To: fsm.NumSlots - 1}}})
		n.dcs[peer] = d
		dcs = append(dcs, d)
	}
	apply(&fsm.SetSetting{Key: "outbox_max_entries", Value: "1000"})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, d := range dcs {
		c := nodeOf{net: n, dc: d}
		cfg := Config{Cluster: c, Peers: c, Local: c, Heartbeat: 100 * time.Millisecond, Block: 200 * time.Millisecond, OutboxScan: 200 * time.Millisecond, CollectEvery: 100 * time.Millisecond, TombstoneMargin: time.Millisecond,
			Logger: testLogger.With("dc", d.name)}
		if tune != nil {
			tune(&cfg)
		}
		d.repl = New(cfg)
	}
	// Every replicator exists before any runs: a running one calls the others' at once.
	for _, d := range dcs {
		wg.Add(1)
		go func() { defer wg.Done(); d.repl.Run(ctx) }()
	}
	return n, dcs
}

// writeCmd runs call on slot through WRITE in dc, into the group's log when the cluster's
// data format has group logs.
func (d *testDC) writeCmd(slot int, c Call) *redis.Cmd { return d.writeCalls(slot, false, []Call{c}) }

// writeCalls runs calls through WRITE in dc, as one unit when unit is set, recorded where the
// cluster's data format puts them (the slot's outbox or the group's log).
func (d *testDC) writeCalls(slot int, unit bool, calls []Call) *redis.Cmd {
	keys, argv := WriteArgs(slot, d.name, 1000, unit, calls)
	if d.repl.cfg.Cluster.State().Format() >= LogDataFormat {
		keys, argv = WriteLogArgs(slot, d.name, 1000, unit, calls)
	}
	return FCall(context.Background(), d.rc, WriteFunc, keys, argv...)
}

// write runs one write through WRITE in dc.
func (d *testDC) write(t *testing.T, args ...string) {
	t.Helper()
	c, err := Prepare(args)
	if err != nil {
		t.Fatal(err)
	}
	slot := slotString(c.Keys[0])
	for {
		err = d.writeCmd(slot, c).Err()
		if err == nil || errors.Is(err, redis.Nil) {
			d.repl.Wrote(0, slot)
			return
		}
		if len(err.Error()) >= 8 && err.Error()[:8] == "TRYAGAIN" {
			continue
		}
		t.Fatalf("write %v in %s: %v", args, d.name, err)
	}
}

func slotString(k string) int { return migrate.SlotString(k) }

// waitEqual polls until get returns want in every DC.
func waitEqual(t *testing.T, dcs []*testDC, d time.Duration, what string, get func(*testDC) (string, error), want string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		var last string
		ok := true
		for _, dc := range dcs {
			v, err := get(dc)
			if err != nil || v != want {
				ok, last = false, fmt.Sprintf("%s in %s: %q (%v), want %q", what, dc.name, v, err, want)
				break
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestReplicatorShipsTrimsAndReportsLag(t *testing.T) {
	_, dcs := startDCs(t, "a", "b", "c")
	a := dcs[0]
	for i := 0; i < 500; i++ {
		a.write(t, "INCR", "{k1}counter")
		a.write(t, "SADD", fmt.Sprintf("set%d", i%7), fmt.Sprint(i))
	}
	dcs[1].write(t, "SET", "fromb", "v", "EX", "1000")
	get := func(key string) func(*testDC) (string, error) {
		return func(d *testDC) (string, error) { return d.rc.Get(context.Background(), key).Result() }
	}
	waitEqual(t, dcs, 10*time.Second, "counter", get("{k1}counter"), "500")
	waitEqual(t, dcs, 10*time.Second, "fromb", get("fromb"), "v")
	// Every DC applied it all: the outbox keeps at most the last entry per slot.
	waitEqual(t, dcs[:1], 10*time.Second, "outbox length", func(d *testDC) (string, error) {
		n, err := d.rc.XLen(context.Background(), OutboxKey(slotString("{k1}counter"))).Result()
		return fmt.Sprint(n <= 2), err
	}, "true")
	rep := a.repl.Report()
	if len(rep.Pairs) != 2 {
		t.Fatalf("pairs %+v", rep.Pairs)
	}
	for _, p := range rep.Pairs {
		if p.Shipped < 1000 || p.State != "ok" || p.LagP99MS <= 0 {
			t.Errorf("pair %+v", p)
		}
	}
}

func TestReplicatorCatchesUpAndCopiesPastTheBound(t *testing.T) {
	_, dcs := startDCs(t, "a", "b", "c")
	a, b, c := dcs[0], dcs[1], dcs[2]
	a.write(t, "RPUSH", "{hot}l", "base")
	waitEqual(t, dcs, 10*time.Second, "l", stateOf("{hot}l"), "list [base]")
	c.down.Store(true)
	// Past the bound (1000, trimmed approximately) on one slot, and a few entries on another.
	for i := 0; i < 3000; i++ {
		a.write(t, "INCR", "{hot}n")
	}
	a.write(t, "RPUSH", "{hot}l", "a1")
	b.write(t, "RPUSH", "{hot}fromb", "x")
	b.write(t, "SET", "{cold}k", "v")
	a.write(t, "DEL", "{hot}gone")
	get := func(key string) func(*testDC) (string, error) {
		return func(d *testDC) (string, error) { return d.rc.Get(context.Background(), key).Result() }
	}
	waitEqual(t, dcs[:2], 10*time.Second, "counter in a, b", get("{hot}n"), "3000")
	// a and b are up: they got every entry; c is down: past the bound its entries go.
	// (30 s: once, in a whole run of the package under -race on a slow machine, the trim came
	// later than 10 s.)
	waitEqual(t, dcs[:1], 30*time.Second, "a's outbox trimmed past c", func(d *testDC) (string, error) {
		n, err := d.rc.XLen(context.Background(), OutboxKey(slotString("{hot}n"))).Result()
		return fmt.Sprint(n < 1000), err
	}, "true")
	// c writes while cut off too: its own entries must survive the copy; its push, later
	// than a's, wins the list everywhere (the copy keeps c's newer state).
	c.write(t, "SET", "{hot}fromc", "c1")
	later()
	c.write(t, "RPUSH", "{hot}l", "c1")
	c.down.Store(false)
	waitEqual(t, dcs, 20*time.Second, "l", stateOf("{hot}l"), "list [base c1]")
	waitEqual(t, dcs, 20*time.Second, "counter", get("{hot}n"), "3000")
	waitEqual(t, dcs, 20*time.Second, "fromc", get("{hot}fromc"), "c1")
	waitEqual(t, dcs, 20*time.Second, "cold", get("{cold}k"), "v")
	waitEqual(t, dcs, 20*time.Second, "list", func(d *testDC) (string, error) {
		v, err := d.rc.LRange(context.Background(), "{hot}fromb", 0, -1).Result()
		return fmt.Sprint(v), err
	}, "[x]")
	waitEqual(t, dcs[:1], 10*time.Second, "slots copied in full to c", func(*testDC) (string, error) {
		var copied int64
		for _, d := range []*testDC{a, b} {
			for _, p := range d.repl.Report().Pairs {
				copied += p.Copied
			}
		}
		return fmt.Sprint(copied > 0), nil
	}, "true")
	// Shipping goes on exactly once after the copy.
	for i := 0; i < 10; i++ {
		a.write(t, "INCR", "{hot}n")
	}
	waitEqual(t, dcs, 10*time.Second, "counter after", get("{hot}n"), "3010")
}

// TestCopyIntoLockedSlotIsRefused: a copy into a slot whose copy lock another copy holds is
// refused and changes nothing; once the lock is gone the copy runs and releases its own lock.
func TestCopyIntoLockedSlotIsRefused(t *testing.T) {
	_, dcs := startDCs(t, "dc1", "dc2", "dc3")
	ctx := context.Background()
	dc3 := dcs[2]
	key := "{c}k"
	slot := slotString(key)
	dc3.rc.Set(ctx, key, "dc3's", 0)
	dc3.rc.Set(ctx, CopyLockKey(slot), "in:dc2:other", time.Minute)
	req := CopyRequest{Source: "dc1", Slot: slot, Last: "5-0", Inbox: map[string]string{}}
	if _, err := dc3.repl.HandleCopy(ctx, req); err == nil || !strings.Contains(err.Error(), "being copied already") {
		t.Fatalf("copy into a locked slot: %v", err)
	}
	if v, _ := dc3.rc.Get(ctx, CopyLockKey(slot)).Result(); v != "in:dc2:other" {
		t.Fatalf("the other copy's lock became %q", v)
	}
	if v, _ := dc3.rc.Get(ctx, key).Result(); v != "dc3's" {
		t.Fatalf("a refused copy changed the slot: %q", v)
	}
	dc3.rc.Del(ctx, CopyLockKey(slot))
	if _, err := dc3.repl.HandleCopy(ctx, req); err != nil {
		t.Fatalf("copy into a free slot: %v", err)
	}
	if n, _ := dc3.rc.Exists(ctx, key, CopyLockKey(slot)).Result(); n != 0 {
		t.Fatalf("after the copy %d of the old key and the lock remain", n)
	}
	if v, _ := dc3.rc.HGet(ctx, InboxKey(slot), "dc1").Result(); v != "5-0" {
		t.Fatalf("inbox for dc1 %q, want 5-0", v)
	}
}

// A database whose only keys are a migration's fence or a flush's mark is not in use: counting
// it started log shippers and per-slot loops for each of the server's databases. Fails when
// scanDatabases counts every database INFO keyspace lists.
func TestMarksAloneLeaveADatabaseUnused(t *testing.T) {
	dcs := startDCsAt(t, LogDataFormat, "a", "b")
	a := dcs[0]
	ctx := context.Background()
	for db := 1; db < 16; db++ {
		c := redis.NewClient(&redis.Options{Addr: a.redis.Addr, DB: db})
		if err := c.HSet(ctx, migrate.FenceKey, "m1:fwd", "over").Err(); err != nil {
			t.Fatal(err)
		}
		switch db {
		case 2:
			if err := c.Set(ctx, FlushFenceKey, "x", 0).Err(); err != nil {
				t.Fatal(err)
			}
		case 7:
			if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
		c.Close()
	}
	a.repl.scanDatabases(ctx)
	if got := fmt.Sprint(a.repl.databases(a.redis.Addr)); got != "[0 7]" {
		t.Fatalf("databases in use: %s, want [0 7]", got)
	}
}
