package integration

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// The convergence checker (docs/convergence.md): given one round's operations on a key, the
// state every DC agreed on before the round and a DC's state after it (replication drained),
// it says whether the rules of the key's family explain that state. It cannot see the
// writes' stamps, so it uses what makes the rules decidable from histories:
//
//   - every server runs on this machine, on the test's clock: a write X invoked at least
//     stampMargin after a write W was acknowledged has the higher stamp; writes that overlap
//     may be ordered either way;
//   - before a round every DC had applied every operation of the earlier rounds, so an
//     operation observed all of them; within the round, a write observed an operation of its
//     own DC acknowledged before it was invoked, did not observe one invoked after it was
//     acknowledged, and may or may not have observed any other;
//   - an operation whose outcome is unknown (timeout, broken connection) may or may not have
//     taken effect, at any time after its invocation within its round (the nodes hold a
//     request a few seconds at most; the round ends after its drain).
//
// Whole values: last writer wins; counters: increments add up except those the winning reset
// (SET/DEL) observed; hash fields, set and sorted-set members: observed-remove, add wins, values
// and scores last writer wins; lists and streams: the state at the origin of the write with
// the highest stamp.

// checkConvRound returns why after (a DC's state of key once the round's operations ops were
// drained) is not what the rules give from before (the state every DC agreed on before the
// round); nil when the rules explain it.
func checkConvRound(key string, before, after keyState, ops []*convOp) []string {
	fam := family(key)
	if after.exists() && after.typ != familyType[fam] {
		return []string{fmt.Sprintf("%s holds a %s, its writes make a %s", key, after.typ, familyType[fam])}
	}
	switch fam {
	case "reg":
		return checkWhole(key, before, after, ops)
	case "ctr":
		return checkCounter(key, before, after, ops)
	case "fctr":
		return checkFieldCounters(key, before, after, ops)
	case "hash", "set", "zset":
		if perElement {
			return checkElements(key, before, after, ops)
		}
		return checkKeyLevel(key, before, after, ops)
	case "list":
		return checkList(key, before, after, ops)
	case "stream":
		return checkStream(key, before, after, ops)
	}
	return []string{fmt.Sprintf("%s: no rule for family %q", key, fam)}
}

// describe lists ops for a message, at most six.
func describe(ops []*convOp) string {
	var b strings.Builder
	for i, o := range ops {
		if i == 6 {
			fmt.Fprintf(&b, "\n      ... %d in all", len(ops))
			break
		}
		fmt.Fprintf(&b, "\n      %s", o)
	}
	return b.String()
}

// tokens splits a string made of tokens; ok is false when it is not made of whole tokens.
func tokens(s string) (out []string, ok bool) {
	if len(s)%tokLen != 0 {
		return nil, false
	}
	for i := 0; i < len(s); i += tokLen {
		out = append(out, s[i:i+tokLen])
	}
	return out, true
}

// checkWhole: the value is the one the write with the highest stamp left at its origin.
func checkWhole(key string, before, after keyState, ops []*convOp) []string {
	known := map[string]bool{}
	if toks, ok := tokens(before.str); ok {
		for _, t := range toks {
			known[t] = true
		}
	}
	for _, o := range ops {
		if o.out != outFailed && o.tok != "" {
			known[o.tok] = true
		}
	}
	if after.exists() {
		toks, ok := tokens(after.str)
		for _, t := range toks {
			ok = ok && known[t]
		}
		if !ok {
			return []string{fmt.Sprintf("%s = %q: not made of tokens written to it (before the round, or in it by writes not answered as failed)", key, after.str)}
		}
	}
	explains := func(w *convOp) bool {
		s := after.str
		switch w.kind {
		case cvSet, cvGetSet:
			return after.exists() && s == w.tok && !after.ttl
		case cvSetPX:
			return after.exists() && s == w.tok && after.ttl
		case cvAppend:
			return after.exists() && strings.HasSuffix(s, w.tok) && (w.out != outOK || int64(len(s)) == w.reply)
		case cvSetRange:
			return after.exists() && strings.HasPrefix(s, w.tok) && (w.out != outOK || int64(len(s)) == w.reply)
		case cvDel:
			return !after.exists()
		case cvExpire:
			return after.exists() && after.ttl
		}
		return false
	}
	cands := candidates(ops, effectOf)
	for _, w := range cands {
		if explains(w) {
			return nil
		}
	}
	if !anySure(ops, effectOf) && after.String() == before.String() {
		return nil // nothing surely changed it, and nothing did
	}
	return []string{fmt.Sprintf("%s ends as %s (before the round: %s); no write that may carry the highest stamp leaves that:%s",
		key, after, before, describe(cands))}
}

// checkCounter: the value is the winning reset's base (or the value before the round when no
// reset won) plus every increment the winning reset had not observed. Each increment of a
// round adds ±2^exp with an exponent of its own, so the value says exactly which counted.
func checkCounter(key string, before, after keyState, ops []*convOp) []string {
	var incs, resets []*convOp
	for _, o := range ops {
		if o.kind == cvIncr {
			incs = append(incs, o)
		} else {
			resets = append(resets, o)
		}
	}
	var v1 int64
	if after.exists() {
		var err error
		if v1, err = strconv.ParseInt(after.str, 10, 64); err != nil || after.ttl {
			return []string{fmt.Sprintf("%s ends as %s: not a counter without expiry", key, after)}
		}
	}
	var v0 int64
	if before.exists() {
		v0, _ = strconv.ParseInt(before.str, 10, 64)
	}
	var why []string
	// try explains the end state with w winning (nil: no reset won).
	try := func(w *convOp) string {
		base, baseAbsent := v0, !before.exists()
		switch {
		case w == nil:
		case w.kind == cvDel:
			base, baseAbsent = 0, true
		default:
			base, baseAbsent = w.n, false
		}
		eligible := map[int]*convOp{} // exponent -> an increment that may count
		var required []*convOp
		for _, o := range incs {
			if o.out == outFailed {
				continue
			}
			obs := obsNo
			if w != nil {
				obs = observed(w, o)
			}
			if obs == obsYes {
				continue // reset by w: must not count
			}
			if prev := eligible[o.exp]; prev != nil {
				return fmt.Sprintf("two increments with exponent %d: %s and %s", o.exp, prev, o)
			}
			eligible[o.exp] = o
			if obs == obsNo && o.out == outOK {
				required = append(required, o)
			}
		}
		counted, why := countedIn(v1, base, eligible, required)
		if why != "" {
			return why
		}
		switch {
		case !after.exists() && (len(counted) > 0 || !baseAbsent):
			return "the counter is gone"
		case after.exists() && len(counted) == 0 && baseAbsent:
			return fmt.Sprintf("the counter reads %d with nothing counted on an absent base", v1)
		}
		return ""
	}
	if !anySure(resets, resetEffect) {
		if why1 := try(nil); why1 == "" {
			return nil
		} else {
			why = append(why, "no reset: "+why1)
		}
	}
	for _, w := range candidates(resets, resetEffect) {
		why1 := try(w)
		if why1 == "" {
			return nil
		}
		why = append(why, fmt.Sprintf("%s winning: %s", w, why1))
	}
	return []string{fmt.Sprintf("%s ends as %s (before the round: %s), not explained:\n      %s\n    increments:%s",
		key, after, before, strings.Join(why, "\n      "), describe(incs))}
}

// checkFieldCounters: each field of a counter hash is a counter whose increments add up
// (docs/convergence.md, "Counters in hashes and sorted sets"): its value is the base of the
// add (HSET) with the highest stamp, or the value before the round when no add took effect,
// or nothing when the field was removed, plus every increment that add and every remove that
// took effect had not observed. Each increment of a round adds ±2^exp with an exponent of its
// own (per field), so the value says exactly which counted.
func checkFieldCounters(key string, before, after keyState, ops []*convOp) []string {
	fields := map[string]bool{}
	for e := range before.elems {
		fields[e] = true
	}
	for e := range after.elems {
		fields[e] = true
	}
	for _, o := range ops {
		fields[o.elem] = true
	}
	var out []string
	for _, f := range slices.Sorted(maps.Keys(fields)) {
		var adds, rems, incs []*convOp
		for _, o := range ops {
			switch {
			case o.elem != f:
			case o.kind == cvIncr:
				incs = append(incs, o)
			case o.kind == cvReset:
				adds = append(adds, o)
			case o.kind == cvRem:
				rems = append(rems, o)
			}
		}
		initial := before.elems != nil && containsKey(before.elems, f)
		present := after.elems != nil && containsKey(after.elems, f)
		var v0, v1 int64
		if initial {
			v0, _ = strconv.ParseInt(before.elems[f], 10, 64)
		}
		if present {
			var err error
			if v1, err = strconv.ParseInt(after.elems[f], 10, 64); err != nil {
				out = append(out, fmt.Sprintf("%s: %q = %q is not a counter", key, f, after.elems[f]))
				continue
			}
		}
		// try explains the field with w the add of the highest stamp (nil: none) and base its
		// value before the increments that count.
		try := func(w *convOp, base int64) string {
			eligible := map[int]*convOp{}
			var required []*convOp
			for _, o := range incs {
				if o.out == outFailed {
					continue
				}
				seen := obsNo
				if w != nil {
					seen = observed(w, o)
				}
				for _, r := range rems {
					if eff := effectOf(r); eff != effNone {
						switch obs := observed(r, o); {
						case obs == obsYes && eff == effSure:
							seen = obsYes
						case obs != obsNo && seen == obsNo:
							seen = obsMaybe
						}
					}
				}
				if seen == obsYes {
					continue // reset by w or by a remove: must not count
				}
				if prev := eligible[o.exp]; prev != nil {
					return fmt.Sprintf("two increments with exponent %d: %s and %s", o.exp, prev, o)
				}
				eligible[o.exp] = o
				if seen == obsNo && o.out == outOK {
					required = append(required, o)
				}
			}
			v := v1
			if !present {
				v = base // absent: nothing counted
			}
			_, why := countedIn(v, base, eligible, required)
			return why
		}
		var why []string
		explained := false
		winners := candidates(adds, effectOf)
		if !anySure(adds, effectOf) {
			winners = append(winners, nil)
		}
		for _, w := range winners {
			bases := []int64{0} // removed (or never there): the increments that count alone
			switch {
			case w != nil:
				bases = append(bases, w.n)
			case initial:
				bases = append(bases, v0)
			}
			for _, base := range bases {
				w1 := try(w, base)
				if w1 == "" {
					explained = true
					break
				}
				name := "no add"
				if w != nil {
					name = w.String()
				}
				why = append(why, fmt.Sprintf("%s winning, base %d: %s", name, base, w1))
			}
			if explained {
				break
			}
		}
		if !explained {
			out = append(out, fmt.Sprintf("%s: %q ends as %q (before the round: %q), not explained:\n      %s\n    adds, removes, increments:%s%s%s",
				key, f, after.elems[f], before.elems[f], strings.Join(why, "\n      "), describe(adds), describe(rems), describe(incs)))
		}
	}
	return out
}

// countedIn splits v1 - base into increments of eligible (by exponent: each of ±2^exp) and
// returns those counted, or why that cannot be done or leaves out a required one.
func countedIn(v1, base int64, eligible map[int]*convOp, required []*convOp) (map[*convOp]bool, string) {
	counted := map[*convOp]bool{}
	r := v1 - base
	for e := 0; e < 63 && r != 0; e++ {
		if r&(1<<e) == 0 {
			continue
		}
		o := eligible[e]
		if o == nil {
			return nil, fmt.Sprintf("the value %d is base %d plus %d, which needs an increment of exponent %d that cannot count", v1, base, v1-base, e)
		}
		counted[o] = true
		r -= o.n
	}
	if r != 0 {
		return nil, fmt.Sprintf("the value %d is not base %d plus increments that may count", v1, base)
	}
	for _, o := range required {
		if !counted[o] {
			return nil, fmt.Sprintf("the acknowledged increment %s, which it cannot have observed, is not counted", o)
		}
	}
	return counted, ""
}

// perElement says whether hashes, sets and sorted sets merge per element (observed-remove,
// add wins: checkElements, docs/convergence.md "Elements"), as built; false would judge them
// at the key level, as lists (checkKeyLevel).
const perElement = true

// checkKeyLevel: a hash, set or sorted set ends in the state it had at the origin of the write
// with the highest stamp: that write's own effect holds (its element added with its value, or
// removed), and every element is one the state before the round or a write put there.
func checkKeyLevel(key string, before, after keyState, ops []*convOp) []string {
	for e, v := range after.elems {
		if before.elems != nil && containsKey(before.elems, e) && before.elems[e] == v {
			continue
		}
		if !slices.ContainsFunc(ops, func(o *convOp) bool {
			return o.kind == cvAdd && o.elem == e && o.out != outFailed && (family(key) == "set" || addValue(o) == v)
		}) {
			return []string{fmt.Sprintf("%s holds %q = %q, which no write put there", key, e, v)}
		}
	}
	explains := func(w *convOp) bool {
		has := after.elems != nil && containsKey(after.elems, w.elem)
		switch w.kind {
		case cvAdd:
			return has && (family(key) == "set" || after.elems[w.elem] == addValue(w))
		case cvRem:
			return !has
		}
		return false
	}
	cands := candidates(ops, effectOf)
	for _, w := range cands {
		if explains(w) {
			return nil
		}
	}
	if !anySure(ops, effectOf) && before.String() == after.String() {
		return nil
	}
	return []string{fmt.Sprintf("%s ends as %s (before the round: %s); no write that may carry the highest stamp leaves that:%s", key, after, before, describe(cands))}
}

// checkElements: per element, observed-remove with add wins; values and scores last writer wins.
func checkElements(key string, before, after keyState, ops []*convOp) []string {
	elems := map[string]bool{}
	for e := range before.elems {
		elems[e] = true
	}
	for e := range after.elems {
		elems[e] = true
	}
	for _, o := range ops {
		elems[o.elem] = true
	}
	var out []string
	for _, e := range slices.Sorted(maps.Keys(elems)) {
		var adds, rems []*convOp
		for _, o := range ops {
			switch {
			case o.elem != e:
			case o.kind == cvAdd:
				adds = append(adds, o)
			case o.kind == cvRem:
				rems = append(rems, o)
			}
		}
		initial := before.elems != nil && containsKey(before.elems, e)
		present := after.elems != nil && containsKey(after.elems, e)
		// defRemoved: an acknowledged remove that found the element observed a.
		defRemoved := func(a *convOp) bool {
			for _, r := range rems {
				if effectOf(r) == effSure && a.out == outOK && observed(r, a) == obsYes {
					return true
				}
			}
			return false
		}
		initRemoved := anySure(rems, effectOf) // every remove observed the state before the round
		// survives: an acknowledged add that no remove can have observed.
		var survivor *convOp
		for _, a := range adds {
			if a.out != outOK {
				continue
			}
			seen := false
			for _, r := range rems {
				seen = seen || effectOf(r) != effNone && observed(r, a) != obsNo
			}
			if !seen {
				survivor = a
				break
			}
		}
		mustPresent := survivor != nil || initial && !slices.ContainsFunc(rems, func(r *convOp) bool { return effectOf(r) != effNone })
		mustAbsent := !initial || initRemoved
		for _, a := range adds {
			if a.out != outFailed && !defRemoved(a) {
				mustAbsent = false
			}
		}
		switch {
		case mustPresent && !present:
			why := fmt.Sprintf("present before the round, and no remove of it may have taken effect:%s", describe(rems))
			if survivor != nil {
				why = fmt.Sprintf("the acknowledged add %s was observed by no remove:%s", survivor, describe(rems))
			}
			out = append(out, fmt.Sprintf("%s lacks %q: %s", key, e, why))
			continue
		case mustAbsent && present:
			out = append(out, fmt.Sprintf("%s holds %q, but no add of it may have taken effect unless an acknowledged remove that found it had observed it:%s%s",
				key, e, describe(adds), describe(rems)))
			continue
		case !present || family(key) == "set":
			continue
		}
		// Values: from an add that may carry the highest stamp, among all adds or among those
		// no remove surely removed (the value of a removed add may or may not outlive it).
		var live []*convOp
		for _, a := range adds {
			if !defRemoved(a) {
				live = append(live, a)
			}
		}
		allowed := map[string]bool{}
		for _, set := range [][]*convOp{adds, live} {
			for _, a := range candidates(set, effectOf) {
				allowed[addValue(a)] = true
			}
			if initial && !anySure(set, effectOf) {
				allowed[before.elems[e]] = true
			}
		}
		if got := after.elems[e]; !allowed[got] {
			out = append(out, fmt.Sprintf("%s: %q = %q, not the value of an add that may carry the highest stamp (allowed %v):%s",
				key, e, got, slices.Sorted(maps.Keys(allowed)), describe(adds)))
		}
	}
	return out
}

// addValue is the value an add writes: the field's value or the member's score.
func addValue(a *convOp) string {
	if family(a.key) == "zset" {
		return strconv.FormatInt(a.n, 10)
	}
	return a.tok
}

// listElems checks what every list and stream state must satisfy: elements are the state
// before the round or tokens of pushes that may have happened, each at most once.
func listElems(key string, before, after keyState, ops []*convOp) []string {
	sent := map[string]*convOp{}
	for _, o := range ops {
		if o.tok != "" {
			sent[o.tok] = o
		}
	}
	old := map[string]bool{}
	for _, t := range before.list {
		old[t] = true
	}
	var out []string
	seen := map[string]bool{}
	for _, t := range after.list {
		switch o := sent[t]; {
		case seen[t]:
			out = append(out, fmt.Sprintf("%s holds %q twice", key, t))
		case old[t]:
		case o == nil:
			out = append(out, fmt.Sprintf("%s holds %q, which nothing wrote", key, t))
		case o.out == outFailed:
			out = append(out, fmt.Sprintf("%s holds %q, written by %s", key, t, o))
		}
		seen[t] = true
	}
	return out
}

// checkList: the list is the state at the origin of the write with the highest stamp.
func checkList(key string, before, after keyState, ops []*convOp) []string {
	if out := listElems(key, before, after, ops); out != nil {
		return out
	}
	l := after.list
	// What is left of the list before the round is a suffix of it, in one piece: pops take
	// from the left, pushes add at the ends.
	first, last := -1, -1
	old := map[string]int{}
	for i, t := range before.list {
		old[t] = i
	}
	for i, t := range l {
		if _, ok := old[t]; ok {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first >= 0 {
		kept := l[first : last+1]
		if !slices.Equal(kept, before.list[len(before.list)-len(kept):]) {
			return []string{fmt.Sprintf("%s = %v: what it kept of %v is not a suffix of it in one piece", key, l, before.list)}
		}
	}
	explains := func(w *convOp) bool {
		switch w.kind {
		case cvRPush:
			return len(l) > 0 && l[len(l)-1] == w.tok && (w.out != outOK || int64(len(l)) == w.reply)
		case cvLPush:
			return len(l) > 0 && l[0] == w.tok && (w.out != outOK || int64(len(l)) == w.reply)
		case cvLPop:
			return w.out != outOK || !slices.Contains(l, w.rstr)
		}
		return false
	}
	cands := candidates(ops, effectOf)
	for _, w := range cands {
		if explains(w) {
			return nil
		}
	}
	if !anySure(ops, effectOf) && slices.Equal(l, before.list) {
		return nil
	}
	return []string{fmt.Sprintf("%s ends as %v (before the round: %v); no write that may carry the highest stamp leaves that:%s", key, l, before.list, describe(cands))}
}

// checkStream: streams only grow (XADD): the entries before the round stay first, then entries
// of XADDs that may have happened, the last one's XADD a write that may carry the highest stamp.
func checkStream(key string, before, after keyState, ops []*convOp) []string {
	if out := listElems(key, before, after, ops); out != nil {
		return out
	}
	n := len(before.list)
	if len(after.list) < n || !slices.Equal(after.list[:n], before.list) || !slices.Equal(after.ids[:n], before.ids) {
		return []string{fmt.Sprintf("%s = %s does not start with its entries before the round (%s)", key, after, before)}
	}
	byTok := map[string]*convOp{}
	for _, o := range ops {
		byTok[o.tok] = o
	}
	for i := n; i < len(after.list); i++ {
		if o := byTok[after.list[i]]; o.out == outOK && o.rstr != after.ids[i] {
			return []string{fmt.Sprintf("%s holds %s's entry as %s", key, o, after.ids[i])}
		}
	}
	cands := candidates(ops, effectOf)
	if len(after.list) == n {
		if !anySure(ops, effectOf) {
			return nil
		}
		return []string{fmt.Sprintf("%s gained no entry, though XADDs were acknowledged:%s", key, describe(cands))}
	}
	lastTok := after.list[len(after.list)-1]
	for _, w := range cands {
		if w.tok == lastTok {
			return nil
		}
	}
	return []string{fmt.Sprintf("%s ends with %s's entry, not one of an XADD that may carry the highest stamp:%s", key, byTok[lastTok], describe(cands))}
}

func containsKey(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}
