package node

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// caughtUp reports whether node id answers at addr, the address Raft replicates to, and has
// applied the log through index. Only such a node is made a voter: one the leader cannot
// reach, or far behind, takes a vote from the majority without giving one.
func (n *Node) caughtUp(ctx context.Context, id raft.ServerID, addr raft.ServerAddress, index uint64) bool {
	if string(id) == n.cfg.ID {
		return true
	}
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var r statusReply
	if err := n.peers.call(cctx, string(addr), rpcStatus, struct{}{}, &r); err != nil {
		return false
	}
	return r.ID == string(id) && r.Removed == "" && r.AppliedIndex >= index
}

// waitCaughtUp is caughtUp asked again until it holds or d has passed.
func (n *Node) waitCaughtUp(ctx context.Context, id raft.ServerID, addr raft.ServerAddress, index uint64, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !n.caughtUp(ctx, id, addr, index) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	return true
}

// promoteJoiner makes a joiner a voter while voters are fewer than max_voters, once it answers
// and has applied index (waited for up to two seconds, inside the joiner's wait for its
// answer). It reports whether the joiner is a voter; if not, the leader's loop promotes it
// later (promote).
func (n *Node) promoteJoiner(ctx context.Context, id, addr string, index uint64) bool {
	room := func() (voter, ok bool) {
		f := n.raft.GetConfiguration()
		if f.Error() != nil {
			return false, false
		}
		voters := 0
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				if s.ID == raft.ServerID(id) {
					return true, false
				}
				voters++
			}
		}
		return false, voters < n.maxVoters()
	}
	if voter, ok := room(); voter || !ok {
		return voter // a voter already, or no room: nothing to wait for
	}
	// The joiner waits 5 s for its answer: leave a second of it for the steps after this.
	wait := 2 * time.Second
	if d, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(d)-time.Second)
	}
	if wait <= 0 || !n.waitCaughtUp(ctx, raft.ServerID(id), raft.ServerAddress(addr), index, wait) {
		n.log.Warn("joined as a non-voter: the leader cannot reach it at its peer address, or it has not caught up; promoted once it has",
			"id", id, "peer", addr)
		return false
	}
	if voter, ok := room(); voter || !ok {
		return voter
	}
	if err := n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, applyTimeout).Error(); err != nil {
		n.log.Warn("joiner not made a voter", "id", id, "err", err)
		return false
	}
	n.log.Info("promoted non-voter", "id", id, "why", "joined while voters are fewer than max_voters")
	return true
}

// readyNonvoters returns those of list that answer and have applied index (asked at once, a
// second at most, given up when the node stops).
func (n *Node) readyNonvoters(list []raft.Server, index uint64) []raft.Server {
	ok := n.caughtUpAll(list, index)
	var out []raft.Server
	for i, s := range list {
		if ok[i] {
			out = append(out, s)
		} else {
			n.log.Debug("non-voter not promoted: it does not answer at its peer address, or has not caught up", "id", s.ID)
		}
	}
	return out
}

// caughtUpAll is caughtUp of each server of list, asked at once (a second at most, given up
// when the node stops).
func (n *Node) caughtUpAll(list []raft.Server, index uint64) []bool {
	ctx, cancel := n.untilStop()
	defer cancel()
	ok := make([]bool, len(list))
	var wg sync.WaitGroup
	for i, s := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok[i] = n.caughtUp(ctx, s.ID, s.Address, index)
		}()
	}
	wg.Wait()
	return ok
}

// answering reports, for each voter, whether it answers at its peer address; this node always
// does.
func (n *Node) answering(voters []raft.Server) map[raft.ServerID]bool {
	ok := n.caughtUpAll(voters, 0)
	out := make(map[raft.ServerID]bool, len(voters))
	for i, s := range voters {
		out[s.ID] = ok[i]
	}
	return out
}

// demotable returns the voters of others whose demotion leaves a majority of the remaining
// voters answering, the ones that do not answer first: demoting a dead voter lowers the
// majority, demoting a live one while others are dead can leave none (five voters, two dead,
// max_voters lowered to three: demoting a live one leaves four that need three votes, and
// two that answer).
func (n *Node) demotable(voters, others []raft.Server) []raft.Server {
	alive := n.answering(voters)
	up := 0
	for _, v := range voters {
		if alive[v.ID] {
			up++
		}
	}
	var dead, live []raft.Server
	for _, s := range others {
		left, leftUp := len(voters)-1, up
		if alive[s.ID] {
			leftUp--
		}
		if leftUp < left/2+1 {
			continue
		}
		if alive[s.ID] {
			live = append(live, s)
		} else {
			dead = append(dead, s)
		}
	}
	if len(dead) > 0 {
		return dead
	}
	return live
}
