package router

import (
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redraft/redraft/router/command"
)

// assertNothingInFlight fails unless no slot counts a request in flight.
func assertNothingInFlight(t *testing.T, s *Server) {
	t.Helper()
	for sl := range s.inflight {
		if n := s.inflight[sl].Load(); n != 0 {
			t.Fatalf("slot %d counts %d requests in flight", sl, n)
		}
	}
}

// Requests written one at a time without waiting, to keys on two groups, with local replies
// and errors between them: each may arrive as a batch of one whose reply the backend reader
// writes, while the reply before it is still owed. The replies must come in request order.
func TestDirectRepliesInOrder(t *testing.T) {
	tc := startCluster(t, 2, 1, Config{})
	ctx := ctxT(t)
	a, b := keyIn("da", 0, 2), keyIn("db", 1, 2)
	if err := tc.client(0).HSet(ctx, "{"+a+"}h", "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	rc := dialRaw(t, tc.addrs[0])
	const n = 3000
	var want []string
	counts := map[string]int{}
	done := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			var cmd string
			switch {
			case i%11 == 5:
				cmd = cmdRaw("GET", "{"+a+"}h") // WRONGTYPE, from the backend
			case i%7 == 3:
				cmd = cmdRaw("PING") // answered by the node
			default:
				cmd = cmdRaw("INCR", []string{a, b}[i%2])
			}
			if _, err := rc.nc.Write([]byte(cmd)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for i := 0; i < n; i++ {
		switch {
		case i%11 == 5:
			want = append(want, "-WRONGTYPE")
		case i%7 == 3:
			want = append(want, "+PONG")
		default:
			k := []string{a, b}[i%2]
			counts[k]++
			want = append(want, ":"+strconv.Itoa(counts[k]))
		}
	}
	for i, w := range want {
		got := rc.line()
		if !strings.HasPrefix(got, w) {
			t.Fatalf("reply %d: %q, want %q", i, got, w)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	assertNothingInFlight(t, tc.servers[0])
}

// A reply bigger than the socket buffers goes to a client that does not read it yet: the
// backend connection's reader hands the rest to a goroutine and goes on answering everyone
// else from the same connection; the slow client then gets its reply whole, and its session
// goes on.
func TestDirectReplyToSlowReader(t *testing.T) {
	tc := startCluster(t, 1, 1, Config{BackendTimeout: 2 * time.Second})
	ctx := ctxT(t)
	cl := tc.client(0)
	big := strings.Repeat("0123456789abcdef", 2<<20) // 32 MiB
	if err := cl.Set(ctx, "big", big, 0).Err(); err != nil {
		t.Fatal(err)
	}
	slow := dialRaw(t, tc.addrs[0])
	_ = slow.nc.SetDeadline(time.Now().Add(60 * time.Second))
	slow.send(cmdRaw("GET", "big"))
	// The INCRs' replies come after the big one on the node's one connection to Redis: the
	// connection's reader must have read it whole, and cannot be stuck writing it.
	for i := 1; i <= 200; i++ {
		v, err := cl.Incr(ctx, "n").Result()
		if err != nil || v != int64(i) {
			t.Fatalf("INCR %d beside an unread reply: %d, %v", i, v, err)
		}
	}
	if l := slow.line(); l != "$"+strconv.Itoa(len(big)) {
		t.Fatalf("slow client: %q", l)
	}
	body := make([]byte, len(big)+2)
	if _, err := io.ReadFull(slow.br, body); err != nil {
		t.Fatal(err)
	}
	if string(body[:len(big)]) != big || string(body[len(big):]) != "\r\n" {
		t.Fatal("slow client: the reply came back changed")
	}
	slow.send(cmdRaw("GET", "n"))
	if l := slow.line(); l != "$3" {
		t.Fatalf("slow client's next request: %q", l)
	}
	if l := slow.line(); l != "200" {
		t.Fatalf("slow client's next request: %q", l)
	}
	assertNothingInFlight(t, tc.servers[0])
}

// Error replies and command latencies of direct replies are counted as those written by the
// client's goroutine are: every error in the node's error count, every command in its
// latency histograms, as soon as the client has the reply.
func TestDirectReplyCounts(t *testing.T) {
	tc := startCluster(t, 1, 1, Config{})
	s := tc.servers[0]
	ctx := ctxT(t)
	cl := tc.client(0)
	if err := cl.HSet(ctx, "h", "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	get := &s.cmds.per[command.ByName("get").ID]
	calls := func() (n uint64) {
		for i := range get.buckets {
			n += get.buckets[i].Load()
		}
		return n
	}
	g0 := calls()
	e0 := s.Stats().Errors
	for i := 1; i <= 25; i++ {
		if err := cl.Get(ctx, "h").Err(); err == nil || !strings.HasPrefix(err.Error(), "WRONGTYPE") {
			t.Fatalf("GET of a hash: %v", err)
		}
		if got := s.Stats().Errors - e0; got != uint64(i) {
			t.Fatalf("after %d errors the node counts %d", i, got)
		}
		if g := calls() - g0; g != uint64(i) {
			t.Fatalf("after %d GETs redraft_command_duration_seconds counts %d", i, g)
		}
	}
	assertNothingInFlight(t, s)
}

// A backend that dies while requests wait on it: the requests armed for a direct reply get
// the error from the backend connection's failure, counted, and nothing stays in flight; a
// client that left before its reply came ends cleanly.
func TestDirectReplyBackendDies(t *testing.T) {
	tc := startCluster(t, 1, 1, Config{})
	s := tc.servers[0]
	ctx := ctxT(t)
	if err := tc.client(0).Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// Hold the backend's replies, so the requests below are in flight when it dies.
	if err := tc.direct(0).Do(ctx, "CLIENT", "PAUSE", "10000", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	conns0 := s.Stats().ClientConns
	gone := dialRaw(t, tc.addrs[0])
	gone.send(cmdRaw("GET", "k"))
	var waiting []*rawConn
	for i := 0; i < 5; i++ {
		rc := dialRaw(t, tc.addrs[0])
		rc.send(cmdRaw("GET", "k"))
		waiting = append(waiting, rc)
	}
	_ = gone.nc.Close()
	e0 := s.Stats().Errors
	tc.redis[0].Stop()
	for i, rc := range waiting {
		if l := rc.line(); !strings.HasPrefix(l, "-") {
			t.Fatalf("client %d: %q, want an error", i, l)
		}
	}
	if got := s.Stats().Errors - e0; got < uint64(len(waiting)) {
		t.Fatalf("%d errors counted, want at least %d", got, len(waiting))
	}
	assertNothingInFlight(t, s)
	for _, rc := range waiting {
		_ = rc.nc.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().ClientConns > conns0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d client connections left, want %d", s.Stats().ClientConns, conns0)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
