package router

import (
	"bufio"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testredis"
	"github.com/redraft/redraft/router/command"
	"github.com/redraft/redraft/router/resp"
)

// edgeValues are the argument values every command is tried with: zero, negative, the largest
// int64, past uint64, not a number, empty.
var edgeValues = []string{"0", "-1", "9223372036854775807", "18446744073709551616", "abc", ""}

// edgeSpecial are requests the generated rows would not reach: numkeys-style arguments (too
// small, negative, too large, not a number) and keyword-led key lists, the paths where a
// command's keys depend on an argument the client controls.
var edgeSpecial = [][]string{
	{"BLMPOP", "0.01", "0", "LEFT"}, {"BLMPOP", "0.01", "-1", "k", "LEFT"}, {"BLMPOP", "0.01", "x", "k", "LEFT"},
	{"BLMPOP", "0.01", "3", "k", "LEFT"}, {"BLMPOP", "0.01", "1", "k", "LEFT", "COUNT", "0"},
	{"BLMPOP", "0.01", "18446744073709551616", "k", "LEFT"},
	{"BZMPOP", "0.01", "0", "MIN"}, {"BZMPOP", "0.01", "-1", "k", "MIN"}, {"BZMPOP", "0.01", "x", "k", "MAX"},
	{"BZMPOP", "0.01", "2", "k", "MIN"}, {"BZMPOP", "0.01", "1", "k", "MIN", "COUNT", "-1"},
	{"LMPOP", "0", "LEFT"}, {"LMPOP", "-1", "k", "LEFT"}, {"LMPOP", "x", "k", "LEFT"}, {"LMPOP", "2", "k", "LEFT"},
	{"LMPOP", "1", "k", "UP"}, {"LMPOP", "1", "k", "LEFT", "COUNT", "0"},
	{"ZMPOP", "0", "MIN"}, {"ZMPOP", "-1", "k", "MIN"}, {"ZMPOP", "x", "k", "MIN"}, {"ZMPOP", "2", "k", "MAX"},
	{"SINTERCARD", "0", "k"}, {"SINTERCARD", "-1", "k"}, {"SINTERCARD", "x", "k"}, {"SINTERCARD", "2", "k"},
	{"SINTERCARD", "1", "k", "LIMIT", "-1"},
	{"ZUNION", "0", "k"}, {"ZUNION", "-1", "k"}, {"ZUNION", "2", "k"}, {"ZUNION", "x", "k"},
	{"ZINTER", "0", "k"}, {"ZINTER", "1", "k", "WEIGHTS"}, {"ZDIFF", "0", "k"}, {"ZDIFF", "3", "k"},
	{"ZINTERCARD", "0", "k"}, {"ZINTERCARD", "-1", "k"}, {"ZINTERCARD", "2", "k"},
	{"ZUNIONSTORE", "{t}d", "0", "{t}k"}, {"ZUNIONSTORE", "{t}d", "-1", "{t}k"}, {"ZUNIONSTORE", "{t}d", "2", "{t}k"},
	{"ZUNIONSTORE", "{t}d", "x", "{t}k"}, {"ZINTERSTORE", "{t}d", "0", "{t}k"}, {"ZDIFFSTORE", "{t}d", "0", "{t}k"},
	{"ZDIFFSTORE", "{t}d", "5", "{t}k"}, {"ZINTERSTORE", "{t}d", "1", "{t}k", "AGGREGATE", "x"},
	{"EVAL", "return 1", "-1"}, {"EVAL", "return 1", "x"}, {"EVAL", "return 1", "3", "k"},
	{"EVAL", "return 1", "18446744073709551616"}, {"EVAL_RO", "return 1", "-1"}, {"EVAL_RO", "return 1", "2", "k"},
	{"EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "-1"},
	{"EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "2", "k"},
	{"EVALSHA_RO", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "x"},
	{"FCALL", "f", "-1"}, {"FCALL", "f", "x"}, {"FCALL", "f", "2", "k"}, {"FCALL_RO", "f", "-1"},
	{"XREAD", "STREAMS"}, {"XREAD", "STREAMS", "k"}, {"XREAD", "STREAMS", "k", "k2", "0"},
	{"XREAD", "COUNT", "-1", "STREAMS", "k", "0"}, {"XREAD", "BLOCK", "-1", "STREAMS", "k", "$"},
	{"XREAD", "BLOCK", "x", "STREAMS", "k", "$"}, {"XREAD", "BLOCK", "10", "STREAMS", "k", "$"},
	{"XREAD", "BLOCK", "18446744073709551616", "STREAMS", "k", "$"},
	{"XREADGROUP", "GROUP", "g", "c", "STREAMS"}, {"XREADGROUP", "GROUP", "g", "c", "STREAMS", "k"},
	{"XREADGROUP", "GROUP", "g", "c", "BLOCK", "10", "STREAMS", "k", ">"},
	{"XREADGROUP", "GROUP", "g", "c", "BLOCK", "-1", "STREAMS", "k", ">"},
	{"XREADGROUP", "GROUP", "g", "c", "COUNT", "x", "STREAMS", "k", ">"},
	{"GEORADIUS", "k", "0", "0", "1", "m", "STORE"}, {"GEORADIUS", "k", "0", "0", "1", "m", "STORE", "{k}d"},
	{"GEOSEARCHSTORE", "{t}d", "{t}k", "FROMLONLAT", "0", "0", "BYRADIUS", "-1", "m"},
	{"SORT", "k", "STORE"}, {"SORT", "k", "LIMIT", "0"}, {"SORT", "k", "BY", "x*", "GET"},
	{"MIGRATE", "127.0.0.1", "1", "", "0", "0", "KEYS"}, {"MIGRATE", "127.0.0.1", "1", "k", "0", "0"},
	{"OBJECT", "ENCODING"}, {"OBJECT", "FREQ", "k"}, {"OBJECT", "IDLETIME", "k", "x"}, {"OBJECT", "x"},
	{"BLPOP", "k", "1e400"}, {"BLPOP", "k", "-0.5"}, {"BLPOP", "k", "nan"}, {"BLPOP", "k", "inf"},
	{"BRPOPLPUSH", "{t}a", "{t}b", "18446744073709551616"}, {"BLMOVE", "{t}a", "{t}b", "LEFT", "UP", "0.01"},
	{"WAIT", "0", "-1"}, {"WAIT", "1", "10"}, {"WAIT", "-1", "10"},
	{"SET", "k", "v", "EX", "0"}, {"SET", "k", "v", "EX", "-1"}, {"SET", "k", "v", "PX", "9223372036854775807"},
	{"SET", "k", "v", "KEEPTTL", "EX", "1"}, {"GETEX", "k", "EX", "-1"}, {"EXPIRE", "k", "9223372036854775807"},
	{"SETRANGE", "k", "536870912", "x"}, {"SETBIT", "k", "4294967296", "1"}, {"BITFIELD", "k", "GET", "i64", "-1"},
	{"LRANGE", "k", "-9223372036854775808", "9223372036854775807"}, {"LPOS", "k", "x", "RANK", "-9223372036854775808"},
	{"SELECT", "-1"}, {"SELECT", "18446744073709551616"}, {"MOVE", "k", "-1"}, {"COPY", "{t}a", "{t}b", "DB", "-1"},
	{"SCAN", "18446744073709551616"}, {"SCAN", "-1"}, {"SCAN", "0", "COUNT", "0"}, {"HSCAN", "k", "0", "COUNT", "-1"},
	{"CLIENT", "SETNAME", ""}, {"CLIENT", "SETNAME", "a b"}, {"PUBSUB", "NUMSUB"}, {"SPUBLISH", "", ""},
	{"REDRAFT", "CONSISTENCY", "x"},
}

// edgeRequests returns every request the test sends, once: for every spec of the command
// table, one argument short, each edge value filling the arity, one argument more, and a key
// followed by edge values; then edgeSpecial.
func edgeRequests() [][]string {
	var all [][]string
	seen := map[string]bool{}
	out := func(reqs ...[]string) {
		for _, r := range reqs {
			if k := strings.Join(r, "\x00"); !seen[k] {
				seen[k] = true
				all = append(all, r)
			}
		}
	}
	for _, s := range command.All() {
		base := strings.Split(strings.ToUpper(s.Name), "|")
		if s.Subs != nil {
			out(base) // a container alone
		}
		need := max(s.Arity, -s.Arity) - len(base) // arguments after the name(s)
		fill := func(first string, v string, n int) []string {
			r := append([]string(nil), base...)
			for i := 0; i < n; i++ {
				if i == 0 && first != "" {
					r = append(r, first)
					continue
				}
				r = append(r, v)
			}
			return r
		}
		if need > 0 {
			out(fill("", "0", need-1))
		}
		for _, v := range edgeValues {
			out(fill("", v, need), fill("", v, need+1))
			if need > 0 {
				out(fill("{t}k", v, need))
			}
		}
	}
	out(edgeSpecial...)
	return all
}

// shortBlocking caps the timeout of a blocking request at 10 ms, so the test does not wait for
// long (or forever) on either side; a timeout that is not a plain non-negative number stays,
// since both sides must refuse it the same way.
func shortBlocking(args []string) []string {
	pos := -1
	switch strings.ToLower(args[0]) {
	case "blpop", "brpop", "bzpopmin", "bzpopmax", "brpoplpush", "blmove":
		pos = len(args) - 1
	case "blmpop", "bzmpop":
		pos = 1
	case "wait":
		pos = 2
	case "xread", "xreadgroup":
		for i := 1; i+1 < len(args); i++ {
			if strings.EqualFold(args[i], "block") {
				pos = i + 1
				break
			}
		}
	}
	if pos < 0 || pos >= len(args) {
		return args
	}
	f, err := strconv.ParseFloat(args[pos], 64)
	if err != nil || f < 0 || f > 1e6 {
		return args
	}
	args = append([]string(nil), args...)
	switch strings.ToLower(args[0]) {
	case "wait", "xread", "xreadgroup":
		args[pos] = "10" // milliseconds
	default:
		args[pos] = "0.01"
	}
	return args
}

// edgeDiffer lists where redraft deliberately answers otherwise than Redis, by the node's
// reply, with the reason. A request the node answers this way is not sent to Redis.
var edgeDiffer = []struct {
	re     *regexp.Regexp
	reason string
}{
	{regexp.MustCompile(`^-ERR command '[^']*' is not supported by redraft`), "refused commands (server administration, replication, cluster, ...): docs/commands.md"},
	{regexp.MustCompile(`^-CROSSSLOT `), "keys must share a slot, checked before the command's own syntax, as in Redis Cluster"},
	{regexp.MustCompile(`^-ERR redraft: \S+ cannot be served in a cluster with several DCs`), "commands the cross-DC write path cannot record (docs/replication.md)"},
	{regexp.MustCompile(`^-ERR redraft: \S+ without keys cannot be replicated`), "keyless scripts cannot be recorded for the other DCs"},
	{regexp.MustCompile(`^-ERR (BY|GET) option of SORT denied in Cluster mode`), "SORT patterns must hash to the key's slot, refused where Redis Cluster refuses them"},
	{regexp.MustCompile(`^-ERR invalid cursor\r\n$`), "SCAN cursors carry the group: one redraft never handed out is refused (Redis reads -1 and \"\" as cursors)"},
}

// edgeOwn are commands redraft answers itself where Redis has none (its own, Dynomite's) or
// refuses them (a standalone Redis has no cluster support), by command table name.
var edgeOwn = map[string]string{
	"redraft":                      "redraft's own command",
	"redraft|consistency":          "redraft's own command",
	"dyno_config:conn_consistency": "Dynomite's command",
	"cluster":                      "CLUSTER INFO and KEYSLOT describe redraft's cluster",
	"cluster|info":                 "CLUSTER INFO describes redraft's cluster",
	"cluster|keyslot":              "CLUSTER KEYSLOT answers as Redis Cluster does",
	"readonly":                     "READONLY and READWRITE choose replica reads per connection, as in Redis Cluster",
	"readwrite":                    "READONLY and READWRITE choose replica reads per connection, as in Redis Cluster",
}

// edgeClient is a bare RESP client on one fresh connection.
func edgeDo(addr string, args []string) (string, error) {
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := nc.Write(appendCommand(nil, args)); err != nil {
		return "", err
	}
	reply, err := resp.ReadReply(bufio.NewReader(nc), nil)
	return string(reply), err
}

func edgeBytes(args []string) [][]byte {
	out := make([][]byte, len(args))
	for i, a := range args {
		out[i] = []byte(a)
	}
	return out
}

// replyKind is what the test compares for replies that are not errors: the RESP type, and
// whether it is a null.
func replyKind(r string) string {
	if strings.HasPrefix(r, "$-1\r\n") || strings.HasPrefix(r, "*-1\r\n") {
		return r[:3]
	}
	return r[:1]
}

// TestEdgeArguments sends every command of the command table with edge arguments through a
// node, with one DC and with three (writes through WRITE, pipelined at DC_ONE and synchronous
// at DC_QUORUM), and to a redis-server directly:
// the node stays up (a PING on a fresh connection answers after every request), answers the
// same error as Redis or a reply of the same type, and no client's handling panicked. Where
// redraft differs on purpose, edgeDiffer says why.
func TestEdgeArguments(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-servers")
	}
	reqs := edgeRequests()
	for _, mode := range []struct {
		name  string
		dcs   int
		level string // write_consistency
	}{{"oneDC", 1, fsm.DCOne}, {"threeDC", 3, fsm.DCOne}, {"threeDC_quorum", 3, fsm.DCQuorum}} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel() // each mode has its own redis-servers; the requests wait on round trips
			tc := startCluster(t, 2, 0, Config{FreezeWait: 100 * time.Millisecond, BackendTimeout: 2 * time.Second})
			if mode.dcs == 3 {
				tc.st = addDC(t, tc.st, "dc2", "h1")
				tc.st = addDC(t, tc.st, "dc3", "i1")
			}
			if mode.level != fsm.DCOne { // writes take the synchronous path (consistency.go)
				var err error
				if tc.st, err = fsm.ApplyCommand(tc.st, tc.st.Index+1, &fsm.SetSetting{Key: "write_consistency", Value: mode.level}); err != nil {
					t.Fatal(err)
				}
			}
			tc.addNode(Config{FreezeWait: 100 * time.Millisecond, BackendTimeout: 2 * time.Second})
			if got := tc.servers[0].snap.Load().multiDC; got != (mode.dcs > 1) {
				t.Fatalf("multiDC = %v with %d DCs", got, mode.dcs)
			}
			direct := testredis.Start(t).Addr
			node := tc.addrs[0]
			start := time.Now()
			compared, differ := 0, map[string]int{}
			for _, args := range reqs {
				args = shortBlocking(args)
				what := fmt.Sprintf("%q", args)
				got, err := edgeDo(node, args)
				if err != nil {
					t.Errorf("%s: node: %v (reply so far %q)", what, err, got)
				}
				if pong, err := edgeDo(node, []string{"PING"}); err != nil || pong != "+PONG\r\n" {
					t.Fatalf("after %s: PING on a fresh connection = %q, %v", what, pong, err)
				}
				if err != nil {
					continue
				}
				reason := ""
				if s := command.Lookup(edgeBytes(args)); s != nil {
					reason = edgeOwn[s.Name]
				}
				for _, d := range edgeDiffer {
					if reason != "" {
						break
					}
					if d.re.MatchString(got) {
						reason = d.reason
						break
					}
				}
				if reason != "" {
					differ[reason]++
					continue
				}
				want, err := edgeDo(direct, args)
				if err != nil {
					t.Fatalf("%s: redis-server: %v", what, err)
				}
				compared++
				switch {
				case want[0] == '-' || got[0] == '-':
					if got != want {
						t.Errorf("%s: node answers %q, Redis %q", what, got, want)
					}
				case replyKind(got) != replyKind(want):
					t.Errorf("%s: node answers %q, Redis %q (another type)", what, got, want)
				}
			}
			if n := tc.servers[0].Stats().ClientPanics; n != 0 {
				t.Errorf("%d client handlers panicked", n)
			}
			t.Logf("%d requests in %s: %d compared with Redis, deliberate differences %v", len(reqs), time.Since(start).Round(time.Millisecond), compared, differ)
		})
	}
}
