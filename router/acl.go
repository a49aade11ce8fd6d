package router

import (
	"github.com/redraft/redraft/router/command"
	"github.com/redraft/redraft/router/resp"
)

// Redis's own permission errors, so clients and their retry logic see what redis-server says.
var (
	errNoPermKey     = &replyError{"NOPERM this user has no permissions to access one of the keys used as arguments"}
	errNoPermChannel = &replyError{"NOPERM this user has no permissions to access one of the channels used as arguments"}
	errSortACL       = &replyError{"ERR BY and GET options of SORT denied due to insufficient ACL permissions."}
)

func errNoPermCmd(name string) error {
	return errorf("NOPERM this user has no permissions to run the '%s' command", name)
}

// readOnlyDenied marks, by command.Spec.ID, what a read-only user may not run: commands the
// table flags "write", and those that change the server without that flag (scripts that may
// write, publishing, loading and flushing scripts). The _RO script variants stay allowed:
// the backend refuses a write inside them.
var readOnlyDenied = func() []bool {
	deny := make([]bool, command.Count())
	extra := map[string]bool{"eval": true, "evalsha": true, "fcall": true, "publish": true,
		"spublish": true, "script|load": true, "script|flush": true, "function|kill": true,
		"config|set": true, "config|resetstat": true}
	for _, s := range command.All() {
		deny[s.ID] = s.Write || extra[s.Name]
	}
	return deny
}()

// prefixedKeyless are the commands a user confined to a key prefix may not run because they
// act on keys they cannot name: the whole keyspace's size, a random key of any prefix,
// flushing everything, the script cache, function libraries and server parameters every
// user shares. KEYS and SCAN are allowed and filtered to the prefix.
var prefixedKeyless = map[string]bool{"randomkey": true, "dbsize": true, "flushdb": true,
	"flushall": true, "script|flush": true, "function|load": true, "function|delete": true,
	"function|flush": true, "function|restore": true, "function|kill": true,
	"config|set": true, "config|resetstat": true}

// otherSessions are the commands that see or act on other users' sessions on the node
// (Redis's @admin CLIENT subcommands), and CONFIG GET (@admin too: the backends' settings,
// their paths, replication source and bind address; served to any user until session 47): a
// restricted user, read-only or prefixed, may not run them, as a Redis user without @admin
// may not, or a tenant could list every session's user and address, close them, or end their
// blocking commands.
var otherSessions = map[string]bool{"client|list": true, "client|kill": true, "client|unblock": true, "config|get": true}

// scriptCommands run user code; a prefixed user runs them only with User.Scripts.
var scriptCommands = map[string]bool{"eval": true, "evalsha": true, "eval_ro": true,
	"evalsha_ro": true, "fcall": true, "fcall_ro": true, "script|load": true}

// permit checks a restricted user's request: its role, then the key prefix on every key and
// channel the request names. It runs before the request is queued in MULTI, so a refused
// command aborts the transaction as in redis-server.
func (c *client) permit(spec *command.Spec, args [][]byte) error {
	u := c.user
	if (u.ReadOnly && readOnlyDenied[spec.ID]) || otherSessions[spec.Name] {
		return errNoPermCmd(spec.Name)
	}
	if u.KeyPrefix == "" {
		return nil
	}
	allIn := func(bs [][]byte, err error) error {
		for _, b := range bs {
			if !u.owns(b) {
				return err
			}
		}
		return nil
	}
	switch {
	case prefixedKeyless[spec.Name]:
		return errNoPermCmd(spec.Name)
	case scriptCommands[spec.Name] && !u.Scripts:
		return errNoPermCmd(spec.Name)
	}
	switch spec.Name {
	case "keys", "scan":
		return nil // replies are filtered (hidden)
	case "publish", "spublish":
		return allIn(args[1:2], errNoPermChannel)
	case "subscribe", "ssubscribe", "psubscribe":
		// A pattern must start with the prefix literally; the prefix holds no glob characters.
		return allIn(args[1:], errNoPermChannel)
	case "pubsub|channels", "pubsub|shardchannels":
		if len(args) < 3 {
			return errNoPermChannel
		}
		return allIn(args[2:3], errNoPermChannel)
	case "pubsub|numsub", "pubsub|shardnumsub":
		return allIn(args[2:], errNoPermChannel)
	case "sort", "sort_ro":
		// As redis-server does for users without access to every key: the keys a BY or GET
		// pattern forms cannot be checked beforehand.
		if sortHasPatterns(args) {
			return errSortACL
		}
	}
	if len(spec.KeySpecs) == 0 {
		return nil
	}
	c.keys = spec.Keys(args, c.keys[:0])
	if len(c.keys) == 0 {
		// The command could name keys but names none (EVAL with no keys, a malformed request
		// parsed otherwise by the backend): nothing here says what it would touch.
		return errNoPermKey
	}
	for _, k := range c.keys {
		if !u.owns(args[k]) {
			return errNoPermKey
		}
	}
	return nil
}

// hidden reports whether a key KEYS or SCAN found is left out of the reply: redraft's own
// keys, and for a prefixed user keys outside its prefix.
func (c *client) hidden(key []byte) bool {
	if isReserved(key) {
		return true
	}
	return c.user != nil && !c.user.owns(key)
}

// owns reports whether a key or channel name is within the user's prefix (any name without
// one).
func (u *User) owns(name []byte) bool {
	p := u.KeyPrefix
	return len(name) >= len(p) && string(name[:len(p)]) == p
}

// checkACL answers NOPERM and reports false when the session's user may not run the request;
// inside MULTI the refusal also aborts the transaction.
func (c *client) checkACL(spec *command.Spec, cmd resp.Command) bool {
	err := c.permit(spec, cmd.Args)
	if err == nil {
		return true
	}
	if c.tx != nil && !txControl[spec.Name] {
		c.tx.aborted = true
	}
	c.replyErr(err)
	return false
}
