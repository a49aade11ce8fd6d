package xdc

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"

	"github.com/redraft/redraft/migrate"
	"github.com/redraft/redraft/router/command"
)

// Rule is how a write command's effect is recorded in the outbox.
type Rule uint8

// The rules. Each command's rule is in Rules; a write command not listed there is Verbatim.
const (
	// Verbatim commands are deterministic given the same data: the effect is the command.
	Verbatim Rule = iota
	// UnlessZero commands are Verbatim, but nothing is recorded when they answer 0 (no change).
	UnlessZero
	// RelativeTTL commands carry a TTL relative to now; it is made absolute from the server's
	// TIME inside the WRITE script: SET/GETEX EX|PX → PXAT, SETEX/PSETEX → SET PXAT,
	// EXPIRE/PEXPIRE → PEXPIREAT, RESTORE ttl → RESTORE ttl ABSTTL. The rewritten command is
	// what runs locally too, so both DCs get the same expiry to the millisecond.
	RelativeTTL
	// PopMembers is SPOP: recorded as SREM of the members popped.
	PopMembers
	// FloatResult is INCRBYFLOAT: without convergence recorded as SET key <result> KEEPTTL;
	// with it, as an increment (ClassCounter).
	FloatResult
	// HashFloatResult is HINCRBYFLOAT: recorded as HSET key field <result>.
	HashFloatResult
	// StreamID is XADD: an ID with '*' is replaced by the ID the server chose.
	StreamID
	// StoreOnly commands (SORT, GEORADIUS...) change data only with STORE/STOREDIST: recorded
	// verbatim then, not at all otherwise.
	StoreOnly
	// Claim is XCLAIM and XAUTOCLAIM, whose effect depends on idle times, which differ from
	// DC to DC: recorded as the claims they made, XCLAIM <key> <group> <consumer> 0 <ids>
	// JUSTID (FORCE and LASTID as given) of the entries claimed and of those dropped from the
	// pending list as deleted, so that the other DCs move the same entries to the same
	// consumer whatever their idle times (delivery times and counts stay each DC's).
	Claim
	// Blocking commands cannot run in a script; the router must run their NonBlocking form.
	Blocking
	// GroupRead is XREADGROUP: run without BLOCK (the router polls it when it blocks) and
	// recorded as what it changed in the consumer group: the consumer, XCLAIM ... FORCE JUSTID
	// of the entries delivered, XGROUP SETID of the last one.
	GroupRead
	// NotReplicated commands are refused by Prepare: they are not per-slot writes (FLUSHDB) or
	// the router does not serve them.
	NotReplicated
)

var ruleNames = [...]string{"verbatim", "verbatim unless 0", "relative TTL made absolute",
	"SREM of the popped members", "SET of the result KEEPTTL", "HSET of the result",
	"XADD with the chosen ID", "verbatim with STORE only", "XCLAIM of the entries claimed",
	"blocking: non-blocking form", "consumer-group state: XCLAIM and XGROUP SETID", "not replicated"}

// String describes the rule, as docs/replication.md does.
func (r Rule) String() string { return ruleNames[r] }

// Effect is the replication rule of one write command.
type Effect struct {
	// Rule is how the effect is recorded.
	Rule Rule
	// NonBlocking is the command a Blocking command is replaced with when it is served.
	NonBlocking string
	// Note says why, for NotReplicated and Claim commands.
	Note string
}

// overrides are the commands whose rule is not Verbatim.
var overrides = map[string]Effect{
	"set": {Rule: RelativeTTL}, "setex": {Rule: RelativeTTL}, "psetex": {Rule: RelativeTTL},
	"expire": {Rule: RelativeTTL}, "pexpire": {Rule: RelativeTTL}, "getex": {Rule: RelativeTTL},
	"restore": {Rule: RelativeTTL},

	"spop":         {Rule: PopMembers},
	"incrbyfloat":  {Rule: FloatResult},
	"hincrbyfloat": {Rule: HashFloatResult},
	"xadd":         {Rule: StreamID},

	"sort": {Rule: StoreOnly}, "georadius": {Rule: StoreOnly}, "georadiusbymember": {Rule: StoreOnly},

	"xclaim":     {Rule: Claim, Note: "delivery times and counts are the applying DC's"},
	"xautoclaim": {Rule: Claim, Note: "delivery times and counts are the applying DC's"},

	"blpop": {Rule: Blocking, NonBlocking: "lpop"}, "brpop": {Rule: Blocking, NonBlocking: "rpop"},
	"blmove": {Rule: Blocking, NonBlocking: "lmove"}, "brpoplpush": {Rule: Blocking, NonBlocking: "rpoplpush"},
	"blmpop": {Rule: Blocking, NonBlocking: "lmpop"}, "bzmpop": {Rule: Blocking, NonBlocking: "zmpop"},
	"bzpopmin": {Rule: Blocking, NonBlocking: "zpopmin"}, "bzpopmax": {Rule: Blocking, NonBlocking: "zpopmax"},
	"xreadgroup": {Rule: GroupRead, Note: "delivery times are the applying DC's"},

	"flushdb":  {Rule: NotReplicated, Note: "not a per-slot write: clears the local DC only"},
	"flushall": {Rule: NotReplicated, Note: "not a per-slot write: clears the local DC only"},
	"swapdb":   {Rule: NotReplicated, Note: "not served by the router"},
	"migrate":  {Rule: NotReplicated, Note: "not served by the router"},
	"pfdebug":  {Rule: NotReplicated, Note: "not served by the router"},

	"restore-asking":   {Rule: NotReplicated, Note: "not served by the router"},
	"function|delete":  {Rule: NotReplicated, Note: "all groups of the local DC only: libraries are not per-slot data; run it through each DC"},
	"function|flush":   {Rule: NotReplicated, Note: "all groups of the local DC only: libraries are not per-slot data; run it through each DC"},
	"function|load":    {Rule: NotReplicated, Note: "all groups of the local DC only: libraries are not per-slot data; run it through each DC"},
	"function|restore": {Rule: NotReplicated, Note: "all groups of the local DC only: libraries are not per-slot data; run it through each DC"},
}

// unlessZero are the Verbatim commands whose reply 0 means nothing changed (LINSERT's -1, a
// missing pivot, too: WRITE checks it).
//
// SADD is not one of them: adding a member that is there is still an add, which wins over a
// concurrent remove in another DC (docs/convergence.md).
var unlessZero = []string{"del", "unlink", "expireat", "pexpireat", "persist", "srem", "hdel",
	"zrem", "setnx", "hsetnx", "msetnx", "renamenx", "pfadd", "smove", "move", "copy",
	"lrem", "zremrangebylex", "zremrangebyrank", "zremrangebyscore", "xdel", "xtrim", "lpushx",
	"rpushx", "xack", "linsert"}

// unlessNil are the commands whose null reply (or empty array) means nothing changed: pops of
// an absent key, GETDEL and GETEX of one, SET whose NX or XX condition failed. Their plan
// carries "z" as well, whatever their rule.
var unlessNil = map[string]bool{"lpop": true, "rpop": true, "rpoplpush": true, "lmove": true,
	"lmpop": true, "zmpop": true, "spop": true, "zpopmin": true, "zpopmax": true, "getdel": true,
	"getex": true, "set": true}

// nilIsNoop reports whether a null reply of argv (a command in unlessNil) means it changed
// nothing. SET ... GET answers null when the key was absent, and then it did set it, unless XX.
// (SET ... NX GET answers the value of a key that exists, and then it set nothing: WRITE
// records nothing for a SET with NX that answers a value.)
func nilIsNoop(name string, argv []string) bool {
	if name != "set" {
		return true
	}
	get, xx := false, false
	for _, a := range argv[min(3, len(argv)):] {
		get = get || strings.EqualFold(a, "GET")
		xx = xx || strings.EqualFold(a, "XX")
	}
	return !get || xx
}

// NullMeansNoChange reports whether a null reply of the write argv (name lower-case, argv with
// the command's name) means it changed nothing: a pop of nothing, GETDEL of an absent key, a
// SET whose condition failed; not SET ... GET of an absent key (it set it), nor a script.
func NullMeansNoChange(name string, argv []string) bool {
	return unlessNil[name] && nilIsNoop(name, argv)
}

// Rules holds the effect rule of every write command of the router's command table (the
// COMMAND INFO "write" flag), by lower-case name ("xgroup|create" for subcommands).
var Rules = func() map[string]Effect {
	m := map[string]Effect{}
	for _, s := range command.All() {
		if s.Write {
			m[s.Name] = overrides[s.Name]
		}
	}
	for _, n := range unlessZero {
		m[n] = Effect{Rule: UnlessZero}
	}
	return m
}()

// Errors of Prepare.
var (
	// ErrNotWrite is returned for a command that changes no data: run it directly.
	ErrNotWrite = errors.New("xdc: not a write command")
	// ErrUnknown is returned for a command not in the command table.
	ErrUnknown = errors.New("xdc: unknown command")
	// ErrInfiniteIncrement is returned for ZINCRBY by inf or -inf: a member's increments are
	// counted per DC as sums, and a sum that is infinite cannot give back the finite
	// increments after it (a later ZADD that saw it, then ZINCRBY 3, would read inf - inf), nor
	// add up with another DC's opposite infinity (NaN, which ZINCRBY refuses): the DCs would
	// hold a score no sequence of the commands gives (docs/convergence.md).
	ErrInfiniteIncrement = errors.New("ZINCRBY by inf or -inf cannot be counted per DC; ZADD sets an infinite score")
)

// Call is one write command prepared for the WRITE script.
type Call struct {
	// Plan tells the script what to do: an op letter, an optional 1-based argv index, an
	// optional "z". Ops: v run and record, t first add the server's time in ms to argv[index]
	// (a relative TTL) then as v, n run and record nothing, s SPOP, f INCRBYFLOAT,
	// h HINCRBYFLOAT, x replace argv[index] with the reply (XADD's ID), g XREADGROUP (its
	// consumer-group effects), k XCLAIM or XAUTOCLAIM (the claims made); z: record nothing
	// when the reply is 0, null or an empty array (or LINSERT's -1).
	//
	// After "/" comes the convergence class (see classOf) and the 1-based argv indexes of the
	// keys the command may change, comma separated: "v/o1", "t3/s1", "v/a1,2".
	Plan string
	// Args is the command to run, already rewritten to its absolute form.
	Args []string
	// Keys are the command's keys (all of one slot).
	Keys []string
}

// maxRelMS bounds relative TTLs Prepare makes absolute (about 35,000 years), so that now+ttl
// stays exact in Lua's doubles; larger ones are left as they are.
const maxRelMS = 1 << 50

// Prepare turns argv (argv[0] is the command name, any case) into the Call the WRITE script
// runs. It is pure: relative TTLs become absolute in the script, from the server's TIME. A
// syntax error is left to the server to report. It returns ErrNotWrite for a read, ErrUnknown
// for an unknown command, and an error for Blocking and NotReplicated commands.
func Prepare(argv []string) (Call, error) {
	if len(argv) == 3 && (argv[0] == "SET" || argv[0] == "set") {
		// The most common write, a plain SET, without the general path's lookups and
		// conversions (a dozen allocations): the same Call (TestPrepareSetFast).
		return Call{Plan: setPlan(), Args: []string{argv[0], argv[1], argv[2]}, Keys: []string{argv[1]}}, nil
	}
	return prepareAny(argv)
}

// setPlan is the plan of a plain SET key value, as prepareAny makes it.
var setPlan = sync.OnceValue(func() string {
	c, err := prepareAny([]string{"SET", "k", "v"})
	if err != nil {
		panic("xdc: no plan for SET: " + err.Error())
	}
	return c.Plan
})

// prepareAny is Prepare's general path.
func prepareAny(argv []string) (Call, error) {
	if len(argv) == 0 {
		return Call{}, ErrUnknown
	}
	b := make([][]byte, len(argv))
	for i, a := range argv {
		b[i] = []byte(a)
	}
	spec := command.Lookup(b)
	if spec == nil || (spec.Subs != nil && len(argv) > 1 && spec.Subs[strings.ToLower(argv[1])] == nil) {
		return Call{}, ErrUnknown
	}
	eff, ok := Rules[spec.Name]
	if !ok || (spec.Name == "bitfield" && bitfieldReadOnly(argv)) {
		return Call{}, ErrNotWrite
	}
	if spec.Name == "zincrby" && len(argv) == 4 {
		if f, err := strconv.ParseFloat(argv[2], 64); err == nil && math.IsInf(f, 0) {
			return Call{}, ErrInfiniteIncrement
		}
	}
	c := Call{Plan: "v", Args: append([]string(nil), argv...)}
	for _, i := range spec.Keys(b, nil) {
		c.Keys = append(c.Keys, argv[i])
	}
	switch eff.Rule {
	case UnlessZero:
		c.Plan = "vz"
	case RelativeTTL:
		relativeTTL(spec.Name, &c)
	case PopMembers:
		c.Plan = "s"
	case FloatResult:
		c.Plan = "f"
	case HashFloatResult:
		c.Plan = "h"
	case StreamID:
		if i := xaddID(c.Args); i > 0 && strings.Contains(c.Args[i], "*") {
			c.Plan = "x" + strconv.Itoa(i+1)
		}
	case StoreOnly:
		c.Plan = "n"
		for _, a := range c.Args[2:] {
			if u := strings.ToUpper(a); u == "STORE" || u == "STOREDIST" {
				c.Plan = "v"
			}
		}
		if c.Plan == "n" {
			// Without STORE it is a read, served as one: run inside WRITE, SORT of a set BY
			// nosort sorted the members (Redis sorts a set for a script, whose output must be
			// the same on a replica), where a client of Redis gets them unsorted.
			return Call{}, ErrNotWrite
		}
	case Claim:
		c.Plan = "k"
	case GroupRead:
		c.Plan = "g"
	options:
		for i := 1; i+1 < len(c.Args); i++ {
			switch strings.ToUpper(c.Args[i]) {
			case "STREAMS":
				break options
			case "GROUP":
				i += 2
			case "COUNT":
				i++
			case "BLOCK":
				c.Args = append(c.Args[:i:i], c.Args[i+2:]...)
				break options
			}
		}
	case Blocking:
		return Call{}, fmt.Errorf("xdc: %s blocks: serve it as %s", spec.Name, strings.ToUpper(eff.NonBlocking))
	case NotReplicated:
		return Call{}, fmt.Errorf("xdc: %s is not replicated: %s", spec.Name, eff.Note)
	}
	if spec.Name == "setrange" && len(c.Args) == 4 && c.Args[3] == "" {
		c.Plan = "n" // an empty string changes nothing, absent key or not: it answers 0 or the length
	}
	if spec.Name == "bitfield" && WideBitfield(b) {
		c.Plan = "w" // run one operation at a time, each reply exact (bitfield.go)
	}
	if unlessNil[spec.Name] && nilIsNoop(spec.Name, c.Args) {
		c.Plan += "z"
	}
	written := spec.WrittenKeys(b, nil)
	if spec.Name == "xreadgroup" {
		// Its key specs are read-only (Redis 7.0's), yet it changes the streams' groups: each
		// stream it names, at its index in the command as run (BLOCK taken out above).
		rb := make([][]byte, len(c.Args))
		for i, a := range c.Args {
			rb[i] = []byte(a)
		}
		written = spec.Keys(rb, nil)
	}
	c.Plan += classOf(spec, len(c.Keys), written)
	return c, nil
}

// bitfieldReadOnly reports whether a BITFIELD has no SET or INCRBY: it changes nothing, so it
// runs as a read, outside the script, and its 64-bit replies stay exact.
func bitfieldReadOnly(argv []string) bool {
	for _, a := range argv[2:] {
		if strings.EqualFold(a, "SET") || strings.EqualFold(a, "INCRBY") {
			return false
		}
	}
	return true
}

// relativeTTL rewrites c.Args to the absolute form with the TTL in ms, relative, at the index
// the plan names; a TTL that does not parse or is out of range is left for the server.
func relativeTTL(name string, c *Call) {
	a := c.Args
	switch name {
	case "set", "getex":
		at, unit, found := 0, int64(0), 0
		for i := 2; i < len(a); i++ {
			if name == "set" && i == 2 {
				continue // the value
			}
			switch strings.ToUpper(a[i]) {
			case "EX", "PX":
				at, unit, found = i, 1000, found+1
				if strings.EqualFold(a[i], "PX") {
					unit = 1
				}
				i++
			case "EXAT", "PXAT":
				found++
				i++
			case "PERSIST", "KEEPTTL":
				found++
			}
		}
		if name == "getex" && found == 0 {
			c.Plan = "n" // GETEX without options only reads
			return
		}
		if found != 1 || at == 0 || at+1 >= len(a) {
			return
		}
		if ms, ok := relMS(a[at+1], unit, false); ok {
			a[at], a[at+1] = "PXAT", ms
			c.Plan = "t" + strconv.Itoa(at+2)
		}
	case "setex", "psetex":
		if len(a) != 4 {
			return
		}
		unit := int64(1000)
		if name == "psetex" {
			unit = 1
		}
		if ms, ok := relMS(a[2], unit, false); ok {
			c.Args = []string{"SET", a[1], a[3], "PXAT", ms}
			c.Plan = "t5"
		}
	case "expire", "pexpire":
		if len(a) < 3 {
			return
		}
		unit := int64(1000)
		if name == "pexpire" {
			unit = 1
		}
		if ms, ok := relMS(a[2], unit, true); ok {
			a[0], a[2] = "PEXPIREAT", ms
			c.Plan = "t3z"
		}
	case "restore":
		if len(a) < 4 {
			return
		}
		for _, o := range a[4:] {
			if strings.EqualFold(o, "ABSTTL") {
				return
			}
		}
		if a[2] == "0" {
			return // no TTL
		}
		if ms, ok := relMS(a[2], 1, false); ok {
			a[2] = ms
			c.Args = append(a, "ABSTTL")
			c.Plan = "t3"
		}
	}
}

// relMS parses a TTL as Redis does (decimal, optional '-', no '+' or spaces) and returns it in
// ms; ok is false when it does not parse, is not positive (unless negOK) or is too large.
func relMS(s string, unit int64, negOK bool) (string, bool) {
	if s == "" || s[0] == '+' || (len(s) > 1 && s[0] == '0') || strings.HasPrefix(s, "-0") {
		return "", false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || (v <= 0 && !negOK) || v > maxRelMS/unit || v < -maxRelMS/unit {
		return "", false
	}
	return strconv.FormatInt(v*unit, 10), true
}

// xaddID returns the index of XADD's ID argument, or 0 when the arguments end first.
func xaddID(a []string) int {
	for i := 2; i < len(a); i++ {
		switch strings.ToUpper(a[i]) {
		case "NOMKSTREAM":
		case "MAXLEN", "MINID":
			if i+1 < len(a) && (a[i+1] == "=" || a[i+1] == "~") {
				i++
			}
			i++
		case "LIMIT":
			i++
		default:
			return i
		}
	}
	return 0
}

// EffectKeys returns the keys of an effect (a recorded command), for the APPLY script's KEYS.
func EffectKeys(argv []string) []string {
	if len(argv) > 1 && strings.HasPrefix(argv[0], "~") {
		// A stamped effect, ~kind key ...: the key and, but for increments, its element
		// hash (so that a migration moves both before APPLY touches them).
		if argv[0] == "~c" {
			return argv[1:2]
		}
		return []string{argv[1], ElemKey(migrate.SlotString(argv[1]), argv[1])}
	}
	b := make([][]byte, len(argv))
	for i, a := range argv {
		b[i] = []byte(a)
	}
	spec := command.Lookup(b)
	if spec == nil {
		return nil
	}
	var keys []string
	for _, i := range spec.Keys(b, nil) {
		keys = append(keys, argv[i])
	}
	return keys
}

// The convergence classes of a write (docs/convergence.md, "What a write records"): how its
// effect on each key it changes is recorded, stamped, and applied in the other DCs.
const (
	// ClassCounter: INCR, INCRBY, DECR, DECRBY, INCRBYFLOAT: the increment, added up in every
	// DC.
	ClassCounter = 'c'
	// ClassDelete: DEL, UNLINK: a tombstone for each key.
	ClassDelete = 'd'
	// ClassExpiry: EXPIRE and its family: on a string the string's state, else the command.
	ClassExpiry = 'e'
	// ClassString: any other write of a string (SET, APPEND, SETBIT, PFADD...): the string's
	// value and expiry after the write, last writer wins.
	ClassString = 's'
	// ClassOp: a command that changes one key of another type and reads no other key: the
	// command itself, applied only where the key is in the state the command saw.
	ClassOp = 'o'
	// ClassElement: a command that adds or removes fields of a hash or members of a set or
	// sorted set (HSET, HDEL, HINCRBY, SADD, SREM, SPOP, ZADD, ZREM, ZINCRBY, ZPOPMIN...): per
	// element, the add with its value or the remove with what it had observed.
	ClassElement = 'm'
	// ClassState: a command that changes several keys or reads others (RENAME, SMOVE,
	// SUNIONSTORE, LMOVE...): the state of each key it changes (DUMP), last writer wins.
	ClassState = 'a'
)

// elementCommands are the commands of ClassElement.
var elementCommands = map[string]bool{"hset": true, "hmset": true, "hsetnx": true, "hincrby": true,
	"hincrbyfloat": true, "hdel": true, "sadd": true, "srem": true, "spop": true, "zadd": true,
	"zrem": true, "zincrby": true, "zpopmin": true, "zpopmax": true, "zmpop": true}

// classOf returns the suffix of a call's plan: "/", its class, and the argv indexes of the
// keys it may change.
func classOf(spec *command.Spec, nkeys int, written []int) string {
	if len(written) == 0 {
		return ""
	}
	cls := byte(ClassState)
	switch {
	case spec.Name == "incr" || spec.Name == "incrby" || spec.Name == "decr" || spec.Name == "decrby" ||
		spec.Name == "incrbyfloat":
		cls = ClassCounter
	case spec.Name == "restore":
		cls = ClassState
	case elementCommands[spec.Name]:
		cls = ClassElement
	case spec.Name == "del" || spec.Name == "unlink":
		cls = ClassDelete
	case spec.Name == "expire" || spec.Name == "pexpire" || spec.Name == "expireat" ||
		spec.Name == "pexpireat" || spec.Name == "persist":
		cls = ClassExpiry
	case spec.InCategory("string") || spec.InCategory("bitmap") || spec.InCategory("hyperloglog"):
		cls = ClassString
	case spec.Name == "xreadgroup" || (len(written) == 1 && nkeys == 1):
		cls = ClassOp
	}
	b := []byte{'/', cls}
	for i, w := range written {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(w+1), 10)
	}
	return string(b)
}
