package node

import (
	"context"
	"fmt"
	"time"

	"github.com/redraft/redraft/fsm"
)

// Data formats (fsm/cmd_format.go). This node registers the highest format its build runs
// (self), does not act on a state whose format is above it (current.go), and reports each new
// format it acts on once its data plane has switched (formatLoop). The leader raises the
// cluster's format a step when every member runs the next one and acts on the current one.

// formatLoop reports the cluster's data format as the one this node acts on, once the data plane
// says nothing it does uses an older one (Options.SwitchDataFormat).
func (n *Node) formatLoop() {
	defer n.wg.Done()
	ctx, cancel := n.untilStop()
	defer cancel()
	kick := make(chan struct{}, 1)
	n.OnCurrent(func(st *fsm.State, err error) {
		if err == nil {
			select {
			case kick <- struct{}{}:
			default:
			}
		}
	})
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
		case <-t.C:
		}
		if err := n.reportDataFormat(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("could not report the data format this node acts on; will retry", "err", err)
		}
	}
}

// reportDataFormat switches the data plane to the format of the state this node acts on and
// reports it, unless it already has.
func (n *Node) reportDataFormat(ctx context.Context) error {
	st := n.Current()
	me := st.Nodes[n.cfg.ID]
	if me == nil || st.Format() <= max(me.ActsOn(), int(n.reportedFormat.Load())) {
		return nil
	}
	format := st.Format()
	if n.opts.SwitchDataFormat != nil {
		if err := n.opts.SwitchDataFormat(ctx, format); err != nil {
			return fmt.Errorf("switching the data plane to data format %d: %w", format, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, applyTimeout)
	defer cancel()
	if err := n.Propose(ctx, &fsm.AckDataFormat{Node: n.cfg.ID, Format: format}); err != nil {
		return err
	}
	// Until this node applies its own report, the state it acts on does not show it yet.
	n.reportedFormat.Store(int64(format))
	n.log.Info("acts on data format", "format", format)
	return nil
}

// raiseDataFormat, at the leader, raises the cluster's data format by one when every member runs
// the next format and acts on the current one.
func (n *Node) raiseDataFormat() {
	n.joinMu.Lock()
	defer n.joinMu.Unlock()
	st := n.State()
	to, _ := st.NextDataFormat()
	if to == 0 {
		return
	}
	// A Raft member the state does not know is a join in flight (or one that failed after
	// its Raft step): its build's format is not among the members' yet.
	if id := n.unknownRaftMember(st); id != "" {
		n.log.Info("the data format is not raised while a Raft member is not in the cluster state", "to", to, "member", id)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), applyTimeout)
	defer cancel()
	if err := n.Propose(ctx, &fsm.RaiseDataFormat{To: to}); err != nil {
		n.log.Warn("could not raise the cluster's data format", "to", to, "err", err)
		return
	}
	n.log.Info("raised the cluster's data format", "format", to)
}

// formatWaiting returns why the cluster's data format is not raised while a member runs a
// newer one ("" when none does, or when the raise may go ahead).
func formatWaiting(st *fsm.State) string {
	for _, m := range st.Nodes {
		if m.MaxDataFormat() > st.Format() {
			_, why := st.NextDataFormat()
			return why
		}
	}
	return ""
}

// unknownRaftMember returns a server of the Raft configuration that st has no node for ("" if
// none, or when the configuration cannot be read: then the caller's step is not taken either).
func (n *Node) unknownRaftMember(st *fsm.State) string {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return "(the Raft configuration: " + err.Error() + ")"
	}
	for _, s := range f.Configuration().Servers {
		if st.Nodes[string(s.ID)] == nil {
			return string(s.ID)
		}
	}
	return ""
}
