package integration

import (
	"context"
	"math/rand"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/internal/testredis"
)

// The convergence checker on hand-written rounds: per family one history the rules explain and
// several they do not. Times are in ms; dc1 and dc2 are two DCs.

// cop builds an operation of key k through dc, invoked at inv and acknowledged at cmp (ms).
func cop(dc string, kind convKind, k string, inv, cmp int, out outcome) *convOp {
	return &convOp{dc: dc, node: dc, kind: kind, cmd: kind.name(), key: k, inv: ms(inv), cmp: ms(cmp), out: out}
}

// name is a readable command name for a kind (the workload records the real one).
func (k convKind) name() string {
	return [...]string{"SET", "SET PX", "GETSET", "APPEND", "SETRANGE", "DEL", "EXPIRE", "INCRBY", "SET", "ADD", "REM", "RPUSH", "LPUSH", "LPOP", "XADD"}[k]
}

func (o *convOp) withTok(t string) *convOp  { o.tok = t; return o }
func (o *convOp) withN(n int64) *convOp     { o.n = n; return o }
func (o *convOp) withReply(n int64) *convOp { o.reply = n; return o }
func (o *convOp) withElem(e string) *convOp { o.elem = e; return o }
func (o *convOp) withStr(s string) *convOp  { o.rstr = s; return o }

// incr is an increment of ±2^exp.
func incr(dc string, k string, exp int, neg bool, inv, cmp int, out outcome) *convOp {
	o := cop(dc, cvIncr, k, inv, cmp, out)
	o.exp, o.n = exp, int64(1)<<exp
	if neg {
		o.n = -o.n
	}
	return o
}

func str(s string, ttl bool) keyState { return keyState{typ: "string", str: s, ttl: ttl} }

var absent = keyState{typ: "none"}

type convCase struct {
	name          string
	before, after keyState
	ops           []*convOp
	want          string // a word every violation must contain; "" for none
}

func runConvCases(t *testing.T, key string, cases []convCase) {
	t.Helper()
	runCases(t, key, cases, checkConvRound)
}

func runCases(t *testing.T, key string, cases []convCase, check func(string, keyState, keyState, []*convOp) []string) {
	t.Helper()
	for _, tc := range cases {
		got := check(key, tc.before, tc.after, tc.ops)
		switch {
		case tc.want == "" && len(got) > 0:
			t.Errorf("%s: want no violation, got:\n%s", tc.name, strings.Join(got, "\n"))
		case tc.want != "" && len(got) == 0:
			t.Errorf("%s: want a violation (%q), got none", tc.name, tc.want)
		case tc.want != "" && !strings.Contains(strings.Join(got, "\n"), tc.want):
			t.Errorf("%s: want a violation about %q, got:\n%s", tc.name, tc.want, strings.Join(got, "\n"))
		}
	}
}

const (
	tA = "v0000001"
	tB = "v0000002"
	tC = "v0000003"
	tD = "v0000004"
)

func TestConvCheckerWhole(t *testing.T) {
	k := "{c}:reg:0"
	a := cop("dc1", cvSet, k, 0, 5, outOK).withTok(tA)
	b := cop("dc2", cvSet, k, 10, 12, outOK).withTok(tB) // surely after a
	bc := cop("dc2", cvSet, k, 3, 8, outOK).withTok(tB)  // concurrent with a
	del := cop("dc2", cvDel, k, 10, 12, outOK).withReply(1)
	delNothing := cop("dc2", cvDel, k, 10, 12, outOK).withReply(0)
	app := cop("dc1", cvAppend, k, 20, 21, outOK).withTok(tC).withReply(16)
	px := cop("dc1", cvSetPX, k, 0, 5, outOK).withTok(tA)
	unknownOld := cop("dc1", cvSet, k, 0, 1, outUnknown).withTok(tC)
	runConvCases(t, k, []convCase{
		{"last writer wins", absent, str(tB, false), []*convOp{a, b}, ""},
		{"concurrent writes: either", absent, str(tA, false), []*convOp{a, bc}, ""},
		{"concurrent writes: the other", absent, str(tB, false), []*convOp{a, bc}, ""},
		{"a late write of unknown outcome may win", absent, str(tC, false), []*convOp{unknownOld, b}, ""},
		{"append onto the winner", absent, str(tB+tC, false), []*convOp{a, b, app}, ""},
		{"a delete is a tombstone", absent, absent, []*convOp{a, del}, ""},
		{"a delete that found nothing does not win", absent, str(tA, false), []*convOp{a, delNothing}, ""},
		{"no write leaves it as it was", str(tD, false), str(tD, false), []*convOp{cop("dc1", cvSet, k, 0, 1, outFailed).withTok(tA)}, ""},
		{"older write won", absent, str(tA, false), []*convOp{a, b}, "no write that may carry the highest stamp"},
		{"resurrected after a later delete", absent, str(tA, false), []*convOp{a, del}, "no write that may carry the highest stamp"},
		{"TTL lost", absent, str(tA, false), []*convOp{px}, "no write that may carry the highest stamp"},
		{"append's length differs", absent, str(tC, false), []*convOp{a, b, app}, "no write that may carry the highest stamp"},
		{"failed write applied", absent, str(tC, false), []*convOp{cop("dc1", cvSet, k, 0, 1, outFailed).withTok(tC)}, "not made of tokens"},
		{"lost write", absent, absent, []*convOp{a}, "no write that may carry the highest stamp"},
	})
}

func TestConvCheckerCounter(t *testing.T) {
	k := "{c}:ctr:0"
	i0 := incr("dc1", k, 0, false, 0, 1, outOK)  // +1, dc1, before the reset
	i1 := incr("dc2", k, 1, false, 0, 1, outOK)  // +2, dc2, concurrent (cross-DC)
	i2 := incr("dc1", k, 2, true, 30, 31, outOK) // -4, after the reset
	i3 := incr("dc2", k, 3, false, 0, 50, outUnknown)
	set := cop("dc1", cvReset, k, 10, 11, outOK).withN(1 << 41)
	ctr := func(n int64) keyState { return str(itoa(n), false) }
	runConvCases(t, k, []convCase{
		{"every increment adds up", ctr(100), ctr(100 + 1 + 2 - 4), []*convOp{i0, i1, i2}, ""},
		{"an unknown increment may count", ctr(100), ctr(100 + 1 + 2 - 4 + 8), []*convOp{i0, i1, i2, i3}, ""},
		{"observed reset: the remote increment counts", ctr(100), ctr(1<<41 + 2 - 4), []*convOp{i0, i1, i2, set}, ""},
		{"observed reset: the remote increment was seen", ctr(100), ctr(1<<41 - 4), []*convOp{i0, i1, i2, set}, ""},
		{"a delete then increments", ctr(100), ctr(-4), []*convOp{i0, cop("dc1", cvDel, k, 10, 11, outOK).withReply(1), i2}, ""},
		{"deleted for good", ctr(100), absent, []*convOp{i0, cop("dc1", cvDel, k, 10, 11, outOK).withReply(1)}, ""},
		{"an increment lost", ctr(100), ctr(100 + 1 - 4), []*convOp{i0, i1, i2}, "not counted"},
		{"an increment counted twice", ctr(100), ctr(100 + 1 + 2 + 2 - 4), []*convOp{i0, i1, i2}, "not explained"},
		{"a failed increment counted", ctr(100), ctr(101), []*convOp{incr("dc1", k, 0, false, 0, 1, outFailed)}, "cannot count"},
		{"an increment after the reset lost", ctr(100), ctr(1 << 41), []*convOp{i0, i1, i2, set}, "not counted"},
		{"an increment the reset had seen counts", ctr(100), ctr(1<<41 + 1 - 4), []*convOp{i0, i2, set}, "cannot count"},
		{"the reset ignored", ctr(100), ctr(100 + 1 - 4), []*convOp{i0, i2, set}, "not explained"},
		{"resurrected by a stale delete", ctr(100), ctr(100 + 1), []*convOp{i0, cop("dc1", cvDel, k, 10, 11, outOK).withReply(1)}, "not explained"},
	})
}

func TestConvCheckerElements(t *testing.T) {
	k := "{c}:hash:0"
	add := func(dc, f, tok string, inv, cmp int, out outcome) *convOp {
		return cop(dc, cvAdd, k, inv, cmp, out).withElem(f).withTok(tok)
	}
	rem := func(dc, f string, inv, cmp int, reply int64) *convOp {
		return cop(dc, cvRem, k, inv, cmp, outOK).withElem(f).withReply(reply)
	}
	h := func(kv ...string) keyState {
		s := keyState{typ: "hash", elems: map[string]string{}}
		for i := 0; i < len(kv); i += 2 {
			s.elems[kv[i]] = kv[i+1]
		}
		if len(kv) == 0 {
			s.typ = "none"
		}
		return s
	}
	addA := add("dc1", "f", tA, 0, 1, outOK)
	remSeen := rem("dc1", "f", 5, 6, 1)            // same DC, after addA: observed it
	addConc := add("dc2", "f", tB, 2, 4, outOK)    // other DC, concurrent with the remove
	addLater := add("dc2", "f", tC, 10, 11, outOK) // invoked after the remove was acknowledged
	runCases(t, k, []convCase{
		{"add then observed remove", h(), h(), []*convOp{addA, remSeen}, ""},
		{"a concurrent add may survive", h(), h("f", tB), []*convOp{addA, remSeen, addConc}, ""},
		{"or be removed", h(), h(), []*convOp{addA, remSeen, addConc}, ""},
		{"add after remove wins", h(), h("f", tC), []*convOp{addA, remSeen, addLater}, ""},
		{"present before, removed", h("f", tD), h(), []*convOp{rem("dc2", "f", 0, 1, 1)}, ""},
		{"an add of another element lost", h("f", tD), h("f", tD), []*convOp{add("dc1", "g", tA, 0, 1, outOK)}, "lacks \"g\""},
		{"add lost", h(), h(), []*convOp{addA, remSeen, addLater}, "observed by no remove"},
		{"resurrected", h(), h("f", tA), []*convOp{addA, remSeen}, "no add of it"},
		{"element vanished", h("f", tD), h(), []*convOp{}, "present before the round"},
		{"stale value", h(), h("f", tA), []*convOp{addA, add("dc2", "f", tB, 10, 11, outOK)}, "not the value"},
		{"failed add applied", h(), h("f", tA), []*convOp{add("dc1", "f", tA, 0, 1, outFailed)}, "no add of it"},
	}, checkElements)
	// The key-level rule, in force while perElement is false.
	runCases(t, k, []convCase{
		{"newest add wins the key", h(), h("f", tB), []*convOp{addA, remSeen, addConc}, ""},
		{"newest remove wins the key", h(), h(), []*convOp{addA, addConc, rem("dc1", "f", 10, 11, 1)}, ""},
		{"add after remove wins", h(), h("f", tC), []*convOp{addA, remSeen, addLater}, ""},
		{"older add won", h(), h("f", tA), []*convOp{addA, remSeen, addLater}, "no write that may carry the highest stamp"},
		{"invented element", h(), h("f", tD), []*convOp{addA}, "which no write put there"},
		{"nothing happened", h("f", tD), h("f", tD), []*convOp{}, ""},
	}, checkKeyLevel)
}

func TestConvCheckerList(t *testing.T) {
	k := "{c}:list:0"
	rp := func(dc, tok string, inv, cmp int, n int64) *convOp {
		return cop(dc, cvRPush, k, inv, cmp, outOK).withTok(tok).withReply(n)
	}
	l := func(e ...string) keyState {
		if len(e) == 0 {
			return absent
		}
		return keyState{typ: "list", list: e}
	}
	a1 := rp("dc1", tA, 0, 1, 2) // onto [tD]
	b1 := rp("dc2", tB, 0, 1, 2) // concurrent, onto [tD]
	b2 := rp("dc2", tC, 10, 11, 3)
	pop := cop("dc1", cvLPop, k, 20, 21, outOK).withStr(tD)
	runConvCases(t, k, []convCase{
		{"the later writer's state", l(tD), l(tD, tB, tC), []*convOp{a1, b1, b2}, ""},
		{"its origin had both", l(tD), l(tD, tA, tB, tC), []*convOp{a1, b1, rp("dc2", tC, 10, 11, 4)}, ""},
		{"a pop wins", l(tD), l(tB), []*convOp{b1, pop}, ""},
		{"an older state won", l(tD), l(tD, tA), []*convOp{a1, b2}, "no write that may carry the highest stamp"},
		{"an element twice", l(tD), l(tD, tA, tA), []*convOp{a1}, "twice"},
		{"reordered", l(tD, tC), l(tC, tD, tA), []*convOp{rp("dc1", tA, 0, 1, 3)}, "not a suffix"},
		{"never written", l(tD), l(tD, tA, tB), []*convOp{rp("dc2", tB, 0, 1, 3)}, "nothing wrote"},
	})
}

func TestConvCheckerStream(t *testing.T) {
	k := "{c}:stream:0"
	xa := func(dc, tok string, inv, cmp int, id string) *convOp {
		return cop(dc, cvXAdd, k, inv, cmp, outOK).withTok(tok).withStr(id)
	}
	s := func(e ...string) keyState { // id, tok pairs
		st := keyState{typ: "stream"}
		for i := 0; i < len(e); i += 2 {
			st.ids, st.list = append(st.ids, e[i]), append(st.list, e[i+1])
		}
		return st
	}
	a := xa("dc1", tA, 0, 1, "5-0")
	b := xa("dc2", tB, 10, 11, "15-0")
	runConvCases(t, k, []convCase{
		{"both, the later last", s("1-0", tD), s("1-0", tD, "5-0", tA, "15-0", tB), []*convOp{a, b}, ""},
		{"the loser's entry dropped", s("1-0", tD), s("1-0", tD, "15-0", tB), []*convOp{a, b}, ""},
		{"the later one lost", s("1-0", tD), s("1-0", tD, "5-0", tA), []*convOp{a, b}, "not one of an XADD"},
		{"an entry before the round lost", s("1-0", tD), s("5-0", tA, "15-0", tB), []*convOp{a, b}, "does not start with"},
		{"an entry under another id", s(), s("6-0", tA), []*convOp{a}, "entry as 6-0"},
		{"nothing added", s("1-0", tD), s("1-0", tD), []*convOp{a}, "gained no entry"},
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestConvCheckerOneRedis runs the convergence workload straight against one redis-server: a
// single copy applies every operation once, in one order, so whatever the interleaving the
// checker must explain every key after every round. This is the check that the rules and the
// recorded replies (lengths, expiries, popped elements, stream ids) match Redis's own semantics.
func TestConvCheckerOneRedis(t *testing.T) {
	srv := testredis.Start(t)
	w := newConvWorkload(convTags(2), 2)
	w.pause = 5 * time.Millisecond
	for i, dc := range []string{"dc1", "dc1", "dc2", "dc2", "dc3", "dc3"} {
		w.clients = append(w.clients, &convClient{id: i, dc: dc, nodes: []*proc{{ID: "redis", Listen: srv.Addr}},
			rnd: rand.New(rand.NewSource(int64(i))), conns: map[string]*redis.Client{}})
	}
	defer w.close()
	before := map[string]keyState{}
	for _, k := range w.keys {
		before[k] = keyState{typ: "none"}
	}
	checked, acked := 0, 0
	for round := 1; round <= 3; round++ {
		ops := w.round(time.Second)
		byKey := map[string][]*convOp{}
		for _, o := range ops {
			byKey[o.key] = append(byKey[o.key], o)
			if o.out == outOK {
				acked++
			}
		}
		after, err := readConvStates(context.Background(), []string{srv.Addr}, w.keys)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range w.keys {
			for _, v := range checkConvRound(k, before[k], after[k], byKey[k]) {
				t.Errorf("round %d: %s", round, v)
			}
			checked++
		}
		before = after
	}
	if acked < 300 {
		t.Errorf("only %d operations acknowledged: the workload barely ran", acked)
	}
	t.Logf("%d key-rounds checked, %d operations acknowledged", checked, acked)
}

func TestConvCheckerFieldCounters(t *testing.T) {
	k := "{c}:fctr:0"
	fi := func(dc string, exp int, neg bool, inv, cmp int, out outcome) *convOp {
		return incr(dc, k, exp, neg, inv, cmp, out).withElem("e0")
	}
	i0 := fi("dc1", 0, false, 0, 1, outOK)  // +1, dc1, before the reset
	i1 := fi("dc2", 1, false, 0, 1, outOK)  // +2, dc2, concurrent (cross-DC)
	i2 := fi("dc1", 2, true, 30, 31, outOK) // -4, after the reset
	set := cop("dc1", cvReset, k, 10, 11, outOK).withN(1 << 41).withElem("e0")
	del := cop("dc1", cvRem, k, 10, 11, outOK).withReply(1).withElem("e0")
	h := func(v int64) keyState {
		return keyState{typ: "hash", elems: map[string]string{"e0": itoa(v)}}
	}
	runCases(t, k, []convCase{
		{"every increment adds up", h(100), h(100 + 1 + 2 - 4), []*convOp{i0, i1, i2}, ""},
		{"an add resets what it saw: the remote increment counts", h(100), h(1<<41 + 2 - 4), []*convOp{i0, i1, i2, set}, ""},
		{"an add resets what it saw: the remote one was seen", h(100), h(1<<41 - 4), []*convOp{i0, i1, i2, set}, ""},
		{"a remove, then an increment makes the field again", h(100), h(-4), []*convOp{i0, del, i2}, ""},
		{"removed for good", h(100), absent, []*convOp{i0, del}, ""},
		{"an increment lost", h(100), h(100 + 1 - 4), []*convOp{i0, i1, i2}, "not counted"},
		{"an increment counted twice", h(100), h(100 + 1 + 2 + 2 - 4), []*convOp{i0, i1, i2}, "not explained"},
		{"the add lost", h(100), h(100 + 1 + 2 - 4), []*convOp{i0, i1, i2, set}, "not explained"},
		{"an increment the add had seen counts", h(100), h(1<<41 + 1 - 4), []*convOp{i0, i2, set}, "cannot count"},
		{"an increment after the remove lost", h(100), absent, []*convOp{i0, del, i2}, "not counted"},
	}, checkConvRound)
}
