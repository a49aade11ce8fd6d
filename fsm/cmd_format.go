package fsm

import "fmt"

// Data formats: what the backends hold for cross-DC replication (outboxes, inboxes, per-key
// metadata) and how the nodes' scripts read and write it. Every node of a cluster must read
// and write the same format, or a node applying with one record and another with a different
// one would each apply what the other had applied. So the format is part of the cluster state
// and changes one step at a time, as etcd raises its cluster version:
//
//   - each node registers the highest format its build runs (Node.MaxFormat);
//   - the leader raises the cluster's format by one (RaiseDataFormat) once every member runs
//     it and has reported acting on the current one (AckDataFormat, Node.Format);
//   - a node reports a format only once nothing it does still uses an older one; a node whose
//     build is older than the cluster's format does not act at all (node/current.go), and
//     cannot register.
//
// A format change that replaces a record therefore takes two steps: one where every node
// writes both records and reads the old, then one where they read and write the new.

// Command types of data formats.
const (
	TypeRaiseDataFormat CmdType = 23
	TypeAckDataFormat   CmdType = 24
)

// FirstDataFormat is the format every cluster starts with, and what a node that registered
// no MaxFormat (a build from before data formats) runs.
const FirstDataFormat = 1

// LatestDataFormat is the highest format this build runs, and so the one a new cluster of it
// raises itself to within seconds of its start: 3, one replication log per group
// (router/xdc, LogDataFormat). A node started with REDRAFT_MAX_DATA_FORMAT (cmd/redraft)
// registers a lower one, which holds the cluster there.
const LatestDataFormat = 3

// RaiseDataFormat raises the cluster's data format to To, the current format plus one.
type RaiseDataFormat struct {
	To int `json:"to"`
}

// AckDataFormat records that Node acts on data format Format: nothing it does still uses an
// older one.
type AckDataFormat struct {
	Node   string `json:"node"`
	Format int    `json:"format"`
}

func init() {
	register(TypeRaiseDataFormat, func() Command { return &RaiseDataFormat{} })
	register(TypeAckDataFormat, func() Command { return &AckDataFormat{} })
}

// Format returns the cluster's data format.
func (s *State) Format() int { return max(s.DataFormat, FirstDataFormat) }

// MaxDataFormat returns the highest data format the node's build runs.
func (n *Node) MaxDataFormat() int { return max(n.MaxFormat, FirstDataFormat) }

// ActsOn returns the data format the node last reported acting on.
func (n *Node) ActsOn() int { return max(n.Format, FirstDataFormat) }

// NextDataFormat returns the format the cluster may be raised to now, or 0 and why not.
func (s *State) NextDataFormat() (int, string) {
	to := s.Format() + 1
	if len(s.Nodes) == 0 {
		return 0, "the cluster has no members"
	}
	for _, id := range s.NodeIDs() {
		n := s.Nodes[id]
		if n.MaxDataFormat() < to {
			return 0, fmt.Sprintf("node %s runs data formats up to %d", id, n.MaxDataFormat())
		}
		if n.ActsOn() < s.Format() {
			return 0, fmt.Sprintf("node %s has not reported acting on data format %d", id, s.Format())
		}
	}
	return to, ""
}

// Type implements Command.
func (*RaiseDataFormat) Type() CmdType { return TypeRaiseDataFormat }

// Name implements Command.
func (*RaiseDataFormat) Name() string { return "raise_data_format" }

func (c *RaiseDataFormat) apply(s *State, _ uint64) error {
	if c.To <= s.Format() {
		return nil // a repeated raise (a new leader's, or a retry): already done
	}
	to, why := s.NextDataFormat()
	if to == 0 {
		return errf("busy", "data format %d cannot be raised yet: %s", s.Format(), why)
	}
	if c.To != to {
		return errf("invalid", "data format %d can be raised to %d only, not %d", s.Format(), to, c.To)
	}
	s.DataFormat = to
	return nil
}

// Type implements Command.
func (*AckDataFormat) Type() CmdType { return TypeAckDataFormat }

// Name implements Command.
func (*AckDataFormat) Name() string { return "ack_data_format" }

func (c *AckDataFormat) apply(s *State, _ uint64) error {
	n, ok := s.Nodes[c.Node]
	if !ok {
		return errf("not_found", "node %s is not a member", c.Node)
	}
	if c.Format > s.Format() {
		return errf("invalid", "node %s acts on data format %d, above the cluster's %d", c.Node, c.Format, s.Format())
	}
	if c.Format > n.MaxDataFormat() {
		return errf("invalid", "node %s acts on data format %d, above the %d it registered", c.Node, c.Format, n.MaxDataFormat())
	}
	if c.Format > n.Format {
		n.Format = c.Format
	}
	return nil
}

// CheckNodeFormat refuses a registration whose build cannot run the cluster's data format
// (AddNode applies it; the leader checks it before it adds a joiner to Raft).
func (s *State) CheckNodeFormat(n *Node) error {
	if n.MaxDataFormat() < s.Format() {
		return errf("invalid", "node %s runs data formats up to %d, and the cluster writes format %d: run a newer build on it", n.ID, n.MaxDataFormat(), s.Format())
	}
	return nil
}
