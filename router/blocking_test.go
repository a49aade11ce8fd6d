package router

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/migrate"
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

// TestWaitAcrossGroupsKeepsItsRequest: WAIT goes to every group in turn, and while the first
// waits the client's next request may land where WAIT's bytes were in the reader's buffer
// (everything before it parsed: the buffer starts over). Until session 43 the second group
// was sent those bytes, here a SET of WAIT's length: it ran there, on a group that may not
// own the key, and its +OK was WAIT's reply. Each group gets a WAIT of its own now, with what
// is left of the timeout.
func TestWaitAcrossGroupsKeepsItsRequest(t *testing.T) {
	tc := startCluster(t, 2, 1, Config{})
	ctx := ctxT(t)
	r := dialRaw(t, tc.addrs[0])
	wait := "*3\r\n$4\r\nWAIT\r\n$1\r\n1\r\n$4\r\n1500\r\n"
	set := "*3\r\n$3\r\nSET\r\n$3\r\nfoo\r\n$3\r\nbar\r\n"
	if len(wait) != len(set) {
		t.Fatalf("the two requests must be as long: %d and %d", len(wait), len(set))
	}
	start := time.Now()
	r.send(wait)
	other := tc.client(0)
	for deadline := time.Now().Add(5 * time.Second); ; {
		list, err := other.ClientList(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(list, "flags=b") {
			break // WAIT waits on the first group (no replica can answer)
		}
		if time.Now().After(deadline) {
			t.Fatalf("WAIT never waited: %s", list)
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
	r.send(set)
	if l := r.line(); l != ":0" {
		t.Fatalf("WAIT answered %q, want :0", l)
	}
	took := time.Since(start)
	if l := r.line(); l != "+OK" {
		t.Fatalf("SET answered %q, want +OK", l)
	}
	if v, err := other.Get(ctx, "foo").Result(); err != nil || v != "bar" {
		t.Fatalf("GET foo = %q, %v", v, err)
	}
	// WAIT 1 1500 over two groups without replicas: 1.5 s in all, not 3 s (1.5 s per group).
	if took > 2600*time.Millisecond {
		t.Fatalf("WAIT 1 1500 over two groups took %s", took)
	}
	for i, s := range tc.redis {
		c := redis.NewClient(&redis.Options{Addr: s.Addr})
		n, err := c.Exists(ctx, "foo").Result()
		c.Close()
		own := migrate.SlotString("foo")/(fsm.NumSlots/len(tc.redis)) == i
		if err != nil || (n == 1) != own {
			t.Fatalf("group %s holds foo: %d (%v); it owns its slot: %v", groupIDs[i], n, err, own)
		}
	}
}

// TestBlockedClientGoneAfterPipelining: a client that sends a request behind its BLPOP and
// then disconnects releases the BLPOP: an element pushed afterwards stays in the list. Until
// session 43 the read-ahead stopped at the first byte, nothing saw the disconnect, and the
// BLPOP of the closed session took the element, which no one received.
func TestBlockedClientGoneAfterPipelining(t *testing.T) {
	tc := startCluster(t, 1, 1, Config{})
	ctx := ctxT(t)
	r := dialRaw(t, tc.addrs[0])
	r.send("BLPOP gone:q 0\r\n")
	waitFor(t, "BLPOP blocked", func() bool { return blockedClients(t, tc, 0) > 0 })
	r.send("PING\r\n")
	r.nc.Close()
	waitFor(t, "the closed client's BLPOP released", func() bool { return blockedClients(t, tc, 0) == 0 })
	c := tc.client(0)
	if err := c.RPush(ctx, "gone:q", "x").Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := c.LLen(ctx, "gone:q").Result(); err != nil || n != 1 {
		t.Fatalf("LLEN gone:q = %d, %v; want 1 (nobody waits for it)", n, err)
	}
}

// TestXreadLastBlockCounts: of several BLOCK options Redis takes the last (xreadCommand reads
// them in order, each overriding the one before); until session 43 the node took the first
// and gave up on `XREAD BLOCK 100 BLOCK 0 ...` after 100 ms plus the backend timeout.
func TestXreadLastBlockCounts(t *testing.T) {
	args := [][]byte{[]byte("XREAD"), []byte("BLOCK"), []byte("100"), []byte("BLOCK"), []byte("0"), []byte("STREAMS"), []byte("s"), []byte("$")}
	block, streams := xreadOptions(args)
	if block != 4 || streams != 5 {
		t.Fatalf("xreadOptions = %d, %d; want the last BLOCK's value (4) and STREAMS (5)", block, streams)
	}
	args[2] = []byte("-1") // refused where Redis reads it, whatever follows
	if block, _ := xreadOptions(args); block != 2 {
		t.Fatalf("xreadOptions with a bad first BLOCK = %d, want 2", block)
	}
}
