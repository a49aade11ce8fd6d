package backend

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redraft/redraft/router/resp"
)

// Stats counts backend connections for metrics; one Stats is shared by all pools of a server.
type Stats struct {
	// BackendConns is the number of shared connections currently up.
	BackendConns atomic.Int64
	// Dedicated is the number of dedicated connections currently open.
	Dedicated atomic.Int64
	// DialErrors counts failed dials.
	DialErrors atomic.Int64
	// Writes counts writes on shared connections; requests per write is the batching factor.
	Writes atomic.Int64
}

// GroupStats counts one group's backend connection events for metrics; the router keeps one
// per group, so the counts outlive the group's pools (a new master, new credentials).
type GroupStats struct {
	// Connects counts connections established (the first and every reconnect).
	Connects atomic.Int64
	// DialErrors counts dials or handshakes that failed.
	DialErrors atomic.Int64
	// Drops counts connections that broke while up (read error, timeout, unexpected reply).
	Drops atomic.Int64
}

// Options configure a Pool.
type Options struct {
	// Group is the group id named in errors.
	Group string
	// Addr is the backend's host:port; User and Password what it AUTHs as (no AUTH when
	// both are empty; AUTH password alone when User is empty).
	Addr, User, Password string
	// Ensure, when set, is called once when the backend refuses the AUTH with WRONGPASS (for
	// example a restarted server that lost redraft's ACL users); the dial is then retried.
	Ensure func(ctx context.Context) error
	// Timeout bounds dials and replies (0: none).
	Timeout time.Duration
	// ConnsPerDB is the number of shared connections per database (default 1).
	ConnsPerDB int
	// Databases is the number of databases a session may SELECT (default 16).
	Databases int
	// Stats receives the pool's counters (required).
	Stats *Stats
	// Counters, when set, receives the pool's connection events, counted per group.
	Counters *GroupStats
	// Libraries are Redis function libraries every new connection loads (FUNCTION LOAD
	// REPLACE) after AUTH and SELECT, so FCALL of their functions works after a backend
	// restart, and a library that took one's name with other code is overwritten. A load the
	// server refuses does not fail the dial: FCALL of a function the server lacks answers
	// "ERR Function not found".
	Libraries []string
}

// Pool is the set of connections to one backend (a group's master): a few shared pipelined
// connections per database and protocol, created on first use. A RESP3 client's requests go
// over connections that sent HELLO 3, so Redis itself writes the RESP3 replies they carry.
type Pool struct {
	opts Options
	dbs  []atomic.Pointer[[]*Conn]

	mu     sync.Mutex
	all    []*Conn
	ded    map[*Dedicated]struct{}
	closed bool
}

// NewPool returns a pool for opts; it dials nothing until used.
func NewPool(opts Options) *Pool {
	if opts.ConnsPerDB <= 0 {
		opts.ConnsPerDB = 1
	}
	if opts.Databases <= 0 {
		opts.Databases = 16
	}
	return &Pool{opts: opts, dbs: make([]atomic.Pointer[[]*Conn], 2*opts.Databases)}
}

// Addr returns the backend address.
func (p *Pool) Addr() string { return p.opts.Addr }

// Password returns the backend password.
func (p *Pool) Password() string { return p.opts.Password }

// User returns the user the pool authenticates as ("" for the default user).
func (p *Pool) User() string { return p.opts.User }

// Conn returns the shared connection for database db that a client with the given affinity
// uses; one client always gets the same connection, so its commands stay in order.
func (p *Pool) Conn(db int, affinity uint64) *Conn { return p.ConnProto(db, false, affinity) }

// ConnProto is Conn for the protocol a client speaks: RESP3 when r3 is set, else RESP2.
func (p *Pool) ConnProto(db int, r3 bool, affinity uint64) *Conn {
	i := db
	if r3 {
		i += p.opts.Databases
	}
	set := p.dbs[i].Load()
	if set == nil {
		set = p.initDB(i)
	}
	s := *set
	if len(s) == 1 {
		return s[0]
	}
	return s[affinity%uint64(len(s))]
}

// initDB creates the connection set at index i of p.dbs: database i, RESP3 from Databases on.
func (p *Pool) initDB(i int) *[]*Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if set := p.dbs[i].Load(); set != nil {
		return set
	}
	db, r3 := i%p.opts.Databases, i >= p.opts.Databases
	s := make([]*Conn, p.opts.ConnsPerDB)
	for i := range s {
		s[i] = newConn(p, db, r3)
		if p.closed {
			s[i].state = stClosed
		}
		p.all = append(p.all, s[i])
	}
	p.dbs[i].Store(&s)
	return &s
}

// Close closes every connection of the pool; later requests fail at once.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	all := p.all
	var ded []*Dedicated
	for d := range p.ded {
		ded = append(ded, d)
	}
	p.mu.Unlock()
	for _, c := range all {
		c.close()
	}
	// Closing their sockets wakes sessions blocked on dedicated connections.
	for _, d := range ded {
		d.shut()
	}
}

func (p *Pool) unavailable(err error) error {
	return &UnavailableError{Group: p.opts.Group, Addr: p.opts.Addr, Err: err}
}

// dial connects, authenticates, selects db and, when r3 is set, switches to RESP3; when AUTH
// is refused with WRONGPASS and the pool has an Ensure, it calls it and dials once more.
func (p *Pool) dial(db int, r3 bool) (net.Conn, error) {
	nc, err := p.dialOnce(db, r3)
	var ae *authError
	if errors.As(err, &ae) && ae.wrongPass && p.opts.Ensure != nil {
		ctx, cancel := context.WithTimeout(context.Background(), p.timeout())
		defer cancel()
		if err := p.opts.Ensure(ctx); err != nil {
			return nil, err
		}
		nc, err = p.dialOnce(db, r3)
	}
	return nc, err
}

// authError is a handshake command the backend refused.
type authError struct {
	msg       string
	wrongPass bool
}

func (e *authError) Error() string { return e.msg }

func (p *Pool) dialOnce(db int, r3 bool) (net.Conn, error) {
	nc, err := net.DialTimeout("tcp", p.opts.Addr, p.timeout())
	if err != nil {
		p.opts.Stats.DialErrors.Add(1)
		return nil, err
	}
	var hs []byte
	n := 0
	switch {
	case p.opts.User != "":
		hs = resp.AppendArray(hs, 3)
		hs = resp.AppendBulkString(hs, "AUTH")
		hs = resp.AppendBulkString(hs, p.opts.User)
		hs = resp.AppendBulkString(hs, p.opts.Password)
		n++
	case p.opts.Password != "":
		hs = resp.AppendArray(hs, 2)
		hs = resp.AppendBulkString(hs, "AUTH")
		hs = resp.AppendBulkString(hs, p.opts.Password)
		n++
	}
	if db != 0 {
		hs = resp.AppendArray(hs, 2)
		hs = resp.AppendBulkString(hs, "SELECT")
		hs = resp.AppendBulkString(hs, strconv.Itoa(db))
		n++
	}
	if r3 {
		hs = append(hs, rawHello3...)
		n++
	}
	for _, src := range p.opts.Libraries {
		hs = resp.AppendArray(hs, 4)
		hs = resp.AppendBulkString(hs, "FUNCTION")
		hs = resp.AppendBulkString(hs, "LOAD")
		hs = resp.AppendBulkString(hs, "REPLACE")
		hs = resp.AppendBulkString(hs, src)
	}
	loads := len(p.opts.Libraries)
	if n+loads == 0 {
		return nc, nil
	}
	_ = nc.SetDeadline(time.Now().Add(p.timeout()))
	br := bufio.NewReaderSize(nc, 512)
	err = func() error {
		if _, err := nc.Write(hs); err != nil {
			return err
		}
		for i := 0; i < n+loads; i++ {
			r, err := resp.ReadReply(br, nil)
			if err != nil {
				return err
			}
			if len(r) > 0 && r[0] == '-' && i < n {
				msg := string(r[1 : len(r)-2])
				return &authError{msg: msg, wrongPass: bytes.HasPrefix(r, []byte("-WRONGPASS"))}
			}
		}
		return nil
	}()
	if err != nil {
		p.opts.Stats.DialErrors.Add(1)
		_ = nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	return nc, nil
}

var rawHello3 = []byte("*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n")

func (p *Pool) timeout() time.Duration {
	if p.opts.Timeout > 0 {
		return p.opts.Timeout
	}
	return 10 * time.Second
}
