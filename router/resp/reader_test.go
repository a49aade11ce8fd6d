package resp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
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
