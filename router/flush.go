package router

import (
	"context"
	"fmt"
	"strings"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/router/command"
	"github.com/redraft/redraft/router/resp"
)

// Flushing as a cluster operation (fsm/cmd_flush.go, docs/commands.md "Flushing"). The router's
// part: FLUSHDB/FLUSHALL hand the flush to Config.Flush (the node proposes it and answers once
// it is done in every DC); while a flush is active in the routing snapshot, every client's
// keyed request for a flushed database is held like a request for a frozen slot (bounded by
// FreezeWait, then -TRYAGAIN), and WaitFlushIdle tells the node when none is in flight any more.
// Requests of the node's own replication (InternalBatch: remote DCs' entries being applied) are
// not held: draining them is part of the flush.

// activeFlush returns st's flush while it is active, else nil.
func activeFlush(st *fsm.State) *fsm.Flush {
	if st.Flush.Active() {
		return st.Flush
	}
	return nil
}

// flushHolds reports whether snap holds c's keyed requests for a flush: of the session's
// database, or of the one the request writes besides (MOVE, COPY ... DB: c.flushOther; until
// session 45 such a write into the flushed database went through). Only client sessions are
// held (internal clients have no connection).
func (c *client) flushHolds(snap *snapshot) bool {
	return snap.flushing != nil && c.nc != nil &&
		(snap.flushing.Covers(c.db) || c.flushOther > 0 && snap.flushing.Covers(c.flushOther-1))
}

func errFlushing(f *fsm.Flush) error {
	return errorf("TRYAGAIN %s is in progress, try again", f)
}

// cmdFlush runs FLUSHDB or FLUSHALL [ASYNC|SYNC]. With the node's Config.Flush it is the
// cluster operation; without it (a router on its own) it flushes this DC's groups as the
// internal user: the client user may not flush (internal/backendacl), so the settings checked
// here are the only way to it.
func cmdFlush(c *client, spec *command.Spec, cmd resp.Command) {
	if c.snap == nil || !c.s.flushAllowed(c.snap) {
		c.replyErr(errFlushOff)
		return
	}
	async := false
	switch {
	case len(cmd.Args) > 2:
		c.replyErr(errSyntax)
		return
	case len(cmd.Args) == 2 && strings.EqualFold(string(cmd.Args[1]), "ASYNC"):
		async = true
	case len(cmd.Args) == 2 && !strings.EqualFold(string(cmd.Args[1]), "SYNC"):
		c.replyErr(errSyntax)
		return
	}
	if c.s.cfg.Flush == nil {
		c.allOKAs(cmd.Raw, true)
		return
	}
	db := c.db
	if spec.Name == "flushall" {
		db = fsm.FlushAllDBs
	}
	c.drain()
	_ = c.flush() // earlier replies first: the flush may take a while
	if err := c.s.cfg.Flush(c.s.ctx, db, async); err != nil {
		c.replyErr(errorf("ERR %s", err))
		return
	}
	c.reply([]byte("+OK\r\n"))
}

// WaitFlushIdle returns once this node's routing holds the keyed requests of flush id and none
// admitted before is in flight: every slot's in-flight count has been zero at least once since
// the flush was in the snapshot (a request counts itself before it reads the snapshot, so one
// not counted any more has had its reply, or saw the flush and holds). It fails when the
// flush is no longer the active one, and when ctx ends.
func (s *Server) WaitFlushIdle(ctx context.Context, id uint64) error {
	for {
		snap := s.snap.Load()
		ch := s.ready
		if snap != nil {
			if f := snap.flushing; f != nil && f.ID == id {
				break
			}
			if snap.index > id && snap.hold == nil {
				return fmt.Errorf("router: flush %d is not active in this node's routing", id)
			}
			ch = snap.changed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("router: flush %d is not in this node's routing: %w", id, ctx.Err())
		case <-s.ctx.Done():
			return errClosing
		}
	}
	return s.drainInflight(ctx, func(int) bool { return true })
}
