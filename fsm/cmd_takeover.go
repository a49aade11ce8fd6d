package fsm

import "fmt"

// TypeTakeOverFailover is the failover command that hands a failover to another executor.
// Never renumber (19-29 are taken by other commands).
const TypeTakeOverFailover CmdType = 30

// TakeOverFailover makes Executor, a node of the group's DC, run the group's failover of Epoch
// in place of From, a node that died or stopped acting while it ran it (docs/failover.md,
// "Executor hand-over"). It applies only while From is still the executor, so among the nodes
// that noticed, the first committed wins and the others are refused; it changes nothing when
// Executor already runs it. Every promotion step is idempotent: the new executor resumes from
// what the servers say (a replica From already promoted is committed, not replaced).
type TakeOverFailover struct {
	DC       string `json:"dc"`
	Group    string `json:"group"`
	Epoch    uint64 `json:"epoch"`
	From     string `json:"from"`
	Executor string `json:"executor"`
	// Why says how the new executor found From dead (logged and kept in the failover).
	Why string `json:"why,omitempty"`
}

func init() {
	register(TypeTakeOverFailover, func() Command { return &TakeOverFailover{} })
}

// Type implements Command.
func (*TakeOverFailover) Type() CmdType { return TypeTakeOverFailover }

// Name implements Command.
func (*TakeOverFailover) Name() string { return "take_over_failover" }

func (c *TakeOverFailover) apply(s *State, _ uint64) error {
	cur := s.DCs[c.DC]
	if cur == nil || cur.Groups[c.Group] == nil {
		return errf("not_found", "group %s does not exist in datacenter %s", c.Group, c.DC)
	}
	f := cur.Groups[c.Group].Failover
	if f == nil || f.Epoch != c.Epoch {
		return errf("busy", "group %s has no failover of epoch %d in progress", c.Group, c.Epoch)
	}
	if n := s.Nodes[c.Executor]; n == nil || n.DC != c.DC {
		return errf("invalid", "executor %q is not a node of datacenter %s", c.Executor, c.DC)
	}
	if f.Executor == c.Executor {
		return nil // taken over already by the same node: a retried proposal
	}
	if f.Executor != c.From {
		return errf("busy", "group %s's failover of epoch %d is run by %s now, not %s", c.Group, c.Epoch, f.Executor, c.From)
	}
	g, _ := s.writableGroup(c.DC, c.Group)
	nf := *g.Failover
	nf.Executor, nf.TakeOvers, nf.Stalled = c.Executor, nf.TakeOvers+1, ""
	nf.TakenOver = fmt.Sprintf("%s took over from %s: %s", c.Executor, c.From, c.Why)
	g.Failover = &nf
	return nil
}
