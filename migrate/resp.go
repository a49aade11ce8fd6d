package migrate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/router/resp"
)

// The batch copy's connections (copy.go): plain RESP2 over a few pooled connections per server
// and db, without go-redis. A round trip costs each side 30-50 µs of CPU on these hosts (system
// calls: DESIGN.md, "CPU per moved key"), and go-redis adds to each command a health check of
// the connection it takes from its pool (one more system call), allocations per argument and
// reply, and a string per value it decodes. Here a batch's values go from the dump script's
// reply to the restore's arguments as the bytes read, and every step is one write and one
// read on a connection no one else uses meanwhile.

// rawPool is a pool of raw connections to one server and db.
type rawPool struct {
	e   Endpoint
	db  int
	cfg *Config

	mu     sync.Mutex
	idle   []*rawConn
	closed bool
}

// rawConn is one connection: commands are appended to out and sent by roundTrip.
type rawConn struct {
	nc  net.Conn
	br  *bufio.Reader // reads with raw system calls (resp.RawReader)
	w   io.Writer     // writes with raw system calls (resp.Writer)
	out []byte
	n   int // commands queued in out
}

// rval is a RESP2 reply: kind '+', '-', ':', '$' or '*'; nil bulk strings and arrays have
// null set.
type rval struct {
	kind byte
	null bool
	str  []byte
	num  int64
	arr  []rval
}

// err is the reply's error, if it is one.
func (v rval) err() error {
	if v.kind == '-' {
		return redisErr(v.str)
	}
	return nil
}

// redisErr is an error reply of the server.
type redisErr string

func (e redisErr) Error() string { return string(e) }

func newRawPool(e Endpoint, db int, cfg *Config) *rawPool { return &rawPool{e: e, db: db, cfg: cfg} }

// close closes the idle connections; those in use are closed when they come back.
func (p *rawPool) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.dropIdle()
}

// get takes an idle connection (reused) or dials one (AUTH and SELECT pipelined).
func (p *rawPool) get(ctx context.Context) (c *rawConn, reused bool, err error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, false, errors.New("migrate: mover closed")
	}
	if n := len(p.idle); n > 0 {
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return c, true, nil
	}
	p.mu.Unlock()
	c, err = p.dial(ctx)
	return c, false, err
}

// dial opens a connection.
func (p *rawPool) dial(ctx context.Context) (*rawConn, error) {
	dctx, cancel := context.WithTimeout(ctx, p.cfg.DialTimeout)
	defer cancel()
	var nc net.Conn
	var err error
	if p.e.Dialer != nil {
		nc, err = p.e.Dialer(dctx, "tcp", p.e.Addr)
	} else {
		var d net.Dialer
		nc, err = d.DialContext(dctx, "tcp", p.e.Addr)
	}
	if err != nil {
		return nil, fmt.Errorf("migrate: dial %s: %w", p.e.Addr, err)
	}
	c := &rawConn{nc: nc, br: bufio.NewReaderSize(resp.RawReader(nc), 64<<10), w: resp.Writer(nc)}
	switch {
	case p.e.Username != "":
		c.cmd("AUTH", p.e.Username, p.e.Password)
	case p.e.Password != "":
		c.cmd("AUTH", p.e.Password)
	}
	if p.db != 0 {
		c.cmd("SELECT", p.db)
	}
	if c.n > 0 {
		res, err := c.roundTrip(ctx, p.cfg)
		if err == nil {
			for _, r := range res {
				if err = r.err(); err != nil {
					break
				}
			}
		}
		if err != nil {
			_ = nc.Close()
			return nil, fmt.Errorf("migrate: connect to %s db %d: %w", p.e.Addr, p.db, err)
		}
	}
	return c, nil
}

// put gives back a connection after a complete round trip; a connection whose round trip
// failed is closed instead (its replies may be out of step).
func (p *rawPool) put(c *rawConn, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil || p.closed || len(p.idle) >= p.cfg.PoolSize {
		_ = c.nc.Close()
		return
	}
	p.idle = append(p.idle, c)
}

// do queues commands on a connection with queue and sends them in one round trip: one reply
// per command queued. Error replies are replies, not errors. When a connection taken idle
// fails (the server restarted or closed it meanwhile), the idle ones are dropped and the
// commands sent once more on a new connection: each step of the batch copy may run twice
// (a dump that ran finds its own locks and reports the keys busy; a restore writes the same
// values again; a delete finds the locks gone and reports the keys not moved, so the next
// pass moves nothing for them).
func (p *rawPool) do(ctx context.Context, queue func(c *rawConn)) ([]rval, error) {
	c, reused, err := p.get(ctx)
	if err != nil {
		return nil, err
	}
	queue(c)
	res, err := c.roundTrip(ctx, p.cfg)
	p.put(c, err)
	if err != nil && reused && ctx.Err() == nil {
		p.dropIdle()
		if c, err = p.dial(ctx); err != nil {
			return nil, err
		}
		queue(c)
		res, err = c.roundTrip(ctx, p.cfg)
		p.put(c, err)
	}
	return res, err
}

// dropIdle closes the idle connections.
func (p *rawPool) dropIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		_ = c.nc.Close()
	}
}

// script runs s by EVALSHA, and by EVAL when the server does not have it (NOSCRIPT: EVALSHA
// did nothing).
func (p *rawPool) script(ctx context.Context, s *script, keys []string, args ...any) (rval, error) {
	res, err := p.do(ctx, func(c *rawConn) { c.evalsha(s, keys, args...) })
	if err != nil {
		return rval{}, err
	}
	if isNoScript(res[0]) {
		res, err = p.do(ctx, func(c *rawConn) { c.eval(s, keys, args...) })
		if err != nil {
			return rval{}, err
		}
	}
	return res[0], nil
}

func isNoScript(v rval) bool { return v.kind == '-' && strings.HasPrefix(string(v.str), "NOSCRIPT") }

// evalsha queues EVALSHA of s.
func (c *rawConn) evalsha(s *script, keys []string, args ...any) {
	c.scriptCmd("EVALSHA", s.Hash(), keys, args)
}

// eval queues EVAL of s's source.
func (c *rawConn) eval(s *script, keys []string, args ...any) { c.scriptCmd("EVAL", s.src, keys, args) }

func (c *rawConn) scriptCmd(name, body string, keys []string, args []any) {
	c.header(3 + len(keys) + len(args))
	c.arg(name)
	c.arg(body)
	c.arg(len(keys))
	for _, k := range keys {
		c.arg(k)
	}
	for _, a := range args {
		c.arg(a)
	}
	c.n++
}

// cmd queues one command.
func (c *rawConn) cmd(args ...any) {
	c.header(len(args))
	for _, a := range args {
		c.arg(a)
	}
	c.n++
}

// header starts a command of n arguments; arg appends each (c.n counts whole commands, so a
// caller building one argument by argument bumps it itself: see begin).
func (c *rawConn) header(n int) {
	c.out = append(c.out, '*')
	c.out = strconv.AppendInt(c.out, int64(n), 10)
	c.out = append(c.out, '\r', '\n')
}

// begin starts a command of n arguments to be appended with arg.
func (c *rawConn) begin(n int) {
	c.header(n)
	c.n++
}

func (c *rawConn) arg(a any) {
	switch v := a.(type) {
	case string:
		c.bulkHead(len(v))
		c.out = append(c.out, v...)
	case []byte:
		c.bulkHead(len(v))
		c.out = append(c.out, v...)
	case int:
		c.intArg(int64(v))
	case int64:
		c.intArg(v)
	default:
		s := fmt.Sprint(v)
		c.bulkHead(len(s))
		c.out = append(c.out, s...)
	}
	c.out = append(c.out, '\r', '\n')
}

func (c *rawConn) intArg(v int64) {
	var b [20]byte
	s := strconv.AppendInt(b[:0], v, 10)
	c.bulkHead(len(s))
	c.out = append(c.out, s...)
}

func (c *rawConn) bulkHead(n int) {
	c.out = append(c.out, '$')
	c.out = strconv.AppendInt(c.out, int64(n), 10)
	c.out = append(c.out, '\r', '\n')
}

// roundTrip writes the queued commands and reads their replies, within the context's deadline
// and the I/O timeout.
func (c *rawConn) roundTrip(ctx context.Context, cfg *Config) ([]rval, error) {
	n, out := c.n, c.out
	c.n, c.out = 0, c.out[:0]
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(cfg.IOTimeout + readSlack)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.nc.SetDeadline(deadline); err != nil {
		return nil, err
	}
	if _, err := c.w.Write(out); err != nil {
		return nil, fmt.Errorf("migrate: write to %s: %w", c.nc.RemoteAddr(), err)
	}
	if cap(out) > 1<<20 {
		c.out = nil // do not keep a big batch's buffer
	}
	res := make([]rval, n)
	for i := range res {
		v, err := readReply(c.br)
		if err != nil {
			return nil, fmt.Errorf("migrate: read from %s: %w", c.nc.RemoteAddr(), err)
		}
		res[i] = v
	}
	return res, nil
}

// readReply reads one RESP2 reply.
func readReply(br *bufio.Reader) (rval, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return rval{}, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return rval{}, fmt.Errorf("bad reply line %q", line)
	}
	v := rval{kind: line[0]}
	body := line[1 : len(line)-2]
	switch v.kind {
	case '+', '-':
		v.str = append([]byte(nil), body...)
	case ':':
		v.num, err = strconv.ParseInt(string(body), 10, 64)
	case '$':
		var n int64
		if n, err = strconv.ParseInt(string(body), 10, 64); err != nil || n < 0 {
			v.null = true
			break
		}
		v.str = make([]byte, n+2)
		if _, err = io.ReadFull(br, v.str); err == nil {
			v.str = v.str[:n]
		}
	case '*':
		var n int64
		if n, err = strconv.ParseInt(string(body), 10, 64); err != nil || n < 0 {
			v.null = true
			break
		}
		v.arr = make([]rval, n)
		for i := range v.arr {
			if v.arr[i], err = readReply(br); err != nil {
				break
			}
		}
	default:
		err = fmt.Errorf("unexpected reply type %q", v.kind)
	}
	return v, err
}

// script is a Lua script with its source, which the raw connections send by EVAL when a
// server does not have it yet.
type script struct {
	*redis.Script
	src string
}

func newScript(src string) *script { return &script{Script: redis.NewScript(src), src: src} }
