package node

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestVoteGateRefusesVotesUntilOpen: while closed, the gate answers vote and pre-vote requests
// itself, refused, and hands the node everything else; once open, votes reach the node.
func TestVoteGateRefusesVotesUntilOpen(t *testing.T) {
	_, ta := raft.NewInmemTransport("a")
	_, tb := raft.NewInmemTransport("b")
	ta.Connect("b", tb)
	tb.Connect("a", ta)
	g := newVoteGate(tb, false)
	defer g.Close()
	defer ta.Close()
	node := make(chan raft.RPC, 1)
	go func() {
		for rpc := range g.Consumer() {
			switch rpc.Command.(type) {
			case *raft.RequestVoteRequest:
				rpc.Respond(&raft.RequestVoteResponse{Term: 1, Granted: true}, nil)
			case *raft.AppendEntriesRequest:
				rpc.Respond(&raft.AppendEntriesResponse{Term: 1, Success: true}, nil)
			}
			select {
			case node <- rpc:
			default:
			}
		}
	}()
	req := &raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ID: []byte("a"), Addr: []byte("a")}, Term: 1}
	var vr raft.RequestVoteResponse
	if err := ta.RequestVote("b", "b", req, &vr); err != nil || vr.Granted {
		t.Fatalf("closed gate: vote %+v, %v; want refused", vr, err)
	}
	var pr raft.RequestPreVoteResponse
	if err := ta.RequestPreVote("b", "b", &raft.RequestPreVoteRequest{Term: 1}, &pr); err != nil || pr.Granted {
		t.Fatalf("closed gate: pre-vote %+v, %v; want refused", pr, err)
	}
	select {
	case rpc := <-node:
		t.Fatalf("closed gate: the node got %T", rpc.Command)
	default:
	}
	var ar raft.AppendEntriesResponse
	if err := ta.AppendEntries("b", "b", &raft.AppendEntriesRequest{Term: 1}, &ar); err != nil || !ar.Success {
		t.Fatalf("closed gate: AppendEntries %+v, %v; want it passed to the node", ar, err)
	}
	g.openVotes()
	vr = raft.RequestVoteResponse{}
	if err := ta.RequestVote("b", "b", req, &vr); err != nil || !vr.Granted {
		t.Fatalf("open gate: vote %+v, %v; want the node's answer", vr, err)
	}
}

// TestWipedVoterRejoinsAsNonVoter: a voter restarted on an empty data dir (a wiped disk) lost
// the log it voted and acknowledged with; the leader makes it a non-voter before it answers
// its join, and it is promoted again afterwards. Until session 43 it stayed a voter and,
// granting its vote to any candidate, could elect a leader without committed entries.
func TestWipedVoterRejoinsAsNonVoter(t *testing.T) {
	c := newTestCluster(t)
	c.start("n1", "dc1")
	c.start("n2", "dc1", "n1")
	c.start("n3", "dc1", "n1")
	l := c.leader()
	victim := "n2"
	if l.ID() == victim {
		victim = "n3"
	}
	suffrage := func(id string) (raft.ServerSuffrage, error) {
		f := c.leader().raft.GetConfiguration()
		if err := f.Error(); err != nil {
			return 0, err
		}
		for _, s := range f.Configuration().Servers {
			if s.ID == raft.ServerID(id) {
				return s.Suffrage, nil
			}
		}
		return 0, errors.New(id + " not in the configuration")
	}
	poll(t, 20*time.Second, victim+" a voter", func() error {
		if s, err := suffrage(victim); err != nil || s != raft.Voter {
			return errors.New("not yet")
		}
		return nil
	})
	// The configuration entries the leader's log holds from here on.
	from, err := l.parts.store.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	c.nodes[victim].Close()
	if err := os.RemoveAll(c.cfgs[victim].DataDir); err != nil {
		t.Fatal(err)
	}
	n := c.start(victim, "dc1", l.ID())
	poll(t, 20*time.Second, victim+" a voter again", func() error {
		if s, err := suffrage(victim); err != nil || s != raft.Voter {
			return errors.New("not yet")
		}
		return nil
	})
	if !n.parts.transport.open.Load() {
		t.Fatal("the rejoined node's votes are still refused")
	}
	last, err := l.parts.store.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	demoted := false
	for i := from + 1; i <= last; i++ {
		var e raft.Log
		if err := l.parts.store.GetLog(i, &e); err != nil || e.Type != raft.LogConfiguration {
			continue
		}
		for _, s := range raft.DecodeConfiguration(e.Data).Servers {
			if s.ID == raft.ServerID(victim) && s.Suffrage == raft.Nonvoter {
				demoted = true
			}
		}
	}
	if !demoted {
		t.Fatalf("%s rejoined on an empty data dir and was never made a non-voter", victim)
	}
}
