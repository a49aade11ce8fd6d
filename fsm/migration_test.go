package fsm

import (
	"strings"
	"testing"
)

// migrationState is a DC with two nodes and two groups, g1 owning every slot.
func migrationState(t *testing.T) *State {
	t.Helper()
	s := New()
	for i, c := range []Command{
		&AddNode{Node: Node{ID: "n1", DC: "dc1", Peer: "127.0.0.1:1"}},
		&AddNode{Node: Node{ID: "n2", DC: "dc1", Peer: "127.0.0.1:2"}},
		&AddNode{Node: Node{ID: "x1", DC: "dc2", Peer: "127.0.0.1:3"}},
		&AddGroup{DC: "dc1", Group: Group{ID: "g1", Master: "127.0.0.1:7001"}},
		&AddGroup{DC: "dc1", Group: Group{ID: "g2", Master: "127.0.0.1:7002"}},
		&AssignSlots{DC: "dc1", Group: "g1", Ranges: []SlotRange{{0, NumSlots - 1}}},
	} {
		var err error
		if s, err = ApplyCommand(s, uint64(i+1), c); err != nil {
			t.Fatalf("setup %s: %v", c.Name(), err)
		}
	}
	return s
}

func mustApply(t *testing.T, s *State, c Command) *State {
	t.Helper()
	next, err := ApplyCommand(s, s.Index+1, c)
	if err != nil {
		t.Fatalf("%s: %v", c.Name(), err)
	}
	return next
}

func TestMigrationBarrierAndSwitch(t *testing.T) {
	s := migrationState(t)
	s = mustApply(t, s, &StartMigration{DC: "dc1", Slots: []SlotRange{{0, 99}}, To: "g2"})
	m := s.Migrations[1]
	if m.State != MigrationFrozen || m.From != "g1" || m.To != "g2" {
		t.Fatalf("after start: %+v", m)
	}
	if got := strings.Join(s.FreezeWaiting(m), ","); got != "n1,n2" {
		t.Fatalf("waiting for %q, want n1,n2", got)
	}
	// A node of another DC cannot ack; overlapping migrations and reassignments are refused.
	if _, err := ApplyCommand(s, s.Index+1, &AckFreeze{ID: 1, Node: "x1"}); err == nil {
		t.Fatal("ack from another DC accepted")
	}
	if _, err := ApplyCommand(s, s.Index+1, &StartMigration{DC: "dc1", Slots: []SlotRange{{50, 150}}, To: "g2"}); err == nil || !strings.Contains(err.Error(), "already being migrated") {
		t.Fatalf("overlap: %v", err)
	}
	if _, err := ApplyCommand(s, s.Index+1, &AssignSlots{DC: "dc1", Group: "g2", Ranges: []SlotRange{{10, 10}}, Force: true}); err == nil {
		t.Fatal("force-assign of a migrating slot accepted")
	}
	if _, err := ApplyCommand(s, s.Index+1, &FinishMigration{ID: 1}); err == nil {
		t.Fatal("finish before the barrier accepted")
	}
	s = mustApply(t, s, &AckFreeze{ID: 1, Node: "n1"})
	if s.Migrations[1].State != MigrationFrozen {
		t.Fatal("barrier passed with one ack of two")
	}
	s = mustApply(t, s, &AckFreeze{ID: 1, Node: "n2"})
	if s.Migrations[1].State != MigrationMigrating {
		t.Fatalf("state %s after every ack", s.Migrations[1].State)
	}
	s = mustApply(t, s, &AckFreeze{ID: 1, Node: "n2"}) // late repeat: no-op
	s = mustApply(t, s, &ReportMigration{ID: 1, KeysMoved: 10, KeysTotal: 20})
	s = mustApply(t, s, &FinishMigration{ID: 1})
	if s.Migrations[1].State != MigrationDone || s.DCs["dc1"].Slots[99] != "g2" || s.DCs["dc1"].Slots[100] != "g1" {
		t.Fatalf("after finish: %s, slot 99 %s, slot 100 %s", s.Migrations[1].State, s.DCs["dc1"].Slots[99], s.DCs["dc1"].Slots[100])
	}
	if s.ActiveMigration("dc1", 5) != nil {
		t.Fatal("finished migration still active")
	}
}

func TestMigrationRemovedNodeReleasesBarrier(t *testing.T) {
	s := migrationState(t)
	s = mustApply(t, s, &StartMigration{DC: "dc1", Slots: []SlotRange{{0, 9}}, To: "g2"})
	s = mustApply(t, s, &AckFreeze{ID: 1, Node: "n1"})
	s = mustApply(t, s, &RemoveNode{ID: "n2"})
	if s.Migrations[1].State != MigrationMigrating {
		t.Fatalf("barrier still held by a removed node: %s", s.Migrations[1].State)
	}
}

func TestMigrationCancel(t *testing.T) {
	s := migrationState(t)
	// Cancelled while frozen: nothing moved, the slots stay.
	s = mustApply(t, s, &StartMigration{DC: "dc1", Slots: []SlotRange{{0, 9}}, To: "g2"})
	s = mustApply(t, s, &ControlMigration{ID: 1, Action: MigrationCancel})
	if s.Migrations[1].State != MigrationCancelled || s.DCs["dc1"].Slots[0] != "g1" {
		t.Fatalf("cancel while frozen: %+v", s.Migrations[1])
	}
	// Cancelled while migrating: runs back behind a new barrier, ends with the source.
	s = mustApply(t, s, &StartMigration{DC: "dc1", Slots: []SlotRange{{0, 9}}, To: "g2", Rate: 100})
	s = mustApply(t, s, &AckFreeze{ID: 2, Node: "n1"})
	s = mustApply(t, s, &AckFreeze{ID: 2, Node: "n2"})
	s = mustApply(t, s, &ControlMigration{ID: 2, Action: MigrationPause})
	s = mustApply(t, s, &ControlMigration{ID: 2, Action: MigrationRate, Rate: 500})
	if m := s.Migrations[2]; !m.Paused || m.Rate != 500 {
		t.Fatalf("pause/rate: %+v", m)
	}
	s = mustApply(t, s, &ControlMigration{ID: 2, Action: MigrationCancel})
	m := s.Migrations[2]
	if m.State != MigrationFrozen || !m.Cancelling || m.Source() != "g2" || m.Target() != "g1" || m.Paused {
		t.Fatalf("cancel while migrating: %+v", m)
	}
	if _, err := ApplyCommand(s, s.Index+1, &ControlMigration{ID: 2, Action: MigrationCancel}); err == nil {
		t.Fatal("double cancel accepted")
	}
	// A forward run's ack applied after the cancel (proposed again by a node whose state
	// lagged, or delayed) does not count for the run back's barrier.
	s = mustApply(t, s, &AckFreeze{ID: 2, Node: "n1", Run: "fwd"})
	if _, acked := s.Migrations[2].FreezeAcks["n1"]; acked {
		t.Fatal("the forward run's ack was counted for the run back's barrier")
	}
	s = mustApply(t, s, &AckFreeze{ID: 2, Node: "n1", Run: "back"})
	s = mustApply(t, s, &AckFreeze{ID: 2, Node: "n2"})
	// A stale forward mover's finish does not end the run back.
	if _, err := ApplyCommand(s, s.Index+1, &FinishMigration{ID: 2, Run: "fwd"}); err == nil {
		t.Fatal("finish of the forward run accepted while the migration runs back")
	}
	s = mustApply(t, s, &FinishMigration{ID: 2, Run: "back"})
	if s.Migrations[2].State != MigrationCancelled || s.DCs["dc1"].Slots[5] != "g1" {
		t.Fatalf("after cancelled finish: %+v slot5=%s", s.Migrations[2], s.DCs["dc1"].Slots[5])
	}
}

func TestStartMigrationValidation(t *testing.T) {
	s := migrationState(t)
	s = mustApply(t, s, &AssignSlots{DC: "dc1", Group: "g2", Ranges: []SlotRange{{200, 299}}, Force: true})
	for _, tc := range []struct {
		c    *StartMigration
		want string
	}{
		{&StartMigration{DC: "dc9", Slots: []SlotRange{{0, 1}}, To: "g2"}, "does not exist"},
		{&StartMigration{DC: "dc1", Slots: []SlotRange{{0, 1}}, To: "g9"}, "does not exist"},
		{&StartMigration{DC: "dc1", To: "g2"}, "no slots"},
		{&StartMigration{DC: "dc1", Slots: []SlotRange{{200, 201}}, To: "g2"}, "already belongs"},
		{&StartMigration{DC: "dc1", Slots: []SlotRange{{150, 250}}, To: "g2"}, "already belongs to group g2"},
		{&StartMigration{DC: "dc1", Slots: []SlotRange{{190, 210}}, To: "g1"}, "already belongs to group g1"},
		{&StartMigration{DC: "dc1", Slots: []SlotRange{{5, 2}}, To: "g2"}, "reversed"},
		{&StartMigration{DC: "dc1", Slots: []SlotRange{{0, 1}}, To: "g2", From: "g3"}, "not g3 as planned"},
	} {
		if _, err := ApplyCommand(s, s.Index+1, tc.c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.c, err, tc.want)
		}
	}
}
