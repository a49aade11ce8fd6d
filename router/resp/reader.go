// Package resp reads client requests and backend replies in the Redis protocol (RESP2) and
// writes replies, without allocating on the hot path.
package resp

import (
	"errors"
	"io"
	"syscall"
)

// Limits as in redis-server's defaults.
const (
	// DefaultMaxBulk is proto-max-bulk-len: the largest argument accepted.
	DefaultMaxBulk = 512 << 20
	// DefaultMaxArgs is the largest multibulk count accepted.
	DefaultMaxArgs = 1024 * 1024
	// MaxRequest bounds one request's total size, as client-query-buffer-limit (1 GiB) bounds
	// redis-server's query buffer: one 512 MiB argument and more fit, eight of them do not.
	// The node holds a request whole, and a split or replicated write copies it once or twice
	// more, so without it one request of gigabytes could run the node out of memory.
	MaxRequest = 1 << 30
	// MaxInline is PROTO_INLINE_MAX_SIZE: the longest inline request or header line.
	MaxInline = 64 << 10
	// initialBuf is a connection's first read buffer size.
	initialBuf = 4096
	// shrinkAbove is the buffer size above which an empty buffer is given back.
	shrinkAbove = 64 << 10
)

// ProtocolError is a malformed or oversized request; the connection must be closed after its
// reply, as redis-server does.
type ProtocolError struct{ Msg string }

// Error returns the text redis-server sends for the same fault.
func (e *ProtocolError) Error() string { return "Protocol error: " + e.Msg }

var (
	errMultibulkLen = &ProtocolError{"invalid multibulk length"}
	errBulkLen      = &ProtocolError{"invalid bulk length"}
	errBigInline    = &ProtocolError{"too big inline request"}
	errBigMbulk     = &ProtocolError{"too big mbulk count string"}
	errBigBulk      = &ProtocolError{"too big bulk count string"}
	errBigRequest   = &ProtocolError{"request larger than 1 GiB (client-query-buffer-limit)"}
	errQuotes       = &ProtocolError{"unbalanced quotes in request"}
	errUnauthMbulk  = &ProtocolError{"unauthenticated multibulk length"}
	errUnauthBulk   = &ProtocolError{"unauthenticated bulk length"}
)

// Limits of a connection that has not authenticated where a password is required, as in
// redis-server since its fix of CVE-2021-32675: a client without the password cannot make the
// node buffer a large request.
const (
	unauthMaxArgs = 10
	unauthMaxBulk = 16384
)

// Command is one parsed request. Args and Raw point into the Reader's buffers and stay valid
// only until the next call to Next or Fill.
type Command struct {
	// Args are the command name and its arguments.
	Args [][]byte
	// Raw is the request in RESP form, ready to forward (inline requests are re-encoded).
	Raw []byte
}

// Reader parses requests from a client connection.
type Reader struct {
	rd      io.Reader
	buf     []byte
	r, w    int // unparsed data is buf[r:w]
	need    int // bytes buf[r:] must hold before the pending request can complete
	maxBulk int64
	maxArgs int
	maxReq  int  // MaxRequest (tests lower it)
	unauth  bool // Unauthenticated's limits apply
	// A multibulk request left incomplete: its arguments checked so far (resumeN) and the
	// offset from its start of the next one's header (resumeAt), so that each read of a long
	// request does not walk it again from its start (0: none).
	resumeN  int64
	resumeAt int
	args     [][]byte
	inline   []byte // re-encoded inline request
	scratch  []byte // unquoted inline arguments

	// For a connection with a file descriptor (TCP, Unix): buf comes from the buffer pool
	// (bufp) when data arrives and goes back to it on Release, so an idle connection holds
	// no buffer. Other readers (TLS, tests) keep a buffer of their own.
	raw    syscall.RawConn
	bufp   *[]byte
	readFn func(fd uintptr) bool // rawRead, bound once
	rn     int
	rerr   syscall.Errno

	// Loop's state (loop.go): its batch, whether batch ended it, and loopRead bound once.
	batch   func() bool
	stopped bool
	loopFn  func(fd uintptr) bool
}

// NewReader returns a Reader with the given limits (zero or less means redis-server's default).
func NewReader(rd io.Reader, maxBulk int64, maxArgs int) *Reader {
	if maxBulk <= 0 {
		maxBulk = DefaultMaxBulk
	}
	if maxArgs <= 0 {
		maxArgs = DefaultMaxArgs
	}
	r := &Reader{rd: rd, maxBulk: maxBulk, maxArgs: maxArgs, maxReq: MaxRequest}
	if sc, ok := rd.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			r.raw = raw
			r.readFn = r.rawRead
		}
	}
	return r
}

// Unauthenticated sets whether the connection has yet to authenticate where a password is
// required: then a request of more than 10 arguments, or an argument longer than 16 KiB, is
// a protocol error ("unauthenticated multibulk length", "unauthenticated bulk length"), as
// redis-server answers.
func (r *Reader) Unauthenticated(on bool) { r.unauth = on }

// Release gives the read buffer back to the pool when every byte in it has been parsed; the
// next Fill takes a buffer only once data has arrived. It invalidates the Args and Raw of
// commands returned earlier, as Fill does. Only the goroutine that calls Fill and Next may
// call it, and not while another goroutine runs Fill.
func (r *Reader) Release() {
	if r.raw == nil || r.r != r.w || r.buf == nil {
		return
	}
	if r.bufp != nil {
		PutBuf(r.bufp)
		r.bufp = nil
	}
	r.buf = nil
	r.dropArgs()
	r.r, r.w, r.need = 0, 0, 0
	r.resumeN, r.resumeAt = 0, 0
}

// fillRaw waits until the connection is readable and reads into a pooled buffer taken only
// then; r.buf is nil and nothing is buffered.
func (r *Reader) fillRaw() error {
	n, err := readResult(r.raw.Read(r.readFn), r.rn, r.rerr)
	r.rerr = 0
	if err != nil {
		return err
	}
	r.r, r.w = 0, n
	return nil
}

// rawRead is the syscall.RawConn read callback: it reports false (wait for readability) when
// the socket has nothing, having given the buffer back.
func (r *Reader) rawRead(fd uintptr) bool {
	if r.bufp == nil {
		r.bufp = GetBuf()
		r.buf = *r.bufp
	}
	for {
		n, e := rawRead(fd, r.buf)
		if e == syscall.EINTR {
			continue
		}
		if e == syscall.EAGAIN {
			PutBuf(r.bufp)
			r.bufp, r.buf = nil, nil
			return false
		}
		r.rn, r.rerr = n, e
		return true
	}
}

// Buffered reports how many unparsed bytes are held.
func (r *Reader) Buffered() int { return r.w - r.r }

// Fill reads more data from the connection, blocking until some arrives. It invalidates the
// Args and Raw of commands returned earlier.
func (r *Reader) Fill() error {
	if r.buf == nil {
		if r.raw != nil {
			return r.fillRaw()
		}
		r.buf = make([]byte, initialBuf)
	}
	r.room()
	for {
		n, err := r.rd.Read(r.buf[r.w:])
		r.w += n
		if err != nil {
			if n > 0 && errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		// Keep reading while a large argument is still incomplete.
		if r.w-r.r >= r.need || r.w == len(r.buf) {
			return nil
		}
	}
}

// room makes space in buf after w for the next read: it starts over at the buffer's beginning
// once everything was parsed (shrinking a buffer grown for a big argument), and moves or grows
// the unparsed bytes so the pending request's need fits.
func (r *Reader) room() {
	if r.r == r.w {
		r.r, r.w = 0, 0
		if len(r.buf) > shrinkAbove {
			r.dropPooled()
			r.dropArgs()
			r.buf = make([]byte, initialBuf)
		}
	}
	want := max(r.need, r.w-r.r+1)
	if r.r+want > len(r.buf) {
		if want > len(r.buf) {
			// Grow by doubling, not to the declared size at once, so a client that announces
			// a huge argument and sends nothing costs little.
			nb := make([]byte, 2*len(r.buf))
			copy(nb, r.buf[r.r:r.w])
			r.dropPooled()
			r.buf = nb
		} else {
			copy(r.buf, r.buf[r.r:r.w])
		}
		r.w -= r.r
		r.r = 0
	}
}

// Next parses the next complete command from the buffer. It returns ok=false when more data
// is needed (call Fill), and a *ProtocolError for a malformed or oversized request.
func (r *Reader) Next() (cmd Command, ok bool, err error) {
	for r.r < r.w {
		var done, skip bool
		if r.buf[r.r] == '*' {
			cmd, done, skip, err = r.parseMultibulk()
		} else {
			cmd, done, skip, err = r.parseInline()
		}
		if err != nil || !done {
			return Command{}, false, err
		}
		if !skip {
			return cmd, true, nil
		}
	}
	r.need = 0
	return Command{}, false, nil
}

// line returns the index of the '\n' ending the line that starts at p, or -1.
func (r *Reader) line(p int) int {
	for i := p; i < r.w; i++ {
		if r.buf[i] == '\n' {
			return i
		}
	}
	return -1
}

// parseInt parses a decimal integer as Redis's string2ll does for protocol numbers.
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	neg := false
	if b[0] == '-' {
		neg, b = true, b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	if b[0] == '0' && (len(b) > 1 || neg) {
		return 0, false // string2ll takes no leading zero, nor "-0"
	}
	limit := uint64(1<<63 - 1)
	if neg {
		limit++ // -9223372036854775808
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (limit-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	if neg {
		return -int64(n), true // n = 1<<63 wraps to the minimum, as wanted
	}
	return int64(n), true
}

func (r *Reader) parseMultibulk() (cmd Command, done, skip bool, err error) {
	start := r.r
	nl := r.line(start)
	if nl < 0 {
		if r.w-start > MaxInline {
			return cmd, false, false, errBigMbulk
		}
		r.need = r.w - start + 1
		return cmd, false, false, nil
	}
	// Redis ends a header line at its '\r' (and skips the byte after it): a line ended by a
	// bare '\n' is refused here as Redis would refuse it, since the request is forwarded as
	// it came, and Redis closes the shared connection it reads a protocol error on, failing
	// every other client's request in flight there.
	hdr := r.buf[start+1 : nl]
	if len(hdr) == 0 || hdr[len(hdr)-1] != '\r' {
		return cmd, false, false, errMultibulkLen
	}
	count, ok := parseInt(hdr[:len(hdr)-1])
	if !ok || count > int64(r.maxArgs) {
		return cmd, false, false, errMultibulkLen
	}
	if r.unauth && count > unauthMaxArgs {
		return cmd, false, false, errUnauthMbulk
	}
	p := nl + 1
	if count <= 0 {
		// redis-server ignores empty multibulks.
		r.r = p
		return cmd, true, true, nil
	}
	args := r.args[:0]
	i, resumed := int64(0), r.resumeN > 0
	if resumed {
		// The arguments before resumeAt were checked by an earlier read; args holds only
		// the ones after it, and the complete request is walked once more below.
		i, p = r.resumeN, start+r.resumeAt
	}
	for ; i < count; i++ {
		if p >= r.w {
			return r.pending(p-start+1, args, i, p-start)
		}
		if r.buf[p] != '$' {
			return cmd, false, false, &ProtocolError{"expected '$', got '" + printable(r.buf[p]) + "'"}
		}
		nl := r.line(p)
		if nl < 0 {
			if r.w-p > MaxInline {
				return cmd, false, false, errBigBulk
			}
			return r.pending(r.w-start+1, args, i, p-start)
		}
		lb := r.buf[p+1 : nl]
		if len(lb) == 0 || lb[len(lb)-1] != '\r' {
			return cmd, false, false, errBulkLen // as the header's: Redis wants '\r'
		}
		size, ok := parseInt(lb[:len(lb)-1])
		if !ok || size < 0 || size > r.maxBulk {
			return cmd, false, false, errBulkLen
		}
		if r.unauth && size > unauthMaxBulk {
			return cmd, false, false, errUnauthBulk
		}
		data := nl + 1
		end := data + int(size) + 2
		if end-start > r.maxReq {
			return cmd, false, false, errBigRequest
		}
		if end > r.w {
			return r.pending(end-start, args, i, p-start)
		}
		args = append(args, r.buf[data:data+int(size):data+int(size)])
		p = end
	}
	r.resumeN, r.resumeAt = 0, 0
	if resumed {
		// Complete now: one walk from its start gives every argument.
		r.args = args
		return r.parseMultibulk()
	}
	r.args = args
	r.r = p
	r.need = 0
	return Command{Args: args, Raw: r.buf[start:p:p]}, true, false, nil
}

// pending records where an incomplete multibulk request stopped: the bytes it needs, the
// arguments checked (i) and the offset of the next one's header from its start (at).
func (r *Reader) pending(need int, args [][]byte, i int64, at int) (Command, bool, bool, error) {
	r.need = need
	r.args = args
	r.resumeN, r.resumeAt = i, at
	return Command{}, false, false, nil
}

func printable(c byte) string {
	if c < 32 || c > 126 {
		return "?"
	}
	return string(rune(c))
}

// dropArgs forgets the last request's arguments, which point into the buffer being let go:
// kept, they kept it reachable (a connection idle after a 100 MiB SET held its 128 MiB buffer).
// A long argument list's own array goes too.
func (r *Reader) dropArgs() {
	clear(r.args[:cap(r.args)])
	if cap(r.args) > 1024 {
		r.args = nil
	}
}

// dropPooled gives a pooled r.buf back before it is replaced.
func (r *Reader) dropPooled() {
	if r.bufp != nil {
		PutBuf(r.bufp)
		r.bufp = nil
	}
}
