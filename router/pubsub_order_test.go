package router

import (
	"bufio"
	"net"
	"regexp"
	"strings"
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
