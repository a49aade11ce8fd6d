package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/redraft/redraft/fsm"
)

// ErrNoLeader means no leader could be reached before the deadline.
var ErrNoLeader = errors.New("no Raft leader is known: is a majority of voters up?")

var errNotLeader = errors.New("not the leader")

// applyTimeout bounds one Raft apply at the leader.
const applyTimeout = 10 * time.Second

// Propose commits cmd through Raft: locally when this node leads, else forwarded to the leader
// over the peer port. It returns the command's validation error, if any, as the leader saw it.
// It retries through leader changes until ctx ends (10 s when ctx has no deadline).
func (n *Node) Propose(ctx context.Context, cmd fsm.Command) error {
	_, err := n.ProposeAt(ctx, cmd)
	return err
}

// ProposeAt is Propose that also returns the Raft index cmd was applied at, so that a caller
// can find what its own command made (a failover's or a migration's StartIndex) rather than
// whatever its local state, maybe behind the leader's, shows next. The index is 0 when a
// leader of an older build answered the forwarded proposal without it.
func (n *Node) ProposeAt(ctx context.Context, cmd fsm.Command) (uint64, error) {
	data, err := fsm.Encode(cmd)
	if err != nil {
		return 0, err
	}
	var index uint64
	err = n.withLeader(ctx, func(ctx context.Context, leader string) error {
		if leader == "" {
			var err error
			index, err = n.applyLocal(data)
			return err
		}
		var out proposeReply
		err := n.peers.call(ctx, leader, rpcPropose, proposeRequest{Entry: data}, &out)
		index = out.Index
		return err
	})
	return index, err
}

// withLeader runs f at the leader: f gets "" when this node is the leader, else the leader's
// peer address. It retries on not-leader answers and unreachable leaders until ctx ends.
func (n *Node) withLeader(ctx context.Context, f func(ctx context.Context, leader string) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, applyTimeout)
		defer cancel()
	}
	backoff := 50 * time.Millisecond
	var last error
	for {
		if err := n.removedErr(); err != nil {
			return err
		}
		addr, _ := n.raft.LeaderWithID()
		switch {
		case n.raft.State() == raft.Leader:
			last = f(ctx, "")
		case addr != "":
			last = f(ctx, string(addr))
		default:
			last = ErrNoLeader
		}
		if last == nil || !retryable(last) {
			return last
		}
		select {
		case <-ctx.Done():
			if errors.Is(last, errNotLeader) {
				last = ErrNoLeader
			}
			return fmt.Errorf("%w (gave up after the deadline)", last)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Second)
	}
}

// retryable tells errors worth another try at the (maybe new) leader from final answers.
func retryable(err error) bool {
	var fe *fsm.Error
	var re *RemoteError
	if errors.As(err, &fe) {
		return false
	}
	if errors.As(err, &re) {
		return re.Code == "no_leader" || re.Code == "not_leader"
	}
	return true
}

// applyLocal applies an encoded entry at this node, which must be the leader. An entry this
// build cannot read (one forwarded by a newer build) is refused before it is committed: every
// node of this build would stop at it (stateMachine.Apply).
func (n *Node) applyLocal(data []byte) (uint64, error) {
	if _, err := fsm.Decode(data); err != nil && !errors.Is(err, fsm.ErrSkipped) {
		return 0, &fsm.Error{Code: "invalid", Msg: "the leader " + n.cfg.ID + " refused the entry: " + err.Error()}
	}
	f := n.raft.Apply(data, applyTimeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			return 0, errNotLeader
		}
		return 0, err
	}
	if err, ok := f.Response().(error); ok && err != nil {
		return f.Index(), err
	}
	return f.Index(), nil
}

type proposeRequest struct {
	Entry []byte `json:"entry"`
}

// proposeReply is the leader's answer to a forwarded proposal: the index it was applied at.
type proposeReply struct {
	Index uint64 `json:"index"`
}
