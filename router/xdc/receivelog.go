package xdc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/migrate"
	"github.com/redraft/redraft/router/resp"
)

// The receiving node's side of one log per group (grouplog.go): a range of one source log,
// applied to every group of this DC that holds slots.

// RPCLog is the peer call that carries a range of one source log (HandleLog).
const RPCLog = "xdc-log"

// LogDataFormat is the cluster data format (fsm.State.Format) from which groups write their
// logs and nodes ship and apply them (docs/replication.md, session 23, "Formats"): this
// build's latest (fsm.LatestDataFormat), and a node refuses RPCLog below it.
const LogDataFormat = 3

// LogRequest is a range of source log Log in database DB: its entries after Prev ("" for the
// log's start) through Last, in the log's order.
type LogRequest struct {
	Log     LogID      `json:"log"`
	DB      int        `json:"db"`
	Prev    string     `json:"prev"`
	Last    string     `json:"last"`
	Entries []LogEntry `json:"entries"`
}

// LogResponse is the receiving DC's answer to a LogRequest.
type LogResponse struct {
	// Position is where the DC stands in the log: every entry through it is applied in every
	// group (the lowest of the groups' positions, "" for none). The sender goes on from it.
	Position string `json:"position"`
	// Gap reports that a group stood below the request's Prev (it lost what it had applied,
	// with a failover): the sender goes back to Position.
	Gap bool `json:"gap,omitempty"`
	// Held is why the range was not applied through Last ("" when it was): a group refused an
	// entry (another's copy lock, a bad entry), or an entry's slot or a group is in a
	// migration or failover here.
	Held string `json:"held,omitempty"`
	// Errors, FirstError, Superseded and Conflicts sum the groups' figures (LogApplied).
	Errors     int    `json:"errors,omitempty"`
	FirstError string `json:"first_error,omitempty"`
	Superseded int    `json:"superseded,omitempty"`
	Conflicts  int    `json:"conflicts,omitempty"`
	// Migrating reports a slot migration in this DC: its switch may send the sender back
	// below Position (a gap), so the sender keeps its log from where it stood before.
	Migrating bool `json:"migrating,omitempty"`
}

// groupSlots are, per state, a few slots of each group of this DC that holds any (the first of
// each of its ranges): HandleLog names them so that every group gets every range, whether or
// not the range has entries of its slots. ship is, per group of this DC, the slot whose owner
// on the ring ships the group's log: the slot of the group's id (shipSlot).
type groupSlots struct {
	st        *fsm.State
	slots     [][]int
	ship      map[string]int
	migrating bool // a slot migration of this DC is active
}

// shipSlot is the slot whose owner on the ring ships group gid's log: the slot of the group's
// id, hashed as a key's. It depends on the id alone, so the shipping node moves only with the
// ring (a node joining, leaving or down), never with a migration. With the group's first slot
// (the rule before), every step of a migration that moved it also moved the log to another
// node: a new shipper asked the destination its position, checked the log and the outboxes'
// drain again, and the old one shipped on for a while beside it.
func shipSlot(gid string) int { return migrate.Slot([]byte(gid)) }

// checkRange refuses a range whose ids are not in the log's order: Prev (when given), Last
// and every entry's id stream ids, each entry's after the one before it (the first's after
// Prev), none past Last. ApplyLogFunc relies on the order (it checks only each id's form and
// the last entry against Last), so a range out of order is refused before any group applies
// any of it.
func checkRange(req LogRequest) error {
	if badStreamID(req.Last) || (req.Prev != "" && badStreamID(req.Prev)) {
		return fmt.Errorf("xdc: a range of a log from %q through %q: not stream ids", req.Prev, req.Last)
	}
	before := req.Prev
	for _, e := range req.Entries {
		switch {
		case badStreamID(e.ID):
			return fmt.Errorf("xdc: entry %q of a range of a log: not a stream id", e.ID)
		case before != "" && CompareIDs(e.ID, before) <= 0:
			return fmt.Errorf("xdc: entry %s of a range of a log out of order, after %s", e.ID, before)
		}
		// A handoff's ids are compared by APPLY, where one that is no stream id stopped it
		// half way (cmpid), having applied the entries before it.
		if _, through, ok := IsHandoff(e.Cmds); ok && (badStreamID(through) || len(e.Cmds[0]) == 4 && e.Cmds[0][3] != "" && badStreamID(e.Cmds[0][3])) {
			return fmt.Errorf("xdc: handoff entry %s of a range of a log: %q is not a stream id", e.ID, e.Cmds[0][2:])
		}
		if k, out := keyOutside(e.Cmds, e.Slot); out {
			return fmt.Errorf("xdc: entry %s of a range of a log: key %q is not in its slot %d", e.ID, k, e.Slot)
		}
		before = e.ID
	}
	if before != "" && CompareIDs(before, req.Last) > 0 {
		return fmt.Errorf("xdc: entry %s of a range of a log past its last id %s", before, req.Last)
	}
	return nil
}

// keyOutside returns a key of an entry's effects (cmds) that is not in slot, the slot the
// entry was sent for. A WRITE's keys share one slot, and the sender names the slot of the first
// (EntrySlot); APPLY takes the slot as given for the metadata, element hashes, copy lock and
// migration hold it checks, so a key of another slot would be written where its own slot's
// state is never looked at (and where clients never look for it). A handoff has no key.
func keyOutside(cmds WireCmds, slot int) (string, bool) {
	if _, _, ok := IsHandoff(cmds); ok {
		return "", false
	}
	for _, c := range cmds {
		if len(c) > 1 && strings.HasPrefix(c[0], "~") {
			if migrate.SlotString(c[1]) != slot {
				return c[1], true
			}
			continue
		}
		for _, k := range EffectKeys(c) {
			if migrate.SlotString(k) != slot {
				return k, true
			}
		}
	}
	return "", false
}

// representatives returns the slots of each group of this DC that holds any, the slot that
// decides who ships each group's log, and whether a slot migration of this DC is active,
// computed once per cluster state.
func (r *Replicator) representatives(st *fsm.State) *groupSlots {
	if c, _ := r.logReps.Load().(*groupSlots); c != nil && c.st == st {
		return c
	}
	c := newGroupSlots(st, r.cfg.Cluster.DC())
	r.logReps.Store(c)
	return c
}

// newGroupSlots computes representatives' answer for DC dc in state st.
func newGroupSlots(st *fsm.State, dc string) *groupSlots {
	c := &groupSlots{st: st, ship: map[string]int{}}
	if d := st.DCs[dc]; d != nil {
		for gid, ranges := range d.SlotRanges() {
			if gid == "" {
				continue // unassigned: no group to reach, nothing to hold a range for
			}
			var first []int
			for _, rg := range ranges {
				first = append(first, rg.From)
			}
			c.slots = append(c.slots, first)
		}
		for gid := range d.Groups {
			c.ship[gid] = shipSlot(gid)
		}
	}
	for _, m := range st.Migrations {
		c.migrating = c.migrating || m.Active() && m.DC == dc
	}
	return c
}

// HandleLog applies req, a range of a source log, in every group of this DC that holds slots,
// each with the entries of its slots (ApplyLogFunc), and answers where the DC stands. An
// entry of a slot that a migration or failover concerns here ends the range before it (the
// groups stop there, so nothing of a migrating slot is applied until its positions moved with
// it: migration.go), and so does a group that could not be reached through any of its slots
// (the answer then stays at Prev). Every group gets a handoff entry (migration.go) and holds
// there until it applied the log the entry names through its id.
func (r *Replicator) HandleLog(ctx context.Context, req LogRequest) (LogResponse, error) {
	if err := r.checkSource(req.Log.DC); err != nil {
		return LogResponse{}, err
	}
	st := r.cfg.Cluster.State()
	if st.Format() < LogDataFormat {
		return LogResponse{}, fmt.Errorf("xdc: the cluster's data format is %d; group logs need %d", st.Format(), LogDataFormat)
	}
	if req.Last == "" {
		return LogResponse{}, errors.New("xdc: a range of a log without its last id")
	}
	if err := checkRange(req); err != nil {
		return LogResponse{}, err
	}
	groups := r.representatives(st)
	reps := groups.slots
	var slots []int // the groups' slots, then the entries'
	seen := map[int]bool{}
	for _, g := range reps {
		for _, s := range g {
			seen[s] = true
			slots = append(slots, s)
		}
	}
	for _, e := range req.Entries {
		if e.Slot < 0 || e.Slot >= len(tags) {
			return LogResponse{}, fmt.Errorf("xdc: entry %s: slot %d out of range", e.ID, e.Slot)
		}
		if !seen[e.Slot] {
			seen[e.Slot] = true
			slots = append(slots, e.Slot)
		}
	}
	// The range's end as the groups' calls were built (the same for every group: rest is).
	var last, cutWhy string
	for load := false; ; load = true {
		parts, _, err := r.cfg.Local.InternalOwned(ctx, req.DB, slots, func(pos, rest []int) [][]string {
			var entries []LogEntry
			last, entries, cutWhy = logCut(req, slots, rest)
			var cmds [][]string
			if load {
				cmds = append(cmds, loadCall)
			}
			if last == "" {
				// Cut before its first entry at the log's start: nothing to apply, and no
				// id to stand at (APPLY would refuse an empty one as an error).
				return cmds
			}
			mine := make(map[int]bool, len(pos))
			for _, p := range pos {
				mine[slots[p]] = true
			}
			var run []LogEntry
			before := req.Prev
			for _, e := range entries {
				if _, _, handoff := IsHandoff(e.Cmds); handoff {
					run = append(run, handoffBefore(e, before)) // every group checks a handoff
				} else if mine[e.Slot] && len(e.Cmds) > 0 { // a heartbeat moves positions only
					run = append(run, e)
				}
				before = e.ID
			}
			return append(cmds, logCalls(req.Log, req.Prev, last, run)...)
		})
		if err != nil {
			return LogResponse{}, err
		}
		if load {
			dropLoad(parts)
		}
		if !load && funcMissing(parts) {
			// Sent again with the library: the groups that had it applied the range now,
			// and the second round finds it applied there and reports nothing.
			r.logPartlyApplied(req, slots, parts)
			continue
		}
		if err := ownedErr(parts); err != nil {
			r.logPartlyApplied(req, slots, parts)
			return LogResponse{}, err
		}
		res, err := logAnswer(req, reps, slots, parts, cutWhy)
		if err != nil { // a group's unparsable answer: the others' count (logPartlyApplied)
			r.logPartlyApplied(req, slots, parts)
			return res, err
		}
		res.Migrating = groups.migrating
		r.markLogHot(req.DB, req.Entries)
		r.logApplied(req, res)
		return res, nil
	}
}

// logApplied counts what applying req here reported (res), as HandleApply does per batch
// (tally), and has the slots whose entries may have recorded conflicts pulled (pull.go): the
// answer does not say which slots did, and a slot without records costs the puller one read.
func (r *Replicator) logApplied(req LogRequest, res LogResponse) {
	conflicts := r.tally(res.Errors, res.FirstError, res.Superseded, res.Conflicts, "source", req.Log.String())
	if !conflicts && !r.pulls.anySuspect() {
		return // the common case: nothing to pull, nothing to settle
	}
	effectSlots(req.Entries, nil, func(slot int) {
		if conflicts {
			r.pulls.note(req.DB, slot)
		} else {
			r.pulls.settle(req.DB, slot)
		}
	})
}

// logPartlyApplied is logApplied for a range some groups applied and others may not have
// (their calls failed, parts' Err, or answered what cannot be read, such as the library
// missing): the groups that answered are counted and their slots with conflicts pulled now,
// since the range sent again finds their entries applied and reports nothing of them; the
// slots of a group that did not answer are suspected (its calls may have run), to be pulled
// once it answers again.
func (r *Replicator) logPartlyApplied(req LogRequest, slots []int, parts []OwnedReplies) {
	for _, part := range parts {
		mine := make(map[int]bool, len(part.Pos))
		for _, p := range part.Pos {
			mine[slots[p]] = true
		}
		a, err := groupAnswer(part.Replies)
		switch {
		case part.Err != nil || err != nil:
			effectSlots(req.Entries, mine, func(slot int) { r.pulls.suspect(req.DB, slot) })
		case r.tally(a.Errors, a.FirstError, a.Superseded, a.Conflicts, "source", req.Log.String()):
			effectSlots(req.Entries, mine, func(slot int) { r.pulls.note(req.DB, slot) })
		default:
			effectSlots(req.Entries, mine, func(slot int) { r.pulls.settle(req.DB, slot) })
		}
	}
}

// effectSlots calls f once for each slot of entries with effects (not a heartbeat or a
// handoff) that is in of (every slot when of is nil).
func effectSlots(entries []LogEntry, of map[int]bool, f func(slot int)) {
	done := map[int]bool{}
	for _, e := range entries {
		if _, _, handoff := IsHandoff(e.Cmds); len(e.Cmds) > 0 && !handoff && !done[e.Slot] && (of == nil || of[e.Slot]) {
			done[e.Slot] = true
			f(e.Slot)
		}
	}
}

// logCalls are a group's ApplyLogFunc calls for run, its entries of a range after prev
// through last: one per applyChunk entries (so one call holds the master a few hundred
// microseconds, as the batch APPLY's), each after the one before, pipelined in order. A call
// refused stops its group there: the next ones find the group's position below their prev,
// a GAP that changes nothing. The group's answer is its last call's.
func logCalls(log LogID, prev, last string, run []LogEntry) [][]string {
	var calls [][]string
	for len(run) > applyChunk {
		chunk := run[:applyChunk]
		end := chunk[len(chunk)-1].ID
		calls = append(calls, ApplyLogCall(log, "", prev, end, chunk))
		prev, run = end, run[applyChunk:]
	}
	return append(calls, ApplyLogCall(log, "", prev, last, run))
}

// logCut is where a range ends as this DC can apply it now: before the first entry whose slot
// is at a position in rest (a migration or failover here). It returns the range's last id,
// its entries through it and why it was cut ("" when it was not).
func logCut(req LogRequest, slots []int, rest []int) (string, []LogEntry, string) {
	if len(rest) == 0 {
		return req.Last, req.Entries, ""
	}
	held := make(map[int]bool, len(rest))
	for _, p := range rest {
		held[slots[p]] = true
	}
	last := req.Prev
	for i, e := range req.Entries {
		if _, _, handoff := IsHandoff(e.Cmds); held[e.Slot] && len(e.Cmds) > 0 && !handoff {
			return last, req.Entries[:i], fmt.Sprintf("slot %d is in a migration or failover here", e.Slot)
		}
		last = e.ID
	}
	return req.Last, req.Entries, ""
}

// groupAnswer is a group's answer to its calls (logCalls): the first that was refused, or the
// last (the ones after a refused call find a gap, which says nothing more).
func groupAnswer(replies [][]byte) (LogApplied, error) {
	var sum LogApplied
	for _, raw := range replies {
		v, _, ok := resp.Parse(raw)
		if !ok {
			return LogApplied{}, fmt.Errorf("xdc: APPLY of a log: unparsable reply %q", raw)
		}
		a, err := ParseApplyLog(v)
		if err != nil {
			return LogApplied{}, err
		}
		sum.Position, sum.Refused = a.Position, a.Refused
		sum.Errors += a.Errors
		sum.Superseded += a.Superseded
		sum.Conflicts += a.Conflicts
		if sum.FirstError == "" {
			sum.FirstError = a.FirstError
		}
		if a.Refused != "" {
			break
		}
	}
	return sum, nil
}

// logAnswer reads the groups' replies to HandleLog's calls (parts; reps are the groups' slots,
// cutWhy why the range was cut) into the DC's answer.
func logAnswer(req LogRequest, reps [][]int, slots []int, parts []OwnedReplies, cutWhy string) (LogResponse, error) {
	out := LogResponse{Position: req.Prev}
	if len(parts) == 0 {
		out.Held = "no group of this DC could be reached"
		return out, nil
	}
	pos, first := "", true
	for _, part := range parts {
		a, err := groupAnswer(part.Replies)
		if err != nil {
			return LogResponse{}, err
		}
		if a.Gap() {
			out.Gap = true
		} else if a.Refused != "" && out.Held == "" {
			out.Held = a.Refused
		}
		out.Errors += a.Errors
		out.Superseded += a.Superseded
		out.Conflicts += a.Conflicts
		if out.FirstError == "" {
			out.FirstError = a.FirstError
		}
		if first || a.Position == "" || (pos != "" && CompareIDs(a.Position, pos) < 0) {
			pos, first = a.Position, false
		}
	}
	if out.Held == "" {
		out.Held = cutWhy
	}
	// Every group must have had the range: one reached through none of its slots stands
	// where it stood, at or below Prev.
	called := make(map[int]bool)
	for _, part := range parts {
		for _, p := range part.Pos {
			called[slots[p]] = true
		}
	}
	for _, g := range reps {
		reached := false
		for _, s := range g {
			reached = reached || called[s]
		}
		if !reached {
			if out.Held == "" {
				out.Held = "a group of this DC is in a migration or failover"
			}
			if !out.Gap {
				pos = req.Prev
			}
		}
	}
	out.Position = pos
	return out, nil
}

// The binary form of a LogRequest, the body of an RPCLog call (EncodeLog), as the apply
// request's (EncodeApply): JSON's scanning of every effect's strings was a third of the
// receiving node's CPU flat out at data format 3 (docs/replication.md, session 24).
//
//	"XL1" <dc> <group> <db> <prev> <last> then the entries as batches of one entry
//	      each (EncodeBatches: its slot, its id, ts and commands)
const logMagic = "XL1"

// BinaryLog is a LogRequest in its binary form: the node posts it as it is.
type BinaryLog []byte

// PeerBody returns the request's bytes.
func (b BinaryLog) PeerBody() []byte { return b }

// EncodeLog returns the binary form of req.
func EncodeLog(req LogRequest) BinaryLog {
	out := []byte(logMagic)
	for _, s := range []string{req.Log.DC, req.Log.Group} {
		out = binary.AppendUvarint(out, uint64(len(s)))
		out = append(out, s...)
	}
	out = binary.AppendUvarint(out, uint64(req.DB))
	for _, s := range []string{req.Prev, req.Last} {
		out = binary.AppendUvarint(out, uint64(len(s)))
		out = append(out, s...)
	}
	batches := make([]WireBatch, len(req.Entries))
	for i, e := range req.Entries {
		batches[i] = WireBatch{Slot: e.Slot, Entries: []WireEntry{e.WireEntry}}
	}
	return append(out, EncodeBatches(batches)...)
}

// DecodeLog parses the binary form of a LogRequest.
func DecodeLog(data []byte) (LogRequest, error) {
	bad := errors.New("xdc: bad binary log request")
	rest, ok := bytes.CutPrefix(data, []byte(logMagic))
	if !ok {
		return LogRequest{}, bad
	}
	str := func() (string, bool) {
		l, n := binary.Uvarint(rest)
		if n <= 0 || l > uint64(len(rest)-n) {
			return "", false
		}
		s := string(rest[n : n+int(l)])
		rest = rest[n+int(l):]
		return s, true
	}
	num := func() (uint64, bool) {
		v, n := binary.Uvarint(rest)
		if n <= 0 {
			return 0, false
		}
		rest = rest[n:]
		return v, true
	}
	var req LogRequest
	var ok1, ok2, ok4, ok5, ok6 bool
	req.Log.DC, ok1 = str()
	req.Log.Group, ok2 = str()
	db, ok4 := num()
	req.Prev, ok5 = str()
	req.Last, ok6 = str()
	if !ok1 || !ok2 || !ok4 || !ok5 || !ok6 || db > 1<<20 {
		return LogRequest{}, bad
	}
	req.DB = int(db)
	batches, err := DecodeBatches(rest)
	if err != nil {
		return LogRequest{}, err
	}
	req.Entries = make([]LogEntry, 0, len(batches))
	for _, b := range batches {
		if len(b.Entries) != 1 {
			return LogRequest{}, bad
		}
		req.Entries = append(req.Entries, LogEntry{Slot: b.Slot, WireEntry: b.Entries[0]})
	}
	return req, nil
}
