package router

import (
	"bytes"
	"strings"

	"github.com/redraft/redraft/router/command"
	"github.com/redraft/redraft/router/resp"
)

// CONFIG GET, SET and RESETSTAT (docs/commands.md, "CONFIG"). The groups' servers are
// redraft's, so a client may change only what shapes how data is stored and evicted, never
// what redraft relies on to reach and run them (passwords, replication, files, ports, TLS,
// cluster mode, renamed commands, the number of databases). That is an allow-list: a
// parameter Redis adds later stays refused until someone decides it is data-path.

func registerConfig() {
	handle("config|get", cmdConfigGet)
	handle("config|set", cmdConfigSet)
	handle("config|resetstat", cmdConfigResetStat)
}

// configSettable are the parameters CONFIG SET applies to every group of the DC: encodings,
// eviction, lazy freeing, active expiry and keyspace events. Redis 7's
// old names (ziplist) are aliases of the listpack ones.
var configSettable = map[string]bool{
	"hash-max-listpack-entries": true, "hash-max-listpack-value": true,
	"hash-max-ziplist-entries": true, "hash-max-ziplist-value": true,
	"list-max-listpack-size": true, "list-max-ziplist-size": true, "list-compress-depth": true,
	"set-max-intset-entries": true, "set-max-listpack-entries": true, "set-max-listpack-value": true,
	"zset-max-listpack-entries": true, "zset-max-listpack-value": true,
	"zset-max-ziplist-entries": true, "zset-max-ziplist-value": true,
	"stream-node-max-bytes": true, "stream-node-max-entries": true,
	"hll-sparse-max-bytes": true,
	"maxmemory":            true, "maxmemory-policy": true, "maxmemory-samples": true,
	"maxmemory-eviction-tenacity": true,
	"lazyfree-lazy-eviction":      true, "lazyfree-lazy-expire": true, "lazyfree-lazy-server-del": true,
	"lazyfree-lazy-user-del": true, "lazyfree-lazy-user-flush": true,
	"active-expire-effort": true, "notify-keyspace-events": true,
	// Not busy-reply-threshold (nor its alias lua-time-limit): the failover watcher keeps it
	// under master_down_after, or a master busy with a script answers nothing and is voted down.
}

// configSecret are parameters whose values CONFIG GET never shows: they are left out of the
// reply, as if the pattern did not match them.
var configSecret = map[string]bool{"requirepass": true, "masterauth": true,
	"tls-key-file-pass": true, "tls-client-key-file-pass": true}

// errEvictionXDC answers CONFIG SET of an evicting maxmemory-policy in a cluster with several
// DCs: Redis evicts without WRITE, so an evicted key is deleted in this DC only and stays in
// the others, and eviction may take replication's own keys (the group's log, the convergence
// metadata) from under it.
var errEvictionXDC = &replyError{"ERR redraft: CONFIG SET maxmemory-policy is refused with several DCs except for noeviction: an evicted key would be deleted in this DC only, and eviction may take replication's own keys (see docs/commands.md, CONFIG)"}

var errConfigSetOff = &replyError{"ERR CONFIG SET is disabled on this cluster (setting config_set)"}

// cmdConfigGet answers from the first group of the DC (the groups' own parameters, set alike
// on every group through CONFIG SET), without secret values.
func cmdConfigGet(c *client, _ *command.Spec, cmd resp.Command) {
	c.drain()
	snap := c.snap
	if err := snap.down(); err != nil {
		c.replyErr(err)
		return
	}
	if len(snap.groups) == 0 {
		c.replyErr(errNoGroups)
		return
	}
	reply, err := c.roundTripAs(snap.groups[0], cmd.Raw, true)
	if err != nil {
		c.replyErr(err)
		return
	}
	v, _, ok := resp.Parse(reply)
	if !ok || (v.Type != '*' && v.Type != '%') {
		c.reply(reply)
		return
	}
	n := 0
	for i := 0; i+1 < len(v.Elems); i += 2 {
		if !configSecret[strings.ToLower(string(v.Elems[i].Str))] {
			n++
		}
	}
	c.replyFunc(func(b []byte) []byte {
		b = resp.AppendMap(b, n, c.r3)
		for i := 0; i+1 < len(v.Elems); i += 2 {
			if !configSecret[strings.ToLower(string(v.Elems[i].Str))] {
				b = append(b, v.Elems[i].Raw...)
				b = append(b, v.Elems[i+1].Raw...)
			}
		}
		return b
	})
}

// cmdConfigSet applies data-path parameters to every group of the DC when the cluster
// setting config_set allows it. Every parameter is checked before any group is asked, so a
// refused one changes nothing.
func cmdConfigSet(c *client, _ *command.Spec, cmd resp.Command) {
	args := cmd.Args[2:]
	if len(args)%2 != 0 {
		c.replyErr(errSyntax)
		return
	}
	for i := 0; i < len(args); i += 2 {
		name := strings.ToLower(string(args[i]))
		if !configSettable[name] {
			if c.unknownConfig(args[i]) {
				c.replyErr(errorf("ERR Unknown option or number of arguments for CONFIG SET - '%s'", printable(args[i])))
				return
			}
			c.replyErr(errorf("ERR redraft: CONFIG SET '%s' is refused: redraft lets clients set only data-path parameters (encodings, eviction, lazy freeing, ...; see docs/commands.md), never what it relies on to run the groups", printable(args[i])))
			return
		}
		if name == "maxmemory-policy" && c.snap != nil && c.snap.multiDC && !strings.EqualFold(string(args[i+1]), "noeviction") {
			c.replyErr(errEvictionXDC)
			return
		}
	}
	if c.snap == nil || !c.snap.configSet {
		c.replyErr(errConfigSetOff)
		return
	}
	c.allSame(cmd.Raw, "CONFIG SET", "set it again through redraft")
}

// unknownConfig reports whether the first group knows no parameter of that name (CONFIG GET
// of it answers nothing), so CONFIG SET answers Redis's error for it.
func (c *client) unknownConfig(name []byte) bool {
	if bytes.ContainsAny(name, "*?[\\") || c.snap.down() != nil || len(c.snap.groups) == 0 {
		return false
	}
	c.drain()
	reply, err := c.roundTripAs(c.snap.groups[0], appendCommand(nil, []string{"CONFIG", "GET", string(name)}), true)
	return err == nil && (string(reply) == "*0\r\n" || string(reply) == "%0\r\n")
}

// cmdConfigResetStat resets every group's statistics (slow log, command stats, counters).
func cmdConfigResetStat(c *client, _ *command.Spec, cmd resp.Command) {
	c.allSame(cmd.Raw, "CONFIG RESETSTAT", "retry")
}

// allSame sends raw to every group as redraft's internal user and answers their common
// reply; when the groups answer differently the error names each group's answer.
func (c *client) allSame(raw []byte, what, fix string) {
	reps, err := c.askGroups(raw, true)
	if err != nil {
		c.replyErr(err)
		return
	}
	c.replySame(reps, what, fix)
}

// replySame answers the groups' one reply when they all gave it, else an error naming each.
func (c *client) replySame(reps []groupReply, what, fix string) {
	if firstFailure(reps) == nil && sameReplies(reps) {
		c.reply(reps[0].raw)
		return
	}
	c.replyErr(errDisagree(what, fix, reps))
}
