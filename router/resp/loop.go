package resp

import "syscall"

// A client's read loop without the empty read (docs/performance.md, "The read loop").
//
// Fill begins a RawConn.Read per call. The runtime resets the socket's readiness when such a
// call begins, so that a readiness event from before it cannot wake the wait; after the
// reset only a read can tell whether data is waiting, and a client at pipeline 1 costs two
// reads per request: the one that finds the request, and the one after its reply that finds
// nothing (EAGAIN) before the goroutine parks. Loop stays in one RawConn.Read and handles
// every read's data inside its callback: the readiness is reset once, when Loop begins, and
// an event that comes later (data arriving while batch runs) is kept for the next wait,
// which then returns at once. So after a read that left the socket empty (it returned fewer
// bytes than it was offered: a stream socket's read takes all it holds, up to the length)
// the loop waits without reading first, and no arrival is missed: one that came before that
// read is in it, one after it marks the socket ready. (A read also stops short at TCP's
// urgent mark and, on a Unix socket, at a message that passes descriptors or credentials:
// a client that sends such things stalls only itself until it sends more. RESP uses none.)

// CanLoop reports whether Loop can serve the connection: one with a file descriptor (TCP,
// Unix), not a TLS connection.
func (r *Reader) CanLoop() bool { return r.raw != nil }

// Loop reads the connection and, after each read that brought data, calls batch, which
// parses what is complete (Next) and serves it; it may call Release, not Fill. Loop returns
// nil once batch returns false (the bytes batch left unparsed stay buffered), and the
// connection's error otherwise (io.EOF once the peer closed). While batch runs the caller
// holds the connection's read side: a Close from any goroutine waits until Loop returns, so a
// close that batch may wait for must not wait for the close.
func (r *Reader) Loop(batch func() bool) error {
	r.batch, r.stopped = batch, false
	if r.loopFn == nil {
		r.loopFn = r.loopRead
	}
	err := r.raw.Read(r.loopFn)
	r.batch = nil
	n, e := r.rn, r.rerr
	r.rn, r.rerr = 0, 0
	if r.stopped {
		return nil
	}
	_, err = readResult(err, n, e)
	return err
}

// loopRead is Loop's syscall.RawConn callback: false waits for readability, true ends Loop.
func (r *Reader) loopRead(fd uintptr) bool {
	for {
		if r.buf == nil {
			r.bufp = GetBuf()
			r.buf = *r.bufp
			r.r, r.w, r.need = 0, 0, 0
		} else {
			r.room()
		}
		n, e := rawRead(fd, r.buf[r.w:])
		switch {
		case e == syscall.EINTR:
			continue
		case e == syscall.EAGAIN:
			r.Release() // an idle connection holds no buffer
			return false
		case e != 0 || n == 0:
			r.rn, r.rerr = n, e
			return true
		}
		r.w += n
		drained := r.w < len(r.buf)
		if !r.batch() {
			r.stopped = true
			return true
		}
		if drained {
			return false
		}
	}
}

// Mark returns the parse position, for Rewind.
func (r *Reader) Mark() int { return r.r }

// Rewind moves the parse position back to m, a Mark taken since the last Fill or read, so
// that Next returns the same commands again.
func (r *Reader) Rewind(m int) { r.r, r.resumeN, r.resumeAt = m, 0, 0 }
