package fsm

import "strings"

// AddNode adds a node, or updates the addresses, rack and tokens of a node with the same id.
type AddNode struct {
	Node Node `json:"node"`
}

// RemoveNode removes a node from the cluster state.
type RemoveNode struct {
	ID string `json:"id"`
}

func init() {
	register(TypeAddNode, func() Command { return &AddNode{} })
	register(TypeRemoveNode, func() Command { return &RemoveNode{} })
}

// Type implements Command.
func (*AddNode) Type() CmdType { return TypeAddNode }

// Name implements Command.
func (*AddNode) Name() string { return "add_node" }

func (c *AddNode) apply(s *State, index uint64) error {
	n := c.Node
	if err := validName("node id", n.ID); err != nil {
		return err
	}
	if err := validName("datacenter", n.DC); err != nil {
		return err
	}
	if n.Peer == "" {
		return errf("invalid", "node %s: peer_listen address is required", n.ID)
	}
	for id, o := range s.Nodes {
		if id == n.ID {
			continue
		}
		if o.Peer == n.Peer {
			return errf("exists", "node %s: peer address %s is already used by node %s", n.ID, n.Peer, id)
		}
		if n.Listen != "" && o.Listen == n.Listen {
			return errf("exists", "node %s: listen address %s is already used by node %s", n.ID, n.Listen, id)
		}
	}
	if err := s.CheckNodeFormat(&n); err != nil {
		return err
	}
	if old, ok := s.Nodes[n.ID]; ok {
		if old.DC != n.DC {
			return errf("exists", "node id %s is taken by a node in datacenter %s (remove it first to move it to %s)", n.ID, old.DC, n.DC)
		}
		n.JoinIndex = old.JoinIndex
		n.Format = old.Format // what it acts on is reported by AckDataFormat only
	} else {
		n.JoinIndex = index
		n.Format = 0
	}
	n.Tokens = append([]uint32(nil), n.Tokens...)
	s.Nodes[n.ID] = &n
	delete(s.Removed, n.ID)
	if _, ok := s.DCs[n.DC]; !ok {
		s.DCs[n.DC] = newDC(n.DC)
	}
	return nil
}

// Type implements Command.
func (*RemoveNode) Type() CmdType { return TypeRemoveNode }

// Name implements Command.
func (*RemoveNode) Name() string { return "remove_node" }

func (c *RemoveNode) apply(s *State, index uint64) error {
	if _, ok := s.Nodes[c.ID]; !ok {
		return errf("not_found", "node %s is not a member", c.ID)
	}
	delete(s.Nodes, c.ID)
	s.Removed[c.ID] = index
	// A removed node no longer holds up a freeze barrier.
	for _, m := range s.Migrations {
		if m.Active() && m.FreezeAcks != nil {
			delete(m.FreezeAcks, c.ID)
			s.checkBarrier(m)
		}
	}
	s.removeFromFlush(c.ID)
	return nil
}

// validName accepts ids made of letters, digits, '-', '_' and '.', up to 64 bytes.
func validName(what, v string) error {
	if v == "" {
		return errf("invalid", "%s is required", what)
	}
	if len(v) > 64 {
		return errf("invalid", "%s %q is longer than 64 bytes", what, v)
	}
	if strings.IndexFunc(v, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	}) >= 0 {
		return errf("invalid", "%s %q may hold only letters, digits, '-', '_' and '.'", what, v)
	}
	return nil
}
