package failover

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/redraft/redraft/fsm"
)

// Executor hand-over (docs/failover.md). A failover is run by one node, its executor. Every
// other node of the DC asks the executor, on every probe, whether it runs the failover (the
// peer call RPCExecuting: it answers yes when its current state names it the executor). When
// the executor has not said so for master_down_after, or is no longer a node of the DC, the
// node commits TakeOverFailover naming itself, and from then on runs the failover (after a gap
// in this node's probes the wait starts again: watcher.go, probe): every step
// starts from what the servers say, so a replica the dead executor promoted is committed, not
// replaced. The nodes of the DC wait a little longer each in id order, so usually one proposes.

// RPCExecuting is the peer call that asks a node whether it runs a group's failover.
const RPCExecuting = "failover.executing"

// executingRequest asks whether the node runs the group's failover of Epoch.
type executingRequest struct {
	Group string `json:"group"`
	Epoch uint64 `json:"epoch"`
}

// executingReply says whether it does (it is acting and its state names it the executor).
type executingReply struct {
	Executing bool `json:"executing"`
}

// execWatch is what a node knows of the executor of a group's failover.
type execWatch struct {
	epoch    uint64
	executor string
	seen     time.Time // its last "executing" answer (when this node started watching before one)
	lastErr  string
}

// handleExecuting answers RPCExecuting.
func (w *Watcher) handleExecuting(_ context.Context, body json.RawMessage) (any, error) {
	var req executingRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("failover: bad executing request: %w", err)
	}
	_, g := w.group(req.Group)
	ok := g != nil && g.Failover != nil && g.Failover.Epoch == req.Epoch && g.Failover.Executor == w.cl.ID()
	return executingReply{Executing: ok}, nil
}

// watchExecutor checks that the executor of g's failover runs it, and takes the failover over
// when it has not confirmed so for master_down_after (plus this node's rank among the others).
func (w *Watcher) watchExecutor(ctx context.Context, st *fsm.State, g *fsm.Group) {
	f := g.Failover
	me := w.cl.ID()
	w.mu.Lock()
	ew := w.execs[g.ID]
	if ew == nil || ew.epoch != f.Epoch || ew.executor != f.Executor {
		ew = &execWatch{epoch: f.Epoch, executor: f.Executor, seen: time.Now()}
		w.execs[g.ID] = ew
	}
	since, lastErr := time.Since(ew.seen), ew.lastErr
	w.mu.Unlock()
	n := st.Nodes[f.Executor]
	why := ""
	if n == nil || n.DC != w.cl.DC() {
		why = fmt.Sprintf("%s is no longer a node of %s", f.Executor, w.cl.DC())
	} else {
		w.askExecutor(ctx, g.ID, f.Epoch, f.Executor, n.Peer)
		others := slices.DeleteFunc(st.DCNodes(w.cl.DC()), func(id string) bool { return id == f.Executor })
		wait := st.SettingDuration("master_down_after") + time.Duration(max(slices.Index(others, me), 0))*2*w.cfg.Interval
		if since < wait {
			return
		}
		why = fmt.Sprintf("%s has not confirmed running it for %s (%s)", f.Executor, since.Round(time.Millisecond), lastErr)
	}
	w.log.Warn("failover executor dead: taking the failover over", "group", g.ID, "epoch", f.Epoch,
		"executor", f.Executor, "why", why)
	w.propose(ctx, "takeover/"+g.ID, &fsm.TakeOverFailover{DC: w.cl.DC(), Group: g.ID, Epoch: f.Epoch,
		From: f.Executor, Executor: me, Why: why})
}

// askExecutor asks the executor, in the background, whether it runs the failover, and
// records a yes.
func (w *Watcher) askExecutor(ctx context.Context, group string, epoch uint64, executor, peer string) {
	w.alone("executing/"+group, func() {
		cctx, cancel := context.WithTimeout(ctx, w.adm.timeout)
		defer cancel()
		var r executingReply
		err := w.cl.CallPeer(cctx, peer, RPCExecuting, executingRequest{Group: group, Epoch: epoch}, &r)
		if err == nil && !r.Executing {
			err = fmt.Errorf("%s says it does not run the failover (not acting, or behind)", executor)
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if ew := w.execs[group]; ew != nil && ew.epoch == epoch && ew.executor == executor {
			if err != nil {
				ew.lastErr = err.Error()
			} else {
				ew.seen, ew.lastErr = time.Now(), ""
			}
		}
	})
}

// testHang is the environment variable REDRAFT_FAILOVER_TEST_HANG, for the integration tests
// of the hand-over only: "started" or "promoted" makes an unplanned failover's first executor
// stop at that point (after the start is committed; after REPLICAOF NO ONE), "switched" a
// switchover's (after the old master follows the new one, before the commit), until the test
// kills it.
var testHang = os.Getenv("REDRAFT_FAILOVER_TEST_HANG")

// hangForTest blocks until ctx ends when testHang names at and f was never taken over.
func (w *Watcher) hangForTest(ctx context.Context, f fsm.Failover, at, detail string) {
	if testHang != at || f.TakeOvers > 0 {
		return
	}
	w.log.Warn("test hook: failover executor stops here", "at", at, "epoch", f.Epoch, "detail", detail)
	<-ctx.Done()
}
