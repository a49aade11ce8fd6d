package router

import (
	"fmt"
	"log/slog"
	"runtime/debug"
)

// A panic while serving one client ends that client's connection, never the process
// (router/DESIGN.md, "No client input crashes a node"). The client's goroutine (serve) and the
// goroutines spawned for one client (the read-ahead of a blocking command, the copy of a
// subscriber's messages, the release of a blocked command) recover, log the panic with its
// stack, count it (Stats.ClientPanics, redraft_client_panics_total) and close the connection.

// errInternal is the last reply of a connection whose handling panicked.
var errInternal = errorf("ERR redraft: internal error while serving this connection (logged); the connection is closed")

// recoverClient is deferred by serve: after a panic it finishes what the batch owes (its
// requests are in flight on shared connections and counted on their slots for migration
// barriers), answers errInternal, and lets serve's cleanup close the connection.
func (c *client) recoverClient() {
	v := recover()
	if v == nil {
		return
	}
	c.s.notePanic(c, "client", v)
	c.quit = true
	c.finishing = false
	if !try(c.finishBatch) {
		// The batch cannot be finished: abandon its replies, but never leave its slots counted.
		c.pend, c.lbuf, c.finishing = c.pend[:0], c.lbuf[:0], false
		c.unadmit(0)
	}
	c.out = appendError(c.out, errInternal)
	_ = c.flush()
}

// goClient runs f in a goroutine spawned for client c's session; a panic in f is logged and
// counted, then onPanic runs (it ends whatever waits for f) and c's connection is closed, so
// the session ends.
func (s *Server) goClient(c *client, what string, f, onPanic func()) {
	go func() {
		defer func() {
			if v := recover(); v != nil {
				s.notePanic(c, what, v)
				if onPanic != nil {
					onPanic()
				}
				c.closeConn()
			}
		}()
		f()
	}()
}

// notePanic logs a recovered panic with its stack and counts it. It logs the command's name,
// never its arguments (they may hold secrets).
func (s *Server) notePanic(c *client, what string, v any) {
	s.panics.Add(1)
	log := s.cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	attrs := []any{"in", what, "panic", fmt.Sprint(v), "stack", string(debug.Stack()),
		"client", c.addr, "client_id", c.id, "command", c.lastCmd}
	log.Error("router: panic while serving a client; its connection is closed", attrs...)
}

// try runs f and reports whether it returned without panicking.
func try(f func()) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	f()
	return true
}
