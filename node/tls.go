package node

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// peerTLS builds the TLS configurations of the peer port from the node's files: nil, nil when
// tls_cert_file is not set. Every node presents its certificate and accepts a peer only if the
// peer's certificate chains to the cluster CA: tls_ca_file, or, without one, the node's own
// certificate, the first of tls_cert_file (one certificate shared by every node, as Dynomite's
// pem files are). The rest of that file (a full chain's intermediates) is not trusted: any
// certificate its CA issued would otherwise pass as a peer.
// Host names are not checked: nodes dial each other by address, and membership is the CA's
// word, as with Consul's default verify_server_hostname = false.
func peerTLS(cfg *Config) (server, client *tls.Config, err error) {
	if cfg.TLSCertFile == "" {
		return nil, nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("tls_cert_file/tls_key_file: %w", err)
	}
	var pool *x509.CertPool
	if cfg.TLSCAFile != "" {
		if pool, err = loadCAPool(cfg.TLSCAFile); err != nil {
			return nil, nil, err
		}
	} else {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return nil, nil, fmt.Errorf("tls_cert_file: %w", err)
		}
		pool = x509.NewCertPool()
		pool.AddCert(leaf)
	}
	verify := func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("peer presented no certificate")
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
			Roots: pool, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		})
		if err != nil {
			return fmt.Errorf("peer certificate is not the cluster's: %w", err)
		}
		return nil
	}
	server = &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAnyClientCert,
		MinVersion:   tls.VersionTLS12,
		// Verified by verify: the same rule both ways, without host names.
		VerifyConnection: verify,
	}
	client = &tls.Config{
		Certificates:       []tls.Certificate{cert},
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by verify: chain to the cluster CA, no host name
		VerifyConnection:   verify,
	}
	return server, client, nil
}

func loadCAPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tls CA: %w", err)
	}
	pool := x509.NewCertPool()
	n := 0
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("tls CA %s: %w", path, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("tls CA %s: no PEM certificate in it", path)
	}
	return pool, nil
}

// peerDialer dials other nodes' peer ports: from the source IP from (peerSourceIP; nil: any),
// over TLS when tls is set, announces the service with its byte and runs the peer handshake
// (peerauth.go; a nil auth is a node without a cluster secret that logs nothing).
type peerDialer struct {
	from net.IP
	tls  *tls.Config
	auth *peerAuth
}

// dial connects to the node at addr for the service proto within timeout.
func (d peerDialer) dial(addr string, proto byte, timeout time.Duration) (net.Conn, error) {
	nd := net.Dialer{Timeout: timeout}
	if d.from != nil {
		nd.LocalAddr = &net.TCPAddr{IP: d.from}
	}
	c, err := nd.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	if d.tls != nil {
		tc := tls.Client(c, d.tls)
		if err := tc.Handshake(); err != nil {
			c.Close()
			return nil, fmt.Errorf("tls with %s: %w", addr, err)
		}
		c = tc
	}
	if _, err := c.Write([]byte{proto}); err != nil {
		c.Close()
		return nil, err
	}
	if err := d.auth.connect(c, addr, proto); err != nil {
		c.Close()
		var pe *PeerRefusedError
		if d.auth != nil && errors.As(err, &pe) {
			d.auth.logRefusal(c.RemoteAddr(), "a peer connection failed the cluster-secret check: this node cannot join or call that node", pe)
		}
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}
