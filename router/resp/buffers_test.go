package resp

import (
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	_ = server.SetDeadline(time.Now().Add(10 * time.Second))
	return client, server
}

// next parses one command, filling as needed.
func next(t *testing.T, r *Reader) []string {
	t.Helper()
	for {
		cmd, ok, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			var out []string
			for _, a := range cmd.Args {
				out = append(out, string(a))
			}
			return out
		}
		if err := r.Fill(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReaderPooledBuffer: over a socket, the reader holds a buffer only while it has bytes to
// parse; arguments larger than a pooled buffer still arrive whole, and EOF ends the reader.
func TestReaderPooledBuffer(t *testing.T) {
	cl, sv := tcpPair(t)
	r := NewReader(sv, 0, 0)
	if r.raw == nil {
		t.Fatal("a TCP connection must be read through its RawConn")
	}
	if _, err := io.WriteString(cl, "*1\r\n$4\r\nPING\r\n"); err != nil {
		t.Fatal(err)
	}
	if got := next(t, r); strings.Join(got, " ") != "PING" {
		t.Fatalf("got %q", got)
	}
	r.Release()
	if r.buf != nil || r.bufp != nil {
		t.Fatal("Release kept the buffer of a connection with nothing buffered")
	}
	// A command with an argument of 3 pooled buffers, sent in pieces, then a small one.
	big := strings.Repeat("x", 3*BufSize)
	go func() {
		msg := "*2\r\n$3\r\nSET\r\n$" + strconv.Itoa(len(big)) + "\r\n" + big + "\r\n*1\r\n$4\r\nPING\r\n"
		for len(msg) > 0 {
			n := min(len(msg), 5000)
			if _, err := io.WriteString(cl, msg[:n]); err != nil {
				return
			}
			msg = msg[n:]
		}
	}()
	if got := next(t, r); len(got) != 2 || got[0] != "SET" || got[1] != big {
		t.Fatalf("big argument: %d args", len(got))
	}
	if got := next(t, r); strings.Join(got, " ") != "PING" {
		t.Fatalf("got %q", got)
	}
	r.Release()
	if r.buf != nil {
		t.Fatal("Release kept the grown buffer")
	}
	cl.Close()
	if err := r.Fill(); !errors.Is(err, io.EOF) {
		t.Fatalf("Fill after the peer closed: %v", err)
	}
}

// TestReaderPartialKeepsBuffer: a request cut in two keeps its buffer across Release.
func TestReaderPartialKeepsBuffer(t *testing.T) {
	cl, sv := tcpPair(t)
	r := NewReader(sv, 0, 0)
	if _, err := io.WriteString(cl, "*1\r\n$4\r\nPI"); err != nil {
		t.Fatal(err)
	}
	if err := r.Fill(); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := r.Next(); ok || err != nil {
		t.Fatalf("half a request parsed: %v %v", ok, err)
	}
	r.Release()
	if r.Buffered() == 0 || r.buf == nil {
		t.Fatal("Release dropped unparsed bytes")
	}
	if _, err := io.WriteString(cl, "NG\r\n"); err != nil {
		t.Fatal(err)
	}
	if got := next(t, r); strings.Join(got, " ") != "PING" {
		t.Fatalf("got %q", got)
	}
}
