package xdc

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/router/resp"
)

// receiveWorkers bounds the slots a receiving node applies in parallel for one request.
const receiveWorkers = 8

// HandleApply applies req's batches through this node's router: each batch in order, one
// APPLY per entry (which skips what was applied and refuses a gap), batches of different
// slots in parallel. It answers one result per batch.
func (r *Replicator) HandleApply(ctx context.Context, req ApplyRequest) (ApplyResponse, error) {
	if err := r.checkSource(req.Source); err != nil {
		return ApplyResponse{}, err
	}
	out := ApplyResponse{Results: make([]ApplyResult, len(req.Batches))}
	parallel(len(req.Batches), func(i int) {
		b := req.Batches[i]
		out.Results[i] = r.applyBatch(ctx, req.Source, req.DB, b)
	})
	return out, nil
}

// applyBatch applies one slot's batch in order, in one round trip (each APPLY chained to the
// one before it, so a failure stops every later entry), and reports how far it got.
func (r *Replicator) applyBatch(ctx context.Context, source string, db int, b WireBatch) ApplyResult {
	res := ApplyResult{Slot: b.Slot, Last: b.Prev}
	if b.Slot < 0 || b.Slot >= len(tags) {
		res.Error = fmt.Sprintf("slot %d out of range", b.Slot)
		return res
	}
	if len(b.Entries) == 0 {
		return res
	}
	r.gc.markHot(db, b.Slot)
	var keys []string
	cmds := make([][]string, len(b.Entries))
	prev := b.Prev
	for i, we := range b.Entries {
		ks, argv := ApplyArgs(b.Slot, Entry{ID: we.ID, DC: source, TS: we.TS, Cmds: we.Cmds}, prev, "")
		keys = append(keys, ks...)
		cmds[i] = scriptCall(ApplySHA, ks, argv)
		prev = we.ID
	}
	replies, err := r.cfg.Local.InternalBatch(ctx, db, b.Slot, keys, cmds)
	if err == nil && len(replies) > 0 && strings.HasPrefix(string(replies[0]), "-NOSCRIPT") {
		for _, c := range cmds {
			c[0], c[1] = "EVAL", applyLua
		}
		replies, err = r.cfg.Local.InternalBatch(ctx, db, b.Slot, keys, cmds)
	}
	if err != nil {
		res.Error = err.Error()
		return res
	}
	for i, raw := range replies {
		v, _, ok := resp.Parse(raw)
		if !ok {
			res.Error = "unparsable APPLY reply"
			return res
		}
		if v.IsError() {
			res.Error, res.Gap = string(v.Str), strings.HasPrefix(string(v.Str), "GAP ")
			return res
		}
		if len(v.Elems) == 5 {
			if n := v.Elems[1].Int; n > 0 {
				r.diverged.Add(n)
				r.log.Warn("remote effects failed here: the DCs' copies differ", "source", source, "slot", b.Slot, "entry", b.Entries[i].ID, "failed", n, "first", string(v.Elems[2].Str))
			}
			r.superseded.Add(v.Elems[3].Int)
			if v.Elems[4].Int > 0 {
				r.conflicts.Add(v.Elems[4].Int)
				r.pulls.note(db, b.Slot)
			}
		}
		res.Last = b.Entries[i].ID
	}
	return res
}

// scriptCall builds EVALSHA sha numkeys keys... argv...
func scriptCall(sha string, keys []string, argv []any) []string {
	args := make([]string, 0, 3+len(keys)+len(argv))
	args = append(args, "EVALSHA", sha, strconv.Itoa(len(keys)))
	args = append(args, keys...)
	for _, a := range argv {
		args = append(args, fmt.Sprint(a))
	}
	return args
}

// runScript runs a script by its SHA through the router, and by its body when the server
// does not know it.
func (r *Replicator) runScript(ctx context.Context, db, slot int, sha, body string, keys []string, argv []any) (resp.Value, error) {
	args := scriptCall(sha, keys, argv)
	v, err := r.internal(ctx, db, slot, keys, args)
	if err == nil && v.IsError() && strings.HasPrefix(string(v.Str), "NOSCRIPT") {
		args[0], args[1] = "EVAL", body
		v, err = r.internal(ctx, db, slot, keys, args)
	}
	return v, err
}

// internal runs args through the router and parses the reply.
func (r *Replicator) internal(ctx context.Context, db, slot int, keys, args []string) (resp.Value, error) {
	raws, err := r.cfg.Local.InternalBatch(ctx, db, slot, keys, [][]string{args})
	if err != nil {
		return resp.Value{}, err
	}
	v, _, ok := resp.Parse(raws[0])
	if !ok {
		return resp.Value{}, fmt.Errorf("xdc: unparsable reply to %s", args[0])
	}
	return v, nil
}

// HandleLast answers the last applied ids from req.Source on req.Slots: read in one pipeline
// per group master for slots no migration covers, through the router for the others.
func (r *Replicator) HandleLast(ctx context.Context, req LastRequest) (LastResponse, error) {
	if err := r.checkSource(req.Source); err != nil {
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

// HandleAwait waits until every other DC applied req.ID of the slot's outbox.
func (r *Replicator) HandleAwait(ctx context.Context, req AwaitRequest) (struct{}, error) {
	return struct{}{}, r.awaitLocal(ctx, req.DB, req.Slot, req.ID, msDuration(req.TimeoutMS))
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
