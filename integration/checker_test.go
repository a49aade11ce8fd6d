package integration

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The history checker: given every operation the chaos clients recorded and the keys' final
// values, it reports each violation with the operations involved. An acknowledged operation
// happened exactly once, between its invocation and its completion; a failed one never
// happened; an unknown one happened at most once, at any time after its invocation.

// violation is one broken guarantee and the operations that show it.
type violation struct {
	kind string
	key  string        // the key of the operations involved, if any
	at   time.Duration // invocation of the first operation involved (to blame a fault)
	msg  string
	ops  []*op
	more int // further violations of the same kind on the same key (see collapse)
}

func (v violation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", v.kind, v.msg)
	if v.more > 0 {
		fmt.Fprintf(&b, " (and %d more %s violations on %s; the first is shown)", v.more, v.kind, v.key)
	}
	for i, o := range v.ops {
		if i == 6 {
			fmt.Fprintf(&b, "\n    ... %d operations in all", len(v.ops))
			break
		}
		fmt.Fprintf(&b, "\n    %s", o)
	}
	return b.String()
}

func newViolation(kind string, ops []*op, format string, args ...any) violation {
	v := violation{kind: kind, msg: fmt.Sprintf(format, args...), ops: ops}
	if len(ops) > 0 {
		v.at, v.key = ops[0].inv, ops[len(ops)-1].key
	}
	return v
}

// collapse keeps, of the violations of one kind on one key, the earliest, counting the others
// in its more: a lost key shows once, not once per operation that saw it lost.
func collapse(vs []violation) []violation {
	sort.SliceStable(vs, func(i, j int) bool { return vs[i].at < vs[j].at })
	first := map[string]int{}
	var out []violation
	for _, v := range vs {
		id := v.kind + "\x00" + v.key
		if i, ok := first[id]; ok && v.key != "" {
			out[i].more++
			continue
		}
		first[id] = len(out)
		out = append(out, v)
	}
	return out
}

// finalValue is a key's value read at the end, once every fault healed.
type finalValue struct {
	missing bool
	n       int64    // counters and registers
	list    []string // lists
}

// byKey groups ops by key and kind.
func byKey(ops []op, kinds ...opKind) map[string][]*op {
	out := map[string][]*op{}
	for i := range ops {
		o := &ops[i]
		for _, k := range kinds {
			if o.kind == k {
				out[o.key] = append(out[o.key], o)
			}
		}
	}
	return out
}

// checkCounters: every acknowledged INCR counted exactly once. Per counter, with A the
// acknowledged INCRs and U the unknown ones: the final value is within [|A|, |A|+|U|]; no two
// acknowledged INCRs answered the same value; an INCR's answer, and a GET's, is at least the
// number of INCRs acknowledged before it was sent (and at least any answer acknowledged
// before it was sent) and at most the number of INCRs (acknowledged or unknown) sent before it
// completed.
func checkCounters(ops []op, final map[string]finalValue) []violation {
	var out []violation
	for key, kops := range byKey(ops, opIncr, opReadCtr) {
		out = append(out, checkReplies(kops)...)
		var incrs, acked []*op // sent (ok or unknown), acknowledged
		unknown := 0
		for _, o := range kops {
			if o.kind != opIncr || o.out == outFailed {
				continue
			}
			incrs = append(incrs, o)
			if o.out == outOK {
				acked = append(acked, o)
			} else {
				unknown++
			}
		}
		// Same answer twice.
		seen := map[int64]*op{}
		for _, o := range acked {
			if prev := seen[o.ret]; prev != nil {
				out = append(out, newViolation("counter-duplicate", []*op{prev, o}, "two acknowledged INCRs of %s answered %d", key, o.ret))
			}
			seen[o.ret] = o
		}
		// Bounds on each answer from the real-time order.
		byCmp := append([]*op(nil), acked...)
		sort.Slice(byCmp, func(i, j int) bool { return byCmp[i].cmp < byCmp[j].cmp })
		maxRet := make([]int64, len(byCmp)) // the largest answer among byCmp[:i+1]
		for i, o := range byCmp {
			maxRet[i] = o.ret
			if i > 0 {
				maxRet[i] = max(maxRet[i], maxRet[i-1])
			}
		}
		invs := make([]time.Duration, len(incrs))
		for i, o := range incrs {
			invs[i] = o.inv
		}
		sort.Slice(invs, func(i, j int) bool { return invs[i] < invs[j] })
		for _, o := range kops {
			if o.out != outOK || o.bad != "" { // a bad value is checkReplies' violation
				continue
			}
			v := o.ret // a nil GET reads as 0
			// Acknowledged before o was sent: they are in v (an INCR adds itself).
			before := sort.Search(len(byCmp), func(i int) bool { return byCmp[i].cmp >= o.inv })
			low := int64(before)
			if o.kind == opIncr {
				low++
			}
			if before > 0 && maxRet[before-1] > v {
				var w *op
				for _, c := range byCmp[:before] {
					if c.ret == maxRet[before-1] {
						w = c
					}
				}
				out = append(out, newViolation("counter-rollback", []*op{w, o}, "%s read %d after an INCR answered %d was acknowledged (a counter rolled back)", key, v, w.ret))
			} else if v < low {
				out = append(out, newViolation("counter-lost", []*op{o}, "%s = %d, but %d INCRs were acknowledged before it was sent (acknowledged INCRs lost)", key, v, before))
			}
			// Sent (acknowledged or unknown) before o completed: v can be no larger.
			high := int64(sort.Search(len(invs), func(i int) bool { return invs[i] > o.cmp }))
			if v > high {
				out = append(out, newViolation("counter-twice", []*op{o}, "%s = %d, but only %d INCRs were sent before it completed (counted twice)", key, v, high))
			}
		}
		f, ok := final[key]
		if !ok {
			continue
		}
		var n int64
		if !f.missing {
			n = f.n
		}
		if n < int64(len(acked)) || n > int64(len(acked)+unknown) {
			out = append(out, newViolation("counter", nil, "%s ends at %d, want within [%d, %d]: %d acknowledged INCRs, %d unknown", key, n, len(acked), len(acked)+unknown, len(acked), unknown))
		}
	}
	return out
}

// checkLists: every acknowledged RPUSH element is in its list exactly once, an unknown one at
// most once, a failed one not at all, and no element that was never sent.
func checkLists(ops []op, final map[string]finalValue) []violation {
	var out []violation
	pushes := byKey(ops, opPush)
	for _, kops := range pushes {
		out = append(out, checkReplies(kops)...)
	}
	for key, f := range final {
		if !strings.Contains(key, "lst:") {
			continue
		}
		sent := map[string]*op{}
		for _, o := range pushes[key] {
			sent[strconv.FormatInt(o.arg, 10)] = o
		}
		count := map[string]int{}
		for _, e := range f.list {
			count[e]++
		}
		var lost, failedIn, twice []*op
		var never []string
		for e, n := range count {
			o := sent[e]
			switch {
			case o == nil:
				never = append(never, e)
			case o.out == outFailed:
				failedIn = append(failedIn, o)
			case n > 1:
				twice = append(twice, o)
			}
		}
		for _, o := range pushes[key] {
			if o.out == outOK && count[strconv.FormatInt(o.arg, 10)] == 0 {
				lost = append(lost, o)
			}
		}
		for _, l := range [][]*op{lost, failedIn, twice} {
			sort.Slice(l, func(i, j int) bool { return l[i].inv < l[j].inv })
		}
		if len(lost) > 0 {
			out = append(out, newViolation("list", lost, "%s lacks %d acknowledged elements (of %d elements in it)", key, len(lost), len(f.list)))
		}
		if len(twice) > 0 {
			out = append(out, newViolation("list", twice, "%s holds %d elements more than once", key, len(twice)))
		}
		if len(failedIn) > 0 {
			out = append(out, newViolation("list", failedIn, "%s holds %d elements whose RPUSH was answered as not executed", key, len(failedIn)))
		}
		if len(never) > 0 {
			out = append(out, newViolation("list", nil, "%s holds %d elements never sent: %v", key, len(never), never[:min(len(never), 5)]))
		}
	}
	return out
}

// checkRegisters: no read returns a value older than a write acknowledged before the read was
// sent. A read of v is stale when a write acknowledged before the read was sent had itself
// been sent after the write of v was acknowledged (so it is ordered after it); a read of nil is
// stale when any write was acknowledged before it was sent; a read of a value no write sent,
// or of a write answered as failed, is wrong. The final value is checked as a read sent at the
// end.
func checkRegisters(ops []op, final map[string]finalValue, end time.Duration) []violation {
	var out []violation
	for key, rops := range byKey(ops, opSet, opGet) {
		out = append(out, checkReplies(rops)...)
		writes := map[int64]*op{}
		var acked []*op
		for _, o := range rops {
			if o.kind == opSet {
				writes[o.arg] = o
				if o.out == outOK {
					acked = append(acked, o)
				}
			}
		}
		sort.Slice(acked, func(i, j int) bool { return acked[i].cmp < acked[j].cmp })
		// latest[i]: among acked[:i+1], the write sent last.
		latest := make([]*op, len(acked))
		for i, o := range acked {
			latest[i] = o
			if i > 0 && latest[i-1].inv > o.inv {
				latest[i] = latest[i-1]
			}
		}
		reads := []*op{}
		for _, o := range rops {
			if o.kind == opGet && o.out == outOK && o.bad == "" {
				reads = append(reads, o)
			}
		}
		if f, ok := final[key]; ok {
			reads = append(reads, &op{client: -1, node: "final", kind: opGet, key: key, ret: f.n, nilReply: f.missing, inv: end, cmp: end})
		}
		for _, r := range reads {
			before := sort.Search(len(acked), func(i int) bool { return acked[i].cmp >= r.inv })
			if r.nilReply {
				if before > 0 {
					out = append(out, newViolation("register-nil", []*op{latest[before-1], r}, "%s read nil after a SET was acknowledged", key))
				}
				continue
			}
			w := writes[r.ret]
			switch {
			case w == nil:
				out = append(out, newViolation("register-unsent", []*op{r}, "%s read %d, which no SET sent", key, r.ret))
			case w.inv > r.cmp:
				out = append(out, newViolation("register-future", []*op{r, w}, "%s read %d before the SET of it was sent", key, r.ret))
			case w.out == outFailed:
				out = append(out, newViolation("register-failed", []*op{w, r}, "%s read %d, written by a SET answered as not executed", key, r.ret))
			case w.out == outOK && before > 0 && latest[before-1].inv > w.cmp:
				out = append(out, newViolation("register-stale", []*op{w, latest[before-1], r}, "%s read %d, older than a SET acknowledged before the read was sent (stale read)", key, r.ret))
			}
		}
	}
	return out
}

// checkReplies: every acknowledged answer is one its command can give, and no operation got an
// error that no fault explains. A GET of a counter or a register that is not a number, SET not
// answering OK, RPUSH answering a length below 1 ("bad-value"), and an error reply other than
// the refusals the faults cause, such as WRONGTYPE, MOVED or another ERR, or a reply of another
// shape ("error-reply", see unexplained in history_test.go) mean a value was corrupted or a
// client got the reply meant for another request. collapse keeps one of each per key.
func checkReplies(ops []*op) []violation {
	var out []violation
	for _, o := range ops {
		switch {
		case o.out == outOK && o.bad != "":
			out = append(out, newViolation("bad-value", []*op{o}, "%s answered %q, which %s cannot answer", o.key, clip(o.bad), o.kind))
		case o.out != outOK && o.strange:
			out = append(out, newViolation("error-reply", []*op{o}, "%s answered an error no fault explains: %s", o.key, clip(o.err)))
		}
	}
	return out
}
