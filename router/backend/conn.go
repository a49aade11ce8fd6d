package backend

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/redraft/redraft/router/resp"
)

type connState uint8

const (
	stIdle connState = iota
	stConnecting
	stUp
	stDown
	stClosed
)

const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 5 * time.Second
)

var errUnexpectedReply = errors.New("reply without a request")

// Conn is one shared, pipelined connection to a backend database. Clients append requests
// with Submit and then call Flush; bytes queued by many clients go out in one write, and the
// reader goroutine completes requests in order as replies arrive and writes what was queued
// meanwhile. A Conn dials lazily, reconnects on demand, and while its backend is down fails
// requests at once until a backoff has passed.
type Conn struct {
	p  *Pool
	db int
	r3 bool // the connection speaks RESP3 (HELLO 3)

	mu       sync.Mutex
	state    connState
	nc       net.Conn
	w        io.Writer // writes to nc: resp.Writer's, with raw system calls for a socket
	gen      uint64    // bumped on every new net.Conn
	wbuf     []byte    // queued bytes not yet written
	spare    []byte
	fifo     queue // requests awaiting replies, in write order
	queued   int   // requests of fifo whose bytes are still in wbuf (not in flight)
	writing  bool  // a goroutine is writing wbuf
	lastErr  error
	retryAt  time.Time
	backoff  time.Duration
	inflight int
}

func newConn(p *Pool, db int, r3 bool) *Conn {
	return &Conn{p: p, db: db, r3: r3}
}

// Submit queues raw (one or more complete commands) for the request; r must have been Reset
// for the number of replies raw produces. The bytes are sent by the next Flush.
func (c *Conn) Submit(r *Request, raw []byte) {
	c.mu.Lock()
	switch c.state {
	case stUp, stConnecting:
	case stIdle:
		c.startConnect()
	case stDown:
		if time.Now().Before(c.retryAt) {
			err := c.lastErr
			c.mu.Unlock()
			r.fail(err)
			return
		}
		c.startConnect()
	case stClosed:
		c.mu.Unlock()
		r.fail(c.p.unavailable(ErrClosed))
		return
	}
	c.wbuf = append(c.wbuf, raw...)
	c.fifo.push(r)
	c.queued++
	c.mu.Unlock()
}

// Flush sends queued bytes when nothing is on the wire: the caller writes them itself, the
// lowest latency. While requests are in flight it leaves them queued: the reader writes
// everything queued as soon as it has read every reply that has arrived, so the requests many
// clients queue during one round trip go out in one write. Measured on two cores at pipeline
// 1 with 50 clients, this batches as well as a writer goroutine that yields before writing,
// without the goroutine's wake-ups, which cost more than the writes they save.
func (c *Conn) Flush() {
	c.mu.Lock()
	c.startWrite(false)
}

// startWrite takes the turn to write, unless another goroutine has it, and writes (see
// writeLoop); called with c.mu held, it returns with c.mu released.
func (c *Conn) startWrite(force bool) {
	if c.writing {
		c.mu.Unlock()
		return
	}
	c.writing = true
	c.writeLoop(force)
}

// writeLoop writes wbuf; called with c.mu held and c.writing set, it returns with c.mu
// released. Unless force is set it writes only while nothing is in flight: otherwise the
// reader, which will read those replies, writes what was queued meanwhile.
func (c *Conn) writeLoop(force bool) {
	gen := c.gen
	for ; ; force = false {
		if c.gen != gen {
			c.mu.Unlock()
			return
		}
		if len(c.wbuf) == 0 || c.state != stUp || (!force && c.fifo.size != c.queued) {
			c.writing = false
			c.mu.Unlock()
			return
		}
		buf, nc, w := c.wbuf, c.nc, c.w
		c.wbuf = c.spare[:0]
		c.spare = nil
		c.queued = 0
		c.mu.Unlock()
		if t := c.p.opts.Timeout; t > 0 {
			_ = nc.SetWriteDeadline(time.Now().Add(t))
		}
		_, err := w.Write(buf)
		c.p.opts.Stats.Writes.Add(1)
		c.mu.Lock()
		if cap(buf) <= 1<<20 && c.spare == nil {
			c.spare = buf[:0]
		}
		if err != nil {
			// The reader sees the closed connection and fails every waiting request.
			_ = nc.Close()
			if c.gen == gen {
				c.writing = false
			}
			c.mu.Unlock()
			return
		}
	}
}

// flushQueued is the reader's turn to write: it has read every reply that arrived, and
// requests queued meanwhile go out together, whether or not earlier ones are still in flight.
func (c *Conn) flushQueued(gen uint64) {
	c.mu.Lock()
	if c.gen != gen {
		c.mu.Unlock()
		return
	}
	c.startWrite(true)
}

func (c *Conn) startConnect() {
	c.state = stConnecting
	go c.connect()
}

func (c *Conn) connect() {
	nc, err := c.p.dial(c.db, c.r3)
	c.mu.Lock()
	if c.state == stClosed {
		c.mu.Unlock()
		if nc != nil {
			_ = nc.Close()
		}
		return
	}
	if err != nil {
		if g := c.p.opts.Counters; g != nil {
			g.DialErrors.Add(1)
		}
		c.downLocked(c.p.unavailable(err), true)
		c.mu.Unlock()
		return
	}
	if g := c.p.opts.Counters; g != nil {
		g.Connects.Add(1)
	}
	c.state, c.nc, c.backoff = stUp, nc, 0
	c.w = resp.Writer(nc)
	c.gen++
	c.p.opts.Stats.BackendConns.Add(1)
	go c.reader(nc, c.gen)
	// Requests queued while dialling: nothing is in flight yet, so this goroutine writes them.
	c.startWrite(false)
}

// downLocked fails every queued request with err and waits for a backoff before the next
// dial: growing after failed dials, none after a connection that was up.
func (c *Conn) downLocked(err error, dialFailed bool) {
	if c.state != stClosed {
		c.state = stDown
	}
	c.lastErr = err
	if dialFailed {
		c.backoff = min(max(c.backoff*2, minBackoff), maxBackoff)
	} else {
		c.backoff = 0
	}
	c.retryAt = time.Now().Add(c.backoff)
	c.wbuf = c.wbuf[:0]
	c.queued = 0
	c.writing = false
	for c.fifo.size > 0 {
		c.fifo.pop().fail(err)
	}
}

// reader reads replies from nc and completes requests in order until nc fails.
func (c *Conn) reader(nc net.Conn, gen uint64) {
	br := bufio.NewReaderSize(resp.RawReader(nc), 16<<10)
	timeout := c.p.opts.Timeout
	var deadline time.Time
	var suspect, r *Request
	fail := func(err error) {
		_ = nc.Close()
		c.p.opts.Stats.BackendConns.Add(-1)
		c.mu.Lock()
		if g := c.p.opts.Counters; g != nil && c.state != stClosed {
			g.Drops.Add(1)
		}
		if c.gen == gen {
			c.downLocked(c.p.unavailable(err), false)
		}
		c.mu.Unlock()
	}
	for {
		if br.Buffered() == 0 {
			c.flushQueued(gen)
			if timeout > 0 {
				if now := time.Now(); now.Add(timeout / 2).After(deadline) {
					deadline = now.Add(timeout)
					_ = nc.SetReadDeadline(deadline)
				}
			}
			if _, err := br.Peek(1); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					// Idle, or a request that has not waited a full timeout yet: go on.
					c.mu.Lock()
					head, live := c.fifo.peek(), c.gen == gen
					c.mu.Unlock()
					if live && (head == nil || head != suspect) {
						suspect = head
						deadline = time.Time{}
						continue
					}
				}
				fail(err)
				return
			}
		}
		if r == nil {
			c.mu.Lock()
			r = c.fifo.peek()
			c.mu.Unlock()
			if r == nil {
				fail(errUnexpectedReply)
				return
			}
		}
		var err error
		r.Reply, err = resp.ReadReply(br, r.Reply[:0])
		if err != nil {
			fail(err)
			return
		}
		r.n--
		if r.n > 0 {
			continue
		}
		c.mu.Lock()
		c.fifo.pop()
		next := c.fifo.peek()
		c.mu.Unlock()
		r.finish()
		r = next
	}
}

// close shuts the connection; waiting requests fail with ErrClosed.
func (c *Conn) close() {
	c.mu.Lock()
	nc := c.nc
	if c.state != stUp {
		c.downLocked(c.p.unavailable(ErrClosed), false)
	}
	c.state = stClosed
	c.mu.Unlock()
	if nc != nil {
		_ = nc.Close()
	}
}
