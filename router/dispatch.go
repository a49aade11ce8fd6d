package router

import (
	"bytes"

	"github.com/redraft/redraft/internal/backendacl"
	"github.com/redraft/redraft/router/command"
	"github.com/redraft/redraft/router/resp"
)

// handlerFunc serves one command that is neither forwarded nor split.
type handlerFunc func(c *client, spec *command.Spec, cmd resp.Command)

// handlers maps command names ("client|setname") to their handlers; byID indexes them by
// command.Spec.ID for the request path.
var (
	handlers = map[string]handlerFunc{}
	byID     []handlerFunc
)

func handle(name string, f handlerFunc) { handlers[name] = f }

func init() {
	registerSession()
	registerFanout()
	registerTx()
	registerBlocking()
	registerPubSub()
	registerInfo()
	registerConsistency()
	registerReadMode()
	registerFunctions()
	registerConfig()
	registerClients()
	byID = make([]handlerFunc, command.Count())
	for name, f := range handlers {
		s := command.ByName(name)
		if s == nil {
			panic("router: handler for unknown command " + name)
		}
		byID[s.ID] = f
	}
	for _, s := range command.All() {
		if s.Kind == command.Any && byID[s.ID] == nil {
			byID[s.ID] = anyGroup
		}
		if (s.Kind == command.Forward || s.Kind == command.Script) && byID[s.ID] == nil {
			byID[s.ID] = forward
		}
	}
}

// noAuthNeeded are the commands a session may send before AUTH.
var noAuthNeeded = map[string]bool{"auth": true, "hello": true, "quit": true, "reset": true}

// dispatch routes one request; its reply is owed in order.
func (c *client) dispatch(cmd resp.Command) {
	args := cmd.Args
	spec := c.cmdMemo.Lookup(args)
	if spec == nil {
		c.abortTx() // Redis discards a MULTI block with an unknown command at EXEC
		c.replyErr(errUnknown(args[0], args[1:]))
		return
	}
	c.cmdIDs = append(c.cmdIDs, uint16(spec.ID))
	if spec.Subs != nil && byID[spec.ID] == nil {
		// An unknown subcommand of a served container.
		c.abortTx()
		if len(args) < 2 {
			c.replyErr(errWrongArgs(spec.Name))
		} else {
			c.replyErr(errorf("ERR unknown subcommand '%s'. Try %s HELP.", printable(args[1]), bytes.ToUpper([]byte(spec.Name))))
		}
		return
	}
	if !spec.CheckArity(len(args)) {
		if spec.Name == "exec" {
			c.abortExec(errWrongArgs(spec.Name))
			return
		}
		c.abortTx()
		c.replyErr(errWrongArgs(spec.Name))
		return
	}
	if !c.authed && !noAuthNeeded[spec.Name] {
		c.replyErr(errNoAuth)
		return
	}
	if c.user != nil && c.user.restricted && !c.checkACL(spec, cmd) {
		return
	}
	if err := argsRefused(spec, args); err != nil {
		c.abortTx() // as for a syntax error Redis finds at queueing
		c.replyErr(err)
		return
	}
	if c.tx != nil && !txControl[spec.Name] {
		c.queueTx(spec, cmd)
		return
	}
	if c.ps != nil && !c.r3 && c.ps.subscribed() && !pubsubAllowed[spec.Name] {
		c.replyErr(errorf("ERR Can't execute '%s': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context", spec.Name))
		return
	}
	c.lastCmd = spec.Name
	c.view.cmd.Store(&spec.Name)
	if c.snap.down() != nil && spec.Kind != command.Local && spec.Kind != command.Unsupported {
		c.awaitRouting()
	}
	switch spec.Kind {
	case command.Forward:
		if spec.Name == "sort" || spec.Name == "sort_ro" {
			forward(c, spec, cmd)
			return
		}
		c.forward(spec, cmd)
	case command.Split:
		c.split(spec, cmd)
	case command.Unsupported:
		c.replyErr(errorf("ERR command '%s' is not supported by redraft: %s", spec.Name, spec.Note))
	default:
		if f := byID[spec.ID]; f != nil {
			f(c, spec, cmd)
			return
		}
		c.replyErr(errorf("ERR command '%s' is not supported by redraft", spec.Name))
	}
}

// abortTx marks the session's MULTI block, if any, to be discarded at EXEC (EXECABORT), as
// Redis does after a command it refused to queue.
func (c *client) abortTx() {
	if c.tx != nil {
		c.tx.aborted = true
	}
}

// forward sends a command whose keys share a slot to the group serving that slot: its owner,
// or, while the slot is migrating, the target once the keys are off the source (a read whose
// keys are all still on the source is answered there: sourceread.go).
//
// A script whose numkeys Redis refuses (not an integer, negative, more than the arguments)
// goes to any group as it is: Redis answers the error, and nothing runs.
func (c *client) forward(spec *command.Spec, cmd resp.Command) {
	if spec.Name == "move" || spec.Name == "copy" {
		if db, _, ok := c.otherDB(spec.Name, cmd.Args); ok {
			c.flushOther = db + 1 // a flush of that database holds the request too
			defer func() { c.flushOther = 0 }()
		}
	}
	c.keys = spec.Keys(cmd.Args, c.keys[:0])
	slot, err := keySlot(cmd.Args, c.keys)
	if err != nil {
		c.replyErr(err)
		return
	}
	if spec.Kind == command.Script {
		if err := refuseOwnLibrary(spec, cmd.Args); err != nil {
			c.replyErr(err)
			return
		}
	}
	if spec.Kind == command.Script && slot < 0 && badNumkeys(cmd.Args) {
		anyGroup(c, spec, cmd)
		return
	}
	if c.xw {
		if spec.Write && slot >= 0 {
			c.forwardWrite(spec, cmd, slot)
			return
		}
		if spec.Kind == command.Script && scriptWrites(spec.Name) {
			c.forwardScript(spec, cmd, slot)
			return
		}
	}
	if slot < 0 {
		anyGroup(c, spec, cmd)
		return
	}
	g, ok, err := c.enterOwned(slot)
	switch {
	case ok:
		g = c.readGroupOf(spec, g, false)
	case err == nil:
		var e *slotEntry
		served, readable := false, sourceReadable(spec)
		move := func(e *slotEntry) error {
			if readable && c.readSource(e.m, spec, cmd.Raw, cmd.Args, c.keys) {
				served = true
				return nil
			}
			return c.moveCmdKeys(e.m, slot, spec, cmd.Args, c.keys)
		}
		if e, _, err = c.enter(slot, move); err == nil {
			if served {
				return
			}
			g = c.readGroup(spec, e)
		}
	}
	if err != nil {
		c.replyErr(err)
		return
	}
	c.forwardTo(g, cmd.Raw)
}

// forward is the handler form of client.forward, with SORT's pattern check.
func forward(c *client, spec *command.Spec, cmd resp.Command) {
	if spec.Name == "sort" || spec.Name == "sort_ro" {
		allKeys, err := checkSortPatterns(cmd.Args)
		if err != nil {
			c.replyErr(err)
			return
		}
		if allKeys {
			c.forwardAllKeys(spec, cmd)
			return
		}
	}
	c.forward(spec, cmd)
}

// badNumkeys reports whether Redis refuses the numkeys of EVAL, EVALSHA or FCALL (and their
// _RO forms): args[2] is not an integer, is negative, or counts more than the arguments left.
func badNumkeys(args [][]byte) bool {
	n, ok := command.ParseInt(args[2])
	return !ok || n < 0 || n > int64(len(args)-3)
}

// anyGroup sends a keyless command to the first group.
func anyGroup(c *client, _ *command.Spec, cmd resp.Command) {
	g, err := c.route(-1)
	if err != nil {
		c.replyErr(err)
		return
	}
	c.forwardTo(g, cmd.Raw)
}

// checkSortPatterns refuses BY and GET patterns that may name keys in other slots, as Redis
// Cluster does: a pattern must carry a hash tag of the sorted key's slot. It also refuses
// patterns that could form an internal key's name (backendusers.go, forwardAllKeys), and reports
// whether Redis needs a user that may read every key to run the command: any GET, or a BY
// pattern with '*'.
func checkSortPatterns(args [][]byte) (allKeys bool, err error) {
	if len(args) < 2 {
		return false, nil
	}
	slot := command.Slot(args[1])
	for i := 2; i+1 < len(args); i++ {
		a := args[i]
		isBy := bytes.EqualFold(a, []byte("by"))
		if !isBy && !bytes.EqualFold(a, []byte("get")) {
			if bytes.EqualFold(a, []byte("limit")) {
				i += 2
			} else if bytes.EqualFold(a, []byte("store")) {
				i++
			}
			continue
		}
		i++
		p := args[i]
		allKeys = allKeys || !isBy
		star := bytes.IndexByte(p, '*')
		if star < 0 || (!isBy && string(p) == "#") {
			continue // BY nosort-style constant or GET #
		}
		allKeys = true
		opt := "GET"
		if isBy {
			opt = "BY"
		}
		// Redis puts each element in place of the first '*': the formed key's slot is fixed
		// only when the pattern's hash tag closes before it (an element could otherwise bring
		// its own earlier tag, "x*{t}" with the element "{u}" is "x{u}{t}", in u's slot).
		open := bytes.IndexByte(p, '{')
		closed := -1
		if open >= 0 {
			if j := bytes.IndexByte(p[open+1:], '}'); j > 0 {
				closed = open + 1 + j
			}
		}
		if open < 0 || closed < 0 || closed > star || command.Slot(p[open+1:closed]) != slot {
			return false, errorf("ERR %s option of SORT denied in Cluster mode when keys formed by the pattern may be in different slots.", opt)
		}
		if fixed := p[:star]; bytes.HasPrefix([]byte(backendacl.InternalPrefix), fixed) || bytes.HasPrefix(fixed, []byte(backendacl.InternalPrefix)) {
			return false, errorf("ERR %s pattern of SORT must start with a fixed part that no reserved %s key starts with", opt, backendacl.InternalPrefix)
		}
	}
	return allKeys, nil
}
