package router

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testredis"
	"github.com/redraft/redraft/router/command"
	"github.com/redraft/redraft/router/resp"
)

// The parity harness runs the command scripts of testdata/parity.txt against a redis-server
// directly and through a node (one DC; three DCs, where writes go through the WRITE script),
// in RESP2 and in RESP3, and compares the replies byte for byte.
//
// Script format: "## name" starts a script, run on fresh connections after FLUSHALL on both
// sides; "#" starts a comment; every other line is a command, split on spaces (in an argument
// "\s" is a space and "\n" a newline; "\e" alone is the empty string). A line may start
// with marks:
//
//	?  compare only the reply's type (time, ids, memory: values that differ between servers)
//	%  compare the top-level elements as a multiset (KEYS and the like, merged over groups)
//	@  send on the script's second connection (a publisher, a client that unblocks another)
//	>  send, and read the reply later with '<' (a blocking command another connection ends)
//	<  send nothing: read one more reply on the first connection (pub/sub messages)
//	+  pipelined: sent in one write with the lines after it, up to the first line without
//	   '+', whose replies are then read in order (on the first connection)
//	!  the node only (redraft's own commands, or where redraft answers for itself: edgeOwn);
//	   the reply must not be an error
//	~  with one DC only: with several the line is left out on both sides (MOVE and COPY ... DB
//	   to another database are refused there; TestXDCOtherDBRefused checks the refusal)
//	2: or 3: the line runs only in that protocol
//
// A reply of the node that matches a documented difference (parityDiffer) is counted with its
// reason and not compared.

// parityLine is one line of a script.
type parityLine struct {
	mark   byte // 0, '?' or '%': how replies compare
	second bool // '@': on the second connection
	more   bool // '<': read one more reply
	send   bool // '>': send, read the reply later ('<')
	pipe   bool // '+': sent with the next lines in one write
	own    bool // '!': the node only
	oneDC  bool // '~': with one DC only (refused with several: docs/commands.md)
	proto  int  // 0: both protocols
	args   []string
	text   string
	line   int
}

type parityScript struct {
	name  string
	lines []parityLine
}

func loadParity(t testing.TB) []parityScript {
	t.Helper()
	data, err := os.ReadFile("testdata/parity.txt")
	if err != nil {
		t.Fatal(err)
	}
	var out []parityScript
	for i, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "## "):
			out = append(out, parityScript{name: strings.TrimSpace(l[3:])})
			continue
		case l == "" || strings.HasPrefix(l, "#"):
			continue
		}
		if len(out) == 0 {
			t.Fatalf("parity.txt:%d: a command before the first script", i+1)
		}
		pl := parityLine{text: l, line: i + 1}
		if len(l) > 2 && (l[0] == '2' || l[0] == '3') && l[1] == ':' {
			pl.proto, l = int(l[0]-'0'), strings.TrimSpace(l[2:])
		}
	marks:
		for len(l) > 0 {
			switch l[0] {
			case '?', '%':
				pl.mark = l[0]
			case '@':
				pl.second = true
			case '<':
				pl.more = true
			case '>':
				pl.send = true
			case '+':
				pl.pipe = true
			case '!':
				pl.own = true
			case '~':
				pl.oneDC = true
			default:
				break marks
			}
			l = strings.TrimSpace(l[1:])
		}
		for _, a := range strings.Fields(l) {
			if a == `\e` {
				a = ""
			}
			a = strings.ReplaceAll(a, `\s`, " ")
			pl.args = append(pl.args, strings.ReplaceAll(a, `\n`, "\n"))
		}
		if len(pl.args) == 0 && !pl.more {
			t.Fatalf("parity.txt:%d: no command", i+1)
		}
		if pl.pipe && (pl.more || pl.send || pl.second || pl.own) {
			t.Fatalf("parity.txt:%d: '+' goes with a command of the first connection only", i+1)
		}
		out[len(out)-1].lines = append(out[len(out)-1].lines, pl)
	}
	return out
}

// withoutOneDC returns the scripts without their lines marked '~' (one DC only), on both
// sides, so that what they would have changed stays the same in Redis and through the node.
func withoutOneDC(scripts []parityScript) []parityScript {
	out := make([]parityScript, len(scripts))
	for i, sc := range scripts {
		out[i] = parityScript{name: sc.name}
		for _, l := range sc.lines {
			if !l.oneDC {
				out[i].lines = append(out[i].lines, l)
			}
		}
	}
	return out
}

// parityDiffer are where redraft answers otherwise than Redis on purpose (docs/commands.md),
// matched on the node's reply.
var parityDiffer = edgeDiffer

// parityConn is one connection of a script, to the node or to Redis.
type parityConn struct {
	nc net.Conn
	br *bufio.Reader
}

func dialParity(t testing.TB, addr string) *parityConn {
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	return &parityConn{nc: nc, br: bufio.NewReader(nc)}
}

func (p *parityConn) do(args []string) (string, error) {
	return p.doAfter(nil, args)
}

// doAfter writes the pipelined requests piped and args (nil: nothing) in one write, and reads
// one reply.
func (p *parityConn) doAfter(piped []byte, args []string) (string, error) {
	_ = p.nc.SetDeadline(time.Now().Add(5 * time.Second))
	if args != nil {
		piped = appendCommand(piped, args)
	}
	if len(piped) > 0 {
		if _, err := p.nc.Write(piped); err != nil {
			return "", err
		}
	}
	r, err := resp.ReadReply(p.br, nil)
	return string(r), err
}

// paritySame compares two replies by a line's mark.
func paritySame(mark byte, got, want string) bool {
	switch mark {
	case '?':
		return got != "" && want != "" && got[0] == want[0] && (got[0] != '-') == (want[0] != '-') &&
			strings.HasPrefix(got, "_") == strings.HasPrefix(want, "_")
	case '%':
		g, _, ok1 := resp.Parse([]byte(got))
		w, _, ok2 := resp.Parse([]byte(want))
		if !ok1 || !ok2 || g.Type != w.Type || len(g.Elems) != len(w.Elems) {
			return got == want
		}
		elems := func(v resp.Value) []string {
			var out []string
			step := 1
			if v.Type == '%' {
				step = 2
			}
			for i := 0; i < len(v.Elems); i += step {
				s := string(v.Elems[i].Raw)
				if step == 2 {
					s += string(v.Elems[i+1].Raw)
				}
				out = append(out, s)
			}
			slices.Sort(out)
			return out
		}
		return slices.Equal(elems(g), elems(w))
	}
	return got == want
}

// parityMode is one way the node is set up.
type parityMode struct {
	name string
	dcs  int
}

// TestParity runs the parity scripts (see above) in every mode and protocol.
func TestParity(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-servers")
	}
	all := append(loadParity(t), commandTableScript())
	for _, mode := range []parityMode{{"oneDC", 1}, {"threeDC", 3}} {
		scripts := all
		if mode.dcs > 1 {
			scripts = withoutOneDC(all)
		}
		t.Run(mode.name, func(t *testing.T) {
			cfg := Config{FreezeWait: 100 * time.Millisecond, BackendTimeout: 2 * time.Second}
			tc := startCluster(t, 2, 0, cfg)
			if mode.dcs == 3 {
				tc.st = addDC(t, tc.st, "dc2", "h1")
				tc.st = addDC(t, tc.st, "dc3", "i1")
			}
			var err error
			if tc.st, err = fsm.ApplyCommand(tc.st, tc.st.Index+1, &fsm.SetSetting{Key: "flush_enabled", Value: "true"}); err != nil {
				t.Fatal(err)
			}
			tc.addNode(cfg)
			direct := testredis.Start(t).Addr
			for _, proto := range []int{2, 3} {
				t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
					start := time.Now()
					compared, differ := 0, map[string]int{}
					for _, sc := range scripts {
						c, d := runParityScript(t, tc.addrs[0], direct, sc, proto, differ)
						compared += c
						_ = d
					}
					if n := tc.servers[0].Stats().ClientPanics; n != 0 {
						t.Errorf("%d client handlers panicked", n)
					}
					t.Logf("%d scripts in %s: %d replies compared byte for byte, documented differences %v",
						len(scripts), time.Since(start).Round(time.Millisecond), compared, differ)
				})
			}
		})
	}
}

// runParityScript runs one script on fresh connections to the node and to Redis, after
// FLUSHALL on both, and returns how many replies it compared.
func runParityScript(t *testing.T, node, direct string, sc parityScript, proto int, differ map[string]int) (compared, skipped int) {
	t.Helper()
	type pair struct{ n, r *parityConn }
	open := func() pair {
		p := pair{dialParity(t, node), dialParity(t, direct)}
		if proto == 3 {
			for _, c := range []*parityConn{p.n, p.r} {
				if r, err := c.do([]string{"HELLO", "3"}); err != nil || !strings.HasPrefix(r, "%7\r\n") {
					t.Fatalf("%s: HELLO 3 = %q, %v", sc.name, r, err)
				}
			}
		}
		return p
	}
	for _, addr := range []string{node, direct} {
		c := dialParity(t, addr)
		if r, err := c.do([]string{"FLUSHALL"}); r != "+OK\r\n" {
			t.Fatalf("%s: FLUSHALL on %s = %q, %v", sc.name, addr, r, err)
		}
		_ = c.nc.Close()
	}
	first := open()
	var second *pair
	var piped []parityLine // '+' lines sent with the next line
	var pipedRaw []byte
	for _, l := range sc.lines {
		if l.proto != 0 && l.proto != proto {
			continue
		}
		if l.pipe {
			piped = append(piped, l)
			pipedRaw = appendCommand(pipedRaw, l.args)
			continue
		}
		c := first
		if l.own {
			got, err := c.n.do(l.args)
			if err != nil || strings.HasPrefix(got, "-") {
				t.Errorf("parity.txt:%d %s: node answers %q, %v", l.line, l.text, got, err)
			}
			differ["redraft's own answer"]++
			skipped++
			continue
		}
		if l.second {
			if second == nil {
				p := open()
				second = &p
			}
			c = *second
		}
		if l.send {
			for _, pc := range []*parityConn{c.n, c.r} {
				if _, err := pc.nc.Write(appendCommand(nil, l.args)); err != nil {
					t.Fatalf("parity.txt:%d %s: %v", l.line, l.text, err)
				}
			}
			continue
		}
		if len(piped) > 0 && (l.second || l.send) {
			t.Fatalf("parity.txt:%d: '+' lines must be followed by a line of the first connection", l.line)
		}
		var args []string
		if !l.more {
			args = l.args
		}
		raw := pipedRaw
		if args != nil {
			raw = appendCommand(raw, args)
		}
		for _, pl := range append(piped, l) {
			got, err := c.n.doAfter(raw, nil)
			if err != nil {
				t.Errorf("parity.txt:%d %s: node: %v (reply so far %q)", pl.line, pl.text, err, got)
				return compared, skipped
			}
			want, err := c.r.doAfter(raw, nil)
			if err != nil {
				t.Fatalf("parity.txt:%d %s: redis-server: %v", pl.line, pl.text, err)
			}
			raw = nil
			if reason := parityReason(got); reason != "" && got != want {
				differ[reason]++
				skipped++
				continue
			}
			compared++
			if !paritySame(pl.mark, got, want) {
				t.Errorf("parity.txt:%d %s (%s):\n node  %.600q\n redis %.600q", pl.line, pl.text, sc.name, got, want)
			}
		}
		piped, pipedRaw = piped[:0], pipedRaw[:0]
	}
	if len(piped) > 0 {
		t.Fatalf("%s: the script ends with '+' lines", sc.name)
	}
	return compared, skipped
}

// commandTableScript asks COMMAND INFO and COMMAND DOCS of every served command that Redis
// knows (redraft's own commands aside): the node answers from its stored RESP2 replies,
// converted for RESP3 sessions, which must be Redis's bytes.
func commandTableScript() parityScript {
	sc := parityScript{name: "COMMAND INFO and DOCS of every served command"}
	for _, n := range command.Served() {
		if edgeOwn[n] != "" && n != "cluster" && n != "readonly" && n != "readwrite" {
			continue
		}
		// A container's subcommands come in the order of Redis's hash table, which differs
		// between processes (redraft stores them sorted): only the type is compared.
		var mark byte
		if command.ByName(n).Subs != nil {
			mark = '?'
		}
		sc.lines = append(sc.lines, parityLine{mark: mark, args: []string{"COMMAND", "INFO", n}, text: "COMMAND INFO " + n},
			parityLine{mark: mark, args: []string{"COMMAND", "DOCS", n}, text: "COMMAND DOCS " + n})
	}
	return sc
}

// parityReason returns why the node's reply differs on purpose, or "".
func parityReason(got string) string {
	for _, d := range parityDiffer {
		if d.re.MatchString(got) {
			return d.reason
		}
	}
	return ""
}

// parityCovered returns the command table names the scripts reach.
func parityCovered(scripts []parityScript) map[string]bool {
	seen := map[string]bool{}
	for _, sc := range scripts {
		for _, l := range sc.lines {
			if len(l.args) == 0 {
				continue
			}
			args := make([][]byte, len(l.args))
			for i, a := range l.args {
				args[i] = []byte(a)
			}
			if s := command.Lookup(args); s != nil {
				seen[s.Name] = true
				if p, _, ok := strings.Cut(s.Name, "|"); ok {
					seen[p] = true
				}
			}
		}
	}
	return seen
}

// TestParityCoverage fails when a command of the table that redraft serves has no line in the
// parity scripts; a refused command must say why in the table (docs/commands.md shows it).
func TestParityCoverage(t *testing.T) {
	seen := parityCovered(loadParity(t))
	doc, err := os.ReadFile("../docs/commands.md")
	if err != nil {
		t.Fatal(err)
	}
	served, refused := 0, 0
	var missing []string
	for _, s := range command.All() {
		if s.Kind == command.Unsupported {
			refused++
			if s.Note == "" || !bytes.Contains(doc, []byte(strings.ToUpper(strings.ReplaceAll(s.Name, "|", " ")))) {
				t.Errorf("%s is refused without a documented reason in docs/commands.md", s.Name)
			}
			continue
		}
		served++
		if !seen[s.Name] {
			missing = append(missing, s.Name)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d served commands have no line in testdata/parity.txt: %s", len(missing), strings.Join(missing, " "))
	}
	t.Logf("%d commands in the table: %d served, %d with parity lines, %d refused (documented)", len(command.All()), served, served-len(missing), refused)
}
