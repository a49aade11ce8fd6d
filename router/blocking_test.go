package router

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestBlockingTimeouts(t *testing.T) {
	tc := startCluster(t, 2, 2, Config{BackendTimeout: time.Second})
	ctx := ctxT(t)
	c := tc.client(0)
	start := time.Now()
	if err := c.Do(ctx, "BLPOP", "bq", "0.3").Err(); err != redis.Nil {
		t.Fatalf("BLPOP on empty list: %v, want nil", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 2*time.Second {
		t.Fatalf("BLPOP timeout took %v, want about 300ms", d)
	}
	// A blocked pop longer than the backend timeout is woken by a push through another node.
	k := keyIn("bq", 1, 2)
	done := make(chan []string, 1)
	go func() {
		v, _ := c.BRPop(ctx, 10*time.Second, k).Result()
		done <- v
	}()
	pusher := tc.client(1)
	// Push once the pop is waiting on its backend (it shows up as a blocked client there).
	waitFor(t, "BRPOP blocked on group 2", func() bool { return blockedClients(t, tc, 1) > 0 })
	if err := pusher.LPush(ctx, k, "x").Err(); err != nil {
		t.Fatal(err)
	}
	if v := <-done; len(v) != 2 || v[1] != "x" {
		t.Fatalf("BRPOP = %v", v)
	}
	// XREAD BLOCK with a timeout, and other commands on the same connection still work.
	start = time.Now()
	if err := c.XRead(ctx, &redis.XReadArgs{Streams: []string{"xs", "$"}, Block: 200 * time.Millisecond}).Err(); err != redis.Nil {
		t.Fatalf("XREAD BLOCK: %v", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("XREAD BLOCK returned after %v", d)
	}
	if err := c.Do(ctx, "BZPOPMIN", "{z}a", "{z}b", "0.1").Err(); err != redis.Nil {
		t.Fatalf("BZPOPMIN: %v", err)
	}
	if err := c.Do(ctx, "BLPOP", "a", "b", "1").Err(); err == nil {
		t.Fatal("cross-slot BLPOP accepted")
	}
	if err := c.Do(ctx, "BLPOP", "a", "x").Err(); err == nil {
		t.Fatal("BLPOP with a bad timeout accepted")
	}
}

func blockedClients(t *testing.T, tc *testCluster, gi int) int {
	s := tc.direct(gi).Info(ctxT(t), "clients").Val()
	var n int
	for _, line := range splitLines(s) {
		if len(line) > 16 && line[:16] == "blocked_clients:" {
			for _, ch := range line[16:] {
				n = n*10 + int(ch-'0')
			}
		}
	}
	return n
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			out = append(out, trimCR(s[start:i]))
			start = i + 1
		}
	}
	return append(out, trimCR(s[start:]))
}

func trimCR(s string) string {
	if len(s) > 0 && s[len(s)-1] == '\r' {
		return s[:len(s)-1]
	}
	return s
}

// TestCloseWithBlockedClient checks Close returns while a client blocks forever.
func TestCloseWithBlockedClient(t *testing.T) {
	tc := startCluster(t, 1, 1, Config{})
	r := dialRaw(t, tc.addrs[0])
	r.send("BLPOP forever 0\r\n")
	waitFor(t, "BLPOP blocked on the backend", func() bool { return blockedClients(t, tc, 0) == 1 })
	done := make(chan struct{})
	go func() { _ = tc.servers[0].Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs on a blocked client")
	}
}

// TestBlockedClientDisconnects checks a client that goes away while blocked forever releases
// its backend connection, and that a client pipelining behind a blocking command is served.
func TestBlockedClientDisconnects(t *testing.T) {
	tc := startCluster(t, 1, 1, Config{})
	s := tc.servers[0]
	r := dialRaw(t, tc.addrs[0])
	r.send("BLPOP gone 0\r\n")
	waitFor(t, "BLPOP blocked", func() bool { return blockedClients(t, tc, 0) == 1 })
	r.nc.Close()
	waitFor(t, "backend unblocked after the client left", func() bool { return blockedClients(t, tc, 0) == 0 })
	waitFor(t, "session ended", func() bool { st := s.Stats(); return st.ClientConns == 0 && st.DedicatedConns == 0 })

	r2 := dialRaw(t, tc.addrs[0])
	r2.send("BLPOP q 0\r\n")
	waitFor(t, "BLPOP blocked", func() bool { return blockedClients(t, tc, 0) == 1 })
	r2.send("PING\r\n") // pipelined behind the blocked pop
	if err := tc.direct(0).RPush(ctxT(t), "q", "v").Err(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"*2", "$1", "q", "$1", "v", "+PONG"} {
		if l := r2.line(); l != want {
			t.Fatalf("got %q, want %q", l, want)
		}
	}
}

// TestTimeoutSecs: blocking timeouts are accepted and refused as redis-server 7.0.15 does
// (checked with redis-cli: BLPOP k <timeout>).
func TestTimeoutSecs(t *testing.T) {
	for in, want := range map[string]time.Duration{"0": 0, "-0": 0, "0.5": 500 * time.Millisecond,
		"0x10": 16 * time.Second, "0x1.8": 1500 * time.Millisecond, "1e-400": 0,
		"1e15": 0, "9223372036854774": 0, // these two: past a Duration, as good as forever
		// Negative, rounded up to 0 ms: forever.
		"-0.0001": 0, "-0.0009": 0, "-0.000999": 0, "-1e-400": 0, "-0x1p-20": 0} {
		if got, ok := timeoutSecs([]byte(in)); !ok || got != want {
			t.Errorf("timeoutSecs(%q) = %s, %v; want %s", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "abc", "-1", "-0.5", "-0.0015", "-0.002", "-0.00100001", "nan", "-nan", "inf", "1e400", "1e16",
		"9223372036854776", "1_0", "0x_1p0", " 1"} {
		if got, ok := timeoutSecs([]byte(in)); ok {
			t.Errorf("timeoutSecs(%q) = %s, want refused", in, got)
		}
	}
}

// TestBlockingCommandMidBatch: a blocking command (and WAIT) in the middle of one read's
// requests leaves the read loop (resp.Reader.Loop), which a command that watches the
// connection cannot run in, and the requests on either side of it are answered in order;
// then the loop serves the connection again.
func TestBlockingCommandMidBatch(t *testing.T) {
	tc := startCluster(t, 1, 1, Config{})
	r := dialRaw(t, tc.addrs[0])
	for round := 0; round < 3; round++ {
		r.send("SET mid:a 1\r\nBLPOP mid:none 0.05\r\nGET mid:a\r\nWAIT 0 0\r\nXREAD BLOCK 20 STREAMS mid:s $\r\nXREAD STREAMS mid:s 0\r\nPING\r\n")
		for _, want := range []string{"+OK", "*-1", "$1", "1", ":0", "*-1", "*-1", "+PONG"} {
			if l := r.line(); l != want {
				t.Fatalf("round %d: got %q, want %q", round, l, want)
			}
		}
	}
	r.send("INCR mid:n\r\n")
	if l := r.line(); l != ":1" {
		t.Fatalf("after the rounds: got %q, want :1", l)
	}
}
