package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/redraft/redraft/fsm"
)

// The state a node acts on (DESIGN.md, "Which cluster state a node acts on"; node/DESIGN.md,
// "Acting on current state"). Raft hands every node the same sequence of states, but a node that
// restarts replays its snapshot and older entries before it reaches the present, and a node cut
// off from the leader keeps its last state while the others move on. This file is the one place
// that decides whether the node's applied state is current enough to act on, and hands only such
// states to the data plane and the background duties (its subscribers).
//
// The rule:
//   - After a start, and whenever the node stopped acting, it learns the leader's applied index
//     (readIndex: the leader confirms its leadership with a Raft barrier, then answers the index of
//     the last command it applied) and waits until it has applied at least that far. Only then
//     does it act. A node that knows no leader, or cannot reach it, does not act.
//   - While acting, the node holds a lease: it is the leader, or it heard from the leader within
//     LeaseTimeout and its log keeps up with the leader's (every index the leader had applied
//     when asked, about once a second, is applied here within LeaseTimeout: heartbeats alone
//     renew the contact of a follower whose log appends fail, a full disk). When the lease
//     lapses it stops acting at once (subscribers are told to hold) and starts over with
//     readIndex.
//   - The leader removes a node from Raft first and commits its removal from the cluster state
//     (which releases the migration barriers it held) only RemoveGrace later, when the removed
//     node's lease has lapsed for certain, whether or not it could be told.

// LeaseTimeout is how long a follower (or candidate) keeps acting on its state after it last
// heard from the leader. Heartbeats come every HeartbeatTimeout/10 (100 ms); an election takes
// 1-2 s.
const LeaseTimeout = 3 * time.Second

// RemoveGrace is how long the leader waits between taking a node out of Raft and committing its
// removal from the cluster state: the node's lease (LeaseTimeout) has then lapsed even if it is
// still running and cut off, plus the time a deposed leader may take to step down
// (LeaderLeaseTimeout, 1 s) and a margin of 1 s for clock rates and scheduling.
const RemoveGrace = LeaseTimeout + 2*time.Second

// readIndexWait bounds one readIndex round trip and the catch-up that follows before the reason
// is refreshed and the leader asked again.
const readIndexWait = 5 * time.Second

// ErrNotCurrent is the family of reasons a node does not act on its state (errors.Is works on
// every reason the gate gives).
var ErrNotCurrent = errors.New("not current")

// notCurrent is why the node does not act on its state; Error is what clients are told.
type notCurrent struct{ msg string }

func (e *notCurrent) Error() string        { return e.msg }
func (e *notCurrent) Is(target error) bool { return target == ErrNotCurrent }

// CurrentFunc receives the state to act on (err nil), or the reason to hold (st nil): keyed
// requests wait, bounded, then answer err's text; background duties stop.
type CurrentFunc func(st *fsm.State, err error)

// current is the gate between the applied state and what the node acts on.
type current struct {
	mu        sync.Mutex // serialises publishing; taken inside stateMachine.mu when applying
	maxFormat int        // the highest data format this build runs: a state above it is not acted on
	acting    bool
	reason    error
	subs      []CurrentFunc

	// state is what Current returns: the applied state while acting, an empty one otherwise.
	state   atomic.Pointer[fsm.State]
	target  atomic.Uint64 // the leader's index learned by the last readIndex
	since   atomic.Int64  // unix nanos the node last started or stopped acting
	changes atomic.Uint64 // how often the node stopped acting after it had acted

	progress logProgress
}

// logProgress is the lease's check that a follower's log keeps up with the leader's.
type logProgress struct {
	mu     sync.Mutex
	asked  time.Time // when the leader's applied index was last asked for
	asking bool
	want   uint64    // an index the leader had applied that this node had not (0: none)
	wantAt time.Time // when want was learned
}

// progressEvery is how often an acting follower asks the leader's applied index.
const progressEvery = time.Second

var emptyState = fsm.New()

func newCurrent(maxFormat int) *current {
	c := &current{maxFormat: maxFormat, reason: &notCurrent{"CLUSTERDOWN this node is starting: it has not caught up with the cluster yet"}}
	c.state.Store(emptyState)
	c.since.Store(time.Now().UnixNano())
	return c
}

// Current returns the cluster state this node acts on: the applied state while it is current,
// otherwise an empty state (no datacenters, groups or migrations), so a duty that reads it finds
// nothing to do. Routing, migration duties and replication read the state through this.
func (n *Node) Current() *fsm.State { return n.cur.state.Load() }

// Acting reports whether the node acts on its state, and when not, why.
func (n *Node) Acting() (bool, error) {
	n.cur.mu.Lock()
	defer n.cur.mu.Unlock()
	return n.cur.acting, n.cur.reason
}

// OnCurrent registers f to be told every state the node acts on, in log order, and every time
// it stops acting (at once with where it stands now). f runs in Raft's apply path or the gate's
// loop and must be quick.
func (n *Node) OnCurrent(f CurrentFunc) {
	n.sm.mu.Lock()
	defer n.sm.mu.Unlock()
	n.cur.mu.Lock()
	defer n.cur.mu.Unlock()
	n.cur.subs = append(n.cur.subs, f)
	if n.cur.acting {
		f(n.sm.state.Load(), nil)
	} else {
		f(nil, n.cur.reason)
	}
}

// applied is the state machine's observer: while acting, every applied state is current.
func (c *current) applied(st *fsm.State) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.acting {
		return
	}
	if err := c.tooNew(st); err != nil {
		c.holdLocked(err)
		return
	}
	c.state.Store(st)
	for _, f := range c.subs {
		f(st, nil)
	}
}

// tooNew refuses a state whose data format this build does not run: acting on it would read
// and write the backends in an older format than every other node (fsm/cmd_format.go).
func (c *current) tooNew(st *fsm.State) error {
	if st.Format() <= c.maxFormat {
		return nil
	}
	return &notCurrent{fmt.Sprintf("CLUSTERDOWN the cluster writes data format %d and this node's build runs formats up to %d: run a newer build on it", st.Format(), c.maxFormat)}
}

// start makes the node act on st, the state applied now (called under stateMachine.mu), or
// returns why it may not.
func (c *current) start(st *fsm.State) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.tooNew(st); err != nil {
		c.holdLocked(err)
		return err
	}
	c.acting, c.reason = true, nil
	c.since.Store(time.Now().UnixNano())
	c.state.Store(st)
	for _, f := range c.subs {
		f(st, nil)
	}
	return nil
}

// hold stops the node acting (or refreshes why it does not) and tells the subscribers.
func (c *current) hold(why error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holdLocked(why)
}

func (c *current) holdLocked(why error) {
	if c.acting {
		c.changes.Add(1)
		c.since.Store(time.Now().UnixNano())
	} else if c.reason != nil && c.reason.Error() == why.Error() {
		return
	}
	c.acting, c.reason = false, why
	c.state.Store(emptyState)
	for _, f := range c.subs {
		f(nil, why)
	}
}

// currentLoop runs the gate: catch up, act while the lease holds, start over when it lapses.
func (n *Node) currentLoop() {
	defer n.wg.Done()
	ctx, cancel := n.untilStop()
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	backoff := 20 * time.Millisecond
	for ctx.Err() == nil {
		if err := n.removedErr(); err != nil {
			n.cur.hold(&notCurrent{"CLUSTERDOWN " + err.Error()})
			return
		}
		acting, _ := n.Acting()
		if acting {
			if err := n.lease(ctx); err != nil {
				n.log.Warn("stops acting on the cluster state", "why", err)
				n.cur.hold(err)
			}
		} else if err := n.catchUp(ctx); err != nil {
			if ctx.Err() == nil {
				n.cur.hold(err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 500*time.Millisecond)
			continue
		} else {
			backoff = 20 * time.Millisecond
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

// lease returns nil while this node may keep acting on its state without asking the leader.
func (n *Node) lease(ctx context.Context) error {
	if n.raft.State() == raft.Leader {
		return nil
	}
	// Time since the last contact alone decides, not whether a leader is known right now: a
	// follower whose heartbeat timeout fired on a loaded machine (it then knows no leader and
	// may pre-vote) holds a state no older than any follower within its lease, and holding it
	// for every such blip would stop its duties for nothing.
	if d := time.Since(n.raft.LastContact()); d >= LeaseTimeout {
		return &notCurrent{fmt.Sprintf("CLUSTERDOWN this node has not heard from the Raft leader for %s: it serves nothing keyed until it catches up", d.Round(time.Millisecond))}
	}
	return n.logKeepsUp(ctx)
}

// logKeepsUp is the lease's second half on a follower: nil unless an index the leader had
// applied when asked is still not applied here LeaseTimeout later. It asks the leader again,
// in the background, every progressEvery.
func (n *Node) logKeepsUp(ctx context.Context) error {
	p := &n.cur.progress
	applied := n.State().Index
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.want != 0 && applied >= p.want {
		p.want = 0
	}
	if p.want != 0 {
		if d := time.Since(p.wantAt); d >= LeaseTimeout {
			return &notCurrent{fmt.Sprintf("CLUSTERDOWN this node's Raft log does not keep up with the leader's: the leader had applied index %d %s ago, this node %d: it serves nothing keyed until it catches up", p.want, d.Round(time.Millisecond), applied)}
		}
	}
	if !p.asking && time.Since(p.asked) >= progressEvery && ctx.Err() == nil {
		p.asking, p.asked = true, time.Now()
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.askProgress(ctx)
		}()
	}
	return nil
}

// askProgress asks the leader this node knows for the index it applied (no barrier: any
// applied index is committed) and notes it when this node has not applied it yet.
func (n *Node) askProgress(ctx context.Context) {
	p := &n.cur.progress
	defer func() {
		p.mu.Lock()
		p.asking = false
		p.mu.Unlock()
	}()
	leader, _ := n.raft.LeaderWithID()
	if leader == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, progressEvery)
	defer cancel()
	var out readIndexReply
	if err := n.peers.call(ctx, string(leader), rpcReadIndex, readIndexRequest{ID: n.cfg.ID, Applied: true}, &out); err != nil {
		return // the contact half of the lease covers a leader that does not answer
	}
	applied := n.State().Index
	p.mu.Lock()
	defer p.mu.Unlock()
	if out.Index > applied && p.want == 0 {
		p.want, p.wantAt = out.Index, time.Now()
	}
}

// reset forgets what the last asks learned: the node starts acting on a state caught up.
func (p *logProgress) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.want = 0
}

// catchUp learns the leader's applied index and waits until this node has applied as far, then
// starts acting. It returns why the node does not act yet.
func (n *Node) catchUp(loop context.Context) error {
	ctx, cancel := context.WithTimeout(loop, readIndexWait)
	defer cancel()
	target, err := n.readIndex(ctx)
	if err != nil {
		return err
	}
	n.cur.target.Store(target)
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if n.State().Index >= target {
			break
		}
		n.cur.hold(n.catchingUp())
		select {
		case <-ctx.Done():
			return n.catchingUp()
		case <-t.C:
		}
	}
	if err := n.lease(loop); err != nil { // the loop's: an ask it starts outlives catchUp
		return err
	}
	if err := n.removedErr(); err != nil {
		return err // told it was removed while it caught up: never acts again
	}
	if n.State().Nodes[n.cfg.ID] == nil {
		// A Raft member whose AddNode is not applied yet (a join between its two steps): no
		// freeze barrier waits for a node the state does not list, so it must not serve.
		return &notCurrent{"CLUSTERDOWN this node is joining the cluster: its registration is not applied yet"}
	}
	n.cur.progress.reset()
	n.sm.mu.Lock()
	defer n.sm.mu.Unlock()
	st := n.sm.state.Load()
	if err := n.cur.start(st); err != nil {
		if n.formatRefused.CompareAndSwap(false, true) {
			n.log.Error("does not act on the cluster state", "why", err)
		}
		return err
	}
	n.log.Info("acting on the cluster state", "applied", st.Index, "leader_index", target)
	return nil
}

func (n *Node) catchingUp() error {
	return &notCurrent{fmt.Sprintf("CLUSTERDOWN this node is catching up with the cluster, applied %d of %d", n.State().Index, n.cur.target.Load())}
}

// readIndex returns the index of the last command the leader applied after confirming, with a
// Raft barrier, that it still leads: every command committed before the call is at or below it.
func (n *Node) readIndex(ctx context.Context) (uint64, error) {
	if n.raft.State() == raft.Leader {
		return n.leaderIndex()
	}
	// Ask the leader this node knows, then the other members it knows, which forward to
	// theirs: the leader it knows may be stale (an election just ended), and a node taken out
	// of Raft hears from no leader at all: that is how a removed node learns it was removed.
	var asks []string
	leader, _ := n.raft.LeaderWithID()
	if leader != "" {
		asks = append(asks, string(leader))
	}
	st := n.State()
	for _, id := range st.NodeIDs() {
		if p := st.Nodes[id].Peer; id != n.cfg.ID && p != string(leader) {
			asks = append(asks, p)
		}
	}
	err := error(&notCurrent{"CLUSTERDOWN this node knows no Raft leader yet: it serves nothing keyed until it reaches a majority of the cluster"})
	for _, addr := range asks {
		var out readIndexReply
		cerr := n.peers.call(ctx, addr, rpcReadIndex, readIndexRequest{ID: n.cfg.ID}, &out)
		if cerr == nil {
			return out.Index, nil
		}
		var re *RemoteError
		if errors.As(cerr, &re) && re.Code == "removed" {
			n.markRemoved(re.Msg)
		}
		err = &notCurrent{fmt.Sprintf("CLUSTERDOWN this node cannot confirm it is current with the Raft leader (asked %s): %v", addr, cerr)}
		if ctx.Err() != nil {
			break
		}
	}
	return 0, err
}

// leaderIndex is readIndex at the leader.
func (n *Node) leaderIndex() (uint64, error) {
	if err := n.raft.Barrier(readIndexWait).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return 0, errNotLeader
		}
		return 0, &notCurrent{"CLUSTERDOWN the Raft leader could not confirm its leadership: " + err.Error()}
	}
	return n.State().Index, nil
}

type readIndexRequest struct {
	ID string `json:"id"`
	// Forwarded is set by a member that passed the request on to its leader.
	Forwarded bool `json:"forwarded,omitempty"`
	// Applied asks for the leader's applied index without the barrier (the lease's check that
	// a follower's log keeps up, logKeepsUp): a lower bound of what is committed, which is all
	// that check needs. A leader of an older build runs the barrier all the same.
	Applied bool `json:"applied,omitempty"`
}

type readIndexReply struct {
	Index uint64 `json:"index"`
}

// handleReadIndex answers a member's readIndex at the leader (a follower passes it on to its
// leader once); a removed node is told so.
func (n *Node) handleReadIndex(ctx context.Context, req readIndexRequest) (any, error) {
	if n.raft.State() != raft.Leader {
		addr, _ := n.raft.LeaderWithID()
		if req.Forwarded || addr == "" {
			return nil, errNotLeader
		}
		req.Forwarded = true
		var out readIndexReply
		if err := n.peers.call(ctx, string(addr), rpcReadIndex, req, &out); err != nil {
			return nil, err
		}
		return out, nil
	}
	if req.Applied {
		return readIndexReply{Index: n.State().Index}, nil
	}
	// The barrier first: a leader just elected may still act on its last snapshot (hashicorp/raft
	// replays no log at start), which may list as removed a node that rejoined since; until
	// session 43 such a node was told it was removed, and exited.
	idx, err := n.leaderIndex()
	if err != nil {
		return nil, err
	}
	if idx, ok := n.State().Removed[req.ID]; ok {
		return nil, &fsm.Error{Code: "removed", Msg: fmt.Sprintf("removed from the cluster at Raft index %d", idx)}
	}
	if n.isRemoving(req.ID) {
		return nil, &fsm.Error{Code: "removed", Msg: "being removed from the cluster by an operator"}
	}
	return readIndexReply{Index: idx}, nil
}
