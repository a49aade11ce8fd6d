package fsm

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Failover commands (DESIGN.md, "Groups heal themselves"; docs/failover.md). A failover is a
// short sequence of committed steps, each idempotent, so whoever runs it (the executor, a
// node of the group's DC) can die and the work resumes from the state:
//
//  1. Start: ReportServer votes from a majority of the DC's nodes (an unplanned failover), or
//     StartFailover (a planned switchover). The group gets Failover{Epoch: Epoch+1}; routers
//     hold the group's requests from then on.
//  2. The executor promotes a replica on the servers (REPLICAOF NO ONE) and commits
//     FinishFailover, which swaps the group's master; routers route to the new master at once.
//     A failover that cannot go on records why (FinishFailover with Stalled) and retries.
//  3. The old master is fenced: never routed to, made a replica as soon as it answers, and
//     listed among the replicas again (RejoinServer) once it replicates the new master.

// The failover command types. Never renumber.
const (
	TypeReportServer   CmdType = 15
	TypeStartFailover  CmdType = 16
	TypeFinishFailover CmdType = 17
	TypeRejoinServer   CmdType = 18
)

// DefaultPriority is a replica's promotion priority when the group does not list one.
const DefaultPriority = 100

// Failover is a group's failover: in progress (Group.Failover) or the last one that ended
// (Group.LastFailover).
type Failover struct {
	// Epoch is the group's epoch once this failover finishes; steps of another epoch are refused.
	Epoch uint64 `json:"epoch"`
	// From is the master being replaced.
	From string `json:"from"`
	// FromRunID is From's run id as the node whose vote started an unplanned failover last
	// saw it answer ("" when unknown): From answering again with this run id is the same
	// process, with its data, and cancels the failover; a new process (restarted, perhaps
	// empty) never does.
	FromRunID string `json:"from_run_id,omitempty"`
	// To is the promoted replica: chosen by the executor for an unplanned failover (set when it
	// finishes), given or chosen for a planned switchover ("" until chosen).
	To string `json:"to,omitempty"`
	// Planned is set for a switchover an operator asked for (the master is up).
	Planned bool `json:"planned,omitempty"`
	// Executor is the node of the group's DC that runs the steps on the servers.
	Executor string `json:"executor"`
	// TakeOvers counts the times another node of the DC took the failover over from a dead
	// executor (TakeOverFailover); TakenOver says why the last time.
	TakeOvers int    `json:"take_overs,omitempty"`
	TakenOver string `json:"taken_over,omitempty"`
	// Reason says why the failover started.
	Reason string `json:"reason"`
	// Stalled says why the failover cannot go on now (no usable replica, ...); it retries.
	Stalled string `json:"stalled,omitempty"`
	// Promoting and PromotingRunID are the replica an unplanned failover's executor chose and
	// its run id, recorded before it is told REPLICAOF NO ONE: a later attempt (the executor's
	// next, or a new executor's) resumes from a replica in the master role only when it is
	// this one, the same process. Another server answering as a master (a replica restarted
	// without replicaof, empty) is not taken for promoted.
	Promoting      string `json:"promoting,omitempty"`
	PromotingRunID string `json:"promoting_run_id,omitempty"`
	// StartIndex and EndIndex are the Raft indexes of its first and last step.
	StartIndex uint64 `json:"start_index"`
	EndIndex   uint64 `json:"end_index,omitempty"`
	// Result is how it ended: "promoted" or "cancelled" (LastFailover only).
	Result string `json:"result,omitempty"`
	// LostBytes is how far the promoted replica was behind the old master's offset as last
	// seen by the executor: replication stream, so writes acknowledged at DC_ONE, lost with the
	// old master (a lower bound: the master may have taken more after it was last seen).
	LostBytes int64 `json:"lost_bytes,omitempty"`
}

// ReportServer is one node's vote on a group's master: Down when the node has not reached it
// for master_down_after, !Down when it reaches it again. Nodes report changes only. A vote names
// the master it is about; a vote about an address that is not the group's master is ignored.
type ReportServer struct {
	DC    string `json:"dc"`
	Group string `json:"group"`
	Node  string `json:"node"`
	Addr  string `json:"addr"`
	Down  bool   `json:"down"`
	// RunID is, with Down, the master's run id as the node last saw it answer.
	RunID string `json:"run_id,omitempty"`
	// At is, with Down, when the node casts or renews the vote, on its clock (unix ms).
	At int64 `json:"at,omitempty"`
}

// A down vote's life: a node renews its standing vote every DownVoteRenew while it still does
// not reach the master, and a vote older than DownVoteLife (plus twice master_down_after)
// against the vote being applied counts for no failover. Without it a vote of a node that
// died or was cut off after casting it stayed forever, and one later blip of another node
// made a majority against a healthy master.
const (
	DownVoteRenew = 5 * time.Second
	DownVoteLife  = 3 * DownVoteRenew
)

// StartFailover starts a planned switchover of a group's master to To (or the best replica
// when To is empty), run by Executor.
type StartFailover struct {
	DC       string `json:"dc"`
	Group    string `json:"group"`
	To       string `json:"to,omitempty"`
	Executor string `json:"executor"`
	Reason   string `json:"reason,omitempty"`
}

// FinishFailover ends the group's failover of Epoch: NewMaster, a replica, becomes the master;
// NewMaster equal to the old master cancels it. With NewMaster empty it only records Stalled,
// or the replica the executor is about to promote (Promoting, a replica of the group, and
// its run id).
type FinishFailover struct {
	DC        string `json:"dc"`
	Group     string `json:"group"`
	Epoch     uint64 `json:"epoch"`
	NewMaster string `json:"new_master,omitempty"`
	Stalled   string `json:"stalled,omitempty"`
	// LostBytes is Failover.LostBytes, as the executor measured it.
	LostBytes int64 `json:"lost_bytes,omitempty"`
	// Executor, when set, is the node sending the step: refused unless it is still the
	// failover's executor (a replaced executor that wakes up must not finish it).
	Executor string `json:"executor,omitempty"`
	// Promoting and PromotingRunID, with NewMaster empty: Failover.Promoting.
	Promoting      string `json:"promoting,omitempty"`
	PromotingRunID string `json:"promoting_run_id,omitempty"`
}

// RejoinServer lists a fenced server among the group's replicas again: it replicates the
// master now.
type RejoinServer struct {
	DC    string `json:"dc"`
	Group string `json:"group"`
	Addr  string `json:"addr"`
}

func init() {
	register(TypeReportServer, func() Command { return &ReportServer{} })
	register(TypeStartFailover, func() Command { return &StartFailover{} })
	register(TypeFinishFailover, func() Command { return &FinishFailover{} })
	register(TypeRejoinServer, func() Command { return &RejoinServer{} })
}

// writableGroup returns the group for a command to change (its DC copied first).
func (s *State) writableGroup(dc, id string) (*Group, error) {
	d, ok := s.DCs[dc]
	if !ok || d.Groups[id] == nil {
		return nil, errf("not_found", "group %s does not exist in datacenter %s", id, dc)
	}
	return s.writableDC(dc).Groups[id], nil
}

// DCNodes returns the ids of the nodes of dc, sorted.
func (s *State) DCNodes(dc string) []string {
	var out []string
	for _, id := range s.NodeIDs() {
		if s.Nodes[id].DC == dc {
			out = append(out, id)
		}
	}
	return out
}

// MasterDownVoters returns the DC's nodes that vote the group's current master down, sorted.
func (s *State) MasterDownVoters(dc string, g *Group) []string {
	var out []string
	for _, id := range s.DCNodes(dc) {
		if g.DownVotes[id] == g.Master {
			out = append(out, id)
		}
	}
	return out
}

// Type implements Command.
func (*ReportServer) Type() CmdType { return TypeReportServer }

// Name implements Command.
func (*ReportServer) Name() string { return "report_server" }

func (c *ReportServer) apply(s *State, index uint64) error {
	n, ok := s.Nodes[c.Node]
	if !ok {
		return errf("not_found", "node %s is not a member", c.Node)
	}
	if n.DC != c.DC {
		return errf("invalid", "node %s is in datacenter %s: it does not watch groups of %s", c.Node, n.DC, c.DC)
	}
	cur := s.DCs[c.DC]
	if cur == nil || cur.Groups[c.Group] == nil {
		return errf("not_found", "group %s does not exist in datacenter %s", c.Group, c.DC)
	}
	if old := cur.Groups[c.Group]; c.Down && old.Master != c.Addr || !c.Down && old.DownVotes[c.Node] != c.Addr {
		return nil // about a former master, or nothing to withdraw: changes nothing
	}
	g, _ := s.writableGroup(c.DC, c.Group)
	if c.Down {
		if g.DownVotes == nil {
			g.DownVotes = map[string]string{}
		}
		g.DownVotes[c.Node] = c.Addr
		if c.At > 0 {
			if g.DownAt == nil {
				g.DownAt = map[string]int64{}
			}
			g.DownAt[c.Node] = c.At
		}
	} else {
		delete(g.DownVotes, c.Node)
		delete(g.DownAt, c.Node)
	}
	if g.Failover != nil || !c.Down {
		// A withdrawal starts nothing: it can only take a vote away, and a majority of
		// fresh votes started a failover when its last vote came.
		return nil
	}
	voters := s.MasterDownVoters(c.DC, g)
	if c.At > 0 {
		oldest := c.At - (DownVoteLife + 2*s.SettingDuration("master_down_after")).Milliseconds()
		voters = slices.DeleteFunc(voters, func(id string) bool { at, ok := g.DownAt[id]; return ok && at < oldest })
	}
	total := len(s.DCNodes(c.DC))
	if len(voters) < total/2+1 {
		return nil
	}
	g.Failover = &Failover{
		Epoch: g.Epoch + 1, From: g.Master, FromRunID: c.RunID, Executor: c.Node, StartIndex: index,
		Reason: fmt.Sprintf("master %s not reached for master_down_after (%s) by %d of the %d nodes of %s (%s)",
			g.Master, s.Setting("master_down_after"), len(voters), total, c.DC, strings.Join(voters, ", ")),
	}
	return nil
}

// Type implements Command.
func (*StartFailover) Type() CmdType { return TypeStartFailover }

// Name implements Command.
func (*StartFailover) Name() string { return "start_failover" }

func (c *StartFailover) apply(s *State, index uint64) error {
	cur := s.DCs[c.DC]
	if cur == nil || cur.Groups[c.Group] == nil {
		return errf("not_found", "group %s does not exist in datacenter %s", c.Group, c.DC)
	}
	old := cur.Groups[c.Group]
	if f := old.Failover; f != nil {
		return errf("busy", "group %s is already failing over (epoch %d, from %s)", c.Group, f.Epoch, f.From)
	}
	if len(old.Replicas) == 0 {
		return errf("invalid", "group %s has no replica to switch over to: add one first (redraft group update)", c.Group)
	}
	if c.To != "" && !slices.Contains(old.Replicas, c.To) {
		return errf("invalid", "%s is not a replica of group %s (replicas: %s)", c.To, c.Group, strings.Join(old.Replicas, ", "))
	}
	if c.To != "" && old.PriorityOf(c.To) == 0 {
		return errf("invalid", "%s has priority 0 in group %s: it is never promoted", c.To, c.Group)
	}
	if n := s.Nodes[c.Executor]; n == nil || n.DC != c.DC {
		return errf("invalid", "executor %q is not a node of datacenter %s", c.Executor, c.DC)
	}
	g, _ := s.writableGroup(c.DC, c.Group)
	reason := c.Reason
	if reason == "" {
		reason = "planned switchover"
	}
	g.Failover = &Failover{Epoch: g.Epoch + 1, From: g.Master, To: c.To, Planned: true, Executor: c.Executor,
		Reason: reason, StartIndex: index}
	return nil
}

// Type implements Command.
func (*FinishFailover) Type() CmdType { return TypeFinishFailover }

// Name implements Command.
func (*FinishFailover) Name() string { return "finish_failover" }

func (c *FinishFailover) apply(s *State, index uint64) error {
	cur := s.DCs[c.DC]
	if cur == nil || cur.Groups[c.Group] == nil {
		return errf("not_found", "group %s does not exist in datacenter %s", c.Group, c.DC)
	}
	old := cur.Groups[c.Group]
	f := old.Failover
	if f == nil || f.Epoch != c.Epoch {
		return errf("busy", "group %s has no failover of epoch %d in progress", c.Group, c.Epoch)
	}
	if c.Executor != "" && c.Executor != f.Executor {
		return errf("busy", "group %s's failover of epoch %d is run by %s now, not %s", c.Group, c.Epoch, f.Executor, c.Executor)
	}
	switch {
	case c.NewMaster == "" && c.Promoting != "":
		if !slices.Contains(old.Replicas, c.Promoting) {
			return errf("invalid", "%s is not a replica of group %s", c.Promoting, c.Group)
		}
	case c.NewMaster == "":
		if c.Stalled == "" {
			return errf("invalid", "finish_failover needs a new master, a replica being promoted or a reason it is stalled")
		}
	case c.NewMaster != f.From && !slices.Contains(old.Replicas, c.NewMaster):
		return errf("invalid", "%s is not a replica of group %s", c.NewMaster, c.Group)
	}
	g, _ := s.writableGroup(c.DC, c.Group)
	if c.NewMaster == "" {
		if c.Promoting != "" {
			g.Failover.Promoting, g.Failover.PromotingRunID, g.Failover.Stalled = c.Promoting, c.PromotingRunID, ""
		} else {
			g.Failover.Stalled = c.Stalled
		}
		return nil
	}
	done := *g.Failover
	done.EndIndex, done.Stalled = index, ""
	g.Failover, g.DownVotes, g.DownAt = nil, nil, nil
	// The epoch moves on either way, so a late step of this failover never counts for the next.
	g.Epoch = f.Epoch
	if c.NewMaster == f.From {
		done.Result = "cancelled"
		g.LastFailover = &done
		return nil
	}
	done.Result, done.To, done.LostBytes = "promoted", c.NewMaster, max(c.LostBytes, 0)
	g.LastFailover = &done
	g.Failovers++
	g.LostBytes += done.LostBytes
	g.Replicas = slices.DeleteFunc(g.Replicas, func(a string) bool { return a == c.NewMaster })
	g.Fenced = slices.DeleteFunc(g.Fenced, func(a string) bool { return a == c.NewMaster })
	g.Master = c.NewMaster
	if f.Planned {
		// The executor made the old master a replica of the new one before this step.
		g.Replicas = append(g.Replicas, f.From)
	} else if !slices.Contains(g.Fenced, f.From) {
		g.Fenced = append(g.Fenced, f.From)
	}
	sort.Strings(g.Fenced)
	return nil
}

// Type implements Command.
func (*RejoinServer) Type() CmdType { return TypeRejoinServer }

// Name implements Command.
func (*RejoinServer) Name() string { return "rejoin_server" }

func (c *RejoinServer) apply(s *State, _ uint64) error {
	cur := s.DCs[c.DC]
	if cur == nil || cur.Groups[c.Group] == nil {
		return errf("not_found", "group %s does not exist in datacenter %s", c.Group, c.DC)
	}
	if !slices.Contains(cur.Groups[c.Group].Fenced, c.Addr) {
		return nil // already rejoined, or never fenced
	}
	g, _ := s.writableGroup(c.DC, c.Group)
	g.Fenced = slices.DeleteFunc(g.Fenced, func(a string) bool { return a == c.Addr })
	g.Replicas = append(g.Replicas, c.Addr)
	return nil
}

// PriorityOf returns addr's promotion priority in the group: lower is preferred, 0 never.
func (g *Group) PriorityOf(addr string) int {
	if p, ok := g.Priority[addr]; ok {
		return p
	}
	return DefaultPriority
}
