package resp

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestRawWriterWritesAllThroughAFullBuffer: a write far larger than the socket buffers, to a
// peer that reads slowly, waits for writability (EAGAIN) and delivers every byte in order.
func TestRawWriterWritesAllThroughAFullBuffer(t *testing.T) {
	c, s := tcpPair(t)
	_ = c.(*net.TCPConn).SetWriteBuffer(4096)
	w := newRawWriter(c)
	if w == nil {
		t.Fatal("newRawWriter: nil for a TCP connection")
	}
	want := make([]byte, 8<<20)
	for i := range want {
		want[i] = byte(i * 7)
	}
	got := make(chan []byte, 1)
	go func() {
		var buf bytes.Buffer
		b := make([]byte, 1500)
		for buf.Len() < len(want) {
			n, err := s.Read(b)
			buf.Write(b[:n])
			if err != nil {
				break
			}
		}
		got <- buf.Bytes()
	}()
	n, err := w.Write(want)
	if err != nil || n != len(want) {
		t.Fatalf("Write: %d, %v; want %d, nil", n, err, len(want))
	}
	if !bytes.Equal(<-got, want) {
		t.Fatal("the peer read other bytes than were written")
	}
}

// TestRawWriterHonoursDeadline: with a peer that never reads, Write returns the deadline's
// error, as net.Conn's Write does, instead of blocking.
func TestRawWriterHonoursDeadline(t *testing.T) {
	c, _ := tcpPair(t)
	w := newRawWriter(c)
	_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	done := make(chan error, 1)
	go func() {
		_, err := w.Write(make([]byte, 64<<20))
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Write: %v, want a deadline error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Write did not return at its deadline")
	}
}

// TestRawWriterReportsAClosedPeer: writing to a connection the peer closed fails with the
// system call's error (EPIPE or ECONNRESET), and the process lives on (no SIGPIPE death).
func TestRawWriterReportsAClosedPeer(t *testing.T) {
	c, s := tcpPair(t)
	w := newRawWriter(c)
	_ = s.(*net.TCPConn).SetLinger(0)
	s.Close()
	deadline := time.Now().Add(5 * time.Second)
	var err error
	for err == nil && time.Now().Before(deadline) {
		_, err = w.Write([]byte("+OK\r\n"))
	}
	if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Write to a closed peer: %v, want EPIPE or ECONNRESET", err)
	}
	// A write on a connection closed here is net's own error, as before.
	c.Close()
	if _, err := w.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v, want net.ErrClosed", err)
	}
}

// TestRawWriterOnlyForSockets: a connection without a file descriptor of its own (TLS) gets no
// rawWriter; Writer gives the connection itself for it.
func TestRawWriterOnlyForSockets(t *testing.T) {
	c, _ := tcpPair(t)
	if newRawWriter(tls.Client(c, &tls.Config{})) != nil {
		t.Fatal("newRawWriter: a writer for a TLS connection")
	}
	if newRawWriter(struct{ io.Writer }{io.Discard}) != nil {
		t.Fatal("newRawWriter: a writer for a plain io.Writer")
	}
	// Writer: raw for a socket, except under the race detector (see Writer).
	if _, raw := Writer(c).(*rawWriter); raw == raceEnabled {
		t.Fatalf("Writer of a TCP connection: raw %v with the race detector %v", raw, raceEnabled)
	}
	if tc := tls.Client(c, &tls.Config{}); Writer(tc) != io.Writer(tc) {
		t.Fatal("Writer of a TLS connection: not the connection itself")
	}
}

// TestTryWriterNeverWaits: to a peer that does not read, TryWrite writes what the socket
// buffers take and returns at once with the count; once the peer drained them, the rest goes
// out, and the peer reads every byte in order. No TryWriter for a TLS connection.
func TestTryWriterNeverWaits(t *testing.T) {
	c, s := tcpPair(t)
	tw := NewTryWriter(c)
	if tw == nil {
		t.Fatal("NewTryWriter: nil for a TCP connection")
	}
	if NewTryWriter(tls.Client(c, &tls.Config{})) != nil {
		t.Fatal("NewTryWriter: a writer for a TLS connection")
	}
	want := make([]byte, 64<<20) // more than loopback's socket buffers hold
	for i := range want {
		want[i] = byte(i * 13)
	}
	n, err := tw.TryWrite(want)
	if err != nil || n <= 0 || n >= len(want) {
		t.Fatalf("TryWrite to a peer that does not read: %d, %v; want part of %d, nil", n, err, len(want))
	}
	if n2, err := tw.TryWrite(want[n:]); err != nil || n2 != 0 {
		t.Fatalf("TryWrite to full buffers: %d, %v; want 0, nil", n2, err)
	}
	type read struct {
		b   []byte
		err error
	}
	got := make(chan read, 1)
	go func() {
		b, err := io.ReadAll(io.LimitReader(s, int64(len(want))))
		got <- read{b, err}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for n < len(want) {
		m, err := tw.TryWrite(want[n:])
		if err != nil {
			t.Fatal(err)
		}
		n += m
		if time.Now().After(deadline) {
			t.Fatalf("wrote %d of %d bytes", n, len(want))
		}
		if m == 0 {
			time.Sleep(time.Millisecond) // the peer is draining the buffers
		}
	}
	if r := <-got; !bytes.Equal(r.b, want) {
		t.Fatalf("the peer read other bytes than were written (%d of %d bytes, read error %v)", len(r.b), len(want), r.err)
	}
}

// TestRawReadReadsAndReportsEOF: the Reader's raw reads deliver what the peer wrote and io.EOF
// once it closed.
func TestRawReadReadsAndReportsEOF(t *testing.T) {
	c, s := tcpPair(t)
	rd := NewReader(c, 1<<20, 1024)
	go func() {
		_, _ = s.Write([]byte("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"))
		s.Close()
	}()
	var cmds int
	for {
		_, ok, err := rd.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			cmds++
			continue
		}
		if err := rd.Fill(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("Fill: %v, want io.EOF", err)
			}
			break
		}
	}
	if cmds != 1 {
		t.Fatalf("read %d commands, want 1", cmds)
	}
}

// TestRawReaderReadsHonoursDeadlineAndEOF: a RawReader delivers what the peer wrote, returns a
// timeout (a net.Error, as net.Conn's Read does) at the read deadline, and io.EOF once the
// peer closed; a TLS connection is read as it is.
func TestRawReaderReadsHonoursDeadlineAndEOF(t *testing.T) {
	c, s := tcpPair(t)
	rd := RawReader(c)
	if _, raw := rd.(*rawReader); !raw {
		t.Fatal("RawReader of a TCP connection: not raw")
	}
	if tc := tls.Client(c, &tls.Config{}); RawReader(tc) != io.Reader(tc) {
		t.Fatal("RawReader of a TLS connection: not the connection itself")
	}
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	var ne net.Error
	if _, err := rd.Read(make([]byte, 16)); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past the deadline: %v, want a timeout", err)
	}
	_ = c.SetReadDeadline(time.Time{})
	go func() {
		_, _ = s.Write([]byte("+PONG\r\n"))
		s.Close()
	}()
	got, err := io.ReadAll(rd)
	if err != nil || string(got) != "+PONG\r\n" {
		t.Fatalf("ReadAll: %q, %v", got, err)
	}
	if n, err := rd.Read(make([]byte, 4)); n != 0 || err != io.EOF {
		t.Fatalf("Read after the peer closed: %d, %v; want 0, io.EOF", n, err)
	}
}
