package router

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redraft/redraft/router/backend"
	"github.com/redraft/redraft/router/command"
	"github.com/redraft/redraft/router/resp"
)

// CLIENT LIST, KILL, UNBLOCK and NO-EVICT act on the node's own clients (Server.clients), as
// redis-server's act on its own: a node knows nothing of other nodes' clients, and the groups'
// connections are redraft's.

// clientView is what other goroutines (CLIENT LIST, KILL, UNBLOCK, INFO) read of a session:
// the session's goroutine stores it, the readers load it, no lock on the request path.
type clientView struct {
	name atomic.Pointer[string]
	cmd  atomic.Pointer[string] // the last command's name (a command.Spec's)
	user atomic.Pointer[User]
	ps   atomic.Pointer[pubsubState]
	db   atomic.Int32
	r3   atomic.Bool  // the session speaks RESP3
	last atomic.Int64 // unix seconds of the last request batch
}

func registerClients() {
	handle("client|list", cmdClientList)
	handle("client|kill", cmdClientKill)
	handle("client|unblock", cmdClientUnblock)
	handle("client|no-evict", func(c *client, _ *command.Spec, cmd resp.Command) {
		if !bytes.EqualFold(cmd.Args[2], []byte("on")) && !bytes.EqualFold(cmd.Args[2], []byte("off")) {
			c.replyErr(errSyntax)
			return
		}
		c.reply([]byte("+OK\r\n")) // the node never evicts clients
	})
}

// setName records the session's name for CLIENT GETNAME, LIST and INFO.
func (c *client) setName(name string) {
	c.name = name
	c.view.name.Store(&name)
}

// setUser records the session's user.
func (c *client) setUser(u *User) {
	c.user = u
	c.view.user.Store(u)
}

// clients returns the node's client sessions, in id order.
func (s *Server) clientList() []*client {
	s.mu.Lock()
	out := make([]*client, 0, len(s.clients))
	for c := range s.clients {
		if !c.closed.Load() {
			out = append(out, c)
		}
	}
	s.mu.Unlock()
	sortClients(out)
	return out
}

func sortClients(cs []*client) {
	for i := 1; i < len(cs); i++ {
		for j := i; j > 0 && cs[j].id < cs[j-1].id; j-- {
			cs[j], cs[j-1] = cs[j-1], cs[j]
		}
	}
}

// appendLine renders the CLIENT LIST / CLIENT INFO line of c, from its view; self is set in
// c's own goroutine, which also knows its MULTI state.
func (c *client) appendLine(b *strings.Builder, self bool) {
	name, cmd, user := "", "NULL", DefaultUser
	if p := c.view.name.Load(); p != nil {
		name = *p
	}
	if p := c.view.cmd.Load(); p != nil {
		cmd = *p
	}
	if u := c.view.user.Load(); u != nil {
		user = u.Name
	}
	sub, psub, ssub := 0, 0, 0
	if ps := c.view.ps.Load(); ps != nil {
		sub, psub, ssub = ps.counts()
	}
	flags := ""
	if sub+psub+ssub > 0 {
		flags += "P"
	}
	multi := -1
	if self && c.tx != nil {
		multi = len(c.tx.cmds)
	}
	if multi >= 0 {
		flags += "x"
	}
	if c.waiting.Load() {
		flags += "b"
	}
	if flags == "" {
		flags = "N"
	}
	proto := 2
	if c.view.r3.Load() {
		proto = 3
	}
	now := time.Now()
	idle := now.Unix() - c.view.last.Load()
	if c.view.last.Load() == 0 {
		idle = 0
	}
	fmt.Fprintf(b, "id=%d addr=%s laddr=%s fd=-1 name=%s age=%d idle=%d flags=%s db=%d sub=%d psub=%d ssub=%d multi=%d qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd=%s user=%s redir=-1 resp=%d\n",
		c.id, c.addr, c.nc.LocalAddr(), name, int(now.Sub(c.created).Seconds()), idle, flags, c.view.db.Load(),
		sub, psub, ssub, multi, cmd, user, proto)
}

// clientType is CLIENT LIST's and KILL's TYPE of a session: "pubsub" when subscribed, else
// "normal" (a node has no replica or master clients).
func (c *client) clientType() string {
	if ps := c.view.ps.Load(); ps != nil {
		if a, b, d := ps.counts(); a+b+d > 0 {
			return "pubsub"
		}
	}
	return "normal"
}

// validClientType reports whether Redis knows t as a client type.
func validClientType(t string) bool {
	switch t {
	case "normal", "master", "replica", "slave", "pubsub":
		return true
	}
	return false
}

// cmdClientList answers CLIENT LIST [TYPE type] [ID id ...] over the node's clients.
func cmdClientList(c *client, _ *command.Spec, cmd resp.Command) {
	args := cmd.Args[2:]
	typ := ""
	var ids map[uint64]bool
	switch {
	case len(args) == 0:
	case len(args) == 2 && bytes.EqualFold(args[0], []byte("type")):
		typ = strings.ToLower(string(args[1]))
		if !validClientType(typ) {
			c.replyErr(errorf("ERR Unknown client type '%s'", printable(args[1])))
			return
		}
		if typ == "slave" {
			typ = "replica"
		}
	case len(args) >= 2 && bytes.EqualFold(args[0], []byte("id")):
		ids = map[uint64]bool{}
		for _, a := range args[1:] {
			id, ok := command.ParseInt(a)
			if !ok || id <= 0 {
				c.replyErr(errorf("ERR Invalid client ID"))
				return
			}
			ids[uint64(id)] = true
		}
	default:
		c.replyErr(errSyntax)
		return
	}
	c.view.cmd.Store(&clientListName) // Redis shows the running command in its own line
	var b strings.Builder
	for _, o := range c.s.clientList() {
		if (typ != "" && o.clientType() != typ) || (ids != nil && !ids[o.id]) {
			continue
		}
		o.appendLine(&b, o == c)
	}
	text := b.String()
	c.replyFunc(func(out []byte) []byte { return resp.AppendVerbatim(out, text, c.r3) })
}

var clientListName = "client|list"

// killFilter is CLIENT KILL's filter.
type killFilter struct {
	id             uint64
	typ, user      string
	addr, laddr    string
	hasAddr        bool // addr given (an empty one matches no client)
	hasLaddr       bool
	skipMe, hasUsr bool
	maxAge         int64
}

func (f *killFilter) match(self, o *client) bool {
	switch {
	case f.skipMe && o == self,
		f.id != 0 && o.id != f.id,
		f.typ != "" && o.clientType() != f.typ,
		f.hasAddr && o.addr != f.addr,
		f.hasLaddr && o.nc.LocalAddr().String() != f.laddr,
		f.maxAge > 0 && int64(time.Since(o.created).Seconds()) < f.maxAge:
		return false
	case f.hasUsr:
		u := o.view.user.Load()
		name := DefaultUser
		if u != nil {
			name = u.Name
		}
		return name == f.user
	}
	return true
}

// cmdClientKill closes the node's clients that match: CLIENT KILL addr:port (the old form,
// +OK or an error), or CLIENT KILL with filters (the count). Killing itself, the session
// answers first, then closes.
func cmdClientKill(c *client, _ *command.Spec, cmd resp.Command) {
	args := cmd.Args[2:]
	f := killFilter{skipMe: true}
	old := len(args) == 1
	if old {
		f.addr, f.hasAddr, f.skipMe = string(args[0]), true, false
	} else {
		if len(args)%2 != 0 {
			c.replyErr(errSyntax)
			return
		}
		for i := 0; i < len(args); i += 2 {
			v := args[i+1]
			switch strings.ToLower(string(args[i])) {
			case "id":
				id, ok := command.ParseInt(v)
				if !ok || id <= 0 {
					c.replyErr(errorf("ERR client-id should be greater than 0"))
					return
				}
				f.id = uint64(id)
			case "type":
				f.typ = strings.ToLower(string(v))
				if !validClientType(f.typ) {
					c.replyErr(errorf("ERR Unknown client type '%s'", printable(v)))
					return
				}
				if f.typ == "slave" {
					f.typ = "replica"
				}
			case "user":
				f.user, f.hasUsr = string(v), true
				if c.s.users.byName[f.user] == nil && f.user != DefaultUser { // it exists, disabled
					c.replyErr(errorf("ERR No such user '%s'", printable(v)))
					return
				}
			case "addr":
				f.addr, f.hasAddr = string(v), true
			case "laddr":
				f.laddr, f.hasLaddr = string(v), true
			case "skipme":
				switch strings.ToLower(string(v)) {
				case "yes":
					f.skipMe = true
				case "no":
					f.skipMe = false
				default:
					c.replyErr(errSyntax)
					return
				}
			case "maxage":
				n, ok := command.ParseInt(v)
				if !ok {
					c.replyErr(errNotInteger)
					return
				}
				f.maxAge = n
			default:
				c.replyErr(errSyntax)
				return
			}
		}
	}
	n := 0
	for _, o := range c.s.clientList() {
		if !f.match(c, o) {
			continue
		}
		n++
		if o == c {
			c.quit = true // after this reply, as Redis closes after replying
		} else {
			o.closeConn()
		}
	}
	switch {
	case !old:
		c.replyFunc(func(b []byte) []byte { return resp.AppendInt(b, int64(n)) })
	case n == 0:
		c.replyErr(errorf("ERR No such client"))
	default:
		c.reply([]byte("+OK\r\n"))
	}
}

// cmdClientUnblock ends the wait of a node's client blocked in a blocking command, as
// redis-server does: the backend connection it waits on is unblocked with TIMEOUT (the
// client gets the command's null reply) or ERROR (-UNBLOCKED). 1 when it was blocked.
func cmdClientUnblock(c *client, _ *command.Spec, cmd resp.Command) {
	if len(cmd.Args) > 4 {
		c.replyErr(errorf("ERR unknown subcommand or wrong number of arguments for '%s'. Try CLIENT HELP.", printable(cmd.Args[1])))
		return
	}
	mode := "TIMEOUT"
	if len(cmd.Args) == 4 {
		switch strings.ToLower(string(cmd.Args[3])) {
		case "timeout":
		case "error":
			mode = "ERROR"
		default:
			c.replyErr(errorf("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR"))
			return
		}
	}
	id, ok := command.ParseInt(cmd.Args[2])
	if !ok {
		c.replyErr(errNotInteger)
		return
	}
	var target *client
	for _, o := range c.s.clientList() {
		if int64(o.id) == id {
			target = o
		}
	}
	n := int64(0)
	if target != nil && target.unblockBy(mode, c.s.cfg.BackendTimeout) {
		n = 1
	}
	c.replyFunc(func(b []byte) []byte { return resp.AppendInt(b, n) })
}

// unblockBy ends the session's blocking command on its backend, waiting up to limit for a
// command that was admitted but has not reached the backend yet; false when the session is
// not blocked (or no longer).
func (c *client) unblockBy(mode string, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	noOp := time.Now().Add(100 * time.Millisecond)
	for c.waiting.Load() && time.Now().Before(deadline) {
		op := c.blk.Load()
		if op == nil || op.id <= 0 || op.state.Load() != opWaiting {
			if time.Now().After(noOp) {
				return false // not waiting on a backend connection (a cross-DC poll)
			}
			time.Sleep(time.Millisecond) // between admission and the backend
			continue
		}
		raw := appendCommand(nil, []string{"CLIENT", "UNBLOCK", strconv.FormatInt(op.id, 10), mode})
		w := backend.NewWaiter()
		reply, err := roundTripPool(op.admin, backend.NewRequest(w), w, raw)
		if err != nil {
			return false
		}
		if string(reply) == ":1\r\n" {
			return true
		}
		if op.finished.Load() {
			return false
		}
		time.Sleep(time.Millisecond) // sent, not yet blocked on the backend
	}
	return false
}

// roundTripPool sends raw, one command, on p's first shared connection with request r and
// returns its reply (r's, valid until r is reused).
func roundTripPool(p *backend.Pool, r *backend.Request, w *backend.Waiter, raw []byte) ([]byte, error) {
	r.Reset(1)
	bc := p.Conn(0, 0)
	bc.Submit(r, raw)
	bc.Flush()
	w.Wait(r)
	return r.Reply, r.Err
}
