package resp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
)

// chunkReader returns its data n bytes per Read, to exercise partial requests.
type chunkReader struct {
	b []byte
	n int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := min(r.n, len(p), len(r.b))
	copy(p, r.b[:n])
	r.b = r.b[n:]
	return n, nil
}

// readAll parses every command in data, reading chunk bytes at a time.
func readAll(data []byte, chunk int, maxBulk int64, maxArgs int) ([][]string, error) {
	rd := NewReader(&chunkReader{b: data, n: chunk}, maxBulk, maxArgs)
	var out [][]string
	for {
		cmd, ok, err := rd.Next()
		if err != nil {
			return out, err
		}
		if ok {
			var args []string
			for _, a := range cmd.Args {
				args = append(args, string(a))
			}
			// Raw must be a valid RESP request equal to the args.
			c2, err2 := parseOne(cmd.Raw)
			if err2 != nil || len(c2) != len(args) {
				return out, errors.New("Raw does not re-parse")
			}
			out = append(out, args)
			continue
		}
		if err := rd.Fill(); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
	}
}

func TestReaderParsesPipelines(t *testing.T) {
	in := "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n" +
		"PING\r\n" +
		"\r\n" + // empty inline lines are ignored
		"*0\r\n" + // and so are empty multibulks
		"set 'a b' \"c\\x41\\n\"\n" +
		"*1\r\n$0\r\n\r\n"
	want := [][]string{{"SET", "k", "hello"}, {"PING"}, {"set", "a b", "cA\n"}, {""}}
	for _, chunk := range []int{1, 2, 7, 4096} {
		got, err := readAll([]byte(in), chunk, 0, 0)
		if err != nil {
			t.Fatalf("chunk %d: %v", chunk, err)
		}
		if strings.Join(flat(got), "|") != strings.Join(flat(want), "|") || len(got) != len(want) {
			t.Fatalf("chunk %d: got %q, want %q", chunk, got, want)
		}
	}
}

func flat(x [][]string) []string {
	var out []string
	for _, a := range x {
		out = append(out, strings.Join(a, ","))
	}
	return out
}

func TestReaderLargeArgument(t *testing.T) {
	big := strings.Repeat("x", 300000)
	in := "*2\r\n$3\r\nGET\r\n$300000\r\n" + big + "\r\n"
	got, err := readAll([]byte(in), 1000, 0, 0)
	if err != nil || len(got) != 1 || got[0][1] != big {
		t.Fatalf("got %d commands, err %v", len(got), err)
	}
}

func TestReaderErrors(t *testing.T) {
	cases := []struct {
		in, err string
		maxBulk int64
		maxArgs int
	}{
		{"*x\r\n", "Protocol error: invalid multibulk length", 0, 0},
		{"*3\r\n$3\r\nSET\r\n:1\r\n", "Protocol error: expected '$', got ':'", 0, 0},
		{"*1\r\n$-5\r\n", "Protocol error: invalid bulk length", 0, 0},
		{"*1\r\n$11\r\nhello world\r\n", "Protocol error: invalid bulk length", 10, 0},
		{"*3\r\n", "Protocol error: invalid multibulk length", 0, 2},
		{"*2000000\r\n", "Protocol error: invalid multibulk length", 0, 0},
		{"set \"abc\n", "Protocol error: unbalanced quotes in request", 0, 0},
		{"set \"a\"b\n", "Protocol error: unbalanced quotes in request", 0, 0},
		{strings.Repeat("a", MaxInline+10), "Protocol error: too big inline request", 0, 0},
		{"*1\r\n$" + strings.Repeat("1", MaxInline+10), "Protocol error: too big bulk count string", 0, 0},
		// Numbers as string2ll reads them: no wrap past 2^63, no leading zero (session 43).
		{"*9223372036854775808\r\n", "Protocol error: invalid multibulk length", 0, 0},
		{"*18446744073709551617\r\n", "Protocol error: invalid multibulk length", 0, 0},
		{"*01\r\n$3\r\nGET\r\n", "Protocol error: invalid multibulk length", 0, 0},
		{"*1\r\n$03\r\nGET\r\n", "Protocol error: invalid bulk length", 0, 0},
		{"*-0\r\n", "Protocol error: invalid multibulk length", 0, 0},
		// Lines ended by a bare '\n', which Redis refuses (it reads up to '\r'; session 44).
		{"*2\n$3\r\nGET\r\n$1\r\nk\r\n", "Protocol error: invalid multibulk length", 0, 0},
		{"*2\r\n$3\nGET\r\n$1\r\nk\r\n", "Protocol error: invalid bulk length", 0, 0},
		{"*1\r\n$\n", "Protocol error: invalid bulk length", 0, 0},
	}
	for _, c := range cases {
		_, err := readAll([]byte(c.in), 4096, c.maxBulk, c.maxArgs)
		var pe *ProtocolError
		if !errors.As(err, &pe) || err.Error() != c.err {
			t.Errorf("%.30q: err %v, want %q", c.in, err, c.err)
		}
	}
}

func TestReadReply(t *testing.T) {
	replies := []string{"+OK\r\n", "-ERR x\r\n", ":12\r\n", "$-1\r\n", "$3\r\nabc\r\n", "*-1\r\n", "*0\r\n",
		"*3\r\n$1\r\na\r\n*2\r\n:1\r\n$-1\r\n+x\r\n", "+" + strings.Repeat("y", 70000) + "\r\n"}
	all := strings.Join(replies, "")
	br := bufio.NewReaderSize(&chunkReader{b: []byte(all), n: 3}, 16)
	for _, want := range replies {
		got, err := ReadReply(br, nil)
		if err != nil || string(got) != want {
			t.Fatalf("ReadReply = %.40q, %v; want %.40q", got, err, want)
		}
		if n := Skip(got); n != len(got) {
			t.Fatalf("Skip(%.40q) = %d, want %d", got, n, len(got))
		}
		if _, rest, ok := Parse(got); !ok || len(rest) != 0 {
			t.Fatalf("Parse(%.40q) failed", got)
		}
	}
	if _, err := ReadReply(bufio.NewReader(strings.NewReader("?bad\r\n")), nil); !errors.Is(err, ErrBadReply) {
		t.Fatalf("bad reply: err %v", err)
	}
}

// parseOne parses the single request in b.
func parseOne(b []byte) ([]string, error) {
	rd := NewReader(bytes.NewReader(b), 0, 0)
	for {
		cmd, ok, err := rd.Next()
		if err != nil {
			return nil, err
		}
		if ok {
			var out []string
			for _, a := range cmd.Args {
				out = append(out, string(a))
			}
			return out, nil
		}
		if err := rd.Fill(); err != nil {
			return nil, err
		}
	}
}

// TestReaderResumesLongRequests: a long request that arrives a piece at a time is parsed on
// from where the last read stopped, not from its start (which made a request of many
// arguments, sent slowly, cost its length squared), and still comes out whole, followed by
// the next request.
func TestReaderResumesLongRequests(t *testing.T) {
	const n = 5000
	var b strings.Builder
	b.WriteString("*" + strconv.Itoa(n) + "\r\n")
	var pieces []int // where each argument ends
	for i := range n {
		b.WriteString("$1\r\n" + string(rune('a'+i%26)) + "\r\n")
		pieces = append(pieces, b.Len())
	}
	b.WriteString("*1\r\n$4\r\nPING\r\n")
	data := []byte(b.String())
	src := &chunkReader{n: 0}
	rd := NewReader(src, 0, 0)
	fed := 0
	feed := func(to int) {
		src.b, src.n = data[fed:to], 1<<20
		fed = to
		for len(src.b) > 0 {
			if err := rd.Fill(); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, end := range pieces[:n-1] {
		feed(end)
		if _, ok, err := rd.Next(); ok || err != nil {
			t.Fatalf("after %d arguments: ok %v, err %v", i+1, ok, err)
		}
		if rd.resumeN != int64(i+1) {
			t.Fatalf("after %d arguments the reader resumes at argument %d", i+1, rd.resumeN)
		}
	}
	feed(len(data))
	cmd, ok, err := rd.Next()
	if !ok || err != nil || len(cmd.Args) != n || string(cmd.Args[n-1]) != string(rune('a'+(n-1)%26)) || string(cmd.Args[27]) != "b" {
		t.Fatalf("the long request: ok %v, err %v, %d arguments", ok, err, len(cmd.Args))
	}
	if got, err := parseOne(cmd.Raw); err != nil || len(got) != n {
		t.Fatalf("its Raw: %d arguments, %v", len(got), err)
	}
	if cmd, ok, err := rd.Next(); !ok || err != nil || string(cmd.Args[0]) != "PING" {
		t.Fatalf("the request after it: %q, %v, %v", cmd.Args, ok, err)
	}
}

// TestReaderUnauthenticatedLimits: before authentication a request may hold 10 arguments of
// 16 KiB at most, as in redis-server; after it, the configured limits.
func TestReaderUnauthenticatedLimits(t *testing.T) {
	big := strings.Repeat("x", 16385)
	for _, c := range []struct{ in, err string }{
		{"*11\r\n", "Protocol error: unauthenticated multibulk length"},
		{"*2\r\n$3\r\nSET\r\n$16385\r\n", "Protocol error: unauthenticated bulk length"},
		{"*10\r\n$1\r\na\r\n", ""}, // incomplete, within the limits
		{"*1\r\n$16384\r\n", ""},
	} {
		rd := NewReader(&chunkReader{b: []byte(c.in), n: 4096}, 0, 0)
		rd.Unauthenticated(true)
		if err := rd.Fill(); err != nil {
			t.Fatal(err)
		}
		_, _, err := rd.Next()
		if (c.err == "" && err != nil) || (c.err != "" && (err == nil || err.Error() != c.err)) {
			t.Errorf("%.20q: %v, want %q", c.in, err, c.err)
		}
	}
	src := &chunkReader{b: []byte("*2\r\n$3\r\nGET\r\n$16385\r\n" + big + "\r\n"), n: 1 << 20}
	rd := NewReader(src, 0, 0)
	rd.Unauthenticated(true)
	rd.Unauthenticated(false)
	for len(src.b) > 0 {
		if err := rd.Fill(); err != nil {
			t.Fatal(err)
		}
	}
	if cmd, ok, err := rd.Next(); !ok || err != nil || len(cmd.Args[1]) != 16385 {
		t.Fatalf("authenticated: ok %v, err %v", ok, err)
	}
}

// TestParseIntEdges: the integers of the protocol, requests and replies, at int64's edges.
func TestParseIntEdges(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "-1": -1, "9223372036854775807": 1<<63 - 1, "-9223372036854775808": -1 << 63} {
		if n, ok := parseInt([]byte(in)); !ok || n != want {
			t.Errorf("parseInt(%s) = %d, %v", in, n, ok)
		}
	}
	for _, in := range []string{"9223372036854775808", "-9223372036854775809", "00", "-0", "07", "", "-", "1a"} {
		if n, ok := parseInt([]byte(in)); ok {
			t.Errorf("parseInt(%q) = %d, want refused", in, n)
		}
	}
}

// A request over MaxRequest in all is refused as soon as an argument's header says it would
// be, before its bytes are read (each argument under proto-max-bulk-len, the sum over it).
func TestReaderBoundsTheRequest(t *testing.T) {
	in := "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2000\r\n" + strings.Repeat("v", 2000) + "\r\n"
	rd := NewReader(&chunkReader{b: []byte(in), n: 64}, 0, 0)
	rd.maxReq = 1024
	for {
		_, ok, err := rd.Next()
		if err != nil {
			var pe *ProtocolError
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), "request larger than") {
				t.Fatalf("err %v, want the request refused", err)
			}
			if rd.w > 256 {
				t.Fatalf("%d bytes read before the refusal", rd.w)
			}
			return
		}
		if ok {
			t.Fatal("a request over the bound was parsed")
		}
		if err := rd.Fill(); err != nil {
			t.Fatalf("fill: %v", err)
		}
	}
}

// Once a grown buffer is let go, the last request's arguments no longer point into it: kept,
// they kept it reachable for the connection's life.
func TestReaderForgetsArgumentsOfAGrownBuffer(t *testing.T) {
	big := strings.Repeat("x", 300000)
	in := "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$300000\r\n" + big + "\r\n"
	rd := NewReader(&chunkReader{b: []byte(in), n: 300100}, 0, 0)
	for done := false; !done; {
		cmd, ok, err := rd.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			if string(cmd.Args[0]) != "SET" || len(cmd.Args[2]) != 300000 {
				t.Fatalf("command %q", cmd.Args[0])
			}
			done = true
			continue
		}
		if err := rd.Fill(); err != nil {
			t.Fatal(err)
		}
	}
	// The next read starts over in a small buffer (the client idles; EOF here).
	if _, ok, err := rd.Next(); ok || err != nil {
		t.Fatalf("Next: %v, %v", ok, err)
	}
	if err := rd.Fill(); !errors.Is(err, io.EOF) {
		t.Fatalf("Fill: %v", err)
	}
	if len(rd.buf) > shrinkAbove {
		t.Fatalf("buffer of %d bytes kept", len(rd.buf))
	}
	for i, a := range rd.args[:cap(rd.args)] {
		if a != nil {
			t.Fatalf("argument %d (%d bytes) still points into the let-go buffer", i, len(a))
		}
	}
}
