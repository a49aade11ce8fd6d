package integration

import (
	"strings"
	"testing"
	"time"
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
	}
	for _, tc := range cases {
		final := map[string]finalValue{"reg:0": {n: tc.final, missing: tc.final == 0}}
		if got := kinds(checkRegisters(tc.ops, final, ms(100))); got != tc.want {
			t.Errorf("%s: violations %q, want %q", tc.name, got, tc.want)
		}
	}
}
