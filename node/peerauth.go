package node

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// The peer handshake runs on every peer connection right after the protocol byte, for Raft
// and RPC alike, so nothing (a join, a forwarded proposal, an embedder's /rpc/x/ call, a Raft
// stream) is served to a caller that has not proved it holds the cluster secret. Both sides
// prove it, without sending it, by an HMAC-SHA256 of both sides' fresh nonces:
//
//	server → client  "RDP1", flags (1: the server has a secret), server nonce (32 bytes)
//	client → server  flags, client nonce (32), HMAC(secret, "client", proto, nonces) or zeros
//	server → client  verdict (0 ok, 1 refused), reason length (2), reason,
//	                 then on ok HMAC(secret, "server", proto, nonces) or zeros
//
// A node with a secret refuses a peer without one (and a wrong one), and a node without a
// secret refuses a peer that has one: the secret is set on every node or on none. The
// refusal's reason travels to the caller, so both sides log it with the fix.
const (
	peerHelloMagic = "RDP1"
	peerNonceLen   = 32
	peerMACLen     = sha256.Size
	// peerHandshakeTimeout bounds the handshake on the accepting side.
	peerHandshakeTimeout = 10 * time.Second
)

// PeerRefusedError is a peer connection refused by the peer handshake: by the other node
// (Remote) or by this one, because the other node could not prove it holds the secret.
type PeerRefusedError struct {
	Addr   string
	Remote bool
	Reason string
}

// Error implements error.
func (e *PeerRefusedError) Error() string {
	if e.Remote {
		return fmt.Sprintf("the node at %s refused this node: %s", e.Addr, e.Reason)
	}
	return fmt.Sprintf("the node at %s is not trusted: %s", e.Addr, e.Reason)
}

// peerAuth holds the cluster secret ("" for none) and logs refusals, at most once a minute
// per remote host and reason.
type peerAuth struct {
	secret []byte
	log    *slog.Logger
	limit  logLimiter
}

func newPeerAuth(secret string, log *slog.Logger) *peerAuth {
	a := &peerAuth{log: log}
	if secret != "" {
		a.secret = []byte(secret)
	}
	return a
}

func (a *peerAuth) flags() byte {
	if a != nil && len(a.secret) > 0 {
		return 1
	}
	return 0
}

// mac is the proof of one side ("client" or "server") for this connection's nonces.
func (a *peerAuth) mac(side string, proto byte, serverNonce, clientNonce []byte) []byte {
	if a.flags() == 0 {
		return make([]byte, peerMACLen)
	}
	h := hmac.New(sha256.New, a.secret)
	h.Write([]byte("redraft peer v1 " + side))
	h.Write([]byte{proto})
	h.Write(serverNonce)
	h.Write(clientNonce)
	return h.Sum(nil)
}

// Why a peer is refused, with the fix, worded to read right in both nodes' logs.
const (
	peerWhyNoSecret    = "the connecting node gave no cluster secret, and the accepting node requires one: give the connecting node the cluster's cluster_secret (--cluster-secret or REDRAFT_CLUSTER_SECRET)"
	peerWhyUnexpected  = "the connecting node gave a cluster secret, and the accepting node has none: set the same cluster_secret on every node, or on none"
	peerWhyWrongSecret = "the connecting node's cluster secret is not the accepting node's: give every node the same cluster_secret"
	peerWhyServerNone  = "the accepting node has no cluster secret, and the connecting node has one: set the same cluster_secret on every node, or on none"
	peerWhyServerWrong = "the accepting node does not know the connecting node's cluster secret: give every node the same cluster_secret"
)

// accept runs the server side on c after the protocol byte; it returns nil when the peer
// proved it holds the secret (or neither side has one), else the refusal, already logged.
func (a *peerAuth) accept(c net.Conn, proto byte) error {
	_ = c.SetDeadline(time.Now().Add(peerHandshakeTimeout))
	defer c.SetDeadline(time.Time{})
	serverNonce := make([]byte, peerNonceLen)
	if _, err := rand.Read(serverNonce); err != nil {
		return err
	}
	hello := append(append([]byte(peerHelloMagic), a.flags()), serverNonce...)
	if _, err := c.Write(hello); err != nil {
		return err
	}
	var reply [1 + peerNonceLen + peerMACLen]byte
	if _, err := io.ReadFull(c, reply[:]); err != nil {
		return fmt.Errorf("peer handshake from %s: %w", c.RemoteAddr(), err)
	}
	clientFlags, clientNonce, clientMAC := reply[0], reply[1:1+peerNonceLen], reply[1+peerNonceLen:]
	why := ""
	switch {
	case a.flags() == 1 && clientFlags == 0:
		why = peerWhyNoSecret
	case a.flags() == 0 && clientFlags != 0:
		why = peerWhyUnexpected
	case a.flags() == 1 && !hmac.Equal(clientMAC, a.mac("client", proto, serverNonce, clientNonce)):
		why = peerWhyWrongSecret
	}
	verdict := make([]byte, 3, 3+len(why)+peerMACLen)
	if why != "" {
		verdict[0] = 1
		binary.BigEndian.PutUint16(verdict[1:], uint16(len(why)))
		verdict = append(verdict, why...)
	} else {
		verdict = append(verdict, a.mac("server", proto, serverNonce, clientNonce)...)
	}
	if _, err := c.Write(verdict); err != nil {
		return err
	}
	if why == "" {
		return nil
	}
	err := &PeerRefusedError{Addr: c.RemoteAddr().String(), Reason: why}
	a.logRefusal(c.RemoteAddr(), "refused a peer connection: no proof it belongs to this cluster", err)
	return err
}

// connect runs the client side on c (to addr) after the protocol byte.
func (a *peerAuth) connect(c net.Conn, addr string, proto byte) error {
	var hello [len(peerHelloMagic) + 1 + peerNonceLen]byte
	if _, err := io.ReadFull(c, hello[:]); err != nil {
		return fmt.Errorf("peer handshake with %s: %w (is it a redraft node of this version?)", addr, err)
	}
	if string(hello[:len(peerHelloMagic)]) != peerHelloMagic {
		return fmt.Errorf("peer handshake with %s: it does not speak redraft's peer protocol", addr)
	}
	serverFlags, serverNonce := hello[len(peerHelloMagic)], hello[len(peerHelloMagic)+1:]
	clientNonce := make([]byte, peerNonceLen)
	if _, err := rand.Read(clientNonce); err != nil {
		return err
	}
	reply := append(append([]byte{a.flags()}, clientNonce...), a.mac("client", proto, serverNonce, clientNonce)...)
	if _, err := c.Write(reply); err != nil {
		return err
	}
	var head [3]byte
	if _, err := io.ReadFull(c, head[:]); err != nil {
		return fmt.Errorf("peer handshake with %s: %w", addr, err)
	}
	if head[0] != 0 {
		why := make([]byte, binary.BigEndian.Uint16(head[1:]))
		if _, err := io.ReadFull(c, why); err != nil {
			return fmt.Errorf("peer handshake with %s: %w", addr, err)
		}
		return &PeerRefusedError{Addr: addr, Remote: true, Reason: string(why)}
	}
	serverMAC := make([]byte, peerMACLen)
	if _, err := io.ReadFull(c, serverMAC); err != nil {
		return fmt.Errorf("peer handshake with %s: %w", addr, err)
	}
	// The server let us in; make sure it is one of ours too (a node without the secret that
	// takes any peer would otherwise be trusted by one that has it).
	switch {
	case a.flags() == 1 && serverFlags == 0:
		return &PeerRefusedError{Addr: addr, Reason: peerWhyServerNone}
	case a.flags() == 1 && !hmac.Equal(serverMAC, a.mac("server", proto, serverNonce, clientNonce)):
		return &PeerRefusedError{Addr: addr, Reason: peerWhyServerWrong}
	}
	return nil
}

// logRefusal logs a refused peer at warn level, at most once a minute per host and reason.
func (a *peerAuth) logRefusal(remote net.Addr, msg string, err *PeerRefusedError) {
	if a == nil || !a.limit.allow(hostOf(remote.String())+"|"+err.Reason) {
		return
	}
	a.log.Warn(msg, "remote", remote.String(), "reason", err.Reason)
}

// hostOf is the host of a HOST:PORT address (the whole address if it has no port).
func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// logLimiter lets a log line through at most once a minute per key, so a host knocking
// again and again cannot flood the log.
type logLimiter struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

func (l *logLimiter) allow(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil || len(l.seen) > 1024 { // many hosts knocking: start over rather than grow
		l.seen = map[string]time.Time{}
	}
	now := time.Now()
	if last, ok := l.seen[key]; ok && now.Sub(last) < time.Minute {
		return false
	}
	l.seen[key] = now
	return true
}

// isPeerRefused reports whether err is a refusal by the peer handshake.
func isPeerRefused(err error) bool {
	var pe *PeerRefusedError
	return errors.As(err, &pe)
}
