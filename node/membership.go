package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

	"github.com/redraft/redraft/fsm"
)

// joinRequest asks the leader to add a node (or confirm it): to Raft's configuration and to
// the cluster state.
type joinRequest struct {
	Node fsm.Node `json:"node"`
	// Fresh says the joiner started with an empty data dir, so a node id removed earlier may be
	// reused by it.
	Fresh bool `json:"fresh"`
}

// joinResponse tells the joiner at which index its registration stands.
type joinResponse struct {
	JoinIndex uint64 `json:"join_index"`
	Voter     bool   `json:"voter"`
}

type removeRequest struct {
	ID string `json:"id"`
}

// registerLoop makes sure the cluster state holds this node with its current addresses, then
// watches for its removal.
func (n *Node) registerLoop() {
	defer n.wg.Done()
	backoff := 200 * time.Millisecond
	for {
		if n.RemovedReason() != "" {
			return
		}
		if err := n.register(); err != nil {
			if errors.Is(err, ErrRemoved) || errorCode(err) == "removed" {
				n.markRemoved(err.Error())
				return
			}
			if errors.Is(err, ErrNoLeader) {
				n.log.Debug("not registered yet: no leader yet, will retry")
			} else if retryable(err) && !isPeerRefused(err) {
				n.log.Info("not registered yet, will retry", "err", err)
			} else {
				n.log.Warn("the cluster refused this node's registration; will retry", "err", err)
			}
		} else {
			return
		}
		select {
		case <-n.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// register sends this node's join request to the leader (through a seed when no leader is
// known) unless the state already holds this node as it is.
func (n *Node) register() error {
	me := n.self()
	st := n.State()
	// A node on an empty data dir always asks: the leader must see it is fresh (a voter that
	// lost its log is made a non-voter first), even once the state it caught up on lists it.
	if cur, ok := st.Nodes[me.ID]; ok && n.parts.existing && sameNode(cur, &me) && n.inRaftConfig() {
		n.setJoined(cur.JoinIndex)
		return nil
	}
	req := joinRequest{Node: me, Fresh: !n.parts.existing}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var resp joinResponse
	if addr, _ := n.raft.LeaderWithID(); addr != "" || n.IsLeader() {
		resp, err := n.join(ctx, req)
		if err == nil {
			n.setJoined(resp.JoinIndex)
		}
		return err
	}
	if len(n.cfg.Seeds) == 0 {
		return ErrNoLeader
	}
	var last error
	for _, seed := range n.cfg.Seeds {
		if seed == n.peerAddr {
			continue
		}
		// Each seed has its time: one that does not answer (or this node itself under
		// another spelling, whose join handler waits for a leader) must not use up the
		// others'.
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		last = n.peers.call(sctx, seed, rpcJoin, req, &resp)
		scancel()
		if last == nil {
			n.log.Info("joined the cluster", "seed", seed, "voter", resp.Voter, "index", resp.JoinIndex)
			n.setJoined(resp.JoinIndex)
			return nil
		}
		if errorCode(last) == "removed" {
			return last
		}
	}
	return fmt.Errorf("no seed took the join request: %w", last)
}

// setJoined records the index of this node's current registration: only a removal after it
// counts (a node that rejoined under a removed id replays its old removal on the way). The
// index is kept in the data dir too, and the later of the two is taken: after a restart the
// state may be a snapshot from before the node's removal and rejoin, which lists it under its
// first join, and the log then replays the removal (until session 41 the node took that for
// its own removal and exited, on every restart).
func (n *Node) setJoined(index uint64) {
	kept, err := recordJoin(n.cfg.DataDir, index)
	if err != nil {
		n.log.Warn("join index not kept in the data dir", "index", index, "err", err)
	}
	n.mu.Lock()
	n.registered = true
	n.joinIndex = max(index, kept)
	n.mu.Unlock()
	if n.parts != nil {
		n.parts.transport.openVotes() // the leader answered: this node votes from now on (voteGate)
	}
}

func sameNode(a, b *fsm.Node) bool {
	if a.ID != b.ID || a.DC != b.DC || a.Rack != b.Rack || a.Listen != b.Listen || a.Peer != b.Peer || a.Admin != b.Admin ||
		a.MaxDataFormat() != b.MaxDataFormat() || len(a.Tokens) != len(b.Tokens) {
		return false
	}
	for i := range a.Tokens {
		if a.Tokens[i] != b.Tokens[i] {
			return false
		}
	}
	return true
}

func (n *Node) inRaftConfig() bool {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if s.ID == raft.ServerID(n.cfg.ID) && s.Address == raft.ServerAddress(n.peerAddr) {
			return true
		}
	}
	return false
}

// join has the leader take req: here when this node leads, else forwarded.
func (n *Node) join(ctx context.Context, req joinRequest) (joinResponse, error) {
	var resp joinResponse
	err := n.withLeader(ctx, func(ctx context.Context, leader string) error {
		if leader == "" {
			var err error
			resp, err = n.handleJoin(ctx, req)
			return err
		}
		return n.peers.call(ctx, leader, rpcJoin, req, &resp)
	})
	return resp, err
}

// handleJoin runs at the leader: it adds the node to Raft as a non-voter, makes it a voter
// while there are fewer than max_voters once it answers at its peer address and has caught up
// (promoteJoiner), then adds it to the cluster state, so that a joiner acting on a state that
// lists it votes when it can. Joining again is a no-op.
func (n *Node) handleJoin(ctx context.Context, req joinRequest) (joinResponse, error) {
	me := req.Node
	// The state as of every committed entry: a leader just elected may act on its last
	// snapshot, which may list as removed a node that rejoined since (handleReadIndex).
	if _, err := n.leaderIndex(); err != nil {
		return joinResponse{}, err
	}
	st := n.State()
	if n.isRemoving(me.ID) {
		return joinResponse{}, &fsm.Error{Code: "busy", Msg: fmt.Sprintf("node %s is being removed; join again once the removal is done", me.ID)}
	}
	if idx, ok := st.Removed[me.ID]; ok && !req.Fresh {
		return joinResponse{}, &fsm.Error{Code: "removed", Msg: fmt.Sprintf(
			"node %s was removed from the cluster (Raft index %d); to bring it back, empty its data_dir and join again", me.ID, idx)}
	}
	if old, ok := st.Nodes[me.ID]; ok && old.Peer != me.Peer {
		// The id is known at another address: refuse if a live node still answers there.
		var other statusReply
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		err := n.peers.call(cctx, old.Peer, rpcStatus, struct{}{}, &other)
		cancel()
		if err == nil && other.ID == me.ID {
			return joinResponse{}, &fsm.Error{Code: "exists", Msg: fmt.Sprintf(
				"node id %s is taken by the running node at %s; pick another id", me.ID, old.Peer)}
		}
	}
	// A build that cannot run the cluster's data format would be refused by AddNode after it
	// became a Raft member, a voter that never serves: refuse it first, and raise no format
	// until AddNode is applied (raiseDataFormat).
	n.joinMu.Lock()
	defer n.joinMu.Unlock()
	// Checked again under joinMu, which a removal holds over its Raft step: a removal that
	// began after the check above would otherwise take the node out of Raft between this
	// join's check and its addToRaft, which would add it back, a member the state never knows.
	if n.isRemoving(me.ID) {
		return joinResponse{}, &fsm.Error{Code: "busy", Msg: fmt.Sprintf("node %s is being removed; join again once the removal is done", me.ID)}
	}
	st = n.State()
	if err := st.CheckNodeFormat(&me); err != nil {
		return joinResponse{}, err
	}
	// Nor may a join that AddNode would refuse (an id held in another DC, a client address in
	// use) touch the Raft configuration: it would replace a member there, or leave a voter
	// the state does not know. The state machine is pure: the step is tried on this state.
	if _, err := n.dryRun(ctx, &fsm.AddNode{Node: me}); err != nil {
		return joinResponse{}, err
	}
	if req.Fresh && me.ID != n.cfg.ID { // (a node that bootstrapped the cluster registers itself)
		if err := n.demoteLostVoter(me.ID, me.Peer); err != nil {
			return joinResponse{}, err
		}
	}
	applied := n.State().Index // what the joiner must have applied to vote
	voter, err := n.addToRaft(me.ID, me.Peer)
	if err != nil {
		return joinResponse{}, err
	}
	if !voter {
		voter = n.promoteJoiner(ctx, me.ID, me.Peer, applied)
	}
	if err := n.Propose(ctx, &fsm.AddNode{Node: me}); err != nil {
		return joinResponse{}, err
	}
	// Propose returns once the leader applied it; when it forwarded (leadership moved mid
	// join), this node may apply it a moment later.
	st = n.waitLocal(ctx, func(st *fsm.State) bool { return st.Nodes[me.ID] != nil })
	added := st.Nodes[me.ID]
	if added == nil {
		return joinResponse{}, fmt.Errorf("node %s was added, but this node has not applied it yet: join again", me.ID)
	}
	return joinResponse{JoinIndex: added.JoinIndex, Voter: voter}, nil
}

// demoteLostVoter makes id, a node that joins on an empty data dir, a non-voter when it is a
// voter (at addr or, rejoining at a new address, at another: addToRaft then only moves the
// entry): it lost the log it voted and acknowledged entries with (a wiped or replaced disk),
// so it must not count in a majority until it has caught up and been promoted again
// (promote). Its votes wait for the join's answer (voteGate), which comes after this.
func (n *Node) demoteLostVoter(id, addr string) error {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	for _, s := range f.Configuration().Servers {
		if s.ID == raft.ServerID(id) && s.Suffrage == raft.Voter {
			if err := n.raft.DemoteVoter(s.ID, 0, applyTimeout).Error(); err != nil {
				return raftErr(err)
			}
			n.log.Warn("a voter rejoined with an empty data dir: made a non-voter until it is promoted again", "id", id, "was_at", s.Address, "now_at", addr)
		}
	}
	return nil
}

// addToRaft adds id at addr to the Raft configuration, as a non-voter (promoteJoiner and
// promote make it a voter once it answers); an entry of id at another address is updated in
// place, its suffrage kept (hashicorp/raft's AddNonvoter of a known id changes
// only its address). Until session 45 the entry was removed and added again: a voter's
// removal dipped the quorum, and the leader's own (a node restarted at a new peer address that
// won the election) stepped it down and shut its Raft down for good.
func (n *Node) addToRaft(id, addr string) (bool, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return false, err
	}
	for _, s := range f.Configuration().Servers {
		if s.ID == raft.ServerID(id) {
			if s.Address != raft.ServerAddress(addr) {
				if err := n.raft.AddNonvoter(s.ID, raft.ServerAddress(addr), 0, applyTimeout).Error(); err != nil {
					return false, raftErr(err)
				}
			}
			return s.Suffrage == raft.Voter, nil
		}
	}
	// Never a voter straight away: until session 47 a joiner became one here, before anyone knew
	// the leader could reach it. One that advertised an address the leader cannot dial (a
	// host name only the joiner resolves, a firewall) then held half the votes of a two-node
	// cluster: nothing committed, the leader stepped down, and the joiner's votes wait for an
	// answer no leader was left to give (voteGate).
	return false, raftErr(n.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, applyTimeout).Error())
}

func raftErr(err error) error {
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
		return errNotLeader
	}
	return err
}

// maxVoters is the cluster setting when set, else this node's config.
func (n *Node) maxVoters() int {
	if v, ok := n.State().Settings["max_voters"]; ok {
		if m, err := strconv.Atoi(v); err == nil {
			return m
		}
	}
	return n.cfg.MaxVoters
}

// Remove takes a node out of the cluster: out of Raft, then, RemoveGrace later, out of the
// cluster state. The removed node is told, and stops serving.
func (n *Node) Remove(ctx context.Context, id string) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, applyTimeout+RemoveGrace)
		defer cancel()
	}
	return n.withLeader(ctx, func(ctx context.Context, leader string) error {
		if leader != "" {
			return n.peers.call(ctx, leader, rpcRemove, removeRequest{ID: id}, nil)
		}
		return n.handleRemove(ctx, id)
	})
}

// handleRemove runs at the leader. The order keeps the rule that no node acts on a state older
// than one another node acted on (current.go): the node leaves Raft first, so it hears from no
// leader any more and its lease lapses within LeaseTimeout even if it is cut off and still
// running; it is told directly when it can be reached; and only after RemoveGrace does the
// removal enter the cluster state, where it releases the migration barriers the node held.
// Meanwhile the leader refuses the node's joins and readIndex calls.
func (n *Node) handleRemove(ctx context.Context, id string) error {
	// A barrier first, as for joins: a leader just elected may act on its last snapshot, which
	// may not list a node added since; it would take the node out of Raft and never propose
	// RemoveNode, and the node would stay in the state for good (holding every freeze barrier
	// of its DC).
	if _, err := n.leaderIndex(); err != nil {
		return err
	}
	st := n.State()
	node, inState := st.Nodes[id]
	inRaft := false
	servers := 0
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			servers++
			if s.ID == raft.ServerID(id) {
				inRaft = true
			}
		}
	}
	if !inState && !inRaft {
		return &fsm.Error{Code: "not_found", Msg: fmt.Sprintf("node %s is not a member", id)}
	}
	if servers <= 1 && inRaft {
		return &fsm.Error{Code: "busy", Msg: fmt.Sprintf("node %s is the last member; it cannot be removed", id)}
	}
	if id == n.cfg.ID {
		// The leader leaves last: hand the leadership over, and the caller's forwarder retries
		// the removal at the new leader.
		if err := n.raft.LeadershipTransfer().Error(); err != nil {
			return raftErr(err)
		}
		return errNotLeader
	}
	n.setRemoving(id, true)
	defer n.setRemoving(id, false)
	// Once the node leaves Raft the removal goes to its end, whoever asked still listening or
	// not: a caller that went away during the grace left a node out of Raft and in the state.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), RemoveGrace+3*applyTimeout)
	defer cancel()
	// Under joinMu, so that a join of the same node either ends before this step (and the
	// state and configuration read again here hold it) or sees the removal under joinMu and is
	// refused: read before the lock, a join that committed AddNode meanwhile was taken out of
	// Raft and left in the state, never told, holding its DC's freeze barriers.
	n.joinMu.Lock()
	node, inState = n.State().Nodes[id]
	inRaft = false
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			inRaft = inRaft || s.ID == raft.ServerID(id)
		}
	}
	var err error
	if inRaft {
		err = n.raft.RemoveServer(raft.ServerID(id), 0, applyTimeout).Error()
	}
	n.joinMu.Unlock()
	if err != nil {
		return raftErr(err)
	}
	out := time.Now()
	if node != nil {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_ = n.peers.call(cctx, node.Peer, "/rpc/removed", removeRequest{ID: id}, nil)
		cancel()
	}
	if !inState {
		return nil
	}
	select {
	case <-time.After(time.Until(out.Add(RemoveGrace))):
	case <-ctx.Done():
		return fmt.Errorf("node %s is out of Raft but not yet out of the cluster state (run the remove again): %w", id, ctx.Err())
	}
	return n.Propose(ctx, &fsm.RemoveNode{ID: id})
}

// setRemoving marks id as being removed by this leader (joins and readIndex refused), counted:
// a remove run again while the first still waits out its grace keeps the mark until both end.
func (n *Node) setRemoving(id string, on bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.removing == nil {
		n.removing = map[string]int{}
	}
	if on {
		n.removing[id]++
	} else if n.removing[id]--; n.removing[id] <= 0 {
		delete(n.removing, id)
	}
}

func (n *Node) isRemoving(id string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.removing[id] > 0
}

// watchState notices this node's own removal in a newly applied state.
func (n *Node) watchState(s *fsm.State) {
	idx, removed := s.Removed[n.cfg.ID]
	if !removed {
		return
	}
	n.mu.Lock()
	reg, joined := n.registered, n.joinIndex
	n.mu.Unlock()
	if reg && idx > joined {
		// Applied in Raft's apply path: stop acting on the state at once, and stop serving
		// without blocking the apply path.
		n.cur.hold(&notCurrent{fmt.Sprintf("CLUSTERDOWN this node was removed from the cluster at Raft index %d", idx)})
		go n.markRemoved(fmt.Sprintf("removed from the cluster at Raft index %d", idx))
	}
}

// markRemoved stops this node from serving; the embedder watches Removed().
func (n *Node) markRemoved(why string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.removed != "" {
		return
	}
	n.removed = why
	n.cur.hold(&notCurrent{"CLUSTERDOWN this node was " + why})
	close(n.removedCh)
	n.log.Warn("node stops serving", "why", why)
}

// leaderLoop, while this node leads, promotes non-voters when voters are fewer than max_voters,
// from the DC with the fewest voters first.
func (n *Node) leaderLoop() {
	defer n.wg.Done()
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		if !n.IsLeader() {
			continue
		}
		f := n.raft.GetConfiguration()
		if f.Error() != nil {
			continue
		}
		n.promote(f.Configuration().Servers)
		n.raiseDataFormat()
	}
}

// promote keeps max_voters voters spread over DCs: while voters are fewer, it promotes a
// non-voter of the DC with the fewest voters (ties: the lower id); while they are more (the
// setting was lowered), it demotes one of the most crowded DC; when they are enough but a
// DC with a non-voter has two voters fewer than the DC with the most, it swaps one: promotes
// there first, then demotes one of the crowded DC's voters (never itself, the leader). One swap
// per call, so a cluster of nodes that joined DC by DC spreads out over a few ticks.
func (n *Node) promote(servers []raft.Server) {
	st := n.State()
	dcOf := func(id raft.ServerID) string {
		if m := st.Nodes[string(id)]; m != nil {
			return m.DC
		}
		return ""
	}
	voters, perDC := 0, map[string]int{}
	var nonvoters, voterList []raft.Server
	for _, s := range servers {
		if s.Suffrage == raft.Voter {
			voters++
			perDC[dcOf(s.ID)]++
			voterList = append(voterList, s)
		} else if st.Nodes[string(s.ID)] != nil {
			// A non-voter the state does not know (a join between its Raft step and its
			// AddNode, or one that failed there) is not promoted: it may never run, and a
			// voter that never answers takes a vote from the majority.
			nonvoters = append(nonvoters, s)
		}
	}
	// pick returns the index of the server of list whose DC has the fewest (or, with most, the
	// most) voters; ties go to the lower id.
	pick := func(list []raft.Server, most bool) int {
		best := -1
		for i, s := range list {
			if best < 0 {
				best = i
				continue
			}
			d, bd := perDC[dcOf(s.ID)], perDC[dcOf(list[best].ID)]
			if most {
				d, bd = -d, -bd
			}
			if d < bd || (d == bd && s.ID < list[best].ID) {
				best = i
			}
		}
		return best
	}
	// Only a non-voter that answers and has applied the state this node acts on now may vote:
	// asked all at once, only when a promotion could follow.
	ready := func() { nonvoters = n.readyNonvoters(nonvoters, st.Index) }
	if len(nonvoters) > 0 && voters < n.maxVoters() {
		ready()
	}
	add := func(s raft.Server, why string) bool {
		if err := n.raft.AddVoter(s.ID, s.Address, 0, applyTimeout).Error(); err != nil {
			return false
		}
		n.log.Info("promoted non-voter", "id", s.ID, "dc", dcOf(s.ID), "why", why)
		voters++
		perDC[dcOf(s.ID)]++
		return true
	}
	for voters < n.maxVoters() && len(nonvoters) > 0 {
		i := pick(nonvoters, false)
		s := nonvoters[i]
		nonvoters = append(nonvoters[:i], nonvoters[i+1:]...)
		add(s, "fewer voters than max_voters")
	}
	var others []raft.Server // voters that may be demoted: not this node, the leader
	for _, s := range voterList {
		if string(s.ID) != n.cfg.ID {
			others = append(others, s)
		}
	}
	demote := func(s raft.Server, why string) {
		if err := n.raft.DemoteVoter(s.ID, 0, applyTimeout).Error(); err != nil {
			n.log.Warn("demoting a voter", "id", s.ID, "why", why, "err", err)
			return
		}
		n.log.Info("demoted voter", "id", s.ID, "dc", dcOf(s.ID), "why", why)
		voters--
		perDC[dcOf(s.ID)]--
	}
	if voters > n.maxVoters() {
		// max_voters was lowered, or a swap's demotion failed: one from the most crowded DC,
		// of those whose demotion leaves a majority answering, dead ones first (demotable).
		can := n.demotable(voterList, others)
		if out := pick(can, true); out >= 0 {
			demote(can[out], "more voters than max_voters")
		} else if len(others) > 0 {
			n.log.Warn("more voters than max_voters, but demoting any would leave fewer answering voters than a majority")
		}
		return
	}
	if voters != n.maxVoters() || len(nonvoters) == 0 {
		return
	}
	swap := func() (int, int, bool) {
		in, out := pick(nonvoters, false), pick(others, true)
		return in, out, in >= 0 && out >= 0 && perDC[dcOf(nonvoters[in].ID)]+1 < perDC[dcOf(others[out].ID)]
	}
	if _, _, ok := swap(); !ok {
		return
	}
	ready()
	in, out, ok := swap()
	if !ok {
		return
	}
	if !add(nonvoters[in], "spreading voters over DCs") {
		return
	}
	// The promoted one is a voter now: the demotion must leave a majority answering with it.
	crowded := dcOf(others[out].ID)
	var can []raft.Server
	for _, s := range n.demotable(append(slices.Clone(voterList), nonvoters[in]), others) {
		if dcOf(s.ID) == crowded {
			can = append(can, s)
		}
	}
	if i := pick(can, true); i >= 0 {
		demote(can[i], "spreading voters over DCs")
	}
}

// rpcHandler serves the nodes' own RPC on the peer port.
func (n *Node) rpcHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+rpcPropose, leaderRPC(n, func(_ context.Context, req proposeRequest) (any, error) {
		index, err := n.applyLocal(req.Entry)
		return proposeReply{Index: index}, err
	}))
	mux.HandleFunc("POST "+rpcRemove, leaderRPC(n, func(ctx context.Context, req removeRequest) (any, error) {
		return struct{}{}, n.handleRemove(ctx, req.ID)
	}))
	mux.HandleFunc("POST "+rpcReadIndex, rpc(n.handleReadIndex))
	mux.HandleFunc("POST "+rpcJoin, rpc(func(ctx context.Context, req joinRequest) (any, error) {
		if n.RemovedReason() != "" {
			// This node's removal is not the joiner's: answered "removed", the joiner took it
			// for its own and stopped, where another seed would have taken its join.
			return nil, errNotLeader
		}
		return n.join(ctx, req)
	}))
	mux.HandleFunc("POST /rpc/removed", rpc(func(_ context.Context, req removeRequest) (any, error) {
		if req.ID == n.cfg.ID {
			n.markRemoved("removed from the cluster by an operator")
		}
		return struct{}{}, nil
	}))
	mux.HandleFunc("POST "+rpcStatus, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, n.localStatus())
	})
	for name, f := range n.opts.RPC {
		mux.HandleFunc("POST "+rpcExtra+name, rpc(func(ctx context.Context, body json.RawMessage) (any, error) {
			return f(ctx, body)
		}))
	}
	return mux
}

// rpc adapts f to an RPC handler: decode the JSON request, answer the result or the error.
func rpc[T any](f func(ctx context.Context, req T) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req T
		if err := readJSON(r, &req); err != nil {
			writeError(w, err)
			return
		}
		out, err := f(r.Context(), req)
		if err != nil {
			writeError(w, err)
			return
		}
		writeAnswer(w, out)
	}
}

// leaderRPC is rpc for calls only the leader takes: others answer not_leader, and the caller's
// forwarder retries at the leader.
func leaderRPC[T any](n *Node, f func(ctx context.Context, req T) (any, error)) http.HandlerFunc {
	return rpc(func(ctx context.Context, req T) (any, error) {
		if !n.IsLeader() {
			return nil, errNotLeader
		}
		return f(ctx, req)
	})
}
