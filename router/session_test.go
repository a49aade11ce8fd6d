package router

import (
	"bufio"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// rawConn is a plain TCP client for protocol-level checks.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func (r *rawConn) send(s string) {
	r.t.Helper()
	if _, err := r.nc.Write([]byte(s)); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawConn) line() string {
	r.t.Helper()
	l, err := r.br.ReadString('\n')
	if err != nil {
		r.t.Fatalf("read: %v (got %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

func TestAuth(t *testing.T) {
	tc := startCluster(t, 2, 1, Config{Password: "s3cret"})
	ctx := ctxT(t)
	bad := tc.client(0)
	if err := bad.Get(ctx, "k").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
		t.Fatalf("GET without AUTH: %v", err)
	}
	wrong := tc.client(0, func(o *redis.Options) { o.Password = "nope" })
	if err := wrong.Ping(ctx).Err(); err == nil || !strings.HasPrefix(err.Error(), "WRONGPASS") {
		t.Fatalf("wrong password: %v", err)
	}
	good := tc.client(0, func(o *redis.Options) { o.Password = "s3cret" })
	if err := good.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	r := dialRaw(t, tc.addrs[0])
	r.send("GET k\r\nAUTH default s3cret\r\nGET k\r\n")
	if l := r.line(); !strings.HasPrefix(l, "-NOAUTH") {
		t.Fatalf("got %q", l)
	}
	if l := r.line(); l != "+OK" {
		t.Fatalf("AUTH user pass: %q", l)
	}
	if l := r.line() + r.line(); l != "$1v" {
		t.Fatalf("GET after AUTH: %q", l)
	}
}

// TestUnauthenticatedLimits: before AUTH, where a password is required, a request of more
// than 10 arguments or with an argument over 16 KiB is a protocol error and closes the
// connection, as in redis-server (a client without the password cannot make the node buffer
// a large request); after AUTH on the same connection, large requests are served.
func TestUnauthenticatedLimits(t *testing.T) {
	tc := startCluster(t, 1, 1, Config{Password: "s3cret"})
	for in, want := range map[string]string{
		"*11\r\n":                       "-ERR Protocol error: unauthenticated multibulk length",
		"*2\r\n$3\r\nGET\r\n$16385\r\n": "-ERR Protocol error: unauthenticated bulk length",
	} {
		r := dialRaw(t, tc.addrs[0])
		r.send(in)
		if l := r.line(); l != want {
			t.Errorf("%q: %q, want %q", in, l, want)
		}
		if _, err := r.br.ReadString('\n'); err == nil {
			t.Errorf("%q: the connection stayed open", in)
		}
	}
	big := strings.Repeat("v", 20000)
	r := dialRaw(t, tc.addrs[0])
	r.send("AUTH s3cret\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$20000\r\n" + big + "\r\n*12\r\n$4\r\nMGET\r\n" + strings.Repeat("$1\r\nk\r\n", 11))
	if l := r.line() + r.line(); l != "+OK+OK" {
		t.Fatalf("AUTH, then a large SET: %q", l)
	}
	if l := r.line(); l != "*11" {
		t.Fatalf("MGET of 11 keys after AUTH: %q", l)
	}
}

func TestBackendPassword(t *testing.T) {
	tc := &testCluster{t: t}
	var addrs, pws []string
	for _, pw := range []string{"pw1", "pw2"} {
		r := startRedis(t, pw)
		addrs, pws = append(addrs, r), append(pws, pw)
	}
	tc.st = newState(t, addrs, pws)
	tc.addNode(Config{})
	ctx := ctxT(t)
	c := tc.client(0)
	for i := 0; i < 20; i++ {
		if err := c.Set(ctx, "bp"+itoa(i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.DBSize(ctx).Val(); n != 20 {
		t.Fatalf("DBSIZE = %d", n)
	}
}

func TestSelect(t *testing.T) {
	tc := startCluster(t, 2, 1, Config{})
	ctx := ctxT(t)
	c0 := tc.client(0)
	c5 := tc.client(0, func(o *redis.Options) { o.DB = 5 })
	k := keyIn("sel", 1, 2)
	if err := c5.Set(ctx, k, "five", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n := c0.Exists(ctx, k).Val(); n != 0 {
		t.Fatal("key set in db 5 visible in db 0")
	}
	if v := c5.Get(ctx, k).Val(); v != "five" {
		t.Fatalf("db 5 GET = %q", v)
	}
	d := redis.NewClient(&redis.Options{Addr: tc.redis[1].Addr, DB: 5})
	defer d.Close()
	if v := d.Get(ctx, k).Val(); v != "five" {
		t.Fatalf("backend db 5 GET = %q", v)
	}
	r := dialRaw(t, tc.addrs[0])
	r.send("SELECT 16\r\nSELECT x\r\n")
	if l := r.line(); l != "-ERR DB index is out of range" {
		t.Fatalf("SELECT 16: %q", l)
	}
	if l := r.line(); !strings.HasPrefix(l, "-ERR value is not an integer") {
		t.Fatalf("SELECT x: %q", l)
	}
}

func TestSessionCommands(t *testing.T) {
	tc := startCluster(t, 2, 1, Config{NodeID: "n1"})
	ctx := ctxT(t)
	c := tc.client(0)
	if v := c.Echo(ctx, "hi").Val(); v != "hi" {
		t.Fatalf("ECHO = %q", v)
	}
	if err := c.Do(ctx, "CLIENT", "SETNAME", "app").Err(); err != nil {
		t.Fatal(err)
	}
	if v := c.Do(ctx, "CLIENT", "GETNAME").Val(); v != "app" {
		t.Fatalf("GETNAME = %v", v)
	}
	if info := c.ClientInfo(ctx); info.Err() != nil || info.Val().Name != "app" {
		t.Fatalf("CLIENT INFO = %+v, %v", info.Val(), info.Err())
	}
	if n := c.Do(ctx, "CLUSTER", "KEYSLOT", "foo").Val(); n != int64(12182) {
		t.Fatalf("CLUSTER KEYSLOT foo = %v", n)
	}
	if s := c.ClusterInfo(ctx).Val(); !strings.Contains(s, "cluster_slots_assigned:16384") {
		t.Fatalf("CLUSTER INFO = %q", s)
	}
	if err := c.Set(ctx, "a", 1, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if s := c.Info(ctx).Val(); !strings.Contains(s, "redraft_node_id:n1") || !strings.Contains(s, "db0:keys=1,") {
		t.Fatalf("INFO = %q", s)
	}
	if n := c.Do(ctx, "COMMAND", "COUNT").Val().(int64); n < 150 {
		t.Fatalf("COMMAND COUNT = %d", n)
	}
	if info := c.CommandList(ctx, nil).Val(); len(info) < 150 {
		t.Fatalf("COMMAND LIST = %d names", len(info))
	}
	cmds, err := c.Command(ctx).Result()
	if err != nil || cmds["get"] == nil || cmds["get"].FirstKeyPos != 1 || !cmds["get"].ReadOnly {
		t.Fatalf("COMMAND: %v %v", cmds["get"], err)
	}
	if cmds["monitor"] != nil {
		t.Fatal("COMMAND lists MONITOR, which is not served")
	}
	if keys := c.CommandGetKeys(ctx, "MSET", "a", "1", "b", "2").Val(); len(keys) != 2 {
		t.Fatalf("COMMAND GETKEYS = %v", keys)
	}
	r := dialRaw(t, tc.addrs[0])
	r.send("HELLO 4\r\nCONFIG REWRITE\r\nNOSUCH a b\r\nOBJECT NOSUB k\r\nPING\r\nHELLO 2\r\n")
	if l := r.line(); !strings.HasPrefix(l, "-NOPROTO") {
		t.Fatalf("HELLO 4: %q", l)
	}
	if l := r.line(); !strings.Contains(l, "not supported by redraft") {
		t.Fatalf("CONFIG: %q", l)
	}
	if l := r.line(); l != "-ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' " {
		t.Fatalf("unknown: %q", l)
	}
	if l := r.line(); !strings.HasPrefix(l, "-ERR unknown subcommand 'NOSUB'") {
		t.Fatalf("unknown subcommand: %q", l)
	}
	if l := r.line(); l != "+PONG" {
		t.Fatalf("connection not usable after errors: %q", l)
	}
	if l := r.line(); l != "*14" {
		t.Fatalf("HELLO 2: %q", l)
	}
	var hello []string
	for i := 0; i < 25; i++ {
		hello = append(hello, r.line())
	}
	if h := strings.Join(hello, " "); !strings.Contains(h, "$5 proto :2 ") || !strings.HasSuffix(h, "modules *0") {
		t.Fatalf("HELLO 2 = %q", h)
	}
	r.send("QUIT\r\n")
	if l := r.line(); l != "+OK" {
		t.Fatalf("QUIT: %q", l)
	}
	if _, err := r.br.ReadByte(); err == nil {
		t.Fatal("connection open after QUIT")
	}
}

// TestMalformedRequests checks protocol errors get an error reply and a closed connection,
// and that the server goes on serving.
func TestMalformedRequests(t *testing.T) {
	tc := startCluster(t, 1, 1, Config{MaxBulkBytes: 1024, MaxMultibulk: 8})
	for in, want := range map[string]string{
		"*1\r\n$2000\r\n":       "-ERR Protocol error: invalid bulk length",
		"*9\r\n":                "-ERR Protocol error: invalid multibulk length",
		"*1\r\n:5\r\n":          "-ERR Protocol error: expected '$', got ':'",
		"SET \"a\r\n":           "-ERR Protocol error: unbalanced quotes in request",
		"*x\r\n":                "-ERR Protocol error: invalid multibulk length",
		"PING\r\n*1\r\n$-3\r\n": "+PONG",
	} {
		r := dialRaw(t, tc.addrs[0])
		r.send(in)
		if l := r.line(); l != want {
			t.Errorf("%q: %q, want %q", in, l, want)
		}
	}
	if err := tc.client(0).Ping(ctxT(t)).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestSelectKeepsOrder pipelines a MOVE in one database and a GET in the other: the GET must
// see the moved key although the two go out on different backend connections.
func TestSelectKeepsOrder(t *testing.T) {
	tc := startCluster(t, 1, 1, Config{})
	r := dialRaw(t, tc.addrs[0])
	for i := 0; i < 20; i++ {
		r.send("SELECT 0\r\nSET mk v\r\nMOVE mk 1\r\nSELECT 1\r\nGET mk\r\nDEL mk\r\n")
		for _, want := range []string{"+OK", "+OK", ":1", "+OK", "$1", "v", ":1"} {
			if l := r.line(); l != want {
				t.Fatalf("round %d: got %q, want %q", i, l, want)
			}
		}
	}
}

// TestBareNewlineRequestRefused: a request whose lines end with a bare '\n' is refused by the
// node with Redis's own error, and not forwarded: Redis would answer the protocol error and
// close the shared connection, failing every other client's request in flight on it.
func TestBareNewlineRequestRefused(t *testing.T) {
	tc := startCluster(t, 1, 1, Config{})
	ctx := ctxT(t)
	if err := tc.client(0).Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	direct := tc.direct(0)
	dials := func() int64 {
		v, err := direct.Info(ctx, "stats").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(v, "\r\n") {
			if n, ok := strings.CutPrefix(l, "total_connections_received:"); ok {
				x, _ := strconv.ParseInt(n, 10, 64)
				return x
			}
		}
		t.Fatal("no total_connections_received")
		return 0
	}
	before := dials()
	for _, req := range []string{"*2\n$3\r\nGET\r\n$1\r\nk\r\n", "*2\r\n$3\nGET\r\n$1\r\nk\r\n"} {
		node, ref := dialRaw(t, tc.addrs[0]), dialRaw(t, tc.redis[0].Addr)
		node.send(req)
		ref.send(req)
		if got, want := node.line(), ref.line(); got != want {
			t.Errorf("%q: node answers %q, Redis %q", req, got, want)
		}
	}
	if v := tc.client(0).Get(ctx, "k").Val(); v != "v" {
		t.Fatalf("GET after the bad requests = %q", v)
	}
	if after := dials(); after != before+2 { // the two reference connections
		t.Errorf("the backend took %d connections for 2 reference clients: the node's shared connection was dropped", after-before)
	}
}
