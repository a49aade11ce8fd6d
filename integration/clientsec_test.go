package integration

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/internal/testcert"
	"github.com/redraft/redraft/internal/testredis"
)

// TestClientTLSAndUsersBinary runs the binary with users from its config file and client TLS
// from flags: go-redis reaches it over TLS with a client certificate and over plaintext, the
// users' roles and prefixes hold, and no password reaches the log. A second node serves TLS
// only (listen: none) and advertises its TLS address.
func TestClientTLSAndUsersBinary(t *testing.T) {
	r1 := testredis.Start(t)
	dir := t.TempDir()
	ca := testcert.New(t, dir, "ca", nil, true)
	srv := testcert.New(t, dir, "srv", ca, false)
	cli := testcert.New(t, dir, "cli", ca, false)
	pwFile := filepath.Join(dir, "app.pass")
	if err := os.WriteFile(pwFile, []byte("app-secret-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("ro-secret-pw"))
	conf := filepath.Join(dir, "users.yaml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`password: default-secret-pw
users:
  - name: app
    password_file: %s
    key_prefix: "app:"
  - name: ro
    password_sha256: %s
    role: read-only
`, pwFile, hex.EncodeToString(sum[:]))), 0o600); err != nil {
		t.Fatal(err)
	}
	c := NewCluster(t)
	tlsAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePortOn(t, "127.0.0.1")))
	tlsFlags := []string{"--client-tls-cert-file", srv.CertFile, "--client-tls-key-file", srv.KeyFile,
		"--client-tls-ca-file", ca.CertFile, "--client-tls-auth", "required"}
	n1 := c.NewNode("n1", "dc1", append([]string{"--config", conf, "--tls-listen", tlsAddr}, tlsFlags...)...)
	n1.Start()
	n1.WaitHealthy(30 * time.Second)
	n1.MustCLI("group", "add", "--dc", "dc1", "--id", "g1", "--master", r1.Addr)
	n1.MustCLI("slots", "assign", "--dc", "dc1", "--group", "g1", "0-16383")

	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(ca.CertFile)
	pool.AppendCertsFromPEM(pem)
	kp, err := tls.LoadX509KeyPair(cli.CertFile, cli.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	withCert := &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{kp}}
	client := func(addr, user, pass string, tc *tls.Config) *redis.Client {
		rc := redis.NewClient(&redis.Options{Addr: addr, Username: user, Password: pass, TLSConfig: tc,
			DialTimeout: 2 * time.Second, MaxRetries: -1})
		t.Cleanup(func() { rc.Close() })
		return rc
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	app := client(tlsAddr, "app", "app-secret-pw", withCert)
	waitFor(t, 10*time.Second, "n1 routes over TLS", func() error { return app.Set(ctx, "app:k", "v", 0).Err() })
	if got, err := app.Do(ctx, "ACL", "WHOAMI").Text(); err != nil || got != "app" {
		t.Fatalf("ACL WHOAMI over TLS: %q %v", got, err)
	}
	if err := app.Get(ctx, "k").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
		t.Fatalf("GET outside the prefix: %v", err)
	}
	if err := client(tlsAddr, "app", "app-secret-pw", &tls.Config{RootCAs: pool}).Ping(ctx).Err(); err == nil {
		t.Fatal("a TLS client without a certificate was served with client_tls_auth required")
	}
	ro := client(n1.Listen, "ro", "ro-secret-pw", nil)
	if got := ro.Get(ctx, "app:k").Val(); got != "v" {
		t.Fatalf("read-only user over plaintext: GET = %q", got)
	}
	if err := ro.Set(ctx, "x", "1", 0).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
		t.Fatalf("read-only SET: %v", err)
	}
	if err := client(n1.Listen, "", "default-secret-pw", nil).Set(ctx, "k", "1", 0).Err(); err != nil {
		t.Fatalf("default user: %v", err)
	}
	if err := client(n1.Listen, "", "wrong", nil).Ping(ctx).Err(); err == nil || !strings.HasPrefix(err.Error(), "WRONGPASS") {
		t.Fatalf("wrong password: %v", err)
	}
	for _, secret := range []string{"app-secret-pw", "ro-secret-pw", "default-secret-pw"} {
		if strings.Contains(n1.Log(), secret) {
			t.Fatalf("the node's log shows a password")
		}
	}

	// TLS only: listen none, the node advertises its TLS address.
	n2 := c.NewNode("n2", "dc1")
	n2.run("node", "start", "--id", n2.ID, "--dc", "dc1", "--listen", "none", "--tls-listen", n2.Listen,
		"--peer-listen", n2.Peer, "--admin-listen", n2.Admin, "--data-dir", n2.Data,
		"--client-tls-cert-file", srv.CertFile, "--client-tls-key-file", srv.KeyFile)
	n2.WaitHealthy(30 * time.Second)
	st := n2.Status()
	if len(st.Members) != 1 || st.Members[0].Listen != n2.Listen {
		t.Fatalf("listen none: members %+v, want listen %s", st.Members, n2.Listen)
	}
	if err := client(n2.Listen, "", "", &tls.Config{RootCAs: pool}).Ping(ctx).Err(); err != nil {
		t.Fatalf("PING over TLS to the TLS-only node: %v", err)
	}
}
