package xdc

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

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

// applyBatch applies one slot's batch in order and stops at the first failure.
func (r *Replicator) applyBatch(ctx context.Context, source string, db int, b WireBatch) ApplyResult {
	res := ApplyResult{Slot: b.Slot}
	if b.Slot < 0 || b.Slot >= len(tags) {
		res.Error = fmt.Sprintf("slot %d out of range", b.Slot)
		return res
	}
	prev := b.Prev
	for _, we := range b.Entries {
		e := Entry{ID: we.ID, DC: source, Cmds: we.Cmds}
		keys, argv := ApplyArgs(b.Slot, e, prev)
		v, err := r.runScript(ctx, db, b.Slot, ApplySHA, applyLua, keys, argv)
		if err == nil && v.IsError() {
			msg := string(v.Str)
			if strings.HasPrefix(msg, "GAP ") {
				res.Gap = true
			}
			err = errors.New(msg)
		}
		if err != nil {
			res.Error = err.Error()
			if res.Last == "" {
				res.Last = prev
			}
			return res
		}
		if len(v.Elems) == 3 && v.Elems[1].Int > 0 {
			r.diverged.Add(v.Elems[1].Int)
		}
		prev, res.Last = e.ID, e.ID
	}
	if res.Last == "" {
		res.Last = prev
	}
	return res
}

// runScript runs a script by its SHA through the router, and by its body when the server
// does not know it.
func (r *Replicator) runScript(ctx context.Context, db, slot int, sha, body string, keys []string, argv []any) (resp.Value, error) {
	args := make([]string, 0, 3+len(keys)+len(argv))
	args = append(args, "EVALSHA", sha, strconv.Itoa(len(keys)))
	args = append(args, keys...)
	for _, a := range argv {
		args = append(args, fmt.Sprint(a))
	}
	v, err := r.internal(ctx, db, slot, keys, args)
	if err == nil && v.IsError() && strings.HasPrefix(string(v.Str), "NOSCRIPT") {
		args[0], args[1] = "EVAL", body
		v, err = r.internal(ctx, db, slot, keys, args)
	}
	return v, err
}

// internal runs args through the router and parses the reply.
func (r *Replicator) internal(ctx context.Context, db, slot int, keys, args []string) (resp.Value, error) {
	raw, err := r.cfg.Local.Internal(ctx, db, slot, keys, args)
	if err != nil {
		return resp.Value{}, err
	}
	v, _, ok := resp.Parse(raw)
	if !ok {
		return resp.Value{}, fmt.Errorf("xdc: unparsable reply to %s", args[0])
	}
	return v, nil
}

// HandleLast answers the last applied ids from req.Source on req.Slots.
func (r *Replicator) HandleLast(ctx context.Context, req LastRequest) (LastResponse, error) {
	if err := r.checkSource(req.Source); err != nil {
		return LastResponse{}, err
	}
	out := LastResponse{IDs: make([]string, len(req.Slots))}
	var mu sync.Mutex
	var first error
	parallel(len(req.Slots), func(i int) {
		slot := req.Slots[i]
		if slot < 0 || slot >= len(tags) {
			return
		}
		key := InboxKey(slot)
		v, err := r.internal(ctx, req.DB, slot, []string{key}, []string{"HGET", key, req.Source})
		if err == nil && v.IsError() {
			err = errors.New(string(v.Str))
		}
		if err != nil {
			mu.Lock()
			first = cmpErr(first, err)
			mu.Unlock()
			return
		}
		if !v.IsNull() {
			out.IDs[i] = string(v.Str)
		}
	})
	return out, first
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
