package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testcert"
)

// startTLS starts node id with the given TLS files.
func (c *testCluster) startTLS(id, cert, key, ca string, seeds ...string) *Node {
	c.t.Helper()
	cfg := DefaultConfig()
	cfg.ID, cfg.DC = id, "dc1"
	cfg.Listen, cfg.PeerListen, cfg.AdminListen = freeAddr(c.t), "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir = filepath.Join(c.dir, id)
	cfg.TLSCertFile, cfg.TLSKeyFile, cfg.TLSCAFile = cert, key, ca
	c.cfgs[id] = cfg
	return c.start(id, "dc1", seeds...)
}

// TestPeerTLS runs a cluster whose peer port speaks TLS with certificates of one CA: nodes join
// and forward proposals over it, while a plaintext peer and a peer with another CA's
// certificate are turned away.
func TestPeerTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.New(t, dir, "ca", nil, true)
	c1, c2 := testcert.New(t, dir, "n1", ca, false), testcert.New(t, dir, "n2", ca, false)
	c := newTestCluster(t)
	n1 := c.startTLS("n1", c1.CertFile, c1.KeyFile, ca.CertFile)
	n2 := c.startTLS("n2", c2.CertFile, c2.KeyFile, ca.CertFile, "n1")
	follower := n2
	if n2.IsLeader() {
		follower = n1
	}
	if err := follower.Propose(context.Background(), &fsm.AddGroup{DC: "dc1", Group: fsm.Group{ID: "g1", Master: "127.0.0.1:7001"}}); err != nil {
		t.Fatalf("a proposal forwarded over TLS: %v", err)
	}
	st := n1.Status(context.Background())
	if len(st.Members) != 2 {
		t.Fatalf("members %+v", st.Members)
	}

	// Plaintext: the TLS listener reads the protocol byte as a broken handshake and hangs up.
	if pc, err := (peerDialer{}).dial(n1.PeerAddr(), muxRPC, 2*time.Second); err == nil {
		if b := httpAnswer(pc); strings.Contains(b, "HTTP/1.1") {
			t.Fatalf("a plaintext peer got an HTTP answer: %q", b)
		}
	}

	// Another CA's certificate: refused both ways.
	other := testcert.New(t, dir, "other", nil, true)
	_, oc, err := peerTLS(&Config{TLSCertFile: other.CertFile, TLSKeyFile: other.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	if conn, err := (peerDialer{tls: oc}).dial(n1.PeerAddr(), muxRPC, 2*time.Second); err == nil {
		// TLS 1.3 reports the server's refusal of the client certificate only on a read.
		if b := httpAnswer(conn); strings.Contains(b, "HTTP/1.1") {
			t.Fatalf("a peer with another CA's certificate was served: %q", b)
		}
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("dial with another CA's certificate: %v", err)
	}
}

// httpAnswer sends an HTTP request on conn and returns what comes back within 5 s.
func httpAnswer(conn net.Conn) string {
	defer conn.Close()
	_, _ = conn.Write([]byte("GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(conn)
	return string(b)
}

// TestPeerTLSSharedPEM is Dynomite's setup: one pem file with key and certificate for every
// node, which is also the CA.
func TestPeerTLSSharedPEM(t *testing.T) {
	dir := t.TempDir()
	shared := testcert.New(t, dir, "cluster", nil, false)
	c := newTestCluster(t)
	n1 := c.startTLS("n1", shared.Both, shared.Both, "")
	c.startTLS("n2", shared.Both, shared.Both, "", "n1")
	poll(t, 10*time.Second, "two voters", func() error {
		st := n1.Status(context.Background())
		for _, m := range st.Members {
			if m.Suffrage != "voter" || m.Role == "unreachable" {
				return errString(m.ID + " is " + m.Suffrage + " " + m.Role)
			}
		}
		if len(st.Members) != 2 {
			return errString("not two members")
		}
		return nil
	})
}

func TestPeerTLSBadFiles(t *testing.T) {
	dir := t.TempDir()
	noCert := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(noCert, []byte("nothing"), 0o600); err != nil {
		t.Fatal(err)
	}
	cert := testcert.New(t, dir, "n1", nil, false)
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{TLSCertFile: filepath.Join(dir, "missing.crt"), TLSKeyFile: cert.KeyFile}, "tls_cert_file/tls_key_file"},
		{Config{TLSCertFile: cert.CertFile, TLSKeyFile: cert.KeyFile, TLSCAFile: noCert}, "no PEM certificate"},
		{Config{TLSCertFile: cert.CertFile, TLSKeyFile: cert.KeyFile, TLSCAFile: filepath.Join(dir, "nope")}, "tls CA"},
	} {
		if _, _, err := peerTLS(&tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

type errString string

func (e errString) Error() string { return string(e) }

// TestPeerTLSFullChainTrustsOnlyTheLeaf: without tls_ca_file, a tls_cert_file that holds a
// full chain (the node's certificate and its issuer's) trusts the node's certificate only: a
// peer with another certificate of the same issuer is refused.
func TestPeerTLSFullChainTrustsOnlyTheLeaf(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.New(t, dir, "ca", nil, true)
	mine := testcert.New(t, dir, "mine", ca, false)
	other := testcert.New(t, dir, "other", ca, false)
	read := func(path string) []byte {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	chain := filepath.Join(dir, "fullchain.pem")
	if err := os.WriteFile(chain, append(read(mine.CertFile), read(ca.CertFile)...), 0o600); err != nil {
		t.Fatal(err)
	}
	server, _, err := peerTLS(&Config{TLSCertFile: chain, TLSKeyFile: mine.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	parse := func(path string) *x509.Certificate {
		blk, _ := pem.Decode(read(path))
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	caCert := parse(ca.CertFile)
	if err := server.VerifyConnection(tls.ConnectionState{PeerCertificates: []*x509.Certificate{parse(mine.CertFile), caCert}}); err != nil {
		t.Fatalf("a peer with the shared certificate refused: %v", err)
	}
	if err := server.VerifyConnection(tls.ConnectionState{PeerCertificates: []*x509.Certificate{parse(other.CertFile), caCert}}); err == nil {
		t.Fatal("a peer with another certificate of the full chain's issuer was accepted")
	}
}
