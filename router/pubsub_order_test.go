package router

import (
	"bufio"
	"net"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redraft/redraft/internal/testredis"
	"github.com/redraft/redraft/router/resp"
)

// helloID is the id field of a HELLO reply, which differs between servers.
var helloID = regexp.MustCompile(`\$2\r\nid\r\n:\d+\r\n`)

// pipelineReplies sends cmds in one write on a fresh connection to addr (after HELLO 3 when
// r3) and reads n replies.
func pipelineReplies(t *testing.T, addr string, r3 bool, cmds [][]string, n int) []string {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(nc)
	if r3 {
		if _, err := nc.Write(appendCommand(nil, []string{"HELLO", "3"})); err != nil {
			t.Fatal(err)
		}
		if _, err := resp.ReadReply(br, nil); err != nil {
			t.Fatal(err)
		}
	}
	var b []byte
	for _, c := range cmds {
		b = appendCommand(b, c)
	}
	if _, err := nc.Write(b); err != nil {
		t.Fatal(err)
	}
	out := make([]string, n)
	for i := range out {
		r, err := resp.ReadReply(br, nil)
		if err != nil {
			t.Fatalf("%v: reply %d of %d: %v (so far %q)", cmds, i+1, n, err, out[:i])
		}
		out[i] = helloID.ReplaceAllString(string(r), "$$2\r\nid\r\n:ID\r\n")
	}
	return out
}

// TestPubSubReplyOrder pipelines commands after (P|S)SUBSCRIBE and UNSUBSCRIBE in one write,
// to a node and to a redis-server, and compares every reply in order: the replies of the
// subscriber connections (confirmations, PONG) and the session's other replies (local ones
// such as ECHO, forwarded ones such as GET, errors) must come in request order, as from Redis.
// It also covers HELLO while subscribed: refused in RESP2, accepted in RESP3 (HELLO 2 then
// switches the subscribed session to RESP2).
func TestPubSubReplyOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-servers")
	}
	tc := startCluster(t, 2, 1, Config{BackendTimeout: 2 * time.Second})
	direct := testredis.Start(t).Addr
	sch := keyIn("sch", 1, 2) // a shard channel of the second group: another backend connection
	cases := []struct {
		r3   bool
		cmds string // ";"-separated commands, sent in one write
		n    int    // replies
	}{
		{true, "SUBSCRIBE a;ECHO x;GET k", 3},
		{true, "SUBSCRIBE a b;ECHO x", 3},
		{true, "PSUBSCRIBE p*;SSUBSCRIBE " + sch + ";ECHO x;PING;PING y", 5},
		{true, "SSUBSCRIBE " + sch + ";SUBSCRIBE a;SET k v;SUNSUBSCRIBE;ECHO x;UNSUBSCRIBE;ECHO y;UNSUBSCRIBE;ECHO z", 8},
		{true, "SUBSCRIBE a;UNSUBSCRIBE a;ECHO x;PUNSUBSCRIBE;ECHO y", 5},
		{true, "SUBSCRIBE a;HELLO;HELLO 3;ECHO x;HELLO 2;PING;GET k;HELLO 3;UNSUBSCRIBE;GET k", 10},
		{false, "SUBSCRIBE a;SSUBSCRIBE " + sch + ";GET k;PING;SUNSUBSCRIBE;UNSUBSCRIBE;ECHO x", 7},
		{false, "SUBSCRIBE a;HELLO;HELLO 3;PSUBSCRIBE p*;HELLO 2;PING;QUIT", 7},
		{false, "UNSUBSCRIBE;SSUBSCRIBE " + sch + ";SUNSUBSCRIBE nosuch;UNSUBSCRIBE;ECHO x", 5},
	}
	const tries = 10
	for _, cs := range cases {
		var cmds [][]string
		for _, c := range strings.Split(cs.cmds, ";") {
			cmds = append(cmds, strings.Fields(c))
		}
		want := pipelineReplies(t, direct, cs.r3, cmds, cs.n)
		bad := 0
		for i := 0; i < tries; i++ {
			got := pipelineReplies(t, tc.addrs[0], cs.r3, cmds, cs.n)
			if strings.Join(got, "") != strings.Join(want, "") {
				if bad == 0 {
					t.Errorf("RESP3 %v, %q:\n node  %q\n redis %q", cs.r3, cs.cmds, got, want)
				}
				bad++
			}
		}
		if bad > 0 {
			t.Errorf("RESP3 %v, %q: %d of %d tries out of order or different", cs.r3, cs.cmds, bad, tries)
		}
	}
}

// TestPubSubOrderFaults: a session that waits for its subscriber connection's answer is not
// held forever by a backend that stopped (SIGSTOP): after BackendTimeout the node closes the
// client connection, so the client reconnects; nor by one that died. After the backend is
// back, subscribing and receiving work again.
func TestPubSubOrderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-servers")
	}
	const timeout = 300 * time.Millisecond
	tc := startCluster(t, 1, 1, Config{BackendTimeout: timeout})
	rs := tc.redis[0]
	subscribe := func() *rawConn {
		r := dialRaw(t, tc.addrs[0])
		r.send("SUBSCRIBE a\r\n")
		for _, want := range []string{"*3", "$9", "subscribe", "$1", "a", ":1"} {
			if l := r.line(); l != want {
				t.Fatalf("SUBSCRIBE reply %q, want %q", l, want)
			}
		}
		return r
	}
	closedWithin := func(r *rawConn, what string) {
		t.Helper()
		_ = r.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		if l, err := r.br.ReadString('\n'); err == nil {
			t.Fatalf("%s: read %q, want the connection closed", what, l)
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("%s: the connection is still open after 5 s", what)
		}
		t.Logf("%s: connection closed after %v", what, time.Since(start).Round(time.Millisecond))
	}

	r := subscribe()
	if err := syscall.Kill(rs.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	t.Cleanup(func() {
		if stopped {
			_ = syscall.Kill(rs.PID(), syscall.SIGCONT)
		}
	})
	start := time.Now()
	r.send("PING\r\n")
	closedWithin(r, "PING to a stopped backend")
	if d := time.Since(start); d < timeout {
		t.Errorf("closed after %v, before the backend timeout %v", d, timeout)
	}
	if err := syscall.Kill(rs.PID(), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false

	r = subscribe()
	rs.Stop()
	r.send("SUBSCRIBE b\r\n")
	closedWithin(r, "SUBSCRIBE on a dead backend")
	if err := rs.Restart(); err != nil {
		t.Fatal(err)
	}
	var sub *rawConn
	waitFor(t, "subscribing again", func() bool {
		r := dialRaw(t, tc.addrs[0])
		r.send("SUBSCRIBE a\r\n")
		_ = r.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
		if l, err := r.br.ReadString('\n'); err != nil || l != "*3\r\n" {
			return false
		}
		sub = r
		return true
	})
	for i := 0; i < 5; i++ {
		sub.line()
	}
	if n := tc.client(0).Publish(ctxT(t), "a", "m").Val(); n != 1 {
		t.Fatalf("PUBLISH reached %d subscribers", n)
	}
	_ = sub.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, want := range []string{"*3", "$7", "message", "$1", "a", "$1", "m"} {
		if l := sub.line(); l != want {
			t.Fatalf("message line %q, want %q", l, want)
		}
	}
}
