package backend

import (
	"bufio"
	"net"
	"strconv"
	"time"

	"github.com/redraft/redraft/router/resp"
)

// Dedicated is a connection used by one session alone: for blocking commands, WATCH and
// pub/sub. It is not pipelined with other clients.
type Dedicated struct {
	p  *Pool
	nc net.Conn
	br *bufio.Reader
	id int64 // CLIENT ID on the backend: 0 not asked yet, -1 unknown
	// DB is the database the connection selected.
	DB int
	// R3 is set when the connection speaks RESP3.
	R3 bool
}

// Dial opens a dedicated RESP2 connection to database db.
func (p *Pool) Dial(db int) (*Dedicated, error) { return p.DialProto(db, false) }

// DialProto opens a dedicated connection to database db that speaks RESP3 when r3 is set.
func (p *Pool) DialProto(db int, r3 bool) (*Dedicated, error) {
	nc, err := p.dial(db, r3)
	if err != nil {
		return nil, p.unavailable(err)
	}
	d := &Dedicated{p: p, nc: nc, br: bufio.NewReaderSize(nc, 4096), DB: db, R3: r3}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = nc.Close()
		return nil, p.unavailable(ErrClosed)
	}
	if p.ded == nil {
		p.ded = map[*Dedicated]struct{}{}
	}
	p.ded[d] = struct{}{}
	p.mu.Unlock()
	p.opts.Stats.Dedicated.Add(1)
	return d, nil
}

// Pool returns the pool the connection belongs to.
func (d *Dedicated) Pool() *Pool { return d.p }

// Do writes raw and reads n replies, returning the last; timeout bounds the wait (0: none).
func (d *Dedicated) Do(raw []byte, n int, timeout time.Duration, dst []byte) ([]byte, error) {
	return d.DoNotify(raw, n, timeout, dst, nil)
}

// DoNotify is Do, calling written (when not nil) once raw is written, before the replies.
func (d *Dedicated) DoNotify(raw []byte, n int, timeout time.Duration, dst []byte, written func()) ([]byte, error) {
	if timeout > 0 {
		_ = d.nc.SetDeadline(time.Now().Add(timeout))
	} else {
		_ = d.nc.SetDeadline(time.Time{})
	}
	if _, err := d.nc.Write(raw); err != nil {
		return dst, d.p.unavailable(err)
	}
	if written != nil {
		written()
	}
	var err error
	for i := 0; i < n; i++ {
		dst, err = resp.ReadReply(d.br, dst[:0])
		if err != nil {
			return dst, d.p.unavailable(err)
		}
	}
	return dst, nil
}

var rawClientID = []byte("*2\r\n$6\r\nCLIENT\r\n$2\r\nID\r\n")

// ClientID returns the connection's CLIENT ID on the backend, asked once; 0 when the backend
// did not answer one. A call that failed (a timeout: the reply may still come) closes the
// connection, so that its next command fails instead of reading that reply as its own (until
// session 43 a BLPOP after a slow CLIENT ID answered the id, and every later reply on the
// connection was one behind). Only the owner calls it.
func (d *Dedicated) ClientID() int64 {
	if d.id == 0 {
		d.id = -1
		r, err := d.Do(rawClientID, 1, d.p.timeout(), nil)
		if err != nil {
			d.Close()
		} else if len(r) > 3 && r[0] == ':' {
			if v, err := strconv.ParseInt(string(r[1:len(r)-2]), 10, 64); err == nil && v > 0 {
				d.id = v
			}
		}
	}
	return max(d.id, 0)
}

// Write sends raw without waiting for a reply.
func (d *Dedicated) Write(raw []byte) error {
	_ = d.nc.SetWriteDeadline(time.Now().Add(d.p.timeout()))
	if _, err := d.nc.Write(raw); err != nil {
		return d.p.unavailable(err)
	}
	return nil
}

// Read reads one reply (no deadline) and appends it to dst.
func (d *Dedicated) Read(dst []byte) ([]byte, error) {
	_ = d.nc.SetReadDeadline(time.Time{})
	b, err := resp.ReadReply(d.br, dst)
	if err != nil {
		return b, d.p.unavailable(err)
	}
	return b, nil
}

// Close closes the connection; only its owner calls it.
func (d *Dedicated) Close() {
	d.p.mu.Lock()
	_, ok := d.p.ded[d]
	delete(d.p.ded, d)
	d.p.mu.Unlock()
	if ok {
		_ = d.nc.Close()
		d.p.opts.Stats.Dedicated.Add(-1)
	}
}

// shut closes the socket from another goroutine, failing a Do or Read in progress.
func (d *Dedicated) shut() { _ = d.nc.Close() }

// Interrupt fails a Do or Read in progress from another goroutine; the owner must still Close.
func (d *Dedicated) Interrupt() { d.shut() }
