package fsm

import (
	"fmt"
	"time"
)

// A flush (FLUSHDB, FLUSHALL) is a cluster operation with a barrier, like a migration's freeze
// (docs/commands.md, "Flushing"). The fsm only records it and its phase; the nodes do the work:
//
//  1. StartFlush: phase frozen. Every node holds keyed requests for the flushed database(s),
//     waits until none is in flight, drains its replication shipping (every entry already in
//     an outbox it ships is applied in every other DC) and acks (AckFlush).
//  2. When every node of every DC has acked: phase deleting. The nodes of each DC delete the
//     data keys (never redraft's internal `__redraft:` keys) of the database(s) on every group
//     of their DC, and the first to finish reports its DC (FinishFlush).
//  3. When every DC that has groups and nodes has reported: phase done, Flushes counts it, and
//     the routers release the held requests.
//
// A flush that does not reach the deleting phase within the setting flush_timeout is aborted
// by any node (AbortFlush: phase failed); one that reached it is never aborted, so a flush is
// all or nothing: nothing is deleted before every node has acked.

// The flush command types. Never renumber.
const (
	TypeStartFlush  CmdType = 19
	TypeAckFlush    CmdType = 20
	TypeFinishFlush CmdType = 21
	TypeAbortFlush  CmdType = 22
)

// FlushPhase is a step of a flush.
type FlushPhase string

// The flush phases, in order; done and failed are final.
const (
	FlushFrozen   FlushPhase = "frozen"
	FlushDeleting FlushPhase = "deleting"
	FlushDone     FlushPhase = "done"
	FlushFailed   FlushPhase = "failed"
)

// FlushAllDBs is Flush.DB for FLUSHALL.
const FlushAllDBs = -1

// maxFlushDB bounds a FLUSHDB's database number (Redis's databases setting is far lower).
const maxFlushDB = 1 << 16

// Flush is the cluster's current or last flush.
type Flush struct {
	// ID is the Raft index of the StartFlush that created it.
	ID uint64 `json:"id"`
	// Token is the proposer's name for it, so the node that proposed it finds it.
	Token string `json:"token"`
	// DB is the flushed database, or FlushAllDBs.
	DB int `json:"db"`
	// Async deletes with UNLINK (FLUSHALL ASYNC), else DEL.
	Async bool `json:"async,omitempty"`
	// Node is the node whose client asked for the flush.
	Node  string     `json:"node"`
	Phase FlushPhase `json:"phase"`
	// Acks holds, per node id, the index at which it acked the freeze.
	Acks map[string]uint64 `json:"acks,omitempty"`
	// Deleted holds, per DC, the node that reported the DC's deletion done.
	Deleted map[string]string `json:"deleted,omitempty"`
	// Reason says why a failed flush failed.
	Reason string `json:"reason,omitempty"`
}

// Active reports whether the flush has not reached a final phase.
func (f *Flush) Active() bool {
	return f != nil && (f.Phase == FlushFrozen || f.Phase == FlushDeleting)
}

// Covers reports whether the flush empties database db.
func (f *Flush) Covers(db int) bool { return f.DB == FlushAllDBs || f.DB == db }

// String names the flush for logs and errors.
func (f *Flush) String() string {
	what := fmt.Sprintf("FLUSHDB of database %d", f.DB)
	if f.DB == FlushAllDBs {
		what = "FLUSHALL"
	}
	return fmt.Sprintf("flush %d (%s, %s)", f.ID, what, f.Phase)
}

func (f *Flush) clone() *Flush {
	if f == nil {
		return nil
	}
	c := *f
	c.Acks = copyMap(f.Acks)
	c.Deleted = copyMap(f.Deleted)
	return &c
}

// StartFlush begins a flush (phase frozen). It is refused while another flush or a migration
// is active, and when the setting flush_enabled is false.
type StartFlush struct {
	Token string `json:"token"`
	DB    int    `json:"db"`
	Async bool   `json:"async,omitempty"`
	Node  string `json:"node"`
}

// AckFlush records that a node holds every keyed request for the flushed databases, has none
// in flight and has drained its replication shipping.
type AckFlush struct {
	ID   uint64 `json:"id"`
	Node string `json:"node"`
}

// FinishFlush records that Node deleted the flushed data in every group of its DC.
type FinishFlush struct {
	ID   uint64 `json:"id"`
	Node string `json:"node"`
}

// AbortFlush fails a flush that is still frozen (a node did not ack in time).
type AbortFlush struct {
	ID     uint64 `json:"id"`
	Reason string `json:"reason"`
}

func init() {
	register(TypeStartFlush, func() Command { return &StartFlush{} })
	register(TypeAckFlush, func() Command { return &AckFlush{} })
	register(TypeFinishFlush, func() Command { return &FinishFlush{} })
	register(TypeAbortFlush, func() Command { return &AbortFlush{} })
	settings["flush_timeout"] = setting{def: "30s",
		help:  "a flush whose freeze is not acked by every node within this time fails (nothing deleted)",
		check: durationRange(time.Second, time.Hour)}
}

// Type implements Command.
func (*StartFlush) Type() CmdType { return TypeStartFlush }

// Name implements Command.
func (*StartFlush) Name() string { return "start_flush" }

func (c *StartFlush) apply(s *State, index uint64) error {
	switch {
	case c.Token == "":
		return errf("invalid", "flush token is required")
	case c.DB < FlushAllDBs || c.DB >= maxFlushDB:
		return errf("invalid", "database %d is out of range", c.DB)
	case s.Setting("flush_enabled") != "true":
		return errf("invalid", "FLUSHDB and FLUSHALL are disabled on this cluster (setting flush_enabled)")
	case s.Flush != nil && s.Flush.Token == c.Token:
		// The same request again (a proposal retried after its first try committed): the
		// flush it started is the answer, not a second one.
		return errf("exists", "%s has this token: the request started it already", s.Flush)
	case s.Flush.Active():
		return errf("busy", "%s is in progress", s.Flush)
	}
	for _, m := range s.Migrations {
		if m.Active() {
			return errf("busy", "%s is active: a flush waits until no migration runs", m)
		}
	}
	s.Flush = &Flush{ID: index, Token: c.Token, DB: c.DB, Async: c.Async, Node: c.Node, Phase: FlushFrozen,
		Acks: map[string]uint64{}, Deleted: map[string]string{}}
	s.checkFlush()
	return nil
}

// checkFlush moves the flush on when its phase's condition holds: every node acked (frozen ->
// deleting), every DC with groups and nodes deleted (deleting -> done).
func (s *State) checkFlush() {
	f := s.Flush
	if f == nil {
		return
	}
	if f.Phase == FlushFrozen {
		for id := range s.Nodes {
			if _, ok := f.Acks[id]; !ok {
				return
			}
		}
		f.Phase = FlushDeleting
	}
	if f.Phase == FlushDeleting {
		for _, dc := range s.FlushDCs() {
			if f.Deleted[dc] == "" {
				return
			}
		}
		f.Phase = FlushDone
		f.Acks = nil
		s.Flushes++
	}
}

// FlushDCs returns the DCs a flush deletes in: those with groups and nodes, sorted.
func (s *State) FlushDCs() []string {
	withNodes := map[string]bool{}
	for _, n := range s.Nodes {
		withNodes[n.DC] = true
	}
	var out []string
	for _, name := range s.DCNames() {
		if withNodes[name] && len(s.DCs[name].Groups) > 0 {
			out = append(out, name)
		}
	}
	return out
}

// FlushWaiting returns the ids of the nodes an active flush's freeze still waits for.
func (s *State) FlushWaiting() []string {
	f := s.Flush
	if f == nil || f.Phase != FlushFrozen {
		return nil
	}
	var out []string
	for _, id := range s.NodeIDs() {
		if _, ok := f.Acks[id]; !ok {
			out = append(out, id)
		}
	}
	return out
}

func (s *State) flush(id uint64) (*Flush, error) {
	if s.Flush == nil || s.Flush.ID != id {
		return nil, errf("not_found", "flush %d is not the cluster's current flush", id)
	}
	return s.Flush, nil
}

// Type implements Command.
func (*AckFlush) Type() CmdType { return TypeAckFlush }

// Name implements Command.
func (*AckFlush) Name() string { return "ack_flush" }

func (c *AckFlush) apply(s *State, index uint64) error {
	f, err := s.flush(c.ID)
	if err != nil {
		return err
	}
	if _, ok := s.Nodes[c.Node]; !ok {
		return errf("not_found", "node %s is not a member", c.Node)
	}
	if f.Phase != FlushFrozen {
		return nil // late or repeated: the barrier has passed
	}
	f.Acks[c.Node] = index
	s.checkFlush()
	return nil
}

// Type implements Command.
func (*FinishFlush) Type() CmdType { return TypeFinishFlush }

// Name implements Command.
func (*FinishFlush) Name() string { return "finish_flush" }

func (c *FinishFlush) apply(s *State, _ uint64) error {
	f, err := s.flush(c.ID)
	if err != nil {
		return err
	}
	n, ok := s.Nodes[c.Node]
	if !ok {
		return errf("not_found", "node %s is not a member", c.Node)
	}
	if f.Phase != FlushDeleting {
		if f.Phase == FlushDone {
			return nil // another node of the DC reported first
		}
		return errf("busy", "%s is not deleting", f)
	}
	if f.Deleted[n.DC] == "" {
		f.Deleted[n.DC] = c.Node
	}
	s.checkFlush()
	return nil
}

// Type implements Command.
func (*AbortFlush) Type() CmdType { return TypeAbortFlush }

// Name implements Command.
func (*AbortFlush) Name() string { return "abort_flush" }

func (c *AbortFlush) apply(s *State, _ uint64) error {
	f, err := s.flush(c.ID)
	if err != nil {
		return err
	}
	if f.Phase != FlushFrozen {
		return errf("busy", "%s can no longer be aborted: nothing is aborted once deleting began", f)
	}
	f.Phase = FlushFailed
	f.Reason = c.Reason
	if f.Reason == "" {
		f.Reason = "aborted"
	}
	f.Acks = nil
	return nil
}

// removeFromFlush drops a removed node's ack: it no longer holds up the freeze, and a DC left
// without nodes no longer needs to report.
func (s *State) removeFromFlush(id string) {
	if s.Flush.Active() {
		delete(s.Flush.Acks, id)
		s.checkFlush()
	}
}
