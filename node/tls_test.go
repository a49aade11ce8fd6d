package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redraft/redraft/fsm"
)

// testCert is a certificate and key written as PEM files.
type testCert struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// certFile holds the certificate, keyFile the key; both holds the two (Dynomite's pem).
	certFile, keyFile, both string
}

// newTestCert makes a certificate for name, signed by parent (self-signed when parent is nil).
func newTestCert(t *testing.T, dir, name string, parent *testCert, isCA bool) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  isCA || parent == nil,
	}
	signer, signKey := tmpl, key
	if parent != nil {
		signer, signKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	tc := &testCert{cert: cert, key: key,
		certFile: filepath.Join(dir, name+".crt"), keyFile: filepath.Join(dir, name+".key"), both: filepath.Join(dir, name+".pem")}
	for path, b := range map[string][]byte{tc.certFile: certPEM, tc.keyFile: keyPEM, tc.both: append(append([]byte{}, keyPEM...), certPEM...)} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return tc
}

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
	ca := newTestCert(t, dir, "ca", nil, true)
	c1, c2 := newTestCert(t, dir, "n1", ca, false), newTestCert(t, dir, "n2", ca, false)
	c := newTestCluster(t)
	n1 := c.startTLS("n1", c1.certFile, c1.keyFile, ca.certFile)
	n2 := c.startTLS("n2", c2.certFile, c2.keyFile, ca.certFile, "n1")
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
	other := newTestCert(t, dir, "other", nil, true)
	_, oc, err := peerTLS(&Config{TLSCertFile: other.certFile, TLSKeyFile: other.keyFile})
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
	shared := newTestCert(t, dir, "cluster", nil, false)
	c := newTestCluster(t)
	n1 := c.startTLS("n1", shared.both, shared.both, "")
	c.startTLS("n2", shared.both, shared.both, "", "n1")
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
	cert := newTestCert(t, dir, "n1", nil, false)
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{TLSCertFile: filepath.Join(dir, "missing.crt"), TLSKeyFile: cert.keyFile}, "tls_cert_file/tls_key_file"},
		{Config{TLSCertFile: cert.certFile, TLSKeyFile: cert.keyFile, TLSCAFile: noCert}, "no PEM certificate"},
		{Config{TLSCertFile: cert.certFile, TLSKeyFile: cert.keyFile, TLSCAFile: filepath.Join(dir, "nope")}, "tls CA"},
	} {
		if _, _, err := peerTLS(&tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

type errString string

func (e errString) Error() string { return string(e) }
