package fsm

// MigrationState is a step of the slot migration protocol (DESIGN.md, "Slot migration").
type MigrationState string

// The migration steps, in order; Done and Cancelled are final.
const (
	MigrationFrozen    MigrationState = "frozen"
	MigrationMigrating MigrationState = "migrating"
	MigrationDone      MigrationState = "migrated"
	MigrationCancelled MigrationState = "cancelled"
)

// Migration moves a set of slots of one DC from one group to another.
type Migration struct {
	ID    uint64         `json:"id"`
	DC    string         `json:"dc"`
	Slots []SlotRange    `json:"slots"`
	From  string         `json:"from"`
	To    string         `json:"to"`
	State MigrationState `json:"state"`
	// Cancelling is set when a cancel came after keys began to move: the migration runs back,
	// target to source, behind a fresh freeze barrier, and ends cancelled.
	Cancelling bool `json:"cancelling,omitempty"`
	// Paused stops the mover; migrate-on-access goes on.
	Paused bool `json:"paused,omitempty"`
	// Rate is the mover's throttle in keys per second (0: unthrottled).
	Rate int64 `json:"rate,omitempty"`
	// FreezeAcks holds, per node id of the DC, the index at which it reported the freeze applied.
	FreezeAcks map[string]uint64 `json:"freeze_acks"`
	// KeysMoved and BytesMoved are the mover's reported progress.
	KeysMoved  int64 `json:"keys_moved"`
	BytesMoved int64 `json:"bytes_moved"`
	// KeysTotal is the mover's estimate of keys to move at the start.
	KeysTotal int64 `json:"keys_total"`
	// StartIndex is the Raft index at which the migration was created.
	StartIndex uint64 `json:"start_index"`
	// FromFailovers and ToFailovers are the groups' failover counts (Group.Failovers) when the
	// migration was created: a source that failed over since may hold keys moved before
	// (SourceFailedOver).
	FromFailovers uint64 `json:"from_failovers,omitempty"`
	ToFailovers   uint64 `json:"to_failovers,omitempty"`
	// Nonce is StartMigration.Nonce: part of the migration's fence fields on the servers
	// (migrate.RunFence). Empty for migrations started by an older build.
	Nonce string `json:"nonce,omitempty"`
}

// SourceFailedOver reports whether the migration's source group (Source) promoted a replica
// since the migration was created. That replica may still hold keys moved to the target
// just before its old master died (their deletion had not reached it), so a key on both
// keeps the target's copy, which clients may have written since (docs/failover.md).
func (s *State) SourceFailedOver(m *Migration) bool {
	base := m.FromFailovers
	if m.Cancelling {
		base = m.ToFailovers
	}
	dc := s.DCs[m.DC]
	if dc == nil || dc.Groups[m.Source()] == nil {
		return false
	}
	return dc.Groups[m.Source()].Failovers > base
}

// Run names the migration's current run: "fwd", or "back" while cancelling.
func (m *Migration) Run() string {
	if m.Cancelling {
		return "back"
	}
	return "fwd"
}

// Source is the group keys move out of: From, or To while cancelling.
func (m *Migration) Source() string {
	if m.Cancelling {
		return m.To
	}
	return m.From
}

// Target is the group keys move into: To, or From while cancelling.
func (m *Migration) Target() string {
	if m.Cancelling {
		return m.From
	}
	return m.To
}

func (m *Migration) clone() *Migration {
	c := *m
	c.Slots = append([]SlotRange(nil), m.Slots...)
	if m.FreezeAcks != nil {
		c.FreezeAcks = make(map[string]uint64, len(m.FreezeAcks))
		for k, v := range m.FreezeAcks {
			c.FreezeAcks[k] = v
		}
	}
	return &c
}

// Active reports whether the migration has not reached a final state.
func (m *Migration) Active() bool {
	return m.State == MigrationFrozen || m.State == MigrationMigrating
}

// Covers reports whether slot is among the migration's slots.
func (m *Migration) Covers(slot int) bool {
	for _, r := range m.Slots {
		if slot >= r.From && slot <= r.To {
			return true
		}
	}
	return false
}
