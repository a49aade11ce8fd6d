package xdc

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/router/resp"
)

// receiveWorkers bounds the slots a receiving node applies in parallel, one by one, for one
// request (the slots a migration or failover concerns).
const receiveWorkers = 8

// applyChunk bounds the entries of one batch APPLY call, so that one call holds its master
// only briefly (a few hundred microseconds) and other clients' commands interleave.
const applyChunk = 64

// batchOutside says which entry of b has a key outside b's slot (keyOutside), or "".
func batchOutside(b WireBatch) string {
	for _, e := range b.Entries {
		if k, out := keyOutside(e.Cmds, b.Slot); out {
			return fmt.Sprintf("entry %s: key %q is not in slot %d", e.ID, k, b.Slot)
		}
	}
	return ""
}

// HandleApply applies req's batches through this node's router, exactly once and in order per
// slot (APPLY skips what was applied and refuses a gap): the batches of slots no migration or
// failover concerns in batch APPLY calls, one round trip per group (Local.InternalOwned), the
// others slot by slot through the router, in parallel. It answers one result per batch.
func (r *Replicator) HandleApply(ctx context.Context, req ApplyRequest) (ApplyResponse, error) {
	if err := r.checkSource(req.Source); err != nil {
		return ApplyResponse{}, err
	}
	if r.recvPh.enabled() {
		defer func(t0 time.Time) { r.recvPh.add("apply", time.Since(t0)) }(time.Now())
	}
	out := ApplyResponse{Results: make([]ApplyResult, len(req.Batches))}
	var idx, slots []int // the batches with entries, and their slots
	for i, b := range req.Batches {
		out.Results[i] = ApplyResult{Slot: b.Slot, Last: b.Prev}
		switch {
		case b.Slot < 0 || b.Slot >= len(tags):
			out.Results[i].Error = fmt.Sprintf("slot %d out of range", b.Slot)
		case len(b.Entries) > 0:
			if why := batchOutside(b); why != "" {
				out.Results[i].Error = why
				continue
			}
			r.gc.markHot(req.DB, b.Slot)
			idx, slots = append(idx, i), append(slots, b.Slot)
		}
	}
	if len(idx) == 0 {
		return out, nil
	}
	at := func(pos []int) []WireBatch {
		bs := make([]WireBatch, len(pos))
		for j, p := range pos {
			bs[j] = req.Batches[idx[p]]
		}
		return bs
	}
	var parts []OwnedReplies
	var rest []int
	var err error
	for load := false; ; load = true {
		parts, rest, err = r.cfg.Local.InternalOwned(ctx, req.DB, slots, func(pos, _ []int) [][]string {
			var cmds [][]string
			if load { // a backend that lost the library: load it this once, ahead of the calls
				cmds = append(cmds, loadCall)
			}
			for _, ch := range applyChunks(at(pos)) {
				call, _ := ApplyBatchCall(req.Source, "", ch)
				cmds = append(cmds, call)
			}
			return cmds
		})
		if err == nil && load {
			dropLoad(parts)
		}
		if err != nil || load || !funcMissing(parts) {
			break
		}
		// Sent again with the library: the groups that had it applied their batches now,
		// and the second round finds them applied and reports nothing of their conflicts.
		for _, part := range parts {
			for _, p := range part.Pos {
				r.pulls.suspect(req.DB, req.Batches[idx[p]].Slot)
			}
		}
	}
	if err != nil {
		for _, i := range idx {
			out.Results[i].Error = err.Error()
		}
		return out, nil
	}
	for _, part := range parts {
		if part.Err != nil { // the group's calls may have run: their conflicts are unknown
			for _, p := range part.Pos {
				i := idx[p]
				out.Results[i].Error = part.Err.Error()
				r.pulls.suspect(req.DB, req.Batches[i].Slot)
			}
			continue
		}
		pos, chunks := part.Pos, applyChunks(at(part.Pos))
		for j, ch := range chunks {
			res := r.applied(req.Source, req.DB, ch, part.Replies[j])
			for k := range ch {
				out.Results[idx[pos[k]]] = res[k]
			}
			pos = pos[len(ch):]
		}
	}
	parallel(len(rest), func(j int) {
		i := idx[rest[j]]
		out.Results[i] = r.applyOne(ctx, req.Source, req.DB, req.Batches[i])
	})
	return out, nil
}

// applyChunks splits batches into the calls of at most applyChunk entries each (a batch longer
// than that is a call of its own).
func applyChunks(batches []WireBatch) [][]WireBatch {
	var out [][]WireBatch
	start, n := 0, 0
	for i, b := range batches {
		if n > 0 && n+len(b.Entries) > applyChunk {
			out = append(out, batches[start:i])
			start, n = i, 0
		}
		n += len(b.Entries)
	}
	return append(out, batches[start:])
}

// funcMissing reports whether a reply of parts is FuncMissing.
func funcMissing(parts []OwnedReplies) bool {
	for _, p := range parts {
		for _, raw := range p.Replies {
			if FuncMissingReply(raw) {
				return true
			}
		}
	}
	return false
}

// dropLoad removes the reply of loadCall, the first, from the replies of the groups that
// answered.
func dropLoad(parts []OwnedReplies) {
	for j := range parts {
		if parts[j].Err == nil {
			parts[j].Replies = parts[j].Replies[1:]
		}
	}
}

// loadCall is FUNCTION LOAD of the library.
var loadCall = []string{"FUNCTION", "LOAD", library}

// applyOne applies one slot's batch through the router (a slot a migration or failover
// concerns: the router moves the keys or waits as for any request).
func (r *Replicator) applyOne(ctx context.Context, source string, db int, b WireBatch) ApplyResult {
	call, keys := ApplyBatchCall(source, "", []WireBatch{b})
	v, err := r.runCall(ctx, db, b.Slot, keys, call)
	if err != nil { // the call may have run: its conflicts are unknown
		r.pulls.suspect(db, b.Slot)
		return ApplyResult{Slot: b.Slot, Last: b.Prev, Error: err.Error()}
	}
	return r.applied(source, db, []WireBatch{b}, v.Raw)[0]
}

// applied turns a batch APPLY reply for batches into their results, and counts and logs what
// it reports: failed effects (the DCs' copies differ), superseded effects, conflicts (the
// slot gets a pull).
func (r *Replicator) applied(source string, db int, batches []WireBatch, reply []byte) []ApplyResult {
	out := make([]ApplyResult, len(batches))
	for i, b := range batches {
		out[i] = ApplyResult{Slot: b.Slot, Last: b.Prev}
	}
	v, _, ok := resp.Parse(reply)
	var res []BatchApplied
	err := errors.New("unparsable APPLY reply")
	if ok {
		res, err = ParseApplyBatch(v, len(batches))
	}
	if err != nil { // an error reply: a script stopped by an error keeps the effects before it
		for i, b := range batches {
			out[i].Error, out[i].Gap = err.Error(), strings.HasPrefix(err.Error(), "GAP ")
			r.pulls.suspect(db, b.Slot)
		}
		return out
	}
	for i, a := range res {
		b := batches[i]
		if a.Done > 0 {
			out[i].Last = b.Entries[min(a.Done, len(b.Entries))-1].ID
		}
		if a.Refused != "" {
			out[i].Error, out[i].Gap = a.Refused, strings.HasPrefix(a.Refused, "GAP ")
		}
		if r.tally(a.Errors, a.FirstError, a.Superseded, a.Conflicts, "source", source, "slot", b.Slot) {
			r.pulls.note(db, b.Slot)
		} else {
			r.pulls.settle(db, b.Slot)
		}
	}
	return out
}

// tally counts what an APPLY reported, failed effects (logged with where, key-value pairs),
// superseded effects and conflicts, and reports whether there were conflicts: the caller then
// has the slots pulled (pull.go).
func (r *Replicator) tally(failed int, first string, superseded, conflicts int, where ...any) bool {
	if failed > 0 {
		r.diverged.Add(int64(failed))
		r.log.Warn("remote effects failed here: the DCs' copies differ", append(where, "failed", failed, "first", first)...)
	}
	r.superseded.Add(int64(superseded))
	if conflicts == 0 {
		return false
	}
	r.conflicts.Add(int64(conflicts))
	return true
}

// callArgs builds verb (FCALL, EVALSHA, EVAL) name numkeys keys... argv...
func callArgs(verb, name string, keys []string, argv []any) []string {
	args := make([]string, 0, 3+len(keys)+len(argv))
	args = append(args, verb, name, strconv.Itoa(len(keys)))
	args = append(args, keys...)
	for _, a := range argv {
		if str, ok := a.(string); ok {
			args = append(args, str) // what ApplyArgs and the scripts build: no fmt on these paths
		} else {
			args = append(args, fmt.Sprint(a))
		}
	}
	return args
}

// runScript runs a script (not one of the library's: the full copy's, the pulls', the
// collector's) by its SHA through the router, and by its body when the server does not know it.
func (r *Replicator) runScript(ctx context.Context, db, slot int, sha, body string, keys []string, argv []any) (resp.Value, error) {
	args := callArgs("EVALSHA", sha, keys, argv)
	v, err := r.internal(ctx, db, slot, keys, args)
	if err == nil && v.IsError() && strings.HasPrefix(string(v.Str), "NOSCRIPT") {
		args[0], args[1] = "EVAL", body
		v, err = r.internal(ctx, db, slot, keys, args)
	}
	return v, err
}

// runOwnedScript is runScript for a slot that no migration or failover may concern while the
// script runs (Local.InternalOwned admits it, and a migration's freeze waits for it): it
// reports false, having run nothing, when one does. A script that reads keys it cannot
// declare needs it: during a migration they are on either group.
func (r *Replicator) runOwnedScript(ctx context.Context, db, slot int, sha, body string, keys []string, argv []any) (resp.Value, bool, error) {
	args := callArgs("EVALSHA", sha, keys, argv)
	for {
		parts, _, err := r.cfg.Local.InternalOwned(ctx, db, []int{slot}, func(_, _ []int) [][]string { return [][]string{args} })
		if err == nil {
			err = ownedErr(parts)
		}
		if err != nil || len(parts) == 0 {
			return resp.Value{}, false, err
		}
		v, err := parseReply(args, parts[0].Replies[0])
		if err == nil && v.IsError() && strings.HasPrefix(string(v.Str), "NOSCRIPT") && args[0] != "EVAL" {
			args[0], args[1] = "EVAL", body
			continue
		}
		return v, true, err
	}
}

// runFunc calls fn, a function of the library, through the router; when the server does
// not have the library it loads it and calls fn again, in one round trip.
func (r *Replicator) runFunc(ctx context.Context, db, slot int, fn string, keys []string, argv []any) (resp.Value, error) {
	return r.runCall(ctx, db, slot, keys, callArgs("FCALL", fn, keys, argv))
}

// runCall is runFunc for a call built whole (FCALL <function> <numkeys> KEYS ARGV).
func (r *Replicator) runCall(ctx context.Context, db, slot int, keys, args []string) (resp.Value, error) {
	v, err := r.internal(ctx, db, slot, keys, args)
	if err == nil && FuncMissingReply(v.Raw) {
		raws, err := r.cfg.Local.InternalBatch(ctx, db, slot, keys, [][]string{loadCall, args})
		if err != nil {
			return resp.Value{}, err
		}
		return parseReply(args, raws[1])
	}
	return v, err
}

// internal runs args through the router and parses the reply.
func (r *Replicator) internal(ctx context.Context, db, slot int, keys, args []string) (resp.Value, error) {
	raws, err := r.cfg.Local.InternalBatch(ctx, db, slot, keys, [][]string{args})
	if err != nil {
		return resp.Value{}, err
	}
	return parseReply(args, raws[0])
}

// parseReply parses a raw reply of the router to args, the command that had it (named in the
// error, with the function or script of an FCALL or EVALSHA).
func parseReply(args []string, raw []byte) (resp.Value, error) {
	v, _, ok := resp.Parse(raw)
	if !ok {
		what := args[0]
		if len(args) > 1 && (what == "FCALL" || what == "EVALSHA") {
			what += " " + args[1]
		}
		return resp.Value{}, fmt.Errorf("xdc: unparsable reply to %s (%d bytes)", what, len(raw))
	}
	return v, nil
}

// HandleLast answers the last applied ids from req.Source on req.Slots: read in one pipeline
// per group master for slots no migration covers, through the router for the others.
func (r *Replicator) HandleLast(ctx context.Context, req LastRequest) (LastResponse, error) {
	if err := r.checkSource(req.Source); err != nil {
		return LastResponse{}, err
	}
	if err := checkDB(req.DB); err != nil {
		return LastResponse{}, err
	}
	out := LastResponse{IDs: make([]string, len(req.Slots))}
	st := r.cfg.Cluster.State()
	dc := st.DCs[r.cfg.Cluster.DC()]
	if dc == nil {
		return out, fmt.Errorf("xdc: DC %s has no groups", r.cfg.Cluster.DC())
	}
	moving := map[int]bool{}
	for _, m := range st.Migrations {
		if m.DC == dc.Name {
			for _, rg := range m.Slots {
				for s := rg.From; s <= rg.To; s++ {
					moving[s] = true
				}
			}
		}
	}
	byGroup := map[string][]int{}
	for i, slot := range req.Slots {
		if slot < 0 || slot >= len(tags) {
			return out, fmt.Errorf("xdc: slot %d out of range", slot)
		}
		if g := dc.Groups[dc.Slots[slot]]; g != nil && !moving[slot] {
			byGroup[g.ID] = append(byGroup[g.ID], i)
			continue
		}
		key := InboxKey(slot)
		v, err := r.internal(ctx, req.DB, slot, []string{key}, []string{"HGET", key, req.Source})
		if err == nil && v.IsError() {
			err = errors.New(string(v.Str))
		}
		if err != nil {
			return out, err
		}
		out.IDs[i] = string(v.Str)
	}
	for gid, idx := range byGroup {
		g := dc.Groups[gid]
		pipe := r.client(serverOf(g), req.DB).Pipeline()
		cmds := make([]*redis.StringCmd, len(idx))
		for j, i := range idx {
			cmds[j] = pipe.HGet(ctx, InboxKey(req.Slots[i]), req.Source)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return out, fmt.Errorf("xdc: read inboxes on %s: %w", g.Master, err)
		}
		for j, i := range idx {
			out.IDs[i] = cmds[j].Val()
		}
	}
	return out, nil
}

// HandleAwait waits until every other DC applied req.ID of the slot's outbox, or of the
// group's log when req.Group is set.
func (r *Replicator) HandleAwait(ctx context.Context, req AwaitRequest) (struct{}, error) {
	return struct{}{}, r.awaitHere(ctx, req)
}

// checkSource refuses batches from an unknown DC or from this node's own DC.
func (r *Replicator) checkSource(dc string) error {
	if dc == r.cfg.Cluster.DC() {
		return fmt.Errorf("xdc: entries of DC %s sent to a node of the same DC", dc)
	}
	if r.cfg.Cluster.State().DCs[dc] == nil {
		return fmt.Errorf("xdc: unknown source DC %q", dc)
	}
	return nil
}

func cmpErr(first, err error) error {
	if first == nil {
		return err
	}
	return first
}

// parallel runs f(0..n-1) on at most receiveWorkers goroutines and waits for them.
func parallel(n int, f func(i int)) {
	if n == 1 {
		f(0)
		return
	}
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < min(n, receiveWorkers); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
}
