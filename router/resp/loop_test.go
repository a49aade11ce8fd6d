package resp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// loopOf runs Loop on r in a goroutine; each command batch parses is sent on cmds (its
// arguments joined by spaces), after which batch calls after(name) and returns its result.
func loopOf(r *Reader, after func(name string) bool) (cmds chan string, done chan error) {
	cmds, done = make(chan string, 100), make(chan error, 1)
	go func() {
		done <- r.Loop(func() bool {
			for {
				cmd, ok, err := r.Next()
				if err != nil {
					cmds <- "error: " + err.Error()
					return false
				}
				if !ok {
					r.Release()
					return true
				}
				var parts []string
				for _, a := range cmd.Args {
					parts = append(parts, string(a))
				}
				cmds <- strings.Join(parts, " ")
				if !after(parts[0]) {
					return false
				}
			}
		})
	}()
	return cmds, done
}

func nextCmd(t *testing.T, cmds chan string, want string) {
	t.Helper()
	select {
	case got := <-cmds:
		if got != want {
			t.Fatalf("batch parsed %q, want %q", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no %q within 5 s: the loop missed data that arrived", want)
	}
}

// TestLoopSeesDataArrivingWhileBatchRuns: the request a client sends while the batch of its
// previous one runs (after the read, before the loop waits again) wakes the loop, which
// waits without reading after a short read. A loop that began a new RawConn.Read (whose
// readiness reset drops the event) and waited first would hang here: the peer sends
// nothing more.
func TestLoopSeesDataArrivingWhileBatchRuns(t *testing.T) {
	for round := 0; round < 200; round++ {
		c, peer := tcpPair(t)
		r := NewReader(c, 0, 0)
		if !r.CanLoop() {
			t.Fatal("CanLoop: false for a TCP connection")
		}
		sent := 0
		cmds, done := loopOf(r, func(name string) bool {
			if sent < 3 {
				sent++
				// The next request is in the socket before batch returns.
				if _, err := fmt.Fprintf(peer, "*1\r\n$2\r\nc%d\r\n", sent); err != nil {
					t.Error(err)
				}
				if round%2 == 1 {
					time.Sleep(time.Millisecond) // and its readiness event handled by the poller
				}
			}
			return true
		})
		if _, err := peer.Write([]byte("*1\r\n$2\r\nc0\r\n")); err != nil {
			t.Fatal(err)
		}
		for i := 0; i <= 3; i++ {
			nextCmd(t, cmds, fmt.Sprintf("c%d", i))
		}
		_ = peer.Close()
		if err := <-done; !errors.Is(err, io.EOF) {
			t.Fatalf("Loop after the peer closed: %v, want EOF", err)
		}
		_ = c.Close()
	}
}

// TestLoopStopsAndLeavesTheRest: a batch that returns false ends Loop with nil; the commands
// it did not parse, and the one it rewound to, are still buffered for Next, and a second Loop
// goes on with the connection.
func TestLoopStopsAndLeavesTheRest(t *testing.T) {
	c, peer := tcpPair(t)
	r := NewReader(c, 0, 0)
	stopAt := "b"
	var mark int
	done := make(chan error, 1)
	var seen []string
	go func() {
		done <- r.Loop(func() bool {
			for {
				m := r.Mark()
				cmd, ok, err := r.Next()
				if err != nil || !ok {
					return err == nil
				}
				if string(cmd.Args[0]) == stopAt {
					mark = m
					r.Rewind(m)
					return false
				}
				seen = append(seen, string(cmd.Args[0]))
			}
		})
	}()
	if _, err := peer.Write([]byte("*1\r\n$1\r\na\r\n*1\r\n$1\r\nb\r\n*1\r\n$1\r\nc\r\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Loop ended by its batch: %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Loop did not end when its batch returned false")
	}
	if fmt.Sprint(seen) != "[a]" || mark == 0 {
		t.Fatalf("parsed %v before the stop (mark %d)", seen, mark)
	}
	for _, want := range []string{"b", "c"} {
		cmd, ok, err := r.Next()
		if err != nil || !ok || string(cmd.Args[0]) != want {
			t.Fatalf("after the stop, Next: %q %v %v, want %q", cmd.Args, ok, err, want)
		}
	}
	cmds, done2 := loopOf(r, func(string) bool { return true })
	if _, err := peer.Write([]byte("*1\r\n$1\r\nd\r\n")); err != nil {
		t.Fatal(err)
	}
	nextCmd(t, cmds, "d")
	Shutdown(c) // from this goroutine, while the loop waits
	select {
	case err := <-done2:
		if !errors.Is(err, io.EOF) {
			t.Fatalf("Loop after Shutdown: %v, want EOF", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not end the loop")
	}
}

// TestLoopBigArgument: an argument several times the pooled buffer, sent in pieces with
// pauses, arrives whole, followed by a small request in the same write as its last piece.
func TestLoopBigArgument(t *testing.T) {
	c, peer := tcpPair(t)
	r := NewReader(c, 0, 0)
	cmds, done := loopOf(r, func(string) bool { return true })
	big := bytes.Repeat([]byte("x"), 5*BufSize+17)
	msg := append([]byte(fmt.Sprintf("*2\r\n$3\r\nset\r\n$%d\r\n", len(big))), big...)
	msg = append(msg, "\r\n*1\r\n$4\r\nping\r\n"...)
	for len(msg) > 0 {
		n := min(len(msg), 7000)
		if _, err := peer.Write(msg[:n]); err != nil {
			t.Fatal(err)
		}
		msg = msg[n:]
		time.Sleep(time.Millisecond)
	}
	nextCmd(t, cmds, "set "+string(big))
	nextCmd(t, cmds, "ping")
	_ = peer.Close()
	if err := <-done; !errors.Is(err, io.EOF) {
		t.Fatalf("Loop after the peer closed: %v, want EOF", err)
	}
}
