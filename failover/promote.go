package failover

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/backendacl"
)

// candidate is a replica that may be promoted, with what it said.
type candidate struct {
	addr string
	info Info
}

// errDone means the failover's epoch is over (finished by this node or another).
var errDone = errors.New("failover over")

// execute runs the group's failover of epoch on this node (its executor) until it is over:
// every attempt starts from what the servers say now, so an attempt cut short, or a run of a
// previous executor, is resumed, never repeated blindly.
func (w *Watcher) execute(ctx context.Context, group string, epoch uint64) {
	w.alone(fmt.Sprintf("exec/%s/%d", group, epoch), func() {
		seen := time.Now() // not before the failover's start was committed
		defer func() {
			w.mu.Lock()
			delete(w.held, fmt.Sprintf("%s/%d", group, epoch))
			w.mu.Unlock()
		}()
		lastWhy := ""
		for ctx.Err() == nil {
			st, g := w.group(group)
			if g == nil || g.Failover == nil || g.Failover.Epoch != epoch || g.Failover.Executor != w.cl.ID() {
				return
			}
			f := *g.Failover
			if !f.Planned {
				w.hangForTest(ctx, f, "started", "")
			}
			start := time.Now()
			var to, why string
			var err error
			if f.Planned {
				to, why, err = w.switchover(ctx, st, g, f)
			} else {
				to, why, err = w.promote(ctx, st, g, f, seen)
			}
			if errors.Is(err, errDone) {
				return
			}
			if err == nil && why == "" {
				w.failovers.Add(1)
				w.log.Warn("failover done", "group", group, "epoch", epoch, "from", f.From, "to", to, "planned", f.Planned,
					"reason", f.Reason, "took", time.Since(start).Round(time.Millisecond), "start_index", f.StartIndex)
				w.awaitApplied(ctx, group, epoch)
				return
			}
			if err != nil {
				why = err.Error()
			}
			if f.Planned && time.Since(seen) >= w.cfg.SwitchoverGiveUp && w.giveUpSwitchover(ctx, g, f, why) {
				return
			}
			if why != lastWhy {
				lastWhy = why
				w.log.Warn("failover cannot go on yet", "group", group, "epoch", epoch, "why", why)
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_ = w.cl.Propose(pctx, &fsm.FinishFailover{DC: w.cl.DC(), Group: group, Epoch: epoch, Stalled: why, Executor: w.cl.ID()})
				cancel()
			}
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	})
}

// giveUpSwitchover ends the planned switchover f of g, which could not go on for
// SwitchoverGiveUp (why: the last attempt's reason). It cancels it when that leaves the group
// as it was: the old master answers as a master (a replica that an attempt promoted without
// the old master following it got no write, the requests being held, and the watchers point
// it back), or it does not answer and no replica this switchover promoted answers as a master
// (the probes then vote it down and an unplanned failover starts, which promotes none of
// another's promotion). When the old master does not answer and the target recorded before
// the pause (f.Promoting, the same process) answers as a master, it commits the target: it
// had caught up with the old master before its promotion. Otherwise (the old master follows
// a replica) the switchover keeps trying.
func (w *Watcher) giveUpSwitchover(ctx context.Context, g *fsm.Group, f fsm.Failover, why string) bool {
	infos, errs := w.infos(ctx, g, append([]string{f.From}, g.Replicas...))
	switch {
	case errs[0] == nil && infos[0].Role == "master":
	case errs[0] != nil:
		for i, a := range g.Replicas {
			if errs[i+1] == nil && infos[i+1].Role == "master" && a == f.Promoting &&
				f.PromotingRunID != "" && infos[i+1].RunID == f.PromotingRunID {
				w.log.Warn("switchover committed without the old master: it does not answer, and the target was promoted",
					"group", g.ID, "epoch", f.Epoch, "to", a, "why", why)
				err := w.finish(ctx, g, f, a, 0)
				if err != nil && !errors.Is(err, errDone) {
					w.log.Warn("switchover not committed yet", "group", g.ID, "epoch", f.Epoch, "err", err)
					return false
				}
				if err == nil { // not when another executor or epoch ended it: its master may differ
					w.pointReplicas(ctx, g, a, f.From)
				}
				return true
			}
		}
	default:
		return false
	}
	w.log.Warn("switchover cancelled: it could not go on", "group", g.ID, "epoch", f.Epoch, "for", w.cfg.SwitchoverGiveUp, "why", why)
	if err := w.finish(ctx, g, f, f.From, 0); err != nil && !errors.Is(err, errDone) {
		w.log.Warn("switchover not cancelled yet", "group", g.ID, "epoch", f.Epoch, "err", err)
		return false
	}
	return true
}

// awaitApplied waits (at most 5 s) until this node's state shows the group's failover of epoch
// over: the commit returned at the leader, and a new run must not start from an older state.
func (w *Watcher) awaitApplied(ctx context.Context, group string, epoch uint64) {
	deadline := time.Now().Add(5 * time.Second)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		if _, g := w.group(group); g == nil || g.Failover == nil || g.Failover.Epoch != epoch {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// infos asks the servers for INFO in parallel.
func (w *Watcher) infos(ctx context.Context, g *fsm.Group, addrs []string) ([]Info, []error) {
	ctx, cancel := context.WithTimeout(ctx, w.adm.timeout)
	defer cancel()
	out, errs := make([]Info, len(addrs)), make([]error, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = w.adm.info(ctx, g, a)
		}()
	}
	wg.Wait()
	return out, errs
}

// promote runs one attempt of an unplanned failover: pick the replica that was in sync with the
// highest offset, promote it, commit the new master, point the other replicas at it. It
// returns why it cannot (why), or an error.
func (w *Watcher) promote(ctx context.Context, st *fsm.State, g *fsm.Group, f fsm.Failover, seen time.Time) (string, string, error) {
	mda := st.SettingDuration("master_down_after")
	if f.Promoting == "" {
		// Every node holds the group before the servers are read, not between the reading and
		// the promotion: the hold may take seconds (a node that does not answer the drain),
		// in which a master that was only slow answers again (the failover is then
		// cancelled below) or a replica falls behind another (until session 43 the ranking
		// and the cancel check went by what the servers said before the hold). An attempt
		// that recorded a replica being promoted held the group already, and so did one that
		// confirmed the hold: the nodes keep holding while the failover runs.
		key := fmt.Sprintf("%s/%d", g.ID, f.Epoch)
		w.mu.Lock()
		held := w.held[key]
		w.mu.Unlock()
		if !held {
			if err := w.holdEverywhere(ctx, st, g, f, seen); err != nil {
				return "", "", err
			}
			w.mu.Lock()
			w.held[key] = true
			w.mu.Unlock()
		}
	}
	old, _ := w.server(f.From)
	downFor := time.Since(old.lastOK)
	infos, errs := w.infos(ctx, g, append([]string{f.From}, g.Replicas...))
	// The old master answers again as the same process, and no replica was promoted yet:
	// nothing was lost and nothing moved, so the failover is cancelled. The same process is
	// the run id the failover recorded at its start, not the one the probes saw last: those
	// see a restarted process's new id, and a master restarted empty must not cancel it.
	// A replica in the master role was promoted by this failover only when it is the one
	// recorded before the promotion, as the same process: any other (a replica restarted
	// without replicaof, empty) would make the others copy it.
	promoted := ""
	for i, a := range g.Replicas {
		if errs[i+1] == nil && infos[i+1].Role == "master" && a == f.Promoting &&
			f.PromotingRunID != "" && infos[i+1].RunID == f.PromotingRunID {
			promoted = a
		}
	}
	// A group without replicas has nothing to promote: its master answering again, as any
	// process, ends the failover (what a restart lost is lost either way).
	if errs[0] == nil && infos[0].Role == "master" && promoted == "" &&
		(f.FromRunID != "" && infos[0].RunID == f.FromRunID || len(g.Replicas) == 0) {
		w.log.Warn("failover cancelled: the master answers again, same process", "group", g.ID, "master", f.From)
		return "", "", w.finish(ctx, g, f, f.From, 0)
	}
	var cands []candidate
	var why []string
	for i, a := range g.Replicas {
		in, err := infos[i+1], errs[i+1]
		switch {
		case promoted != "":
			// A previous attempt promoted it: resume from there.
		case err != nil:
			why = append(why, fmt.Sprintf("%s does not answer (%v)", a, err))
		case g.PriorityOf(a) == 0:
			why = append(why, a+" has priority 0")
		case in.Role == "master":
			why = append(why, a+" answers as a master, but this failover did not promote it (restarted without replicaof?)")
		case in.Loading || in.Syncing:
			why = append(why, a+" is loading its data")
		case in.Role != "slave" || in.MasterAddr != f.From:
			why = append(why, fmt.Sprintf("%s replicates %q, not %s", a, in.MasterAddr, f.From))
		case !in.LinkUp && in.LinkDownSec > int64((downFor+10*mda)/time.Second):
			why = append(why, fmt.Sprintf("%s lost its master %ds ago, long before the master went down", a, in.LinkDownSec))
		case neverSynced(in):
			// Redis answers -1 for a link that never came up since the server started or was
			// pointed at this master: an empty replica (new, a replaced disk, a first full copy
			// that failed), which promoted would have the old master copy it once it is back.
			why = append(why, a+" has not synced with the master since it started, and holds no key")
		default:
			cands = append(cands, candidate{a, in})
		}
	}
	if promoted != "" {
		cands = []candidate{{promoted, Info{Role: "master"}}}
	}
	if len(cands) == 0 {
		if len(g.Replicas) == 0 {
			return "", "the group has no replica: it stays down until its master is back or an operator changes the group", nil
		}
		return "", "no usable replica: " + strings.Join(why, "; "), nil
	}
	sortCandidates(g, cands)
	to := cands[0].addr
	if promoted == "" {
		// Recorded first, so that a later attempt knows the master it finds was this one.
		err := w.cl.Propose(ctx, &fsm.FinishFailover{DC: w.cl.DC(), Group: g.ID, Epoch: f.Epoch,
			Executor: w.cl.ID(), Promoting: to, PromotingRunID: cands[0].info.RunID})
		var fe *fsm.Error
		if errors.As(err, &fe) && fe.Code == "busy" {
			return "", "", errDone
		}
		if err != nil {
			return "", "", fmt.Errorf("record %s as the replica being promoted: %w", to, err)
		}
	}
	w.provision(ctx, g, to)
	if err := w.adm.replicaOf(ctx, g, to, ""); err != nil {
		return "", "", fmt.Errorf("REPLICAOF NO ONE on %s: %w", to, err)
	}
	w.hangForTest(ctx, f, "promoted", to)
	// The old master's stream the new one never got: writes acknowledged at DC_ONE, lost.
	var lost int64
	if promoted == "" && old.info.Role == "master" {
		lost = max(old.info.Offset-cands[0].info.Offset, 0)
	}
	w.log.Warn("replica promoted", "group", g.ID, "new_master", to, "offset", cands[0].info.Offset,
		"old_master", f.From, "old_master_offset_last_seen", old.info.Offset, "lost_bytes_at_least", lost,
		"master_down_for", downFor.Round(time.Millisecond))
	if err := w.finish(ctx, g, f, to, lost); err != nil {
		return "", "", err
	}
	w.pointReplicas(ctx, g, to, f.From)
	return to, "", nil
}

// neverSynced reports whether in, a replica's INFO, shows a link to its master that never came
// up (master_link_down_since_seconds -1) and no data of its own: no offset (a replica restarted
// from its own RDB reports the offset it loaded; from an AOF, 1) and no key (one restarted from
// its AOF holds its keys, and stays a candidate).
func neverSynced(in Info) bool {
	return !in.LinkUp && in.LinkDownSec < 0 && in.Offset <= 1 && in.Keys == 0
}

// provision creates redraft's backend ACL users on the server about to be promoted (ACL users
// are not replicated): the routers' first connections to the new master then authenticate at
// once instead of provisioning after a refused AUTH. Best effort: they provision anyway.
func (w *Watcher) provision(ctx context.Context, g *fsm.Group, addr string) {
	if err := backendacl.ForGroup(g).Provision(ctx, addr); err != nil {
		w.log.Warn("backend ACL users not created on the new master yet (the routers retry)", "group", g.ID, "server", addr, "err", err)
	}
}

// finish commits the end of the failover; a refusal because it is over already is errDone.
func (w *Watcher) finish(ctx context.Context, g *fsm.Group, f fsm.Failover, to string, lost int64) error {
	err := w.cl.Propose(ctx, &fsm.FinishFailover{DC: w.cl.DC(), Group: g.ID, Epoch: f.Epoch, NewMaster: to, LostBytes: lost,
		Executor: w.cl.ID()})
	var fe *fsm.Error
	if errors.As(err, &fe) && fe.Code == "busy" || err != nil && strings.Contains(err.Error(), "no failover of epoch") {
		return errDone
	}
	if err == nil && to == f.From {
		return errDone
	}
	return err
}

// pointReplicas makes the group's other replicas replicate to (best effort: the watchers fence
// whatever is missed).
func (w *Watcher) pointReplicas(ctx context.Context, g *fsm.Group, to, skip string) {
	for _, a := range g.Replicas {
		if a == to || a == skip {
			continue
		}
		if err := w.adm.replicaOf(ctx, g, a, to); err != nil {
			w.log.Warn("replica not pointed at the new master yet (the watchers retry)", "group", g.ID, "server", a, "err", err)
		}
	}
}

// switchover runs one attempt of a planned switchover: every node of the DC holds the group's
// requests and drains them, the master pauses writes, the target catches up to the master's
// offset, then it is promoted, the old master follows it, and the new master is committed.
func (w *Watcher) switchover(ctx context.Context, st *fsm.State, g *fsm.Group, f fsm.Failover) (string, string, error) {
	t0 := time.Now()
	w.drainAll(ctx, st, g, f)
	tDrained := time.Now()
	infos, errs := w.infos(ctx, g, append([]string{f.From}, g.Replicas...))
	if errs[0] != nil {
		return "", fmt.Sprintf("the master %s does not answer (%v): a switchover needs it", f.From, errs[0]), nil
	}
	// A previous attempt (a dead executor's, taken over) promoted a replica and made the old
	// master follow it: only the commit is left.
	for i, a := range g.Replicas {
		if infos[0].Role == "slave" && infos[0].MasterAddr == a && errs[i+1] == nil && infos[i+1].Role == "master" {
			w.log.Warn("switchover resumed: the old master already follows the new one", "group", g.ID, "to", a)
			if err := w.finish(ctx, g, f, a, 0); err != nil {
				return "", "", err
			}
			w.pointReplicas(ctx, g, a, f.From)
			return a, "", nil
		}
	}
	to := f.To
	if to == "" {
		var cands []candidate
		for i, a := range g.Replicas {
			if errs[i+1] == nil && infos[i+1].Role == "slave" && infos[i+1].MasterAddr == f.From && infos[i+1].LinkUp && g.PriorityOf(a) > 0 {
				cands = append(cands, candidate{a, infos[i+1]})
			}
		}
		if len(cands) == 0 {
			return "", "no replica is in sync with the master", nil
		}
		sortCandidates(g, cands)
		to = cands[0].addr
	}
	// The target is recorded before the pause (a Raft commit, off the writes' path), as an
	// unplanned failover records the replica it promotes: should the old master die once the
	// target is promoted, giveUpSwitchover commits the target, the process this switchover
	// promoted (until session 45 the switchover then held the group's requests for good).
	recorded := false
	for i, a := range g.Replicas {
		if a != to || errs[i+1] != nil || infos[i+1].RunID == "" {
			continue
		}
		recorded = true
		if rid := infos[i+1].RunID; f.Promoting != to || f.PromotingRunID != rid {
			err := w.cl.Propose(ctx, &fsm.FinishFailover{DC: w.cl.DC(), Group: g.ID, Epoch: f.Epoch,
				Executor: w.cl.ID(), Promoting: to, PromotingRunID: rid})
			var fe *fsm.Error
			if errors.As(err, &fe) && fe.Code == "busy" {
				return "", "", errDone
			}
			if err != nil {
				return "", "", fmt.Errorf("record %s as the switchover's target: %w", to, err)
			}
		}
	}
	if !recorded { // an earlier attempt's record would then name another process
		return "", fmt.Sprintf("the target %s's run id is not known (INFO failed): it cannot be recorded before its promotion", to), nil
	}
	m := w.adm.admin(g, f.From)
	// The safety net: a write that reached the master after the drain waits here and fails
	// with READONLY once the master follows the new one; it is never acknowledged and lost.
	if err := m.Do(ctx, "CLIENT", "PAUSE", "5000", "WRITE").Err(); err != nil {
		return "", "", fmt.Errorf("CLIENT PAUSE on %s: %w", f.From, err)
	}
	unpause := func() { _ = m.Do(context.WithoutCancel(ctx), "CLIENT", "UNPAUSE").Err() }
	target, caught := int64(-1), false
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		in, errs := w.infos(ctx, g, []string{f.From, to})
		if errs[0] == nil && errs[1] == nil && in[1].Role == "slave" && in[1].MasterAddr == f.From {
			target = in[0].Offset
			if in[1].Offset >= target {
				caught = true
				break
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	if !caught {
		unpause()
		w.log.Warn("switchover cancelled: the target did not catch up with the master", "group", g.ID, "to", to, "master_offset", target)
		if err := w.finish(ctx, g, f, f.From, 0); err != nil && !errors.Is(err, errDone) {
			return "", "", err
		}
		return "", "", errDone
	}
	tCaught := time.Now()
	w.provision(ctx, g, to)
	if err := w.adm.replicaOf(ctx, g, to, ""); err != nil {
		unpause()
		return "", "", fmt.Errorf("REPLICAOF NO ONE on %s: %w", to, err)
	}
	if err := w.adm.replicaOf(ctx, g, f.From, to); err != nil {
		// Unpaused, an old master that still answers as one takes writes beside the new one
		// (from a node that did not answer the drain) until a watcher fences it, and those are
		// lost when it follows. The switchover is undone instead: the target follows the old
		// master again, which stays the master. One that does not answer takes no write; the
		// watchers fence it when it is back. (Until session 45 both cases went on.)
		// A command that timed out may still run on the server (undoing at once would then
		// have the two servers follow each other): it is sent again, the same command, a few
		// times; a refusal, or failures throughout, leave an old master that still answers as
		// one, and the switchover is undone.
		var refused redis.Error
		for try := 0; try < 3 && err != nil && !errors.As(err, &refused) && ctx.Err() == nil; try++ {
			err = w.adm.replicaOf(ctx, g, f.From, to)
		}
		in, ierrs := w.infos(ctx, g, []string{f.From})
		if err != nil && ierrs[0] == nil && in[0].Role == "master" {
			w.log.Warn("switchover cancelled: the old master could not be made a replica", "group", g.ID, "server", f.From, "err", err)
			if rerr := w.adm.replicaOf(ctx, g, to, f.From); rerr != nil {
				w.log.Warn("the target not made a replica again yet (the watchers fence it)", "group", g.ID, "server", to, "err", rerr)
			}
			unpause()
			if err := w.finish(ctx, g, f, f.From, 0); err != nil && !errors.Is(err, errDone) {
				return "", "", err
			}
			return "", "", errDone
		}
		if err != nil {
			w.log.Warn("old master not made a replica yet (the watchers fence it)", "group", g.ID, "server", f.From, "err", err)
		}
	}
	// The other replicas follow the new master before writes resume on it: a DC_QUORUM
	// write's WAIT then finds them attaching, instead of waiting for their next ACK (a second).
	w.pointReplicas(ctx, g, to, f.From)
	w.hangForTest(ctx, f, "switched", to)
	unpause()
	if err := w.finish(ctx, g, f, to, 0); err != nil {
		return "", "", err
	}
	w.log.Warn("switchover timings", "group", g.ID, "to", to, "offset", target,
		"drain", tDrained.Sub(t0).Round(time.Microsecond), "catch_up", tCaught.Sub(tDrained).Round(time.Microsecond),
		"promote_and_commit", time.Since(tCaught).Round(time.Microsecond))
	return to, "", nil
}

// holdEverywhere makes sure, before an unplanned failover promotes a replica, that no node of
// the DC still routes the group's requests to the old master: every node that answers the
// drain call holds them (it applied the failover's start); when one does not answer (cut off
// from the others, maybe still reaching the old master), the executor waits until LeaseWait
// has passed since it first saw the failover, by when a node that never applied the start
// has stopped acting on its state. Without this, a node cut off from the Raft leader but not
// from the old master went on acknowledging writes there, lost once it was fenced.
func (w *Watcher) holdEverywhere(ctx context.Context, st *fsm.State, g *fsm.Group, f fsm.Failover, seen time.Time) error {
	if w.drainAll(ctx, st, g, f) {
		return nil
	}
	left := w.cfg.LeaseWait - time.Since(seen)
	if left <= 0 {
		return nil
	}
	w.log.Warn("a node of the DC did not confirm it holds the group: waiting out its lease before promoting",
		"group", g.ID, "wait", left.Round(time.Millisecond))
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(left):
		return nil
	}
}

// drainAll asks every node of the DC (this one included) to hold and drain the group's
// requests, in parallel, for at most two seconds; a node that does not answer is logged (the
// master's CLIENT PAUSE still keeps its writes from being acknowledged and lost). It reports
// whether every node answered.
func (w *Watcher) drainAll(ctx context.Context, st *fsm.State, g *fsm.Group, f fsm.Failover) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req := drainRequest{Group: g.ID, Epoch: f.Epoch}
	var wg sync.WaitGroup
	var failed atomic.Bool
	for _, id := range st.DCNodes(w.cl.DC()) {
		n := st.Nodes[id]
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if id == w.cl.ID() {
				err = w.drainLocal(ctx, req)
			} else {
				err = w.cl.CallPeer(ctx, n.Peer, RPCDrain, req, &struct{}{})
			}
			if err != nil {
				w.log.Warn("node did not drain the group for the failover", "group", g.ID, "node", id, "err", err)
				failed.Store(true)
			}
		}()
	}
	wg.Wait()
	return !failed.Load()
}
