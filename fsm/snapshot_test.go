package fsm

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func TestSnapshotRoundTrip(t *testing.T) {
	s := testState(t)
	s = applyOK(t, s, 30, &SetSetting{Key: "flush_enabled", Value: "false"})
	tok := testNode("n4", "west", "004")
	tok.Tokens, tok.Rack = []uint32{1, 2, 3}, "r9"
	s = applyOK(t, s, 31, &AddNode{Node: tok})
	s.Migrations[1] = &Migration{ID: 1, DC: "east", Slots: []SlotRange{{0, 9}, {20, 20}}, From: "g1", To: "g2",
		State: MigrationMigrating, Paused: true, Rate: 500, FreezeAcks: map[string]uint64{"n1": 4, "n2": 6},
		KeysMoved: 10, BytesMoved: 2048, KeysTotal: 99, StartIndex: 3}
	s.Migrations[2] = &Migration{ID: 2, DC: "west", Slots: []SlotRange{{5, 5}}, From: "g1", To: "g1", State: MigrationDone}
	s.NextMigrationID = 3
	for _, st := range []*State{New(), s} {
		var buf bytes.Buffer
		if err := WriteSnapshot(&buf, st); err != nil {
			t.Fatal(err)
		}
		got, err := ReadSnapshot(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, st) {
			t.Errorf("round trip differs:\n got %+v\nwant %+v", got, st)
		}
		// The restored state is usable: the next command applies to it as to the original.
		c := &AddGroup{DC: "east", Group: Group{ID: "g7", Master: "10.9.9.9:1"}}
		a, errA := ApplyCommand(st, 40, c)
		b, errB := ApplyCommand(got, 40, c)
		if (errA == nil) != (errB == nil) || !reflect.DeepEqual(a, b) {
			t.Errorf("apply after restore differs: %v %v", errA, errB)
		}
	}
}

func TestReadSnapshotErrors(t *testing.T) {
	slots := `[` + strings.Repeat(`"",`, NumSlots-1) + `""]`
	for _, tc := range []struct{ name, in, want string }{
		{"empty", ``, "read snapshot"},
		{"garbage", `{"version":`, "read snapshot"},
		{"not json", "\x00\x01", "read snapshot"},
		{"no state", `{"version":1}`, "not supported"},
		{"newer version", `{"version":2,"state":{}}`, "snapshot version 2 not supported (want 1)"},
		{"version zero", `{"version":0,"state":{}}`, "not supported"},
		{"short slot table", `{"version":1,"state":{"dcs":{"east":{"name":"east","slots":["a"]}}}}`, "datacenter east has 1 slots, want 16384"},
		{"null datacenter", `{"version":1,"state":{"dcs":{"east":null}}}`, "datacenter east is null"},
		{"null node", `{"version":1,"state":{"nodes":{"n1":null}}}`, "node n1 is null"},
		{"null group", `{"version":1,"state":{"dcs":{"east":{"name":"east","slots":` + slots + `,"groups":{"g1":null}}}}}`, "group g1 of datacenter east is null"},
		{"null migration", `{"version":1,"state":{"migrations":{"4":null}}}`, "migration 4 is null"},
	} {
		s, err := ReadSnapshot(strings.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) || s != nil {
			t.Errorf("%s: ReadSnapshot = %v, %v; want error %q", tc.name, s, err, tc.want)
		}
	}
	// A DC without groups in the file gets an empty map, and a minimal snapshot restores.
	s, err := ReadSnapshot(strings.NewReader(`{"version":1,"state":{"index":7,"next_migration_id":2,"dcs":{"east":{"name":"east","slots":` + slots + `}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Index != 7 || s.NextMigrationID != 2 || s.DCs["east"].Groups == nil || s.Nodes == nil || s.Settings == nil || s.Applied == nil || s.Migrations == nil {
		t.Errorf("restored %+v", s)
	}
	if _, err := ApplyCommand(s, 8, &AddGroup{DC: "east", Group: Group{ID: "g1", Master: "h:1"}}); err != nil {
		t.Error(err)
	}
}

// A snapshot taken while a migration waits for its first freeze ack restores to a state that
// applies the rest of the log exactly as the original does (freeze_acks is omitempty).
func TestSnapshotFrozenMigrationWithoutAcks(t *testing.T) {
	s := testState(t)
	s = applyOK(t, s, 20, &StartMigration{DC: "east", Slots: []SlotRange{{0, 99}}, To: "g2"})
	if m := s.Migrations[1]; m == nil || m.State != MigrationFrozen || len(m.FreezeAcks) != 0 {
		t.Fatalf("migration = %+v", m)
	}
	var buf bytes.Buffer
	if err := WriteSnapshot(&buf, s); err != nil {
		t.Fatal(err)
	}
	restored, err := ReadSnapshot(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(restored, s) {
		t.Fatalf("round trip differs: %+v vs %+v", restored.Migrations[1], s.Migrations[1])
	}
	for _, log := range [][]Command{
		{&AckFreeze{ID: 1, Node: "n1"}, &AckFreeze{ID: 1, Node: "n2"}},
		{&RemoveNode{ID: "n1"}, &RemoveNode{ID: "n2"}},
		{&AckFreeze{ID: 1, Node: "n1"}, &RemoveNode{ID: "n2"}, &FinishMigration{ID: 1}},
	} {
		a, b := s, restored
		for i, c := range log {
			a = applyOK(t, a, uint64(21+i), c)
			b = applyOK(t, b, uint64(21+i), c)
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("after %d commands: original %+v, restored %+v", len(log), a.Migrations[1], b.Migrations[1])
		}
		if a.Migrations[1].State == MigrationFrozen {
			t.Errorf("barrier did not pass: %+v", a.Migrations[1])
		}
	}
}
