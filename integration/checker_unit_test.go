package integration

import (
	"context"
	"errors"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/internal/testredis"
)

// The checker on hand-written histories: each case breaks one guarantee (or none).

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func kinds(vs []violation) string {
	var k []string
	for _, v := range collapse(vs) {
		k = append(k, v.kind)
	}
	return strings.Join(k, ",")
}

// badRead is an acknowledged read of key whose value is not a number.
func badRead(kind opKind, key, value string, inv, cmp int) op {
	return op{kind: kind, key: key, bad: value, inv: ms(inv), cmp: ms(cmp)}
}

// strange is an operation of key answered an error no fault explains (unknown outcome).
func strange(kind opKind, key, msg string, inv, cmp int) op {
	return op{kind: kind, key: key, out: outUnknown, err: msg, strange: true, inv: ms(inv), cmp: ms(cmp)}
}

func TestCheckerCounters(t *testing.T) {
	incr := func(ret int64, inv, cmp int, out outcome) op {
		return op{kind: opIncr, key: "ctr:0", ret: ret, inv: ms(inv), cmp: ms(cmp), out: out}
	}
	read := func(ret int64, inv, cmp int) op {
		return op{kind: opReadCtr, key: "ctr:0", ret: ret, inv: ms(inv), cmp: ms(cmp)}
	}
	final := func(n int64) map[string]finalValue { return map[string]finalValue{"ctr:0": {n: n}} }
	cases := []struct {
		name  string
		ops   []op
		final int64
		want  string
	}{
		{"clean", []op{incr(1, 0, 1, outOK), incr(2, 2, 3, outOK), read(2, 4, 5), incr(0, 6, 9, outUnknown)}, 3, ""},
		{"unknown not applied", []op{incr(1, 0, 1, outOK), incr(0, 2, 9, outUnknown)}, 1, ""},
		{"failed ones do not count", []op{incr(1, 0, 1, outOK), incr(0, 2, 3, outFailed)}, 2, "counter"},
		{"restart answers 1 again", []op{incr(1, 0, 1, outOK), incr(2, 2, 3, outOK), incr(1, 4, 5, outOK)}, 3, "counter-duplicate,counter-rollback"},
		{"lost at the end", []op{incr(1, 0, 1, outOK), incr(2, 2, 3, outOK)}, 1, "counter"},
		{"read older than an acked INCR", []op{incr(1, 0, 1, outOK), incr(2, 2, 3, outOK), read(1, 4, 5)}, 2, "counter-rollback"},
		{"read of nothing after an ack", []op{incr(1, 0, 1, outOK), read(0, 4, 5)}, 1, "counter-rollback"},
		{"counted twice", []op{incr(1, 0, 1, outOK), read(2, 2, 3)}, 1, "counter-twice"},
		{"concurrent INCRs in any order", []op{incr(2, 0, 5, outOK), incr(1, 1, 4, outOK)}, 2, ""},
		{"read of a value that is not a number", []op{incr(1, 0, 1, outOK), badRead(opReadCtr, "ctr:0", "1x", 2, 3)}, 1, "bad-value"},
		{"INCR answered WRONGTYPE", []op{incr(1, 0, 1, outOK), strange(opIncr, "ctr:0", "WRONGTYPE Operation against a key holding the wrong kind of value", 2, 3)}, 1, "error-reply"},
	}
	for _, tc := range cases {
		if got := kinds(checkCounters(tc.ops, final(tc.final))); got != tc.want {
			t.Errorf("%s: violations %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestCheckerLists(t *testing.T) {
	push := func(e int64, out outcome) op {
		return op{kind: opPush, key: "lst:0", arg: e, out: out}
	}
	ops := []op{push(1, outOK), push(2, outOK), push(3, outUnknown), push(4, outFailed)}
	cases := []struct {
		name string
		list []string
		want string
	}{
		{"clean", []string{"1", "2"}, ""},
		{"unknown applied once", []string{"1", "3", "2"}, ""},
		{"lost", []string{"1"}, "list"},
		{"twice", []string{"1", "2", "1"}, "list"},
		{"unknown twice", []string{"1", "2", "3", "3"}, "list"},
		{"failed applied", []string{"1", "2", "4"}, "list"},
		{"never sent", []string{"1", "2", "99"}, "list"},
	}
	for _, tc := range cases {
		if got := kinds(checkLists(ops, map[string]finalValue{"lst:0": {list: tc.list}})); got != tc.want {
			t.Errorf("%s: violations %q, want %q", tc.name, got, tc.want)
		}
	}
	moved := strange(opPush, "lst:0", "MOVED 3000 127.0.0.1:7001", 5, 6)
	moved.arg = 5
	if got := kinds(checkLists(append(ops, moved), map[string]finalValue{"lst:0": {list: []string{"1", "2"}}})); got != "error-reply" {
		t.Errorf("RPUSH answered MOVED: violations %q, want %q", got, "error-reply")
	}
}

func TestCheckerRegisters(t *testing.T) {
	set := func(v int64, inv, cmp int, out outcome) op {
		return op{kind: opSet, key: "reg:0", arg: v, inv: ms(inv), cmp: ms(cmp), out: out}
	}
	get := func(v int64, inv, cmp int) op {
		return op{kind: opGet, key: "reg:0", ret: v, nilReply: v == 0, inv: ms(inv), cmp: ms(cmp)}
	}
	cases := []struct {
		name  string
		ops   []op
		final int64
		want  string
	}{
		{"clean", []op{get(0, 0, 1), set(1, 2, 3, outOK), get(1, 4, 5), set(2, 6, 7, outOK), get(2, 8, 9)}, 2, ""},
		{"concurrent writes land in either order", []op{set(1, 0, 10, outOK), set(2, 1, 5, outOK), get(1, 11, 12)}, 1, ""},
		{"stale read", []op{set(1, 0, 1, outOK), set(2, 2, 3, outOK), get(1, 4, 5)}, 2, "register-stale"},
		{"nil after an ack", []op{set(1, 0, 1, outOK), get(0, 4, 5)}, 1, "register-nil"},
		{"value never sent", []op{set(1, 0, 1, outOK), get(7, 4, 5)}, 1, "register-unsent"},
		{"failed write read", []op{set(1, 0, 1, outOK), set(2, 2, 3, outFailed), get(2, 4, 5)}, 1, "register-failed"},
		{"unknown write read late", []op{set(1, 0, 1, outUnknown), set(2, 2, 3, outOK), get(1, 4, 5)}, 2, ""},
		{"final value stale", []op{set(1, 0, 1, outOK), set(2, 2, 3, outOK)}, 1, "register-stale"},
		// A value no client wrote (GET answered a string, or another request's reply).
		{"bad value", []op{set(1, 0, 1, outOK), badRead(opGet, "reg:0", "hello", 4, 5)}, 1, "bad-value"},
		{"SET not answered OK", []op{func() op { o := set(1, 0, 1, outOK); o.bad = "QUEUED"; return o }()}, 1, "bad-value"},
		{"GET answered an ERR", []op{set(1, 0, 1, outOK), strange(opGet, "reg:0", "ERR unknown command 'GET'", 4, 5)}, 1, "error-reply"},
		// The refusals the faults cause are no violation.
		{"GET refused", []op{set(1, 0, 1, outOK), func() op {
			o := strange(opGet, "reg:0", "TRYAGAIN slot 0 is being migrated, try again", 4, 5)
			o.strange, o.out = false, outFailed
			return o
		}()}, 1, ""},
	}
	for _, tc := range cases {
		final := map[string]finalValue{"reg:0": {n: tc.final, missing: tc.final == 0}}
		if got := kinds(checkRegisters(tc.ops, final, ms(100))); got != tc.want {
			t.Errorf("%s: violations %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestHistoryRecordsReplies sends the chaos clients' commands (history.record) to a real
// redis-server holding values no chaos client writes: a GET of a value that is not a number is
// an acknowledged read with a bad value, an INCR of it and an RPUSH on a string get error
// replies no fault explains, and the checker reports each. Real error replies (from a script)
// of the refusals faults cause are explained, other codes are not, and neither are replies of
// the wrong shape; refused and cancelled requests are explained.
func TestHistoryRecordsReplies(t *testing.T) {
	srv := testredis.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for k, v := range map[string]string{"ctr:0": "1x", "reg:0": "hello", "lst:0": "a string"} {
		if err := rdb.Set(ctx, k, v, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	h := &history{start: time.Now(), opTime: 10 * time.Second}
	ops := []op{{kind: opReadCtr, key: "ctr:0"}, {kind: opGet, key: "reg:0"}, {kind: opIncr, key: "ctr:0"},
		{kind: opPush, key: "lst:0", arg: 1}, {kind: opSet, key: "reg:1", arg: 2}, {kind: opGet, key: "reg:1"}}
	for i := range ops {
		h.record(rdb, &ops[i])
	}
	want := []struct {
		out     outcome
		bad     string
		strange bool
	}{{outOK, "1x", false}, {outOK, "hello", false}, {outUnknown, "", true}, {outUnknown, "", true}, {outOK, "", false}, {outOK, "", false}}
	for i, w := range want {
		if o := ops[i]; o.out != w.out || o.bad != w.bad || o.strange != w.strange {
			t.Errorf("%s: recorded %v, bad %q, strange %v (%s); want %v, bad %q, strange %v", &o, o.out, o.bad, o.strange, o.err, w.out, w.bad, w.strange)
		}
	}
	if ops[5].ret != 2 || ops[5].nilReply {
		t.Errorf("GET reg:1 after SET 2: %s", &ops[5])
	}
	var vs []violation
	vs = append(vs, checkCounters(ops, nil)...)
	vs = append(vs, checkLists(ops, nil)...)
	vs = append(vs, checkRegisters(ops, nil, h.since())...)
	var got []string
	for _, v := range vs {
		got = append(got, v.kind+" "+v.key)
	}
	sort.Strings(got)
	if g := strings.Join(got, ", "); g != "bad-value ctr:0, bad-value reg:0, error-reply ctr:0, error-reply lst:0" {
		t.Errorf("violations: %s", g)
	}

	// Error replies as a node sends them, through a script.
	for msg, want := range map[string]bool{
		"TRYAGAIN slot 5 is being migrated, try again":                                                 false,
		"CLUSTERDOWN group g1 (127.0.0.1:1) is unavailable: EOF":                                       false,
		"LOADING Redis is loading the dataset in memory":                                               false,
		"READONLY You can't write against a read only replica.":                                        false,
		"ERR redraft node is shutting down":                                                            false,
		"ERR slot 5 is being migrated and moving the request's keys failed: context canceled":          false,
		"ERR slot 5 is something else":                                                                 true,
		"MOVED 5 127.0.0.1:7000":                                                                       true,
		"WRONGTYPE Operation against a key holding the wrong kind of value":                            true,
		"ERR redraft: internal error while serving this connection (logged); the connection is closed": true,
	} {
		err := rdb.Eval(ctx, "return redis.error_reply(ARGV[1])", nil, msg).Err()
		if err == nil || err.Error() != msg {
			t.Fatalf("script's error reply %q: got %v", msg, err)
		}
		if got := unexplained(err); got != want {
			t.Errorf("unexplained(%q) = %v, want %v", msg, got, want)
		}
	}
	// Replies of another shape than the command's.
	for _, script := range []string{"return 'abc'", "return {1, 2}"} {
		cmd := redis.NewIntCmd(ctx, "EVAL", script, 0)
		_ = rdb.Process(ctx, cmd)
		if !unexplained(cmd.Err()) {
			t.Errorf("an integer command answered by %q: %v, want unexplained", script, cmd.Err())
		}
	}
	// Refused and cancelled: explained (failed, unknown).
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	closed := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer closed.Close()
	refused := closed.Get(ctx, "k").Err()
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	cancelled := rdb.Get(cctx, "k").Err()
	for _, err := range []error{refused, cancelled} {
		if err == nil || unexplained(err) {
			t.Errorf("%v: unexplained", err)
		}
	}
	if classify(refused) != outFailed || !errors.Is(cancelled, context.Canceled) {
		t.Errorf("refused: %v, cancelled: %v", classify(refused), cancelled)
	}
}
