package fsm

import "fmt"

// StartMigration freezes slots of a DC for a move from the group that owns them to another
// (step 1 of DESIGN.md's "Slot migration"). Every slot must belong to the same source group.
type StartMigration struct {
	DC    string      `json:"dc"`
	Slots []SlotRange `json:"slots"`
	To    string      `json:"to"`
	Rate  int64       `json:"rate,omitempty"`
	// From, when set, is the group the proposer planned to move the slots from: the start is
	// refused if another group owns them when it is applied (a rebalance planned on a state
	// that had not yet applied an earlier move of those slots). Empty: the owner at apply.
	From string `json:"from,omitempty"`
	// Nonce is a random string the proposer draws, kept as Migration.Nonce: it makes the
	// migration's fence fields on the Redis servers (migrate.RunFence) unique to this
	// migration, so that the marks of another cluster that once used the same servers (same
	// migration ids) are not taken for this one's.
	Nonce string `json:"nonce,omitempty"`
}

// AckFreeze records that a node of the migration's DC applied the freeze and holds no request
// for those slots in flight. When every node of the DC has acked, the migration is migrating.
type AckFreeze struct {
	ID   uint64 `json:"id"`
	Node string `json:"node"`
	// Run is the run whose barrier the node acks: "fwd", or "back" for a cancel's run back,
	// which freezes the same migration again. An ack of a run that is no longer the
	// migration's (a forward ack proposed again, or delayed, and applied after a cancel) is
	// ignored: counted for the run back, it let the barrier pass while that node might still
	// act on the forward run and write the target. Empty (entries written before runs were
	// named): not checked.
	Run string `json:"run,omitempty"`
}

// FinishMigration commits the switch once the source holds no key of the slots: the slot
// table points at the target (or stays at the source for a cancelled migration).
type FinishMigration struct {
	ID uint64 `json:"id"`
	// Run is the run the mover finished: "fwd", or "back" for a cancel's run back. A finish of
	// a run that is no longer the migration's (a stale mover's) is refused. Empty (entries
	// written before runs were named): not checked.
	Run string `json:"run,omitempty"`
}

// ReportMigration records the mover's progress.
type ReportMigration struct {
	ID         uint64 `json:"id"`
	KeysMoved  int64  `json:"keys_moved"`
	BytesMoved int64  `json:"bytes_moved"`
	KeysTotal  int64  `json:"keys_total"`
}

// Migration control actions.
const (
	MigrationPause  = "pause"
	MigrationResume = "resume"
	MigrationCancel = "cancel"
	MigrationRate   = "rate"
)

// ControlMigration pauses, resumes, re-throttles or cancels a migration.
type ControlMigration struct {
	ID     uint64 `json:"id"`
	Action string `json:"action"`
	Rate   int64  `json:"rate,omitempty"`
}

func init() {
	register(TypeStartMigration, func() Command { return &StartMigration{} })
	register(TypeAckFreeze, func() Command { return &AckFreeze{} })
	register(TypeMigrationStep, func() Command { return &FinishMigration{} })
	register(TypeMigrationReport, func() Command { return &ReportMigration{} })
	register(TypeMigrationCtl, func() Command { return &ControlMigration{} })
}

// Type implements Command.
func (*StartMigration) Type() CmdType { return TypeStartMigration }

// Name implements Command.
func (*StartMigration) Name() string { return "start_migration" }

func (c *StartMigration) apply(s *State, index uint64) error {
	dc, ok := s.DCs[c.DC]
	if !ok {
		return errf("not_found", "datacenter %s does not exist", c.DC)
	}
	if dc.Groups[c.To] == nil {
		return errf("not_found", "group %s does not exist in datacenter %s", c.To, c.DC)
	}
	if len(c.Slots) == 0 {
		return errf("invalid", "no slots given")
	}
	if c.Rate < 0 {
		return errf("invalid", "rate %d is negative", c.Rate)
	}
	from := ""
	for _, r := range c.Slots {
		if err := r.Valid(); err != nil {
			return err
		}
		for sl := r.From; sl <= r.To; sl++ {
			o := dc.Slots[sl]
			switch {
			case o == "":
				return errf("invalid", "slot %d is not assigned to any group: assign it (redraft slots assign) instead of migrating it", sl)
			case o == c.To:
				return errf("invalid", "slot %d already belongs to group %s", sl, c.To)
			case from == "":
				from = o
			case o != from:
				return errf("invalid", "slots belong to groups %s and %s: one migration moves slots of one source group", from, o)
			}
		}
	}
	if c.From != "" && from != c.From {
		return errf("busy", "the slots belong to group %s now, not %s as planned: plan again", from, c.From)
	}
	if s.Flush.Active() {
		return errf("busy", "%s is in progress: migrate once it ended", s.Flush)
	}
	for _, m := range s.Migrations {
		if !m.Active() || m.DC != c.DC {
			continue
		}
		for _, r := range c.Slots {
			for sl := r.From; sl <= r.To; sl++ {
				if m.Covers(sl) {
					return errf("busy", "slot %d is already being migrated (migration %d)", sl, m.ID)
				}
			}
		}
	}
	m := &Migration{
		ID: s.NextMigrationID, DC: c.DC, Slots: append([]SlotRange(nil), c.Slots...), From: from, To: c.To,
		State: MigrationFrozen, Rate: c.Rate, FreezeAcks: map[string]uint64{}, StartIndex: index,
		FromFailovers: dc.Groups[from].Failovers, ToFailovers: dc.Groups[c.To].Failovers,
		Nonce: c.Nonce,
	}
	s.NextMigrationID++
	s.Migrations[m.ID] = m
	s.checkBarrier(m)
	return nil
}

// checkBarrier moves a frozen migration to migrating once every node of its DC has acked.
func (s *State) checkBarrier(m *Migration) {
	if m.State != MigrationFrozen {
		return
	}
	for id, n := range s.Nodes {
		if n.DC == m.DC {
			if _, ok := m.FreezeAcks[id]; !ok {
				return
			}
		}
	}
	m.State = MigrationMigrating
}

// FreezeWaiting returns the ids of the DC's nodes a frozen migration still waits for.
func (s *State) FreezeWaiting(m *Migration) []string {
	var out []string
	if m.State != MigrationFrozen {
		return nil
	}
	for _, id := range s.NodeIDs() {
		if s.Nodes[id].DC == m.DC {
			if _, ok := m.FreezeAcks[id]; !ok {
				out = append(out, id)
			}
		}
	}
	return out
}

func (s *State) migration(id uint64) (*Migration, error) {
	m, ok := s.Migrations[id]
	if !ok {
		return nil, errf("not_found", "migration %d does not exist", id)
	}
	return m, nil
}

// Type implements Command.
func (*AckFreeze) Type() CmdType { return TypeAckFreeze }

// Name implements Command.
func (*AckFreeze) Name() string { return "ack_freeze" }

func (c *AckFreeze) apply(s *State, index uint64) error {
	m, err := s.migration(c.ID)
	if err != nil {
		return err
	}
	n, ok := s.Nodes[c.Node]
	if !ok {
		return errf("not_found", "node %s is not a member", c.Node)
	}
	if n.DC != m.DC {
		return errf("invalid", "node %s is in datacenter %s, migration %d in %s", c.Node, n.DC, m.ID, m.DC)
	}
	if m.State != MigrationFrozen || (c.Run != "" && c.Run != m.Run()) {
		return nil // a late or repeated ack: its barrier has passed
	}
	m.FreezeAcks[c.Node] = index
	s.checkBarrier(m)
	return nil
}

// Type implements Command.
func (*FinishMigration) Type() CmdType { return TypeMigrationStep }

// Name implements Command.
func (*FinishMigration) Name() string { return "finish_migration" }

func (c *FinishMigration) apply(s *State, _ uint64) error {
	m, err := s.migration(c.ID)
	if err != nil {
		return err
	}
	if m.State != MigrationMigrating {
		return errf("busy", "migration %d is %s, not migrating: it cannot be finished now", m.ID, m.State)
	}
	if c.Run != "" && c.Run != m.Run() {
		return errf("busy", "migration %d now runs %s: the finish of its %s run is refused", m.ID, m.Run(), c.Run)
	}
	dc := s.DCs[m.DC]
	if dc == nil || dc.Groups[m.Target()] == nil {
		return errf("not_found", "migration %d: target group %s is gone", m.ID, m.Target())
	}
	dc = s.writableDC(m.DC)
	for _, r := range m.Slots {
		for sl := r.From; sl <= r.To; sl++ {
			dc.Slots[sl] = m.Target()
		}
	}
	if m.Cancelling {
		m.State = MigrationCancelled
	} else {
		m.State = MigrationDone
	}
	m.FreezeAcks = nil
	return nil
}

// Type implements Command.
func (*ReportMigration) Type() CmdType { return TypeMigrationReport }

// Name implements Command.
func (*ReportMigration) Name() string { return "report_migration" }

func (c *ReportMigration) apply(s *State, _ uint64) error {
	m, err := s.migration(c.ID)
	if err != nil {
		return err
	}
	if !m.Active() {
		return errf("busy", "migration %d is %s", m.ID, m.State)
	}
	m.KeysMoved, m.BytesMoved = c.KeysMoved, c.BytesMoved
	if c.KeysTotal > 0 {
		m.KeysTotal = c.KeysTotal
	}
	return nil
}

// Type implements Command.
func (*ControlMigration) Type() CmdType { return TypeMigrationCtl }

// Name implements Command.
func (*ControlMigration) Name() string { return "control_migration" }

func (c *ControlMigration) apply(s *State, _ uint64) error {
	m, err := s.migration(c.ID)
	if err != nil {
		return err
	}
	if !m.Active() {
		return errf("busy", "migration %d is already %s", m.ID, m.State)
	}
	switch c.Action {
	case MigrationPause:
		m.Paused = true
	case MigrationResume:
		m.Paused = false
	case MigrationRate:
		if c.Rate < 0 {
			return errf("invalid", "rate %d is negative", c.Rate)
		}
		m.Rate = c.Rate
	case MigrationCancel:
		if m.Cancelling {
			return errf("busy", "migration %d is already being cancelled", m.ID)
		}
		if m.State == MigrationFrozen {
			// No key has moved: the slots simply stay with the source.
			m.State = MigrationCancelled
			m.FreezeAcks = nil
			return nil
		}
		// Keys may be on both sides: move them back behind a new barrier.
		m.Cancelling = true
		m.State = MigrationFrozen
		m.FreezeAcks = map[string]uint64{}
		m.KeysMoved, m.BytesMoved, m.KeysTotal = 0, 0, 0
		m.Paused = false
		s.checkBarrier(m)
	default:
		return errf("invalid", "unknown action %q (pause, resume, rate, cancel)", c.Action)
	}
	return nil
}

// ActiveMigration returns the active migration covering slot in dc, or nil.
func (s *State) ActiveMigration(dc string, slot int) *Migration {
	for _, m := range s.Migrations {
		if m.Active() && m.DC == dc && m.Covers(slot) {
			return m
		}
	}
	return nil
}

// String names the migration for logs and errors.
func (m *Migration) String() string {
	return fmt.Sprintf("migration %d (%s: %s -> %s, %s)", m.ID, m.DC, m.Source(), m.Target(), m.State)
}
