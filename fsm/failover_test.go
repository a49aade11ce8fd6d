package fsm

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// failoverState is testState with a third east node and g1 having two replicas.
func failoverState(t *testing.T) *State {
	t.Helper()
	s := testState(t)
	s = applyOK(t, s, s.Index+1, &AddNode{Node: testNode("n4", "east", "004")})
	return applyOK(t, s, s.Index+1, &UpdateGroup{DC: "east", KeepPassword: true, Group: Group{ID: "g1",
		Master: "10.0.1.1:6379", Replicas: []string{"10.0.1.2:6379", "10.0.1.4:6379"}, Priority: map[string]int{"10.0.1.4:6379": 0}}})
}

// TestStaleDownVoteCountsForNothing: a down vote older than DownVoteLife (plus twice
// master_down_after) against the vote being applied makes no majority with it (its node may
// have died after casting it); renewed, it does.
func TestStaleDownVoteCountsForNothing(t *testing.T) {
	s := failoverState(t)
	m := "10.0.1.1:6379"
	life := (DownVoteLife + 2*s.SettingDuration("master_down_after")).Milliseconds()
	s = applyOK(t, s, s.Index+1, &ReportServer{DC: "east", Group: "g1", Node: "n1", Addr: m, Down: true, At: 1_000_000})
	s = applyOK(t, s, s.Index+1, &ReportServer{DC: "east", Group: "g1", Node: "n2", Addr: m, Down: true, At: 1_000_000 + life + 1})
	if g := s.DCs["east"].Groups["g1"]; g.Failover != nil {
		t.Fatalf("a stale vote and a fresh one started a failover: %+v", g.Failover)
	}
	before := s
	s = applyOK(t, s, s.Index+1, &ReportServer{DC: "east", Group: "g1", Node: "n1", Addr: m, Down: true, At: 1_000_000 + life + 2})
	if g := s.DCs["east"].Groups["g1"]; g.Failover == nil || !strings.Contains(g.Failover.Reason, "2 of the 3 nodes") {
		t.Fatalf("a renewed vote and a fresh one: failover %+v", g.Failover)
	}
	if g := s.DCs["east"].Groups["g1"]; g.DownAt["n1"] != 1_000_000+life+2 || before.DCs["east"].Groups["g1"].DownAt["n1"] != 1_000_000 {
		t.Fatalf("vote times: %v, before %v", g.DownAt, before.DCs["east"].Groups["g1"].DownAt)
	}
	// Two stale votes that never made a majority together are not counted when a third
	// node withdraws its fresh one: a withdrawal starts nothing.
	s = failoverState(t)
	s = applyOK(t, s, s.Index+1, &ReportServer{DC: "east", Group: "g1", Node: "n1", Addr: m, Down: true, At: 1_000_000})
	s = applyOK(t, s, s.Index+1, &ReportServer{DC: "east", Group: "g1", Node: "n4", Addr: m, Down: true, At: 1_000_000 + life + 1})
	s = applyOK(t, s, s.Index+1, &ReportServer{DC: "east", Group: "g1", Node: "n2", Addr: m, Down: true, At: 1_000_000 + 3*life})
	s = applyOK(t, s, s.Index+1, &ReportServer{DC: "east", Group: "g1", Node: "n2", Addr: m})
	if g := s.DCs["east"].Groups["g1"]; g.Failover != nil {
		t.Fatalf("a withdrawal started a failover from stale votes: %+v", g.Failover)
	}
	// Withdrawn, the vote's time goes too.
	s = failoverState(t)
	s = applyOK(t, s, s.Index+1, &ReportServer{DC: "east", Group: "g1", Node: "n1", Addr: m, Down: true, At: 5})
	s = applyOK(t, s, s.Index+1, &ReportServer{DC: "east", Group: "g1", Node: "n1", Addr: m})
	if g := s.DCs["east"].Groups["g1"]; len(g.DownAt) != 0 || len(g.DownVotes) != 0 {
		t.Fatalf("after a withdrawal: votes %v at %v", g.DownVotes, g.DownAt)
	}
}

func TestFailoverStartsOnMajorityOfDCVotes(t *testing.T) {
	s := failoverState(t)
	m := "10.0.1.1:6379"
	// One node of three: no failover.
	s = applyOK(t, s, s.Index+1, &ReportServer{DC: "east", Group: "g1", Node: "n1", Addr: m, Down: true})
	if g := s.DCs["east"].Groups["g1"]; g.Failover != nil || g.DownVotes["n1"] != m {
		t.Fatalf("one vote: failover %+v, votes %v", g.Failover, g.DownVotes)
	}
	// A vote about another address, a node of another DC: ignored or refused.
	s = applyOK(t, s, s.Index+1, &ReportServer{DC: "east", Group: "g1", Node: "n2", Addr: "10.0.1.2:6379", Down: true})
	applyRefused(t, s, &ReportServer{DC: "east", Group: "g1", Node: "n3", Addr: m, Down: true}, "invalid", "datacenter west")
	// n1 withdraws, n2 votes: still one.
	s = applyOK(t, s, s.Index+1, &ReportServer{DC: "east", Group: "g1", Node: "n1", Addr: m})
	s = applyOK(t, s, s.Index+1, &ReportServer{DC: "east", Group: "g1", Node: "n2", Addr: m, Down: true})
	if g := s.DCs["east"].Groups["g1"]; g.Failover != nil {
		t.Fatalf("after a withdrawn vote: failover started: %+v", g.Failover)
	}
	// n4 makes two of three: the failover starts, n4 runs it.
	s = applyOK(t, s, s.Index+1, &ReportServer{DC: "east", Group: "g1", Node: "n4", Addr: m, Down: true, RunID: "run-1"})
	g := s.DCs["east"].Groups["g1"]
	f := g.Failover
	if f == nil || f.Epoch != 1 || f.From != m || f.FromRunID != "run-1" || f.Executor != "n4" || f.Planned || f.StartIndex != s.Index ||
		!strings.Contains(f.Reason, "2 of the 3 nodes") {
		t.Fatalf("failover = %+v", f)
	}
	// Stalled, then finished: the replica becomes master, the old master is fenced.
	applyRefused(t, s, &FinishFailover{DC: "east", Group: "g1", Epoch: 2, NewMaster: "10.0.1.2:6379"}, "busy", "epoch 2")
	applyRefused(t, s, &FinishFailover{DC: "east", Group: "g1", Epoch: 1, NewMaster: "10.9.9.9:1"}, "invalid", "not a replica")
	s = applyOK(t, s, s.Index+1, &FinishFailover{DC: "east", Group: "g1", Epoch: 1, Stalled: "no replica answers"})
	if f := s.DCs["east"].Groups["g1"].Failover; f == nil || f.Stalled != "no replica answers" {
		t.Fatalf("stalled failover = %+v", f)
	}
	// The replica about to be promoted is recorded first; the state before is not changed.
	applyRefused(t, s, &FinishFailover{DC: "east", Group: "g1", Epoch: 1, Promoting: "10.9.9.9:1"}, "invalid", "not a replica")
	before := s
	s = applyOK(t, s, s.Index+1, &FinishFailover{DC: "east", Group: "g1", Epoch: 1, Promoting: "10.0.1.2:6379", PromotingRunID: "run-2"})
	if f := s.DCs["east"].Groups["g1"].Failover; f.Promoting != "10.0.1.2:6379" || f.PromotingRunID != "run-2" || f.Stalled != "" {
		t.Fatalf("promoting failover = %+v", f)
	}
	if f := before.DCs["east"].Groups["g1"].Failover; f.Promoting != "" || f.Stalled != "no replica answers" {
		t.Fatalf("the state before the step changed: %+v", f)
	}
	prev := s
	s = applyOK(t, s, s.Index+1, &FinishFailover{DC: "east", Group: "g1", Epoch: 1, NewMaster: "10.0.1.2:6379", LostBytes: 120})
	g = s.DCs["east"].Groups["g1"]
	if g.LostBytes != 120 || g.LastFailover.LostBytes != 120 {
		t.Fatalf("lost bytes: group %d, last failover %d", g.LostBytes, g.LastFailover.LostBytes)
	}
	if g.Master != "10.0.1.2:6379" || !reflect.DeepEqual(g.Replicas, []string{"10.0.1.4:6379"}) ||
		!reflect.DeepEqual(g.Fenced, []string{m}) || g.Epoch != 1 || g.Failovers != 1 || g.Failover != nil || len(g.DownVotes) != 0 {
		t.Fatalf("after finish: %+v fenced %v votes %v", g, g.Fenced, g.DownVotes)
	}
	if lf := g.LastFailover; lf == nil || lf.Result != "promoted" || lf.To != "10.0.1.2:6379" || lf.EndIndex != s.Index {
		t.Fatalf("last failover = %+v", lf)
	}
	if pg := prev.DCs["east"].Groups["g1"]; pg.Master != m || pg.Failover == nil {
		t.Fatalf("finish changed the previous state's group: %+v", pg)
	}
	// Finishing again is refused (a resumed executor learns it is done); the old master rejoins.
	applyRefused(t, s, &FinishFailover{DC: "east", Group: "g1", Epoch: 1, NewMaster: "10.0.1.2:6379"}, "busy", "no failover")
	s = applyOK(t, s, s.Index+1, &RejoinServer{DC: "east", Group: "g1", Addr: m})
	s = applyOK(t, s, s.Index+1, &RejoinServer{DC: "east", Group: "g1", Addr: m})
	g = s.DCs["east"].Groups["g1"]
	if len(g.Fenced) != 0 || !slices.Equal(g.Replicas, []string{"10.0.1.4:6379", m}) {
		t.Fatalf("after rejoin: %+v", g)
	}
	// The fenced address still belongs to the group: another group cannot take it.
	applyRefused(t, s, &AddGroup{DC: "east", Group: Group{ID: "g9", Master: m}}, "exists", "belongs to group g1")
}

func TestPlannedSwitchover(t *testing.T) {
	s := failoverState(t)
	applyRefused(t, s, &StartFailover{DC: "east", Group: "g1", To: "10.0.1.4:6379", Executor: "n1"}, "invalid", "priority 0")
	applyRefused(t, s, &StartFailover{DC: "east", Group: "g1", To: "10.0.1.9:6379", Executor: "n1"}, "invalid", "not a replica")
	applyRefused(t, s, &StartFailover{DC: "east", Group: "g1", Executor: "n3"}, "invalid", "not a node of datacenter east")
	applyRefused(t, s, &StartFailover{DC: "east", Group: "g2", Executor: "n1"}, "invalid", "no replica")
	s = applyOK(t, s, s.Index+1, &StartFailover{DC: "east", Group: "g1", To: "10.0.1.2:6379", Executor: "n1"})
	applyRefused(t, s, &StartFailover{DC: "east", Group: "g1", Executor: "n1"}, "busy", "already failing over")
	applyRefused(t, s, &UpdateGroup{DC: "east", KeepPassword: true, Group: Group{ID: "g1", Master: "10.0.1.1:6379"}}, "busy", "failing over")
	// Cancelled: nothing changes but the record.
	c := applyOK(t, s, s.Index+1, &FinishFailover{DC: "east", Group: "g1", Epoch: 1, NewMaster: "10.0.1.1:6379"})
	if g := c.DCs["east"].Groups["g1"]; g.Master != "10.0.1.1:6379" || g.Epoch != 1 || g.Failovers != 0 || g.Failover != nil || g.LastFailover.Result != "cancelled" {
		t.Fatalf("cancelled: %+v", g)
	}
	// Promoted: the old master is a replica at once (the executor made it one).
	s = applyOK(t, s, s.Index+1, &FinishFailover{DC: "east", Group: "g1", Epoch: 1, NewMaster: "10.0.1.2:6379"})
	g := s.DCs["east"].Groups["g1"]
	if g.Master != "10.0.1.2:6379" || !slices.Equal(g.Replicas, []string{"10.0.1.4:6379", "10.0.1.1:6379"}) || len(g.Fenced) != 0 || g.Epoch != 1 {
		t.Fatalf("switched over: %+v", g)
	}
	// The snapshot keeps it all.
	var buf strings.Builder
	if err := WriteSnapshot(&buf, s); err != nil {
		t.Fatal(err)
	}
	back, err := ReadSnapshot(strings.NewReader(buf.String()))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.DCs["east"].Groups["g1"], g) {
		t.Fatalf("snapshot: %+v, want %+v", back.DCs["east"].Groups["g1"], g)
	}
}

func TestMasterDownAfterSetting(t *testing.T) {
	s := testState(t)
	if d := s.SettingDuration("master_down_after"); d.String() != "3s" {
		t.Fatalf("default master_down_after = %s", d)
	}
	s = applyOK(t, s, s.Index+1, &SetSetting{Key: "master_down_after", Value: "1500ms"})
	if v := s.Setting("master_down_after"); v != "1.5s" {
		t.Fatalf("master_down_after = %q", v)
	}
	applyRefused(t, s, &SetSetting{Key: "master_down_after", Value: "3"}, "invalid", "duration")
	applyRefused(t, s, &SetSetting{Key: "master_down_after", Value: "10ms"}, "invalid", "duration")
}

func TestReadFromSettings(t *testing.T) {
	s := testState(t)
	if s.Setting("read_from") != ReadMaster || s.SettingDuration("replica_max_lag").String() != "1s" {
		t.Fatalf("defaults: read_from %q, replica_max_lag %q", s.Setting("read_from"), s.Setting("replica_max_lag"))
	}
	s = applyOK(t, s, s.Index+1, &SetSetting{Key: "read_from", Value: " Nearest"})
	if s.Setting("read_from") != ReadNearest {
		t.Fatalf("read_from = %q", s.Setting("read_from"))
	}
	applyRefused(t, s, &SetSetting{Key: "read_from", Value: "slave"}, "invalid", "master, replica or nearest")
	applyRefused(t, s, &SetSetting{Key: "replica_max_lag", Value: "10ms"}, "invalid", "duration")
}

// TestFencedKeptByUpdates: a group update with KeepFenced (the admin API's) that does not list
// a fenced former master keeps it fenced (the fence was dropped, and the old master, back, was
// neither demoted nor kept from another group); one that lists it ends the fence. An update
// without the field applies as entries already in a log did: the fence goes.
func TestFencedKeptByUpdates(t *testing.T) {
	s := failoverState(t)
	m, r := "10.0.2.1:6379", "10.0.2.2:6379"
	s = applyOK(t, s, s.Index+1, &AddGroup{DC: "east", Group: Group{ID: "g5", Master: m, Replicas: []string{r}}})
	s = applyOK(t, s, s.Index+1, &ReportServer{DC: "east", Group: "g5", Node: "n1", Addr: m, Down: true})
	s = applyOK(t, s, s.Index+1, &ReportServer{DC: "east", Group: "g5", Node: "n2", Addr: m, Down: true})
	if s.DCs["east"].Groups["g5"].Failover == nil {
		t.Fatal("no failover started")
	}
	s = applyOK(t, s, s.Index+1, &FinishFailover{DC: "east", Group: "g5", Epoch: 1, NewMaster: r})
	if g := s.DCs["east"].Groups["g5"]; !slices.Equal(g.Fenced, []string{m}) {
		t.Fatalf("after the failover: fenced %v", g.Fenced)
	}
	if old := applyOK(t, s, s.Index+1, &UpdateGroup{DC: "east", KeepPassword: true, Group: Group{ID: "g5", Master: r, Replicas: []string{"10.0.2.3:6379"}}}); len(old.DCs["east"].Groups["g5"].Fenced) != 0 {
		t.Fatalf("an update without keep_fenced kept the fence: entries in existing logs would apply otherwise than they did")
	}
	s = applyOK(t, s, s.Index+1, &UpdateGroup{DC: "east", KeepPassword: true, KeepFenced: true, Group: Group{ID: "g5", Master: r, Replicas: []string{"10.0.2.3:6379"}}})
	if g := s.DCs["east"].Groups["g5"]; !slices.Equal(g.Fenced, []string{m}) || g.Master != r {
		t.Fatalf("an update that does not name the fenced master dropped it: %+v", g)
	}
	applyRefused(t, s, &AddGroup{DC: "east", Group: Group{ID: "g9", Master: m}}, "exists", "belongs to group g5")
	s = applyOK(t, s, s.Index+1, &UpdateGroup{DC: "east", KeepPassword: true, KeepFenced: true, Group: Group{ID: "g5", Master: r, Replicas: []string{m}}})
	if g := s.DCs["east"].Groups["g5"]; len(g.Fenced) != 0 || !slices.Equal(g.Replicas, []string{m}) {
		t.Fatalf("an update that names the fenced master as a replica: %+v", g)
	}
	applyOK(t, s, s.Index+1, &RemoveGroup{DC: "east", ID: "g5"})
}
