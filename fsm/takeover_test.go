package fsm

import (
	"strings"
	"testing"
)

// TestTakeOverFailover: a failover whose executor died is handed to another node of the DC
// once; the replaced executor can no longer finish it, the new one can.
func TestTakeOverFailover(t *testing.T) {
	s := failoverState(t)
	m := "10.0.1.1:6379"
	s = applyOK(t, s, s.Index+1, &ReportServer{DC: "east", Group: "g1", Node: "n1", Addr: m, Down: true})
	s = applyOK(t, s, s.Index+1, &ReportServer{DC: "east", Group: "g1", Node: "n4", Addr: m, Down: true})
	if f := s.DCs["east"].Groups["g1"].Failover; f == nil || f.Executor != "n4" {
		t.Fatalf("failover = %+v", f)
	}
	applyRefused(t, s, &TakeOverFailover{DC: "east", Group: "g1", Epoch: 2, From: "n4", Executor: "n1"}, "busy", "epoch 2")
	applyRefused(t, s, &TakeOverFailover{DC: "east", Group: "g1", Epoch: 1, From: "n4", Executor: "n3"}, "invalid", "not a node of datacenter east")
	applyRefused(t, s, &TakeOverFailover{DC: "east", Group: "g1", Epoch: 1, From: "n2", Executor: "n1"}, "busy", "run by n4")
	s = applyOK(t, s, s.Index+1, &TakeOverFailover{DC: "east", Group: "g1", Epoch: 1, From: "n4", Executor: "n1", Why: "n4 not reached for 1s"})
	f := s.DCs["east"].Groups["g1"].Failover
	if f.Executor != "n1" || f.TakeOvers != 1 || !strings.Contains(f.TakenOver, "n1 took over from n4: n4 not reached") {
		t.Fatalf("after the take-over: %+v", f)
	}
	// The same proposal again changes nothing; another node noticing late is refused.
	s = applyOK(t, s, s.Index+1, &TakeOverFailover{DC: "east", Group: "g1", Epoch: 1, From: "n4", Executor: "n1"})
	applyRefused(t, s, &TakeOverFailover{DC: "east", Group: "g1", Epoch: 1, From: "n4", Executor: "n2"}, "busy", "run by n1")
	if f := s.DCs["east"].Groups["g1"].Failover; f.TakeOvers != 1 {
		t.Fatalf("a repeated take-over counted: %+v", f)
	}
	// The replaced executor wakes up: its steps are refused; the new executor's count.
	applyRefused(t, s, &FinishFailover{DC: "east", Group: "g1", Epoch: 1, NewMaster: "10.0.1.2:6379", Executor: "n4"}, "busy", "run by n1")
	s = applyOK(t, s, s.Index+1, &FinishFailover{DC: "east", Group: "g1", Epoch: 1, NewMaster: "10.0.1.2:6379", Executor: "n1"})
	g := s.DCs["east"].Groups["g1"]
	if g.Master != "10.0.1.2:6379" || g.LastFailover.TakeOvers != 1 || g.LastFailover.Executor != "n1" {
		t.Fatalf("after finish: master %s, last failover %+v", g.Master, g.LastFailover)
	}
	applyRefused(t, s, &TakeOverFailover{DC: "east", Group: "g1", Epoch: 1, From: "n1", Executor: "n2"}, "busy", "no failover")
}

// TestSourceFailedOver: a migration notes its groups' failover counts when it starts; a
// failover of its source (of the target, for a run back) since then is reported.
func TestSourceFailedOver(t *testing.T) {
	s := failoverState(t)
	s = applyOK(t, s, s.Index+1, &StartMigration{DC: "east", Slots: []SlotRange{{0, 9}}, To: "g2"})
	m := s.Migrations[s.NextMigrationID-1]
	if s.SourceFailedOver(m) {
		t.Fatal("a fresh migration's source counts as failed over")
	}
	for _, n := range []string{"n1", "n4"} {
		s = applyOK(t, s, s.Index+1, &ReportServer{DC: "east", Group: "g1", Node: n, Addr: "10.0.1.1:6379", Down: true})
	}
	s = applyOK(t, s, s.Index+1, &FinishFailover{DC: "east", Group: "g1", Epoch: 1, NewMaster: "10.0.1.2:6379"})
	m = s.Migrations[m.ID]
	if !s.SourceFailedOver(m) {
		t.Fatal("the source's failover is not seen")
	}
	back := *m
	back.Cancelling = true // the run back's source is g2, which did not fail over
	if s.SourceFailedOver(&back) {
		t.Fatal("a run back sees the forward source's failover")
	}
}
