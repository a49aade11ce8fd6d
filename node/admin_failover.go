package node

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/redraft/redraft/fsm"
)

// FailoverRequest is the body of POST /groups/{dc}/{id}/failover: a planned switchover of the
// group's master to To (a replica; empty: the replica closest to the master).
type FailoverRequest struct {
	To     string `json:"to,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// FailoverReply is the answer: how the switchover ended.
type FailoverReply struct {
	// Failover is the finished switchover (Result promoted or cancelled), or the one still in
	// progress when the wait ended (Stalled says why it waits).
	Failover *fsm.Failover `json:"failover"`
	Master   string        `json:"master"`
	Done     bool          `json:"done"`
}

// failoverWait bounds how long the admin API waits for a switchover to end (the CLI waits 30 s).
const failoverWait = 20 * time.Second

func (n *Node) failoverRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /groups/{dc}/{id}/failover", func(w http.ResponseWriter, r *http.Request) {
		var req FailoverRequest
		if err := readJSON(r, &req); err != nil {
			writeError(w, err)
			return
		}
		out, err := n.switchover(r.Context(), r.PathValue("dc"), r.PathValue("id"), req)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// switchover starts a planned switchover, run by this node when it is in the group's DC, else
// by the first node of that DC that answers, and waits until it ends.
func (n *Node) switchover(ctx context.Context, dc, id string, req FailoverRequest) (*FailoverReply, error) {
	exec, err := n.executorIn(ctx, dc)
	if err != nil {
		return nil, err
	}
	// The switchover is the failover whose StartIndex is its proposal's index: this node's
	// state may be behind the leader's, so an epoch read from it before proposing may name a
	// failover that ended already (and its result would be answered as this one's). A leader
	// of an older build answers no index: then the next epoch as this node sees it.
	var epoch uint64
	if d := n.State().DCs[dc]; d != nil && d.Groups[id] != nil {
		epoch = d.Groups[id].Epoch + 1
	}
	index, err := n.ProposeAt(ctx, &fsm.StartFailover{DC: dc, Group: id, To: req.To, Executor: exec, Reason: req.Reason})
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, failoverWait)
	defer cancel()
	out := &FailoverReply{}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if d := n.State().DCs[dc]; d != nil && d.Groups[id] != nil {
			g := d.Groups[id]
			out.Master = g.Master
			if lf := g.LastFailover; lf != nil && (index > 0 && lf.StartIndex >= index || index == 0 && lf.Epoch >= epoch) && g.Failover == nil {
				out.Failover, out.Done = lf, true
				return out, nil
			}
			out.Failover = g.Failover
		}
		select {
		case <-wctx.Done():
			return out, nil
		case <-t.C:
		}
	}
}

// executorIn returns the node that runs a switchover in dc: this node when it is there, else
// the first node of dc (by id) that answers.
func (n *Node) executorIn(ctx context.Context, dc string) (string, error) {
	if n.cfg.DC == dc {
		return n.cfg.ID, nil
	}
	st := n.State()
	for _, id := range st.DCNodes(dc) {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		err := n.peers.call(cctx, st.Nodes[id].Peer, rpcStatus, struct{}{}, &statusReply{})
		cancel()
		if err == nil {
			return id, nil
		}
	}
	return "", &fsm.Error{Code: "not_found", Msg: fmt.Sprintf("no node of datacenter %s answers: a switchover runs on a node of the group's datacenter", dc)}
}
