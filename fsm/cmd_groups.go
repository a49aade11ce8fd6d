package fsm

import (
	"net"
	"slices"
	"sort"
	"strconv"
)

// AddGroup creates a group in a DC.
type AddGroup struct {
	DC    string `json:"dc"`
	Group Group  `json:"group"`
}

// UpdateGroup replaces a group's master, replicas and password (for a failover or a new replica).
type UpdateGroup struct {
	DC    string `json:"dc"`
	Group Group  `json:"group"`
	// KeepPassword keeps the group's current password (Group.Password is ignored): the admin
	// API never shows a password, so a change that does not mean to touch it cannot repeat it.
	KeepPassword bool `json:"keep_password,omitempty"`
	// KeepUser keeps the group's current user (Group.User is ignored), as the state applies
	// it: an update that does not change the user cannot put back an older one read from a
	// node's state that lags the leader's.
	KeepUser bool `json:"keep_user,omitempty"`
	// KeepFenced keeps the group's fenced former masters that Group does not list again (the
	// admin API's updates name none). A field, not a rule of apply: entries already in a log
	// apply as they did (they dropped them), and a build that does not know it stops at it.
	KeepFenced bool `json:"keep_fenced,omitempty"`
}

// RemoveGroup removes a group that serves no slot.
type RemoveGroup struct {
	DC string `json:"dc"`
	ID string `json:"id"`
}

func init() {
	register(TypeAddGroup, func() Command { return &AddGroup{} })
	register(TypeUpdateGroup, func() Command { return &UpdateGroup{} })
	register(TypeRemoveGroup, func() Command { return &RemoveGroup{} })
}

// Type implements Command.
func (*AddGroup) Type() CmdType { return TypeAddGroup }

// Name implements Command.
func (*AddGroup) Name() string { return "add_group" }

func (c *AddGroup) apply(s *State, _ uint64) error {
	if err := validName("datacenter", c.DC); err != nil {
		return err
	}
	if err := checkGroup(s, c.DC, &c.Group); err != nil {
		return err
	}
	dc, ok := s.DCs[c.DC]
	if !ok {
		dc = newDC(c.DC)
		s.DCs[c.DC] = dc
	}
	if _, ok := dc.Groups[c.Group.ID]; ok {
		return errf("exists", "group %s already exists in datacenter %s", c.Group.ID, c.DC)
	}
	dc = s.writableDC(c.DC)
	g := c.Group.clone()
	g.Epoch, g.Failovers, g.LostBytes, g.DownVotes, g.DownAt, g.Failover, g.LastFailover = 0, 0, 0, nil, nil, nil, nil
	dc.Groups[g.ID] = g
	return nil
}

// Type implements Command.
func (*UpdateGroup) Type() CmdType { return TypeUpdateGroup }

// Name implements Command.
func (*UpdateGroup) Name() string { return "update_group" }

func (c *UpdateGroup) apply(s *State, _ uint64) error {
	dc, ok := s.DCs[c.DC]
	if !ok || dc.Groups[c.Group.ID] == nil {
		return errf("not_found", "group %s does not exist in datacenter %s", c.Group.ID, c.DC)
	}
	if err := checkGroup(s, c.DC, &c.Group); err != nil {
		return err
	}
	old := dc.Groups[c.Group.ID]
	if f := old.Failover; f != nil {
		return errf("busy", "group %s in datacenter %s is failing over (epoch %d, from %s): wait for it to finish", old.ID, c.DC, f.Epoch, f.From)
	}
	g := c.Group.clone()
	if c.KeepPassword {
		g.Password = old.Password
	}
	if c.KeepUser {
		g.User = old.User
	}
	// The failover record stays: epochs only grow, and the last failover is history.
	g.Epoch, g.Failovers, g.LostBytes, g.DownVotes, g.DownAt, g.Failover, g.LastFailover = old.Epoch, old.Failovers, old.LostBytes, nil, nil, nil, old.LastFailover
	// So do, with KeepFenced, the fenced former masters the update does not list again: an
	// update that named none (the admin API's) dropped them, and a fenced master that came
	// back was then neither demoted nor kept from another group.
	if c.KeepFenced {
		for _, a := range old.Fenced {
			if a != g.Master && !slices.Contains(g.Replicas, a) && !slices.Contains(g.Fenced, a) {
				g.Fenced = append(g.Fenced, a)
			}
		}
		g.Fenced = slices.DeleteFunc(g.Fenced, func(a string) bool { return a == g.Master || slices.Contains(g.Replicas, a) })
		sort.Strings(g.Fenced)
		if len(g.Fenced) == 0 {
			g.Fenced = nil
		}
	}
	dc = s.writableDC(c.DC)
	dc.Groups[g.ID] = g
	return nil
}

// Type implements Command.
func (*RemoveGroup) Type() CmdType { return TypeRemoveGroup }

// Name implements Command.
func (*RemoveGroup) Name() string { return "remove_group" }

func (c *RemoveGroup) apply(s *State, _ uint64) error {
	dc, ok := s.DCs[c.DC]
	if !ok || dc.Groups[c.ID] == nil {
		return errf("not_found", "group %s does not exist in datacenter %s", c.ID, c.DC)
	}
	if n := dc.SlotCount(c.ID); n > 0 {
		return errf("busy", "group %s in datacenter %s still serves %d slots: migrate them to another group first (redraft migrate --dc %s --slots ... --to GROUP)", c.ID, c.DC, n, c.DC)
	}

	for _, m := range s.Migrations {
		if m.Active() && m.DC == c.DC && (m.From == c.ID || m.To == c.ID) {
			return errf("busy", "group %s is part of migration %d; wait for it or cancel it first", c.ID, m.ID)
		}
	}
	delete(s.writableDC(c.DC).Groups, c.ID)
	return nil
}

// checkGroup validates a group's id and addresses and that no other group of the DC uses them.
func checkGroup(s *State, dcName string, g *Group) error {
	if err := validName("group id", g.ID); err != nil {
		return err
	}
	if g.Master == "" {
		return errf("invalid", "group %s: a master address is required", g.ID)
	}
	addrs := g.Servers()
	for a, p := range g.Priority {
		if p < 0 {
			return errf("invalid", "group %s: priority %d of %s is negative (0 never promotes it)", g.ID, p, a)
		}
	}
	seen := map[string]bool{}
	for _, a := range addrs {
		if err := validAddr(a); err != nil {
			return errf("invalid", "group %s: %v", g.ID, err)
		}
		if seen[a] {
			return errf("invalid", "group %s: address %s is listed twice", g.ID, a)
		}
		seen[a] = true
	}
	if dc, ok := s.DCs[dcName]; ok {
		for id, o := range dc.Groups {
			if id == g.ID {
				continue
			}
			for _, a := range o.Servers() {
				if seen[a] {
					return errf("exists", "group %s: address %s already belongs to group %s", g.ID, a, id)
				}
			}
		}
	}
	return nil
}

// Servers returns the group's master, replicas and fenced servers, in that order.
func (g *Group) Servers() []string {
	out := make([]string, 0, 1+len(g.Replicas)+len(g.Fenced))
	out = append(out, g.Master)
	out = append(out, g.Replicas...)
	return append(out, g.Fenced...)
}

func validAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" {
		return errf("invalid", "address %q is not HOST:PORT", a)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return errf("invalid", "address %q has a bad port", a)
	}
	return nil
}
