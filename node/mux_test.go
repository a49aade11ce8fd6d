package node

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestPeerSourceIP(t *testing.T) {
	for _, tc := range []struct{ listen, want string }{
		{"127.0.0.2:7380", "127.0.0.2"},
		{"[::1]:7380", "::1"},
		{"0.0.0.0:7380", ""},
		{"[::]:7380", ""},
		{":7380", ""},
		{"localhost:7380", ""},
		{"nonsense", ""},
	} {
		got := peerSourceIP(tc.listen)
		if (got == nil) != (tc.want == "") || got != nil && got.String() != tc.want {
			t.Errorf("peerSourceIP(%q) = %v, want %q", tc.listen, got, tc.want)
		}
	}
}

// acceptOne listens on 127.0.0.1 and reports the source IP and first byte of the first
// connection it accepts.
func acceptOne(t *testing.T) (addr string, got <-chan [2]string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan [2]string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var b [1]byte
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.ReadFull(c, b[:])
		ch <- [2]string{c.RemoteAddr().(*net.TCPAddr).IP.String(), string(b[:])}
	}()
	return ln.Addr().String(), ch
}

func wantFrom(t *testing.T, what string, got <-chan [2]string, ip string, proto byte) {
	t.Helper()
	select {
	case g := <-got:
		if g[0] != ip || g[1] != string([]byte{proto}) {
			t.Errorf("%s arrived from %s with protocol byte %q, want from %s with %q", what, g[0], g[1], ip, proto)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s never arrived", what)
	}
}

// TestPeerDialsLeaveFromPeerListenIP: a node whose peer port listens on 127.0.0.2 dials its
// peers, for Raft and for RPC, from 127.0.0.2 (Linux routes all of 127/8 to lo).
func TestPeerDialsLeaveFromPeerListenIP(t *testing.T) {
	probe, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2 here: %v", err)
	}
	probe.Close()

	cfg := DefaultConfig()
	cfg.ID, cfg.DC = "n1", "dc1"
	cfg.Listen, cfg.PeerListen, cfg.AdminListen = freeAddr(t), "127.0.0.2:0", "127.0.0.2:0"
	cfg.DataDir = filepath.Join(t.TempDir(), "n1")
	n, err := Start(cfg, quietOpts())
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()

	addr, got := acceptOne(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = n.peers.call(ctx, addr, rpcStatus, struct{}{}, nil) // the fake peer hangs up: an error
	wantFrom(t, "an RPC dial", got, "127.0.0.2", muxRPC)

	// The leader of a one-node cluster dials a new member at once to replicate to it.
	if err := n.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	addr, got = acceptOne(t)
	if err := n.raft.AddNonvoter("fake", raft.ServerAddress(addr), 0, 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	wantFrom(t, "a Raft dial", got, "127.0.0.2", muxRaft)

	// A wildcard listener leaves the choice to the kernel: loopback dials come from 127.0.0.1.
	addr, got = acceptOne(t)
	// The fake peer hangs up after the protocol byte, so the handshake fails: an error.
	if c, err := (peerDialer{from: peerSourceIP("0.0.0.0:0")}).dial(addr, muxRPC, 2*time.Second); err == nil {
		c.Close()
	}
	wantFrom(t, "a dial of a wildcard listener", got, "127.0.0.1", muxRPC)
}

// failingListener fails its first fails Accepts as a process out of buffers does.
type failingListener struct {
	net.Listener
	fails int
}

func (l *failingListener) Accept() (net.Conn, error) {
	if l.fails > 0 {
		l.fails--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept", syscall.ENOBUFS)}
	}
	return l.Listener.Accept()
}

// TestMuxOutlivesAcceptFailures: accept failures that are not the listener's close (out of
// file descriptors or buffers) are waited out; until session 43 the first one ended the loop,
// and the node took no Raft or RPC connection again until restarted.
func TestMuxOutlivesAcceptFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := newMux(&failingListener{Listener: ln, fails: 3}, log, newPeerAuth("", log))
	defer m.close()
	sub := m.listen(muxRPC)
	go m.serve()
	got := make(chan net.Conn, 1)
	go func() {
		if s, err := sub.Accept(); err == nil {
			got <- s
		}
	}()
	c, err := peerDialer{auth: newPeerAuth("", log)}.dial(ln.Addr().String(), muxRPC, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case s := <-got:
		s.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted after the listener's failures")
	}
}

// TestRaftDirPrivate: the Raft directory (log and snapshots, which hold the groups' passwords)
// is 0700, one that existed with a wider mode included.
func TestRaftDirPrivate(t *testing.T) {
	c := newTestCluster(t)
	dir := filepath.Join(c.dir, "n1", "raft")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c.start("n1", "dc1")
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("raft dir mode %v, want 0700", fi.Mode().Perm())
	}
}
