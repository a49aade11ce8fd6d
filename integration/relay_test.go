package integration

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// relay is a fault-injecting TCP forwarder: it listens on one address, forwards every accepted
// connection to a target, and can cut connections by their source IP, as a firewall between
// sites would.
type relay struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	conns map[*relayConn]bool
	cut   func(net.IP) bool // nil: nothing is cut
	wg    sync.WaitGroup
}

// relayConn is one forwarded connection: the accepted side and the dialled one (out is set,
// under the relay's lock, once dialled).
type relayConn struct {
	src      net.IP
	in, out  net.Conn
	stopOnce sync.Once
}

func (c *relayConn) close() {
	c.stopOnce.Do(func() {
		c.in.Close()
		if c.out != nil {
			c.out.Close()
		}
	})
}

// startRelay listens on listen and forwards to target until the test ends.
func startRelay(t testing.TB, listen, target string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatalf("relay %s -> %s: %v", listen, target, err)
	}
	r := &relay{ln: ln, target: target, conns: map[*relayConn]bool{}}
	r.wg.Add(1)
	go r.serve()
	t.Cleanup(r.Close)
	return r
}

// Addr is the address the relay listens on.
func (r *relay) Addr() string { return r.ln.Addr().String() }

func (r *relay) serve() {
	defer r.wg.Done()
	for {
		in, err := r.ln.Accept()
		if err != nil {
			return
		}
		c := &relayConn{src: in.RemoteAddr().(*net.TCPAddr).IP, in: in}
		r.mu.Lock()
		if r.cut != nil && r.cut(c.src) {
			r.mu.Unlock()
			in.Close() // refused: the dialler sees the connection end at once
			continue
		}
		r.conns[c] = true
		r.wg.Add(1)
		r.mu.Unlock()
		go r.forward(c)
	}
}

func (r *relay) forward(c *relayConn) {
	defer r.wg.Done()
	defer func() {
		c.close()
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
	}()
	out, err := net.DialTimeout("tcp", r.target, 5*time.Second)
	if err != nil {
		return
	}
	r.mu.Lock()
	c.out = out
	cut := r.cut != nil && r.cut(c.src) // cut while dialling
	r.mu.Unlock()
	if cut {
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(out, c.in); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c.in, out); done <- struct{}{} }()
	<-done // one direction ended: end both, as a broken path would
	c.close()
	<-done
}

// Cut closes the existing connections, and refuses new ones, whose source IP satisfies pred;
// a nil pred cuts every connection.
func (r *relay) Cut(pred func(src net.IP) bool) {
	if pred == nil {
		pred = func(net.IP) bool { return true }
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cut = pred
	for c := range r.conns {
		if pred(c.src) {
			c.close()
		}
	}
}

// Heal lets every connection through again.
func (r *relay) Heal() {
	r.mu.Lock()
	r.cut = nil
	r.mu.Unlock()
}

// Close stops the relay and every connection through it.
func (r *relay) Close() {
	r.ln.Close()
	r.mu.Lock()
	for c := range r.conns {
		c.close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

func TestXDCRelayCutsBySourceIP(t *testing.T) {
	from := "127.0.0.2"
	if ln, err := net.Listen("tcp", from+":0"); err != nil {
		t.Skipf("cannot use %s here: %v", from, err)
	} else {
		ln.Close()
	}
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	r := startRelay(t, "127.0.0.1:0", echo.Addr().String())
	dial := func(src string) net.Conn {
		t.Helper()
		d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp", r.Addr())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		return c
	}
	works := func(c net.Conn) bool {
		if _, err := c.Write([]byte("x")); err != nil {
			return false
		}
		var b [1]byte
		_, err := io.ReadFull(c, b[:])
		return err == nil && b[0] == 'x'
	}
	a, b := dial(from), dial("127.0.0.1")
	if !works(a) || !works(b) {
		t.Fatal("relay does not forward")
	}
	r.Cut(func(ip net.IP) bool { return ip.Equal(net.ParseIP(from)) })
	if works(a) {
		t.Error("a cut connection still works")
	}
	if !works(b) {
		t.Error("a connection from another source was cut")
	}
	if works(dial(from)) {
		t.Error("a new connection from a cut source was let through")
	}
	r.Heal()
	if !works(dial(from)) {
		t.Error("healed relay refuses")
	}
	r.Cut(nil)
	if works(b) {
		t.Error("Cut(nil) left a connection up")
	}
}
