package integration

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// What the convergence test records and compares: its operations (convOp), a key's state in
// a DC (keyState), and the relations the checker (converge_checker_test.go) derives from the
// operations' times and outcomes: which may have taken effect, which may carry the highest
// stamp, which had observed which.

// convKind is what an operation of the convergence workload did.
type convKind uint8

const (
	cvSet      convKind = iota // SET k tok
	cvSetPX                    // SET k tok PX 1h
	cvGetSet                   // GETSET k tok
	cvAppend                   // APPEND k tok -> length
	cvSetRange                 // SETRANGE k 0 tok -> length
	cvDel                      // DEL/UNLINK k -> 0 or 1 (whole values and counters)
	cvExpire                   // EXPIRE/PEXPIRE k 1h -> 0 or 1
	cvIncr                     // INCR/DECR/INCRBY/DECRBY/INCRBYFLOAT k by ±2^exp -> the new value
	cvReset                    // SET counter base
	cvAdd                      // HSET k elem tok / SADD k elem / ZADD k n elem
	cvRem                      // HDEL/SREM/ZREM k elem -> 0 or 1
	cvRPush                    // RPUSH k tok -> length
	cvLPush                    // LPUSH k tok -> length
	cvLPop                     // LPOP k -> element or nil
	cvXAdd                     // XADD k * t tok -> id
)

// stampMargin is how long after a write was acknowledged another must start to be sure to
// carry the higher stamp (stamps count whole milliseconds of the same clock).
const stampMargin = 2 * time.Millisecond

// never is the end of an operation whose outcome is unknown.
const never = time.Duration(math.MaxInt64)

// tokLen is the length of every token written (tokens are unique over a run), so a string
// built by APPEND and SETRANGE splits back into the writes that made it.
const tokLen = 8

// convOp is one recorded operation of the convergence workload. Times are wall-clock offsets
// from the run's start (the clock the servers' stamps come from).
type convOp struct {
	client   int
	dc, node string
	kind     convKind
	cmd      string // the command's name as sent
	key      string
	elem     string // field or member
	tok      string // the token written
	n        int64  // the increment (±2^exp), the counter SET's base, the ZADD score
	exp      int    // the increment's exponent
	reply    int64  // integer reply
	rstr     string // LPOP's element, XADD's id
	rnil     bool   // nil reply
	inv, cmp time.Duration
	out      outcome
	err      string
}

func (o *convOp) String() string {
	arg := o.tok
	switch o.kind {
	case cvIncr, cvReset:
		arg = strings.TrimSpace(o.elem + " " + strconv.FormatInt(o.n, 10))
	case cvAdd, cvRem:
		arg = strings.TrimSpace(o.elem + " " + o.tok)
		if o.kind == cvAdd && family(o.key) == "zset" {
			arg = fmt.Sprintf("%d %s", o.n, o.elem)
		}
	case cvDel, cvExpire, cvLPop:
		arg = ""
	}
	if arg != "" {
		arg = " " + arg
	}
	res := o.out.String()
	switch {
	case o.out != outOK:
		res += " (" + clip(o.err) + ")"
	case o.rnil:
		res = "-> nil"
	case o.rstr != "":
		res = "-> " + o.rstr
	case o.kind != cvSet && o.kind != cvSetPX && o.kind != cvGetSet && o.kind != cvReset && o.kind != cvAdd:
		res = fmt.Sprintf("-> %d", o.reply)
	}
	return fmt.Sprintf("c%d %s/%s: %s %s%s %s [%.3fs..%.3fs]", o.client, o.dc, o.node, o.cmd, o.key, arg, res, o.inv.Seconds(), o.cmp.Seconds())
}

// end is when o was acknowledged; never for an operation of unknown outcome.
func (o *convOp) end() time.Duration {
	if o.out == outOK {
		return o.cmp
	}
	return never
}

// effect says whether an operation changed the data: sure, maybe (unknown outcome, or a
// counter's DEL that found nothing) or not at all (failed, or answered "nothing changed").
type effect uint8

const (
	effNone effect = iota
	effMaybe
	effSure
)

// effectOf is o's effect for the rules of whole values, elements, lists and streams.
func effectOf(o *convOp) effect {
	switch o.out {
	case outFailed:
		return effNone
	case outUnknown:
		return effMaybe
	}
	switch o.kind {
	case cvDel, cvExpire, cvRem:
		if o.reply == 0 {
			return effNone
		}
	case cvLPop:
		if o.rnil {
			return effNone
		}
	}
	return effSure
}

// resetEffect is a counter reset's effect: a DEL that found nothing may still reset (it
// observed a counter whose increments were all reset already).
func resetEffect(o *convOp) effect {
	if o.kind == cvDel && o.out == outOK && o.reply == 0 {
		return effMaybe
	}
	return effectOf(o)
}

// followed reports whether an acknowledged write of ops (effect sure) was invoked at least
// stampMargin after w was acknowledged: then w does not carry the highest stamp.
func followed(w *convOp, ops []*convOp, eff func(*convOp) effect) bool {
	if w.end() == never {
		return false
	}
	for _, x := range ops {
		if x != w && eff(x) == effSure && x.inv >= w.end()+stampMargin {
			return true
		}
	}
	return false
}

// candidates returns the writes of ops that may carry the highest stamp: those that may have
// taken effect and that no acknowledged write followed by stampMargin or more.
func candidates(ops []*convOp, eff func(*convOp) effect) []*convOp {
	var out []*convOp
	for _, w := range ops {
		if eff(w) != effNone && !followed(w, ops, eff) {
			out = append(out, w)
		}
	}
	return out
}

// anySure reports whether some write of ops surely took effect.
func anySure(ops []*convOp, eff func(*convOp) effect) bool {
	return slices.ContainsFunc(ops, func(o *convOp) bool { return eff(o) == effSure })
}

// observation says whether write w (a reset or a remove) had observed operation o.
type observation uint8

const (
	obsMaybe observation = iota
	obsYes
	obsNo
)

// observed: o was applied in w's DC before w ran when both went through that DC and o was
// acknowledged before w was invoked; o cannot have been observed when it was invoked after w
// was acknowledged; anything else may go either way.
func observed(w, o *convOp) observation {
	switch {
	case o.dc == w.dc && o.out == outOK && o.cmp <= w.inv:
		return obsYes
	case w.out == outOK && o.inv >= w.cmp:
		return obsNo
	}
	return obsMaybe
}

// keyState is one key's state in one DC.
type keyState struct {
	typ   string            // Redis type; "none" when absent
	ttl   bool              // has an expiry
	str   string            // strings
	elems map[string]string // hash field -> value, set member -> "", zset member -> score
	list  []string          // list elements; stream entries' tokens
	ids   []string          // stream entry ids
}

func (s keyState) exists() bool { return s.typ != "" && s.typ != "none" }

// String is the state as canonical text: two DCs agree on a key when these are equal.
func (s keyState) String() string {
	if !s.exists() {
		return "<absent>"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s ttl=%v ", s.typ, s.ttl)
	switch s.typ {
	case "string":
		b.WriteString(strconv.Quote(s.str))
	case "hash", "set", "zset":
		ks := make([]string, 0, len(s.elems))
		for k := range s.elems {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		for _, k := range ks {
			fmt.Fprintf(&b, "%s=%s,", k, s.elems[k])
		}
	case "list":
		b.WriteString(strings.Join(s.list, ","))
	case "stream":
		for i := range s.list {
			fmt.Fprintf(&b, "%s:%s,", s.ids[i], s.list[i])
		}
	}
	return b.String()
}

// family is the kind of data a workload key holds, from its name ({tag}:<family>:<i>).
func family(key string) string {
	parts := strings.Split(key, ":")
	if len(parts) < 2 {
		return ""
	}
	return parts[1]
}

// familyType is the Redis type of a family's keys.
var familyType = map[string]string{
	"reg": "string", "ctr": "string", "fctr": "hash", "hash": "hash", "set": "set", "zset": "zset", "list": "list", "stream": "stream",
}
