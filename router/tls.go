package router

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"
)

// TLSHandshakeTimeout bounds a client's TLS handshake, so a connection that never completes
// one does not hold its goroutine.
const TLSHandshakeTimeout = 10 * time.Second

// errPlainOnTLS is written in clear to a client that speaks RESP to the TLS port.
const errPlainOnTLS = "-ERR this port speaks TLS only (client_tls): connect with TLS (redis-cli --tls), or use the node's plaintext listen port\r\n"

// NewTLSListener returns a listener whose connections speak TLS with cfg, for Serve. The
// handshake runs in the client's own goroutine at its first read, bounded by
// TLSHandshakeTimeout; a client that sends plain RESP instead gets a RESP error in clear, then
// the connection closes.
func NewTLSListener(ln net.Listener, cfg *tls.Config) net.Listener {
	return &tlsListener{Listener: ln, cfg: cfg}
}

type tlsListener struct {
	net.Listener
	cfg *tls.Config
}

func (l *tlsListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &tlsConn{Conn: tls.Server(nc, l.cfg)}, nil
}

// tlsConn is a server-side TLS connection that completes its handshake on the first read.
type tlsConn struct {
	*tls.Conn
	shook atomic.Bool
}

// Read reads decrypted bytes; the first call performs the handshake.
func (c *tlsConn) Read(p []byte) (int, error) {
	if !c.shook.Load() {
		if err := c.handshake(); err != nil {
			return 0, err
		}
	}
	return c.Conn.Read(p)
}

func (c *tlsConn) handshake() error {
	_ = c.Conn.SetDeadline(time.Now().Add(TLSHandshakeTimeout))
	err := c.Conn.Handshake()
	_ = c.Conn.SetDeadline(time.Time{})
	if err != nil {
		var rh tls.RecordHeaderError
		if errors.As(err, &rh) && rh.Conn != nil {
			_ = rh.Conn.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = rh.Conn.Write([]byte(errPlainOnTLS))
			// Let the client read the error: closing with its request unread would reset the
			// connection and could discard the reply.
			if tc, ok := rh.Conn.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
				_ = tc.SetReadDeadline(time.Now().Add(time.Second))
				_, _ = io.Copy(io.Discard, io.LimitReader(tc, 1<<20))
			}
		}
		return err
	}
	c.shook.Store(true)
	return nil
}
