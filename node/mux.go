package node

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"
)

// Peer-port protocol bytes: the first byte a dialer writes picks the service (rqlite's scheme).
const (
	muxRaft byte = 1
	muxRPC  byte = 2
	// tlsHandshake is the first byte of a TLS ClientHello: a TLS peer dialling a plaintext port.
	tlsHandshake byte = 0x16
)

// mux splits one TCP listener into per-service listeners by the first byte of each connection.
type mux struct {
	ln     net.Listener
	log    *slog.Logger
	auth   *peerAuth
	mu     sync.Mutex
	subs   map[byte]*subListener
	closed chan struct{}
	once   sync.Once
}

func newMux(ln net.Listener, log *slog.Logger, auth *peerAuth) *mux {
	return &mux{ln: ln, log: log, auth: auth, subs: map[byte]*subListener{}, closed: make(chan struct{})}
}

// listen returns the listener for connections whose first byte is b.
func (m *mux) listen(b byte) *subListener {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := &subListener{m: m, conns: make(chan net.Conn, 16)}
	m.subs[b] = s
	return s
}

// serve accepts connections until the listener is closed. Any other accept failure (out of
// file descriptors: EMFILE, ENFILE; ENOBUFS) is waited out with a backoff, as net/http does:
// until session 43 the loop returned on it, and the node took no Raft or RPC connection again
// until restarted (a follower lost its leader for good; a leader could no longer be
// forwarded to).
func (m *mux) serve() {
	var backoff time.Duration
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.closed:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if backoff == 0 {
				m.log.Warn("peer listener cannot accept; retrying", "err", err)
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			select {
			case <-m.closed:
				return
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		go m.route(c)
	}
}

func (m *mux) route(c net.Conn) {
	var b [1]byte
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, b[:]); err != nil {
		var rh tls.RecordHeaderError
		var cv *tls.CertificateVerificationError
		switch {
		case errors.As(err, &rh):
			m.log.Warn("a plaintext peer reached this node's TLS peer port: set tls_cert_file on every node or on none", "remote", c.RemoteAddr())
		case errors.As(err, &cv) || strings.Contains(err.Error(), "certificate"):
			m.log.Warn("peer TLS handshake refused", "remote", c.RemoteAddr(), "err", err)
		}
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	m.mu.Lock()
	s := m.subs[b[0]]
	m.mu.Unlock()
	if s == nil && b[0] == tlsHandshake {
		m.log.Warn("a TLS handshake reached this node's plaintext peer port: set tls_cert_file on every node or on none", "remote", c.RemoteAddr())
		c.Close()
		return
	}
	if s == nil {
		m.log.Warn("peer connection with unknown protocol byte", "byte", b[0], "remote", c.RemoteAddr())
		c.Close()
		return
	}
	// Nothing is served before the peer proved it belongs (the refusal is logged there).
	if err := m.auth.accept(c, b[0]); err != nil {
		if !isPeerRefused(err) {
			m.log.Debug("peer handshake failed", "remote", c.RemoteAddr(), "err", err)
		}
		c.Close()
		return
	}
	select {
	case s.conns <- c:
	case <-m.closed:
		c.Close()
	}
}

func (m *mux) close() error {
	var err error
	m.once.Do(func() {
		close(m.closed)
		err = m.ln.Close()
	})
	return err
}

// subListener is the net.Listener of one service on the multiplexed port.
type subListener struct {
	m     *mux
	conns chan net.Conn
}

// Accept waits for the next connection of this service.
func (s *subListener) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.m.closed:
		return nil, net.ErrClosed
	}
}

// Close closes the whole multiplexer.
func (s *subListener) Close() error { return s.m.close() }

// Addr is the shared listener's address.
func (s *subListener) Addr() net.Addr { return s.m.ln.Addr() }

// peerSourceIP is the address a node dials its peers from: the host of peer_listen when that
// is one specific IP, nil (the kernel's choice) for a wildcard or a host name.
//
// On a multi-homed host the kernel would otherwise pick the source address from the route to
// the peer, which need not be the address the node listens and is known on; dialing from the
// listen address makes a node's peer traffic leave from the address its peers (and firewalls
// between sites) know it by, in both directions.
func peerSourceIP(peerListen string) net.IP {
	host, _, err := net.SplitHostPort(peerListen)
	if err != nil {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.IsUnspecified() {
		return nil
	}
	return ip
}
