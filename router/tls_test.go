package router

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/internal/testcert"
)

// tlsSetup is a CA, a server certificate and a client certificate from it, and a client
// certificate from another CA.
type tlsSetup struct {
	ca, server, client, stranger *testcert.Cert
}

func newTLSSetup(t *testing.T) *tlsSetup {
	dir := t.TempDir()
	ca := testcert.New(t, dir, "ca", nil, true)
	other := testcert.New(t, dir, "otherca", nil, true)
	return &tlsSetup{ca: ca, server: testcert.New(t, dir, "server", ca, false),
		client: testcert.New(t, dir, "client", ca, false), stranger: testcert.New(t, dir, "stranger", other, false)}
}

func (s *tlsSetup) pool(t *testing.T) *x509.CertPool {
	b, err := os.ReadFile(s.ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(b)
	return p
}

// serverConfig is the node's TLS configuration with client certificates per auth.
func (s *tlsSetup) serverConfig(t *testing.T, auth tls.ClientAuthType) *tls.Config {
	cert, err := tls.LoadX509KeyPair(s.server.CertFile, s.server.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: s.pool(t), ClientAuth: auth, MinVersion: tls.VersionTLS12}
}

// clientConfig trusts the CA and presents cert (nil: none), even when the node's list of
// acceptable CAs does not name its issuer (Go's client would then send none), as other
// clients do.
func (s *tlsSetup) clientConfig(t *testing.T, cert *testcert.Cert) *tls.Config {
	c := &tls.Config{RootCAs: s.pool(t), MinVersion: tls.VersionTLS12}
	if cert != nil {
		kp, err := tls.LoadX509KeyPair(cert.CertFile, cert.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &kp, nil }
	}
	return c
}

// serveTLS serves the node s on a new TLS listener and returns its address.
func serveTLS(t *testing.T, s *Server, cfg *tls.Config) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(NewTLSListener(ln, cfg)) }()
	return ln.Addr().String()
}

func tlsClient(t *testing.T, addr string, cfg *tls.Config, opts ...func(*redis.Options)) *redis.Client {
	o := &redis.Options{Addr: addr, TLSConfig: cfg, DialTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second, MaxRetries: -1}
	for _, f := range opts {
		f(o)
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestTLSClients: go-redis over TLS runs pipelines, a blocking pop whose client is watched
// while it waits, pub/sub and users; a plaintext client on the TLS port gets an error.
func TestTLSClients(t *testing.T) {
	ts := newTLSSetup(t)
	tc := startCluster(t, 2, 1, testUsers())
	addr := serveTLS(t, tc.servers[0], ts.serverConfig(t, tls.NoClientCert))
	ctx := ctxT(t)
	c := tlsClient(t, addr, ts.clientConfig(t, nil), asUser("app", "apppw"))
	k0, k1 := keyIn("app:", 0, 2), keyIn("app:", 1, 2)
	cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := 0; i < 100; i++ {
			p.Incr(ctx, k0)
			p.Incr(ctx, k1)
		}
		p.MGet(ctx, k0, k1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := cmds[len(cmds)-1].(*redis.SliceCmd).Val(); got[0] != "100" || got[1] != "100" {
		t.Fatalf("MGET after a TLS pipeline: %v", got)
	}
	wantErr(t, "GET outside the prefix over TLS", c.Get(ctx, "x").Err(), noPermKey)

	// BLPOP waits on a dedicated connection while the client is read ahead over TLS.
	done := make(chan error, 1)
	go func() {
		v, err := c.BLPop(ctx, 5*time.Second, keyIn("app:q", 1, 2)).Result()
		if err == nil && (len(v) != 2 || v[1] != "job") {
			err = errorf("BLPOP got %v", v)
		}
		done <- err
	}()
	q := keyIn("app:q", 1, 2)
	waitFor(t, "BLPOP blocked", func() bool { return blockedClients(t, tc, 1) == 1 })
	if err := tc.client(0, asUser("", "defpw")).RPush(ctx, q, "job").Err(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Plaintext RESP to the TLS port: a clear error, then the connection ends.
	r := dialRaw(t, addr)
	r.send("*1\r\n$4\r\nPING\r\n")
	if l := r.line(); !strings.HasPrefix(l, "-ERR this port speaks TLS only") {
		t.Fatalf("plaintext PING on the TLS port: %q", l)
	}
	if _, err := r.br.ReadString('\n'); err == nil {
		t.Fatal("the TLS port kept a plaintext connection open")
	}
	// go-redis without TLS gets the error to its HELLO, then EOF: it fails, it does not hang.
	if err := tc.client(0, func(o *redis.Options) { o.Addr = addr }).Ping(ctx).Err(); err == nil {
		t.Fatal("go-redis without TLS was served on the TLS port")
	}
}

// TestTLSClientCertificates: required refuses clients without a certificate of the CA,
// optional takes clients without one but not with a stranger's.
func TestTLSClientCertificates(t *testing.T) {
	ts := newTLSSetup(t)
	tc := startCluster(t, 1, 1, Config{})
	ctx := ctxT(t)
	required := serveTLS(t, tc.servers[0], ts.serverConfig(t, tls.RequireAndVerifyClientCert))
	optional := serveTLS(t, tc.servers[0], ts.serverConfig(t, tls.VerifyClientCertIfGiven))
	for _, c := range []struct {
		name string
		addr string
		cert *testcert.Cert
		ok   bool
	}{
		{"required, CA's certificate", required, ts.client, true},
		{"required, no certificate", required, nil, false},
		{"required, another CA's", required, ts.stranger, false},
		{"optional, no certificate", optional, nil, true},
		{"optional, CA's certificate", optional, ts.client, true},
		{"optional, another CA's", optional, ts.stranger, false},
	} {
		err := tlsClient(t, c.addr, ts.clientConfig(t, c.cert)).Set(ctx, "k", c.name, 0).Err()
		if (err == nil) != c.ok {
			t.Fatalf("%s: err %v", c.name, err)
		}
	}
}

// TestTLSRedisCLI: redis-cli --tls with the CA (and a client certificate where required).
func TestTLSRedisCLI(t *testing.T) {
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Skip("redis-cli not installed")
	}
	ts := newTLSSetup(t)
	tc := startCluster(t, 2, 1, testUsers())
	addr := serveTLS(t, tc.servers[0], ts.serverConfig(t, tls.RequireAndVerifyClientCert))
	_, port, _ := net.SplitHostPort(addr)
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "redis-cli", append([]string{"-h", "127.0.0.1", "-p", port, "--no-auth-warning"}, args...)...)
		out, _ := cmd.CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	tlsArgs := []string{"--tls", "--cacert", ts.ca.CertFile, "--cert", ts.client.CertFile, "--key", ts.client.KeyFile}
	user := []string{"--user", "app", "--pass", "apppw"}
	if out := run(append(append(tlsArgs, user...), "SET", "app:cli", "v")...); out != "OK" {
		t.Fatalf("redis-cli --tls SET: %q", out)
	}
	if out := run(append(append(tlsArgs, user...), "ACL", "WHOAMI")...); out != "app" {
		t.Fatalf("redis-cli --tls ACL WHOAMI: %q", out)
	}
	if out := run(append(append(tlsArgs, user...), "GET", "other")...); out != noPermKey {
		t.Fatalf("redis-cli --tls GET outside: %q", out)
	}
	if out := run(append(append(tlsArgs[:3:3], user...), "GET", "app:cli")...); out == "v" {
		t.Fatalf("redis-cli without a client certificate was served: %q", out)
	}
	if out := run(append(user, "GET", "app:cli")...); !strings.Contains(out, "this port speaks TLS only") {
		t.Fatalf("redis-cli without --tls: %q", out)
	}
}
