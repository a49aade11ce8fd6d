package resp

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// Raw system calls for sockets. A loopback write runs the receiver's whole TCP path and often
// takes over 20 µs; made through syscall.Write, the runtime marks the goroutine's P as in a
// system call, and sysmon, finding it there at its next tick, hands the P to another thread
// (with one P, the only one), which costs two thread switches and keeps sysmon at its shortest
// period. On a non-blocking socket a write or read never blocks, so it can run as a raw system
// call, which the scheduler does not see: the P stays with the goroutine (docs/performance.md,
// "Raw socket system calls").

// rawRead reads into b from fd with a raw read(2); in a build with the race detector through
// syscall.Read, which tells the detector that the peer's write happened before (see Writer).
func rawRead(fd uintptr, b []byte) (int, syscall.Errno) {
	if raceEnabled {
		n, err := syscall.Read(int(fd), b)
		if e, ok := err.(syscall.Errno); ok {
			return max(n, 0), e
		}
		return max(n, 0), 0
	}
	if len(b) == 0 {
		return 0, 0
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(n), e
}

// rawWrite writes b to fd with a raw write(2); in a build with the race detector through
// syscall.Write, which tells the detector that the write happened before the peer's read.
func rawWrite(fd uintptr, b []byte) (int, syscall.Errno) {
	if raceEnabled {
		n, err := syscall.Write(int(fd), b)
		if e, ok := err.(syscall.Errno); ok {
			return max(n, 0), e
		}
		return max(n, 0), 0
	}
	if len(b) == 0 {
		return 0, 0
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(n), e
}

// rawWriter writes to a socket with raw write(2) calls, waiting for writability through the
// runtime's poller when the socket's buffer is full. Not safe for concurrent use.
type rawWriter struct {
	rc     syscall.RawConn
	b      []byte
	n      int
	err    error
	fn     func(fd uintptr) bool // write, bound once
	noWait bool                  // a TryWriter's: a full socket buffer ends the write
}

// Writer returns what to write c's bytes with: a rawWriter when c is a socket, c itself for
// anything else (a TLS connection), and c itself in a build with the race detector too: the
// detector learns from net.Conn's own Write that a write happens before the peer's read of
// it, an edge a raw write would hide, so that tests handing data between goroutines through
// a socket would report races that are not there.
func Writer(c net.Conn) io.Writer {
	if !raceEnabled {
		if w := newRawWriter(c); w != nil {
			return w
		}
	}
	return c
}

// rawConnOf returns c's syscall.RawConn, or nil when c is not a socket (a TLS connection).
func rawConnOf(c any) syscall.RawConn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// Shutdown shuts a socket down both ways (shutdown(2)) without closing it: the peer sees the
// connection end, and a read of it, or a wait for one, ends at once, even while a goroutine
// holds the socket (Reader.Loop) and a Close waits for that goroutine to let go. It does
// nothing to a connection that is not a socket (a TLS connection).
func Shutdown(c net.Conn) {
	if rc := rawConnOf(c); rc != nil {
		_ = rc.Control(func(fd uintptr) { _ = syscall.Shutdown(int(fd), syscall.SHUT_RDWR) })
	}
}

// newRawWriter returns a rawWriter for c, or nil when c is not a socket (a TLS connection).
func newRawWriter(c any) *rawWriter {
	rc := rawConnOf(c)
	if rc == nil {
		return nil
	}
	w := &rawWriter{rc: rc}
	w.fn = w.write
	return w
}

// Write writes all of b, as net.Conn's Write does (deadlines included).
func (w *rawWriter) Write(b []byte) (int, error) {
	w.b, w.n, w.err = b, 0, nil
	err := w.rc.Write(w.fn)
	n, werr := w.n, w.err
	w.b, w.err = nil, nil
	if err == nil && werr != nil {
		err = os.NewSyscallError("write", werr)
	}
	return n, err
}

// write is the syscall.RawConn callback: false waits for writability.
func (w *rawWriter) write(fd uintptr) bool {
	for w.n < len(w.b) {
		r, e := rawWrite(fd, w.b[w.n:])
		switch e {
		case 0:
			w.n += r
		case syscall.EINTR:
		case syscall.EAGAIN:
			return w.noWait
		default:
			w.err = e
			return true
		}
	}
	return true
}

// TryWriter writes to a socket without waiting: what the socket's buffer does not take is left
// to the caller. Not safe for concurrent use. A build with the race detector writes through
// syscall.Write (see Writer).
type TryWriter struct{ w *rawWriter }

// NewTryWriter returns a TryWriter for c, or nil when c is not a socket (a TLS connection).
func NewTryWriter(c net.Conn) *TryWriter {
	w := newRawWriter(c)
	if w == nil {
		return nil
	}
	w.noWait = true
	return &TryWriter{w: w}
}

// TryWrite writes as much of b as the socket takes now and returns how much that was; it
// never waits for writability.
func (t *TryWriter) TryWrite(b []byte) (int, error) { return t.w.Write(b) }

// rawReader reads from a socket with raw read(2) calls (rawRead), waiting for readability
// through the runtime's poller, deadlines included.
type rawReader struct {
	rc  syscall.RawConn
	b   []byte
	n   int
	err syscall.Errno
	fn  func(fd uintptr) bool // read, bound once
}

// RawReader returns what to read c's bytes with: a rawReader when c is a socket, c itself for
// anything else (a TLS connection). Not safe for concurrent use.
func RawReader(c net.Conn) io.Reader {
	rc := rawConnOf(c)
	if rc == nil {
		return c
	}
	r := &rawReader{rc: rc}
	r.fn = r.read
	return r
}

// Read reads what the socket has, up to len(b), waiting until it has something; io.EOF once
// the peer closed.
func (r *rawReader) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	r.b, r.n, r.err = b, 0, 0
	err := r.rc.Read(r.fn)
	r.b = nil
	return readResult(err, r.n, r.err)
}

// readResult is what a read of a socket through its RawConn came to: err from RawConn.Read
// (a deadline, a closed connection), else the read's errno, else n bytes (none: io.EOF).
func readResult(err error, n int, e syscall.Errno) (int, error) {
	switch {
	case err != nil:
		return 0, err
	case e != 0:
		return 0, os.NewSyscallError("read", e)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// read is the syscall.RawConn callback: false waits for readability.
func (r *rawReader) read(fd uintptr) bool {
	for {
		n, e := rawRead(fd, r.b)
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		r.n, r.err = n, e
		return true
	}
}
