package fsm

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// applyOK applies c to s at index and fails the test on an error.
func applyOK(t testing.TB, s *State, index uint64, c Command) *State {
	t.Helper()
	b, err := Encode(c)
	if err != nil {
		t.Fatalf("encode %s: %v", c.Name(), err)
	}
	next, err := Apply(s, index, b)
	if err != nil {
		t.Fatalf("apply %s %+v: %v", c.Name(), c, err)
	}
	return next
}

// applyRefused applies c to s, expects an *Error with code whose message holds substr, and checks
// that the refused command left the state as it was (but for Index).
func applyRefused(t *testing.T, s *State, c Command, code, substr string) {
	t.Helper()
	before := s.Clone()
	b, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	next, err := Apply(s, s.Index+1, b)
	var fe *Error
	if !errors.As(err, &fe) {
		t.Fatalf("apply %s %+v: err = %v, want an *Error %s", c.Name(), c, err, code)
	}
	if fe.Code != code || !strings.Contains(fe.Msg, substr) {
		t.Errorf("apply %s: error %s %q, want %s containing %q", c.Name(), fe.Code, fe.Msg, code, substr)
	}
	if !reflect.DeepEqual(s, before) {
		t.Errorf("apply %s changed its input state", c.Name())
	}
	if next.Index != s.Index+1 {
		t.Errorf("refused apply: index %d, want %d", next.Index, s.Index+1)
	}
	next.Index = s.Index
	if !reflect.DeepEqual(next, before) {
		t.Errorf("refused apply %s changed more than the index", c.Name())
	}
}

func testNode(id, dc string, port string) Node {
	return Node{ID: id, DC: dc, Listen: "10.0.0.1:6" + port, Peer: "10.0.0.1:7" + port, Admin: "10.0.0.1:8" + port}
}

// testState builds a state with two DCs, three nodes, two groups in east (g1 serves slots
// 0-8191, g2 8192-16383), one in west, and a setting.
func testState(t testing.TB) *State {
	t.Helper()
	s := New()
	cmds := []Command{
		&AddNode{Node: testNode("n1", "east", "001")},
		&AddNode{Node: testNode("n2", "east", "002")},
		&AddNode{Node: testNode("n3", "west", "003")},
		&AddGroup{DC: "east", Group: Group{ID: "g1", Master: "10.0.1.1:6379", Replicas: []string{"10.0.1.2:6379"}}},
		&AddGroup{DC: "east", Group: Group{ID: "g2", Master: "10.0.1.3:6379", Password: "pw"}},
		&AddGroup{DC: "west", Group: Group{ID: "g1", Master: "10.1.1.1:6379"}},
		&AssignSlots{DC: "east", Group: "g1", Ranges: []SlotRange{{0, 8191}}},
		&AssignSlots{DC: "east", Group: "g2", Ranges: []SlotRange{{8192, 16383}}},
		&AssignSlots{DC: "west", Group: "g1", Ranges: []SlotRange{{0, 16383}}},
		&SetSetting{Key: "write_consistency", Value: "dc_quorum"},
	}
	for i, c := range cmds {
		s = applyOK(t, s, uint64(i+1), c)
	}
	return s
}

func TestAddNode(t *testing.T) {
	s := New()
	tokens := []uint32{5, 10}
	n1 := testNode("n1", "east", "001")
	n1.Rack, n1.Tokens, n1.JoinIndex = "r1", tokens, 999
	s = applyOK(t, s, 3, &AddNode{Node: n1})
	got := s.Nodes["n1"]
	if got == nil || got.DC != "east" || got.Rack != "r1" || got.JoinIndex != 3 || !reflect.DeepEqual(got.Tokens, []uint32{5, 10}) {
		t.Fatalf("node n1 = %+v", got)
	}
	if dc := s.DCs["east"]; dc == nil || dc.Name != "east" || len(dc.Slots) != NumSlots || len(dc.Groups) != 0 {
		t.Fatalf("datacenter east = %+v", dc)
	}
	if s.Index != 3 || s.Applied["add_node"] != 1 {
		t.Errorf("index %d, applied %v", s.Index, s.Applied)
	}

	// Adding again updates addresses, rack and tokens and keeps the join index.
	n1b := n1
	n1b.Listen, n1b.Rack, n1b.Tokens = "10.0.0.9:6001", "r2", []uint32{7}
	s2 := applyOK(t, s, 4, &AddNode{Node: n1b})
	if got := s2.Nodes["n1"]; got.Listen != "10.0.0.9:6001" || got.Rack != "r2" || got.JoinIndex != 3 || !reflect.DeepEqual(got.Tokens, []uint32{7}) {
		t.Errorf("updated node = %+v", got)
	}
	if s.Nodes["n1"].Listen != "10.0.0.1:6001" {
		t.Error("update changed the previous state")
	}
	// The node's tokens are copied, not shared with the command.
	cmd := &AddNode{Node: testNode("n9", "east", "009")}
	cmd.Node.Tokens = []uint32{1, 2}
	b, _ := Encode(cmd)
	c, _ := Decode(b)
	s3, err := ApplyCommand(s, 5, c)
	if err != nil {
		t.Fatal(err)
	}
	c.(*AddNode).Node.Tokens[0] = 42
	if s3.Nodes["n9"].Tokens[0] != 1 {
		t.Error("state shares the command's token slice")
	}

	s = applyOK(t, s, 5, &AddNode{Node: testNode("n2", "west", "002")})
	applyRefused(t, s, &AddNode{Node: testNode("n1", "west", "003")}, "exists", "node id n1 is taken by a node in datacenter east")
	dupPeer := testNode("n3", "west", "003")
	dupPeer.Peer = s.Nodes["n2"].Peer
	applyRefused(t, s, &AddNode{Node: dupPeer}, "exists", "peer address 10.0.0.1:7002 is already used by node n2")
	dupListen := testNode("n3", "west", "003")
	dupListen.Listen = s.Nodes["n1"].Listen
	applyRefused(t, s, &AddNode{Node: dupListen}, "exists", "listen address 10.0.0.1:6001 is already used by node n1")
	noPeer := testNode("n3", "west", "003")
	noPeer.Peer = ""
	applyRefused(t, s, &AddNode{Node: noPeer}, "invalid", "peer_listen address is required")
	applyRefused(t, s, &AddNode{Node: testNode("", "west", "003")}, "invalid", "node id is required")
	applyRefused(t, s, &AddNode{Node: testNode("n 3", "west", "003")}, "invalid", `node id "n 3" may hold only`)
	applyRefused(t, s, &AddNode{Node: testNode(strings.Repeat("n", 65), "west", "003")}, "invalid", "longer than 64 bytes")
	applyRefused(t, s, &AddNode{Node: testNode("n3", "", "003")}, "invalid", "datacenter is required")
	applyRefused(t, s, &AddNode{Node: testNode("n3", "we/st", "003")}, "invalid", `datacenter "we/st"`)

	// Two nodes without a listen address do not collide.
	a, b2 := testNode("a", "x", "011"), testNode("b", "x", "012")
	a.Listen, b2.Listen = "", ""
	s = applyOK(t, applyOK(t, s, 6, &AddNode{Node: a}), 7, &AddNode{Node: b2})
	if len(s.Nodes) != 4 {
		t.Errorf("nodes %v", s.NodeIDs())
	}
	if got := s.NodeIDs(); !reflect.DeepEqual(got, []string{"a", "b", "n1", "n2"}) {
		t.Errorf("NodeIDs = %v", got)
	}
	if got := s.DCNames(); !reflect.DeepEqual(got, []string{"east", "west", "x"}) {
		t.Errorf("DCNames = %v", got)
	}
}

func TestRemoveNode(t *testing.T) {
	s := testState(t)
	s.Migrations[1] = &Migration{ID: 1, DC: "east", Slots: []SlotRange{{0, 9}}, From: "g1", To: "g2", State: MigrationFrozen, FreezeAcks: map[string]uint64{"n1": 4, "n2": 5}}
	s.Migrations[2] = &Migration{ID: 2, DC: "east", Slots: []SlotRange{{10, 19}}, From: "g1", To: "g2", State: MigrationDone, FreezeAcks: map[string]uint64{"n1": 4}}
	before := s.Clone()
	next := applyOK(t, s, 20, &RemoveNode{ID: "n1"})
	if _, ok := next.Nodes["n1"]; ok {
		t.Error("n1 still a member")
	}
	if !reflect.DeepEqual(next.Migrations[1].FreezeAcks, map[string]uint64{"n2": 5}) {
		t.Errorf("active migration acks = %v", next.Migrations[1].FreezeAcks)
	}
	if !reflect.DeepEqual(next.Migrations[2].FreezeAcks, map[string]uint64{"n1": 4}) {
		t.Errorf("finished migration acks changed: %v", next.Migrations[2].FreezeAcks)
	}
	if !reflect.DeepEqual(s, before) {
		t.Error("RemoveNode changed its input state")
	}
	applyRefused(t, next, &RemoveNode{ID: "n1"}, "not_found", "node n1 is not a member")
	applyRefused(t, next, &RemoveNode{}, "not_found", "is not a member")
}

func TestGroups(t *testing.T) {
	s := testState(t)
	// AddGroup creates the DC when needed.
	s2 := applyOK(t, s, 20, &AddGroup{DC: "north", Group: Group{ID: "g1", Master: "10.2.1.1:6379"}})
	if dc := s2.DCs["north"]; dc == nil || dc.Groups["g1"].Master != "10.2.1.1:6379" || len(dc.Slots) != NumSlots {
		t.Fatalf("north = %+v", dc)
	}
	if _, ok := s.DCs["north"]; ok {
		t.Error("AddGroup changed its input state")
	}
	if got := s.DCs["east"].GroupIDs(); !reflect.DeepEqual(got, []string{"g1", "g2"}) {
		t.Errorf("GroupIDs = %v", got)
	}
	// The same address may serve in another DC (a different site).
	applyOK(t, s, 20, &AddGroup{DC: "west", Group: Group{ID: "g2", Master: "10.0.1.3:6380", Replicas: []string{"10.0.1.1:6380"}}})

	applyRefused(t, s, &AddGroup{DC: "east", Group: Group{ID: "g1", Master: "10.0.9.9:6379"}}, "exists", "group g1 already exists in datacenter east")
	applyRefused(t, s, &AddGroup{DC: "", Group: Group{ID: "g3", Master: "10.0.9.9:6379"}}, "invalid", "datacenter is required")
	applyRefused(t, s, &AddGroup{DC: "east", Group: Group{ID: "g 3", Master: "10.0.9.9:6379"}}, "invalid", `group id "g 3"`)
	applyRefused(t, s, &AddGroup{DC: "east", Group: Group{ID: "g3"}}, "invalid", "group g3: a master address is required")
	for _, bad := range []string{"10.0.9.9", ":6379", "10.0.9.9:0", "10.0.9.9:65536", "10.0.9.9:x", "10.0.9.9:6379:1"} {
		applyRefused(t, s, &AddGroup{DC: "east", Group: Group{ID: "g3", Master: bad}}, "invalid", "group g3: address")
		applyRefused(t, s, &AddGroup{DC: "east", Group: Group{ID: "g3", Master: "10.0.9.9:6379", Replicas: []string{bad}}}, "invalid", "group g3: address")
	}
	applyRefused(t, s, &AddGroup{DC: "east", Group: Group{ID: "g3", Master: "10.0.9.9:6379", Replicas: []string{"10.0.9.9:6379"}}}, "invalid", "address 10.0.9.9:6379 is listed twice")
	applyRefused(t, s, &AddGroup{DC: "east", Group: Group{ID: "g3", Master: "10.0.1.2:6379"}}, "exists", "address 10.0.1.2:6379 already belongs to group g1")
	applyRefused(t, s, &AddGroup{DC: "east", Group: Group{ID: "g3", Master: "10.0.9.9:6379", Replicas: []string{"10.0.1.3:6379"}}}, "exists", "already belongs to group g2")

	// UpdateGroup: a failover swaps master and replica; the group keeps its slots.
	s3 := applyOK(t, s, 21, &UpdateGroup{DC: "east", Group: Group{ID: "g1", Master: "10.0.1.2:6379", Replicas: []string{"10.0.1.1:6379", "10.0.1.4:6379"}}})
	if g := s3.DCs["east"].Groups["g1"]; g.Master != "10.0.1.2:6379" || len(g.Replicas) != 2 || s3.DCs["east"].SlotCount("g1") != 8192 {
		t.Errorf("updated g1 = %+v", g)
	}
	if g := s.DCs["east"].Groups["g1"]; g.Master != "10.0.1.1:6379" || len(g.Replicas) != 1 {
		t.Errorf("UpdateGroup changed its input: %+v", g)
	}
	// KeepUser and KeepPassword keep the group's current credentials, whatever the update
	// carries (an admin update read its user from a state that may lag).
	su := applyOK(t, s, 21, &UpdateGroup{DC: "east", Group: Group{ID: "g1", Master: "10.0.1.1:6379", User: "u2", Password: "p2"}})
	su = applyOK(t, su, 22, &UpdateGroup{DC: "east", KeepUser: true, KeepPassword: true,
		Group: Group{ID: "g1", Master: "10.0.1.1:6379", User: "u1-stale", Password: "ignored"}})
	if g := su.DCs["east"].Groups["g1"]; g.User != "u2" || g.Password != "p2" {
		t.Errorf("kept credentials: user %q, password set %v", g.User, g.Password == "p2")
	}
	applyRefused(t, s, &UpdateGroup{DC: "east", Group: Group{ID: "g9", Master: "10.0.9.9:6379"}}, "not_found", "group g9 does not exist in datacenter east")
	applyRefused(t, s, &UpdateGroup{DC: "south", Group: Group{ID: "g1", Master: "10.0.9.9:6379"}}, "not_found", "datacenter south")
	applyRefused(t, s, &UpdateGroup{DC: "east", Group: Group{ID: "g1", Master: "10.0.1.3:6379"}}, "exists", "already belongs to group g2")
	applyRefused(t, s, &UpdateGroup{DC: "east", Group: Group{ID: "g1"}}, "invalid", "a master address is required")

	// RemoveGroup refuses while the group serves slots or takes part in a migration.
	applyRefused(t, s, &RemoveGroup{DC: "east", ID: "g1"}, "busy", "group g1 in datacenter east still serves 8192 slots")
	applyRefused(t, s, &RemoveGroup{DC: "east", ID: "g9"}, "not_found", "group g9 does not exist")
	applyRefused(t, s, &RemoveGroup{DC: "south", ID: "g1"}, "not_found", "datacenter south")
	s4 := applyOK(t, s, 22, &AddGroup{DC: "east", Group: Group{ID: "g3", Master: "10.0.1.9:6379"}})
	s4.Migrations[1] = &Migration{ID: 1, DC: "east", Slots: []SlotRange{{0, 9}}, From: "g1", To: "g3", State: MigrationMigrating}
	applyRefused(t, s4, &RemoveGroup{DC: "east", ID: "g3"}, "busy", "group g3 is part of migration 1")
	s4.Migrations[1].State = MigrationCancelled
	s5 := applyOK(t, s4, 23, &RemoveGroup{DC: "east", ID: "g3"})
	if _, ok := s5.DCs["east"].Groups["g3"]; ok {
		t.Error("g3 not removed")
	}
	// Once its slots have moved (here by force), a group can go.
	s6 := applyOK(t, s, 24, &AssignSlots{DC: "east", Group: "g2", Ranges: []SlotRange{{0, 8191}}, Force: true})
	s6 = applyOK(t, s6, 25, &RemoveGroup{DC: "east", ID: "g1"})
	if got := s6.DCs["east"].GroupIDs(); !reflect.DeepEqual(got, []string{"g2"}) {
		t.Errorf("groups after remove = %v", got)
	}
	if s6.Applied["remove_group"] != 1 || s6.Applied["assign_slots"] != 4 {
		t.Errorf("applied = %v", s6.Applied)
	}
}

func TestAssignSlots(t *testing.T) {
	s := testState(t)
	if s.DCs["east"].SlotCount("g1") != 8192 || s.DCs["east"].SlotCount("g2") != 8192 || s.DCs["west"].SlotCount("g1") != NumSlots {
		t.Fatal("testState slots")
	}
	s = applyOK(t, s, 20, &AddGroup{DC: "east", Group: Group{ID: "g3", Master: "10.0.1.9:6379"}})
	applyRefused(t, s, &AssignSlots{DC: "east", Group: "g3", Ranges: []SlotRange{{8000, 8200}}}, "busy", "slot 8000 already belongs to group g1")
	applyRefused(t, s, &AssignSlots{DC: "east", Group: "g3", Ranges: []SlotRange{{8192, 8192}}}, "busy", "slot 8192 already belongs to group g2")
	applyRefused(t, s, &AssignSlots{DC: "east", Group: "g9", Ranges: []SlotRange{{0, 1}}}, "not_found", "group g9 does not exist in datacenter east")
	applyRefused(t, s, &AssignSlots{DC: "nowhere", Group: "g1", Ranges: []SlotRange{{0, 1}}}, "not_found", "datacenter nowhere")
	applyRefused(t, s, &AssignSlots{DC: "east", Group: "g3"}, "invalid", "no slots given")
	for _, r := range []SlotRange{{-1, 5}, {5, 4}, {0, NumSlots}, {NumSlots, NumSlots}} {
		applyRefused(t, s, &AssignSlots{DC: "east", Group: "g3", Ranges: []SlotRange{r}}, "invalid", "outside 0-16383 or reversed")
		applyRefused(t, s, &AssignSlots{DC: "east", Group: "g3", Ranges: []SlotRange{{0, 0}, r}, Force: true}, "invalid", "outside 0-16383 or reversed")
	}
	// A group may be given slots it already has.
	applyOK(t, s, 21, &AssignSlots{DC: "east", Group: "g1", Ranges: []SlotRange{{0, 100}}})
	// With force owned slots move (no data moves); several ranges at once.
	f := applyOK(t, s, 21, &AssignSlots{DC: "east", Group: "g3", Ranges: []SlotRange{{8000, 8200}, {5, 5}}, Force: true})
	if got := f.DCs["east"].SlotRanges(); !reflect.DeepEqual(got, map[string][]SlotRange{
		"g1": {{0, 4}, {6, 7999}}, "g2": {{8201, 16383}}, "g3": {{5, 5}, {8000, 8200}},
	}) {
		t.Errorf("slot ranges = %v", got)
	}
	if s.DCs["east"].Slots[8000] != "g1" {
		t.Error("AssignSlots changed its input state")
	}
	// Free slots are assigned without force.
	free := applyOK(t, New(), 1, &AddGroup{DC: "d", Group: Group{ID: "a", Master: "h:1"}})
	free = applyOK(t, free, 2, &AssignSlots{DC: "d", Group: "a", Ranges: []SlotRange{{100, 199}}})
	if got := free.DCs["d"].SlotRanges(); !reflect.DeepEqual(got, map[string][]SlotRange{"": {{0, 99}, {200, 16383}}, "a": {{100, 199}}}) {
		t.Errorf("slot ranges = %v", got)
	}
	// Slots of an active migration cannot be assigned, even with force; finished ones can.
	s.Migrations[7] = &Migration{ID: 7, DC: "east", Slots: []SlotRange{{10, 20}}, From: "g1", To: "g2", State: MigrationFrozen}
	s.Migrations[8] = &Migration{ID: 8, DC: "east", Slots: []SlotRange{{30, 40}}, From: "g1", To: "g2", State: MigrationDone}
	s.Migrations[9] = &Migration{ID: 9, DC: "west", Slots: []SlotRange{{50, 60}}, From: "g1", To: "g1", State: MigrationMigrating}
	applyRefused(t, s, &AssignSlots{DC: "east", Group: "g3", Ranges: []SlotRange{{20, 25}}, Force: true}, "busy", "slot 20 is being migrated (migration 7)")
	applyOK(t, s, 22, &AssignSlots{DC: "east", Group: "g3", Ranges: []SlotRange{{30, 40}, {50, 60}}, Force: true})
}

func TestSetSetting(t *testing.T) {
	s := New()
	for _, k := range SettingKeys() {
		if SettingHelp(k) == "" {
			t.Errorf("setting %s has no help", k)
		}
		// Every default is a value its own check accepts unchanged.
		def := s.Setting(k)
		next := applyOK(t, s, 1, &SetSetting{Key: k, Value: def})
		if next.Settings[k] != def {
			t.Errorf("setting %s: default %q normalises to %q", k, def, next.Settings[k])
		}
	}
	if keys := SettingKeys(); !reflect.DeepEqual(keys, sortedCopy(keys)) {
		t.Errorf("SettingKeys not sorted: %v", keys)
	}
	for _, tc := range []struct{ key, in, want string }{
		{"write_consistency", "dc_quorum", DCQuorum},
		{"write_consistency", " each_safe_quorum ", DCEachSafeQuorum},
		{"read_consistency", "one", DCOne},
		{"flush_enabled", "FALSE", "false"},
		{"flush_enabled", "1", "true"},
		{"max_voters", " 3", "3"},
		{"max_voters", "9", "9"},
		{"outbox_max_entries", "1000", "1000"},
		{"migrate_big_key_bytes", "+1", "1"},
	} {
		next := applyOK(t, s, 2, &SetSetting{Key: tc.key, Value: tc.in})
		if got := next.Setting(tc.key); got != tc.want {
			t.Errorf("set %s %q: got %q, want %q", tc.key, tc.in, got, tc.want)
		}
		if _, ok := s.Settings[tc.key]; ok {
			t.Error("SetSetting changed its input state")
		}
	}
	applyRefused(t, s, &SetSetting{Key: "no_such", Value: "1"}, "invalid", `unknown setting "no_such" (known: config_set, convergence, flush_enabled,`)
	applyRefused(t, s, &SetSetting{Key: "", Value: "1"}, "invalid", "unknown setting")
	for _, tc := range []struct{ key, in string }{
		{"write_consistency", "ALL"}, {"read_consistency", ""}, {"flush_enabled", "maybe"}, {"config_set", "sometimes"},
		{"max_voters", "0"}, {"max_voters", "10"}, {"max_voters", "x"}, {"max_voters", "3.5"},
		{"outbox_max_entries", "999"}, {"migrate_big_key_elements", "0"}, {"migrate_big_key_bytes", "99999999999999999999"},
	} {
		applyRefused(t, s, &SetSetting{Key: tc.key, Value: tc.in}, "invalid", "setting "+tc.key+": ")
	}
	if s.Setting("max_voters") != "5" || s.SettingInt("max_voters") != 5 || s.SettingInt("no_such") != 0 || s.Setting("no_such") != "" {
		t.Error("defaults")
	}
	if s.Setting("write_consistency") != DCOne || testState(t).Setting("write_consistency") != DCQuorum {
		t.Error("write_consistency")
	}
}

func sortedCopy(in []string) []string {
	out := append([]string(nil), in...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestNormalizeConsistency(t *testing.T) {
	for in, want := range map[string]string{
		"DC_ONE": DCOne, "dc_one": DCOne, "ONE": DCOne,
		"DC_QUORUM": DCQuorum, "quorum": DCQuorum, "DC_LOCAL_QUORUM": DCQuorum,
		"DC_EACH_SAFE_QUORUM": DCEachSafeQuorum, "dc_safe_quorum": DCQuorum, "EACH_SAFE_QUORUM": DCEachSafeQuorum,
	} {
		if got, err := NormalizeConsistency(in); err != nil || got != want {
			t.Errorf("NormalizeConsistency(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "ALL", "DC_TWO", "LOCAL_ONE"} {
		if _, err := NormalizeConsistency(in); err == nil {
			t.Errorf("NormalizeConsistency(%q): no error", in)
		}
	}
}

func TestCloneIsDeep(t *testing.T) {
	s := testState(t)
	s.Nodes["n1"].Tokens = []uint32{1}
	s.Migrations[1] = &Migration{ID: 1, DC: "east", Slots: []SlotRange{{0, 1}}, FreezeAcks: map[string]uint64{"n1": 1}}
	c := s.Clone()
	if !reflect.DeepEqual(s, c) {
		t.Fatal("clone differs")
	}
	c.Nodes["n1"].Tokens[0] = 9
	c.Nodes["n1"].Listen = "x"
	c.DCs["east"].Slots[0] = "zz"
	c.DCs["east"].Groups["g1"].Replicas[0] = "zz"
	c.DCs["east"].Groups["g1"].Master = "zz"
	c.Settings["write_consistency"] = "zz"
	c.Migrations[1].Slots[0].From = 5
	c.Migrations[1].FreezeAcks["n1"] = 5
	c.Applied["add_node"] = 100
	if s.Nodes["n1"].Tokens[0] != 1 || s.Nodes["n1"].Listen == "x" || s.DCs["east"].Slots[0] != "g1" ||
		s.DCs["east"].Groups["g1"].Replicas[0] == "zz" || s.DCs["east"].Groups["g1"].Master == "zz" ||
		s.Settings["write_consistency"] == "zz" || s.Migrations[1].Slots[0].From != 0 ||
		s.Migrations[1].FreezeAcks["n1"] != 1 || s.Applied["add_node"] == 100 {
		t.Error("clone shares memory with the original")
	}
}

func TestMigrationHelpers(t *testing.T) {
	m := &Migration{Slots: []SlotRange{{0, 9}, {100, 100}}, State: MigrationFrozen}
	for slot, want := range map[int]bool{0: true, 9: true, 10: false, 99: false, 100: true, 101: false, -1: false} {
		if m.Covers(slot) != want {
			t.Errorf("Covers(%d) = %v", slot, !want)
		}
	}
	for st, active := range map[MigrationState]bool{MigrationFrozen: true, MigrationMigrating: true, MigrationDone: false, MigrationCancelled: false} {
		m.State = st
		if m.Active() != active {
			t.Errorf("%s: Active() = %v", st, !active)
		}
	}
}

func TestErrorType(t *testing.T) {
	err := errf("busy", "slot %d", 5)
	var fe *Error
	if !errors.As(err, &fe) || fe.Code != "busy" || err.Error() != "slot 5" {
		t.Errorf("errf = %#v", err)
	}
}
