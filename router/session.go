package router

import (
	"bytes"
	"math"
	"strconv"
	"strings"

	"github.com/redraft/redraft/router/command"
	"github.com/redraft/redraft/router/resp"
)

func registerSession() {
	handle("ping", cmdPing)
	handle("echo", func(c *client, _ *command.Spec, cmd resp.Command) {
		c.replyFunc(func(b []byte) []byte { return resp.AppendBulk(b, cmd.Args[1]) })
	})
	handle("quit", func(c *client, _ *command.Spec, _ resp.Command) {
		c.reply([]byte("+OK\r\n"))
		c.quit = true
	})
	handle("reset", cmdReset)
	handle("auth", cmdAuth)
	handle("hello", cmdHello)
	handle("acl|whoami", func(c *client, _ *command.Spec, _ resp.Command) {
		c.replyFunc(func(b []byte) []byte { return resp.AppendBulkString(b, c.user.Name) })
	})
	handle("select", cmdSelect)
	handle("client|setname", func(c *client, _ *command.Spec, cmd resp.Command) {
		name := cmd.Args[2]
		if bytes.ContainsFunc(name, func(r rune) bool { return r < '!' || r > '~' }) {
			c.replyErr(errBadClientName)
			return
		}
		c.setName(string(name))
		c.reply([]byte("+OK\r\n"))
	})
	handle("client|getname", func(c *client, _ *command.Spec, _ resp.Command) {
		if c.name == "" {
			c.replyFunc(func(b []byte) []byte { return resp.AppendNullBulk(b, c.r3) })
			return
		}
		c.replyFunc(func(b []byte) []byte { return resp.AppendBulkString(b, c.name) })
	})
	handle("client|id", func(c *client, _ *command.Spec, _ resp.Command) {
		c.replyFunc(func(b []byte) []byte { return resp.AppendInt(b, int64(c.id)) })
	})
	handle("client|info", func(c *client, _ *command.Spec, _ resp.Command) {
		c.replyFunc(func(b []byte) []byte { return resp.AppendVerbatim(b, c.info(), c.r3) })
	})
}

func cmdPing(c *client, _ *command.Spec, cmd resp.Command) {
	if len(cmd.Args) > 2 {
		c.replyErr(errWrongArgs("ping"))
		return
	}
	if c.ps != nil && c.ps.subscribed() {
		c.ps.forward(c, cmd.Raw)
		return
	}
	if len(cmd.Args) == 2 {
		c.replyFunc(func(b []byte) []byte { return resp.AppendBulk(b, cmd.Args[1]) })
		return
	}
	c.reply([]byte("+PONG\r\n"))
}

func cmdReset(c *client, _ *command.Spec, _ resp.Command) {
	c.drain()
	c.closeSession()
	c.db = 0
	c.view.db.Store(0)
	c.r3 = false // RESET goes back to RESP2, as in Redis
	c.view.r3.Store(false)
	c.setName("")
	c.level = lvlDefault
	c.readMode = readDefault
	c.setSnap(c.snap)
	c.setUser(c.s.users.initial())
	c.setAuthed(c.user != nil)
	c.reply([]byte("+RESET\r\n"))
}

// login authenticates the session as user (nil: the default user) with pass; the
// session's user changes only when the pair is right.
func (c *client) login(user, pass []byte) error {
	u, err := c.s.users.authenticate(user, pass)
	if err != nil {
		return err
	}
	c.setUser(u)
	c.setAuthed(true)
	return nil
}

func cmdAuth(c *client, _ *command.Spec, cmd resp.Command) {
	var err error
	switch len(cmd.Args) {
	case 2:
		err = c.login(nil, cmd.Args[1])
	case 3:
		err = c.login(cmd.Args[1], cmd.Args[2])
	default:
		err = errSyntax
	}
	if err != nil {
		c.replyErr(err)
		return
	}
	c.reply([]byte("+OK\r\n"))
}

// cmdHello answers HELLO [protover [AUTH user pass] [SETNAME name]] as Redis 7 does: it may
// authenticate and name the session, switches it to RESP2 or RESP3, and answers server,
// version, proto, id, mode, role and modules (a map in RESP3, a flat array in RESP2).
func cmdHello(c *client, _ *command.Spec, cmd resp.Command) {
	args := cmd.Args[1:]
	ver := int64(0)
	if len(args) > 0 {
		v, ok := command.ParseInt(args[0])
		if !ok {
			c.replyErr(errorf("ERR Protocol version is not an integer or out of range"))
			return
		}
		if v < 2 || v > 3 {
			c.replyErr(errorf("NOPROTO unsupported protocol version"))
			return
		}
		ver = v
		args = args[1:]
	}
	name, setName := "", false
	var user, pass []byte
	for len(args) > 0 {
		switch {
		case bytes.EqualFold(args[0], []byte("auth")) && len(args) >= 3:
			user, pass = args[1], args[2]
			args = args[3:]
		case bytes.EqualFold(args[0], []byte("setname")) && len(args) >= 2:
			if bytes.ContainsFunc(args[1], func(r rune) bool { return r < '!' || r > '~' }) {
				c.replyErr(errBadClientName)
				return
			}
			name, setName = string(args[1]), true
			args = args[2:]
		default:
			c.replyErr(errorf("ERR Syntax error in HELLO option '%s'", printable(args[0])))
			return
		}
	}
	if user != nil {
		if err := c.login(user, pass); err != nil {
			c.replyErr(err)
			return
		}
	}
	if !c.authed {
		c.replyErr(errorf("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"))
		return
	}
	if setName {
		c.setName(name)
	}
	if ver != 0 && (ver == 3) != c.r3 {
		if err := c.setProto(ver == 3); err != nil {
			c.replyErr(err)
			return
		}
	}
	proto := int64(2)
	if c.r3 {
		proto = 3
	}
	c.replyFunc(func(b []byte) []byte {
		b = resp.AppendMap(b, 7, c.r3)
		b = resp.AppendBulkString(b, "server")
		b = resp.AppendBulkString(b, "redis")
		b = resp.AppendBulkString(b, "version")
		b = resp.AppendBulkString(b, redisVersion)
		b = resp.AppendBulkString(b, "proto")
		b = resp.AppendInt(b, proto)
		b = resp.AppendBulkString(b, "id")
		b = resp.AppendInt(b, int64(c.id))
		b = resp.AppendBulkString(b, "mode")
		b = resp.AppendBulkString(b, "standalone")
		b = resp.AppendBulkString(b, "role")
		b = resp.AppendBulkString(b, "master")
		b = resp.AppendBulkString(b, "modules")
		return resp.AppendArray(b, 0)
	})
}

// setProto switches the session to RESP3 (r3) or RESP2. Requests before the switch finish
// first (they use the other protocol's backend connections); the session's dedicated
// connections for blocking commands are redialed on next use (dedicatedOn), and a WATCH
// connection switches with it.
func (c *client) setProto(r3 bool) error {
	c.drain()
	if c.ps != nil && c.ps.subscribed() {
		// Only a RESP3 session can get here (HELLO is refused to a subscribed RESP2 one, as
		// in Redis): its subscriber connections switch too, and its subscriptions stay.
		_ = c.flush()
		c.ps.switchProto(c, r3)
	} else {
		c.closePubsub()
	}
	if c.watch != nil {
		hello := "*2\r\n$5\r\nHELLO\r\n$1\r\n2\r\n"
		if r3 {
			hello = "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n"
		}
		if _, err := c.watch.Do([]byte(hello), 1, c.s.cfg.BackendTimeout, nil); err != nil {
			c.unwatch()
			c.watchLost = true // the watched keys are not watched any more: EXEC fails
			return err
		}
		c.watch.R3 = r3
	}
	c.r3 = r3
	c.view.r3.Store(r3)
	return nil
}

// redisVersion is the Redis version redraft presents: the command table's.
const redisVersion = "7.0.15"

func cmdSelect(c *client, _ *command.Spec, cmd resp.Command) {
	n, ok := command.ParseInt(cmd.Args[1])
	if !ok {
		c.replyErr(errNotInteger)
		return
	}
	if n < math.MinInt32 || n > math.MaxInt32 {
		c.replyErr(errorf("ERR value is out of range, value must between -2147483648 and 2147483647"))
		return
	}
	db := int(n)
	if db < 0 || db >= c.s.cfg.Databases {
		c.replyErr(errDBIndex)
		return
	}
	if db != c.db {
		// Commands before and after use different backend connections: let the earlier ones
		// finish first so that, say, MOVE k 1 is applied before a later GET k in database 1.
		c.drain()
	}
	if c.watch != nil && c.watch.DB != db {
		// Redis keeps watched keys watched across SELECT: the watch connection follows the
		// session to the new database, so that EXEC there still aborts when a key watched in
		// the old one changed (until session 41 SELECT dropped the watch and EXEC committed).
		reply, err := c.watch.Do(appendCommand(nil, []string{"SELECT", strconv.Itoa(db)}), 1, c.s.cfg.BackendTimeout, nil)
		if err != nil {
			// Its reply may still come and be read as the next command's: closed.
			c.unwatch()
			c.watchLost = true
		} else if !bytes.HasPrefix(reply, []byte("+OK")) {
			c.watchLost = true // EXEC answers as a failed WATCH: the client retries
		} else {
			c.watch.DB = db
		}
	}
	c.db = db
	c.view.db.Store(int32(db))
	c.reply([]byte("+OK\r\n"))
}

// info renders CLIENT INFO's line for this connection.
func (c *client) info() string {
	var b strings.Builder
	c.appendLine(&b, true)
	return b.String()
}

// userName is the session's user for CLIENT INFO ("default" before AUTH, as redis-server shows).
func (c *client) userName() string {
	if c.user == nil {
		return DefaultUser
	}
	return c.user.Name
}
