package node

import (
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// raftTransport is what hashicorp/raft uses of a transport: the RPCs, pre-votes, and Close.
type raftTransport interface {
	raft.Transport
	raft.WithClose
	raft.WithPreVote
}

// voteGate wraps a node's Raft transport and refuses every vote and pre-vote asked of the node
// until opened: a node started on an empty data dir to join a cluster may be a voter that lost
// its log (a wiped or replaced disk), and such a voter would grant its vote to any candidate,
// one without entries that only the lost log and a dead node held included: a leader that
// lacks committed entries. It opens once the node's join was answered, which the leader gives
// only after it has made the node a non-voter (handleJoin); the node counts as a voter again
// once promoted, like any new member. AppendEntries and snapshots pass: the node answers for
// what it has stored. Everything but Consumer is the wrapped transport's.
type voteGate struct {
	raftTransport
	out    chan raft.RPC
	open   atomic.Bool
	stop   chan struct{}
	closed sync.Once
}

// newVoteGate starts a gate on t, open or closed.
func newVoteGate(t raftTransport, open bool) *voteGate {
	g := &voteGate{raftTransport: t, out: make(chan raft.RPC), stop: make(chan struct{})}
	g.open.Store(open)
	go g.run()
	return g
}

// Consumer implements raft.Transport: the wrapped transport's RPCs, without the votes refused.
func (g *voteGate) Consumer() <-chan raft.RPC { return g.out }

// openVotes lets votes through from now on.
func (g *voteGate) openVotes() { g.open.Store(true) }

// Close implements raft.WithClose: it stops the gate and closes the wrapped transport.
func (g *voteGate) Close() error {
	g.closed.Do(func() { close(g.stop) })
	return g.raftTransport.Close()
}

func (g *voteGate) run() {
	in := g.raftTransport.Consumer()
	for {
		var rpc raft.RPC
		select {
		case rpc = <-in:
		case <-g.stop:
			return
		}
		if !g.open.Load() {
			switch rpc.Command.(type) {
			case *raft.RequestVoteRequest:
				rpc.Respond(&raft.RequestVoteResponse{Granted: false}, nil)
				continue
			case *raft.RequestPreVoteRequest:
				rpc.Respond(&raft.RequestPreVoteResponse{Granted: false}, nil)
				continue
			}
		}
		select {
		case g.out <- rpc:
		case <-g.stop:
			return
		}
	}
}
