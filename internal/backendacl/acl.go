// Package backendacl defines the two Redis ACL users redraft works as on its backends: a
// restricted client user for forwarded client commands and user scripts, and an internal user
// for redraft's own work. It derives their passwords, creates them with a group's admin
// credentials, and dials go-redis clients that create them again when a server lost them.
package backendacl

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/redraft/redraft/fsm"
)

// The users' names on every backend.
const (
	// ClientUser runs forwarded client commands and user scripts.
	ClientUser = "redraft-client"
	// InternalUser runs redraft's own work: movers, cross-DC shipping and apply, the WRITE
	// script, flushes the router allowed, CLIENT UNBLOCK.
	InternalUser = "redraft-internal"
)

// InternalPrefix starts the names of redraft's own keys; the client user cannot name them.
const InternalPrefix = "__redraft:"

// Creds are a user name and password to AUTH with.
type Creds struct {
	User, Password string
}

// String shows the user and whether a password is set, never the password (fmt's %v and %+v
// use it, so credentials in a log line or an error keep their secret).
func (c Creds) String() string {
	pw := "unset"
	if c.Password != "" {
		pw = "set"
	}
	return "{User:" + c.User + " Password:" + pw + "}"
}

// GoString is String for %#v.
func (c Creds) GoString() string { return c.String() }

// Access is what redraft needs to work on the servers of one group: the admin credentials it
// was given (the group's `user` and `password`; an empty user is Redis's `default`), from which
// the two users' passwords are derived.
type Access struct {
	// Group is the group's id (part of the derivation, and named in errors).
	Group string
	// Admin are the credentials that may run ACL SETUSER.
	Admin Creds
}

// ForGroup returns the access of an fsm group.
func ForGroup(g *fsm.Group) Access {
	return Access{Group: g.ID, Admin: Creds{User: g.User, Password: g.Password}}
}

// Client returns the client user's credentials.
func (a Access) Client() Creds { return Creds{ClientUser, a.derive(ClientUser)} }

// Internal returns the internal user's credentials.
func (a Access) Internal() Creds { return Creds{InternalUser, a.derive(InternalUser)} }

// derive is HMAC-SHA256 keyed by the group's admin password over the group id and user name:
// every node computes the same password, and nothing new goes into the Raft log. Without an
// admin password the backends are open to anyone who reaches them anyway.
func (a Access) derive(user string) string {
	m := hmac.New(sha256.New, []byte("redraft backend acl\x00"+a.Admin.Password))
	m.Write([]byte(a.Group + "\x00" + user))
	return hex.EncodeToString(m.Sum(nil))
}

// ClientKeyPatterns are the client user's key patterns: every key that does not start with
// InternalPrefix. Redis ACL patterns have no negation, so for each proper prefix p of
// InternalPrefix followed by the byte c, `p[^c]*` admits the keys that leave InternalPrefix
// there, and `p` itself the key that ends there ("" included).
func ClientKeyPatterns() []string {
	var out []string
	for i := 0; i < len(InternalPrefix); i++ {
		p := InternalPrefix[:i]
		out = append(out, "~"+p+"[^"+InternalPrefix[i:i+1]+"]*", "~"+p)
	}
	return out
}

// deniedToClient are the commands and subcommands the client user may not run, on top of the
// @admin category (CONFIG, DEBUG, SHUTDOWN, REPLICAOF/SLAVEOF, MODULE, ACL's admin
// subcommands, FAILOVER, SAVE, BGSAVE, BGREWRITEAOF, MONITOR, SYNC/PSYNC, CLIENT
// KILL/PAUSE/UNBLOCK/LIST, LATENCY, SLOWLOG, CLUSTER's admin subcommands, ROLE, LASTSAVE).
// These are the ones a script can still call (they are not flagged noscript) or that would
// undo redraft's work: flushing (the router flushes as the internal user when the setting
// allows), pushing keys to another server, swapping databases, and stopping or replacing
// scripts and functions.
var deniedToClient = []string{
	"-flushall", "-flushdb", "-migrate", "-swapdb", "-restore-asking",
	"-script|kill", "-function|kill", "-function|flush", "-function|delete",
	"-function|restore", "-function|load",
}

// ClientRules are the ACL SETUSER rules of the client user (after its name).
func (a Access) ClientRules() []string {
	r := []string{"reset", "on", ">" + a.Client().Password, "resetchannels", "&*", "resetkeys"}
	r = append(r, ClientKeyPatterns()...)
	r = append(r, "+@all", "-@admin")
	return append(r, deniedToClient...)
}

// InternalRules are the ACL SETUSER rules of the internal user: every key and command but
// the @admin category, except CLIENT UNBLOCK (releasing a blocked session on a migration, and
// the client's CLIENT UNBLOCK) and CONFIG GET/SET/RESETSTAT (the router applies the client's
// CONFIG SET of its allow-list of data-path parameters to every group: router/config_cmd.go).
func (a Access) InternalRules() []string {
	return []string{"reset", "on", ">" + a.Internal().Password, "resetchannels", "&*", "~*",
		"+@all", "-@admin", "+client|unblock", "+config|get", "+config|set", "+config|resetstat"}
}

// SetUserLines are the two ACL SETUSER commands, for an operator who wants to see them
// (passwords shown as <password>).
func (a Access) SetUserLines() []string {
	hide := func(rules []string) string {
		out := make([]string, len(rules))
		for i, r := range rules {
			if strings.HasPrefix(r, ">") {
				r = "><password>"
			}
			out[i] = r
		}
		return strings.Join(out, " ")
	}
	return []string{
		"ACL SETUSER " + ClientUser + " " + hide(a.ClientRules()),
		"ACL SETUSER " + InternalUser + " " + hide(a.InternalRules()),
	}
}
