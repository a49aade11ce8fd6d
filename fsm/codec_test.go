package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"reflect"
	"strings"
	"testing"
)

// sampleCommands has one filled-in command per type this file knows; registered types it does
// not know are still round-tripped as zero values by TestEncodeDecodeEveryType.
func sampleCommands() []Command {
	n := testNode("n1", "east", "001")
	n.Rack, n.Tokens, n.JoinIndex = "r1", []uint32{1, 1 << 31}, 12
	return []Command{
		&AddNode{Node: n},
		&RemoveNode{ID: "n1"},
		&AddGroup{DC: "east", Group: Group{ID: "g1", Master: "10.0.1.1:6379", Replicas: []string{"10.0.1.2:6379"}, Password: "pw"}},
		&UpdateGroup{DC: "east", Group: Group{ID: "g1", Master: "10.0.1.2:6379"}},
		&RemoveGroup{DC: "east", ID: "g1"},
		&AssignSlots{DC: "east", Group: "g1", Ranges: []SlotRange{{0, 10}, {20, 20}}, Force: true},
		&SetSetting{Key: "max_voters", Value: "3"},
		&StartMigration{DC: "east", Slots: []SlotRange{{0, 99}}, To: "g2", Rate: 100},
		&AckFreeze{ID: 1, Node: "n1"},
		&FinishMigration{ID: 1},
		&ReportMigration{ID: 1, KeysMoved: 5, BytesMoved: 500, KeysTotal: 50},
		&ControlMigration{ID: 1, Action: MigrationRate, Rate: 10},
		&ReportServer{DC: "east", Group: "g1", Node: "n1", Addr: "10.0.1.1:6379", Down: true},
		&StartFailover{DC: "east", Group: "g1", To: "10.0.1.2:6379", Executor: "n1", Reason: "upgrade"},
		&FinishFailover{DC: "east", Group: "g1", Epoch: 2, NewMaster: "10.0.1.2:6379", Stalled: "x"},
		&RejoinServer{DC: "east", Group: "g1", Addr: "10.0.1.1:6379"},
		&TakeOverFailover{DC: "east", Group: "g1", Epoch: 2, From: "n1", Executor: "n2", Why: "x"},
	}
}

func TestEncodeDecodeEveryType(t *testing.T) {
	names := map[string]CmdType{}
	for typ, mk := range registry {
		c := mk()
		if c.Type() != typ {
			t.Errorf("registry[%d] makes a command of type %d", typ, c.Type())
		}
		if typ&IgnoreUnknownFlag != 0 {
			t.Logf("type %d (%s) is ignorable by older nodes", typ, c.Name())
		}
		if c.Name() == "" {
			t.Errorf("type %d has no name", typ)
		}
		if o, dup := names[c.Name()]; dup {
			t.Errorf("types %d and %d are both named %s", o, typ, c.Name())
		}
		names[c.Name()] = typ
		// The zero value round-trips for every registered type.
		roundTrip(t, c)
	}
	seen := map[CmdType]bool{}
	for _, c := range sampleCommands() {
		if _, ok := registry[c.Type()]; !ok {
			t.Errorf("%s (type %d) is not registered", c.Name(), c.Type())
		}
		seen[c.Type()] = true
		roundTrip(t, c)
	}
	for typ := range registry {
		if !seen[typ] {
			t.Logf("type %d has no filled-in sample in sampleCommands; add one", typ)
		}
	}
}

func roundTrip(t *testing.T, c Command) {
	t.Helper()
	b, err := Encode(c)
	if err != nil {
		t.Fatalf("encode %s: %v", c.Name(), err)
	}
	if CmdType(b[0]) != c.Type() || b[1] != codecVersion {
		t.Errorf("%s: header % x", c.Name(), b[:2])
	}
	d, err := Decode(b)
	if err != nil {
		t.Fatalf("decode %s: %v", c.Name(), err)
	}
	if !reflect.DeepEqual(c, d) {
		t.Errorf("%s: round trip\n got %#v\nwant %#v", c.Name(), d, c)
	}
}

func TestDecodeErrors(t *testing.T) {
	good, _ := Encode(&RemoveNode{ID: "n1"})
	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"nil", nil, "entry too short (0 bytes)"},
		{"one byte", []byte{byte(TypeAddNode)}, "entry too short (1 bytes)"},
		{"unknown type", []byte{0x7f, 1, '{', '}'}, "unknown command type 127"},
		{"type zero", []byte{0, 1}, "unknown command type 0"},
		{"version too new", append([]byte{good[0], codecVersion + 1}, good[2:]...), "has version 2, this node knows up to 1"},
		{"bad json", []byte{byte(TypeRemoveNode), 1, '{'}, "decode remove_node"},
		{"wrong json type", []byte{byte(TypeRemoveNode), 1, '['}, "decode remove_node"},
		{"trailing bytes", append(append([]byte(nil), good...), 'x'), "decode remove_node"},
		{"no body", []byte{byte(TypeSetSetting), 1}, "decode set_setting"},
		{"field of wrong type", append([]byte{byte(TypeAssignSlots), 1}, `{"ranges":[{"from":"a"}]}`...), "decode assign_slots"},
	}
	for _, tc := range cases {
		c, err := Decode(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) || c != nil {
			t.Errorf("%s: Decode = %v, %v; want error %q", tc.name, c, err, tc.want)
		}
		if errors.Is(err, ErrSkipped) {
			t.Errorf("%s: skipped", tc.name)
		}
	}
	// An unknown type an older node may skip.
	for _, typ := range []byte{0x80, 0xff, byte(TypeAddNode) | 0x80} {
		c, err := Decode([]byte{typ, 1, '{', '}'})
		if !errors.Is(err, ErrSkipped) || c != nil {
			t.Errorf("type %#x: Decode = %v, %v; want ErrSkipped", typ, c, err)
		}
		// Even a newer version of an ignorable unknown type is skipped.
		if _, err := Decode([]byte{typ, 99}); !errors.Is(err, ErrSkipped) {
			t.Errorf("type %#x version 99: %v", typ, err)
		}
	}
	// An older version of a known type decodes; null is a zero command.
	if c, err := Decode([]byte{byte(TypeRemoveNode), 0, 'n', 'u', 'l', 'l'}); err != nil || !reflect.DeepEqual(c, &RemoveNode{}) {
		t.Errorf("version 0 null: %v %v", c, err)
	}
	// A field this build does not know is refused: a newer build's field carries a meaning
	// this one would drop (UpdateGroup's keep_user, read as false, replaced the group's user).
	for _, in := range [][]byte{
		append([]byte{byte(TypeRemoveNode), 1}, `{"id":"n1","later":true}`...),
		append([]byte{byte(TypeUpdateGroup), 1}, `{"dc":"east","group":{"id":"g1","master":"10.0.1.2:6379"},"keep_later":true}`...),
	} {
		if c, err := Decode(in); !errors.Is(err, ErrUnreadable) || c != nil || !strings.Contains(err.Error(), "later") {
			t.Errorf("extra field %s: %v %v", in[2:], c, err)
		}
	}
	// Every other error is one too, so that a node stops at such an entry.
	for _, tc := range cases {
		if _, err := Decode(tc.in); !errors.Is(err, ErrUnreadable) {
			t.Errorf("%s: %v does not wrap ErrUnreadable", tc.name, err)
		}
	}
	// Whitespace after the body is no error (json.Unmarshal allowed it).
	if _, err := Decode(append(append([]byte(nil), good...), ' ', '\n')); err != nil {
		t.Errorf("trailing space: %v", err)
	}
}

// TestSnapshotRefusesUnknownFields: a state with a field this build does not know (a newer
// build's snapshot) is refused, not restored without it.
func TestSnapshotRefusesUnknownFields(t *testing.T) {
	var b bytes.Buffer
	if err := WriteSnapshot(&b, testState(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSnapshot(bytes.NewReader(b.Bytes())); err != nil {
		t.Fatalf("own snapshot: %v", err)
	}
	newer := bytes.Replace(b.Bytes(), []byte(`"state":{`), []byte(`"state":{"later":{"x":1},`), 1)
	if bytes.Equal(newer, b.Bytes()) {
		t.Fatal("the snapshot has no state object to add a field to")
	}
	if _, err := ReadSnapshot(bytes.NewReader(newer)); err == nil || !strings.Contains(err.Error(), "later") {
		t.Errorf("snapshot with an unknown field: %v", err)
	}
}

func TestApplySkippedAndBadEntries(t *testing.T) {
	s := testState(t)
	before := s.Clone()
	next, err := Apply(s, 99, []byte{0x90, 1})
	if !errors.Is(err, ErrSkipped) || next.Index != 99 {
		t.Errorf("skipped: %v, index %d", err, next.Index)
	}
	next.Index = before.Index
	if !reflect.DeepEqual(next, before) || !reflect.DeepEqual(s, before) {
		t.Error("a skipped entry changed the state")
	}
	next, err = Apply(s, 100, []byte{1})
	if err == nil || next.Index != 100 || !reflect.DeepEqual(s, before) {
		t.Errorf("short entry: %v", err)
	}
}

// TestApplyImmutable applies good and bad commands and checks the input state never changes.
func TestApplyImmutable(t *testing.T) {
	base := testState(t)
	base.Migrations[1] = &Migration{ID: 1, DC: "east", Slots: []SlotRange{{0, 9}}, From: "g1", To: "g2", State: MigrationFrozen, FreezeAcks: map[string]uint64{"n1": 4}}
	cmds := append(sampleCommands(),
		&AddNode{Node: testNode("n2", "east", "002")},
		&AddNode{Node: testNode("n4", "east", "004")},
		&AddNode{Node: testNode("n1", "west", "001")},
		&RemoveNode{ID: "n3"},
		&AddGroup{DC: "east", Group: Group{ID: "g3", Master: "10.0.3.1:6379", Replicas: []string{"10.0.3.2:6379"}}},
		&UpdateGroup{DC: "east", Group: Group{ID: "g2", Master: "10.0.2.9:6379", Replicas: []string{"10.0.2.8:6379"}}},
		&RemoveGroup{DC: "west", ID: "g1"},
		&AssignSlots{DC: "east", Group: "g2", Ranges: []SlotRange{{0, 100}}, Force: true},
		&AssignSlots{DC: "east", Group: "g2", Ranges: []SlotRange{{100, 200}}, Force: true},
		&AssignSlots{DC: "west", Group: "g1", Ranges: []SlotRange{{5, 5}}},
		&SetSetting{Key: "flush_enabled", Value: "no"},
		&SetSetting{Key: "flush_enabled", Value: "false"},
	)
	for _, c := range cmds {
		s := base.Clone()
		before := s.Clone()
		next, err := ApplyCommand(s, 50, c)
		if !reflect.DeepEqual(s, before) {
			t.Errorf("%s %+v (err %v) changed its input state", c.Name(), c, err)
		}
		if next == s || next.Index != 50 {
			t.Errorf("%s: next %p, input %p, index %d", c.Name(), next, s, next.Index)
		}
		if err == nil {
			// The new state shares nothing with the old but DCs (copied on write by apply, whose
			// untouched DCs are shared on purpose; the check above covers them): changing the
			// rest leaves the old alone.
			next.DCs = map[string]*DC{}
			scribble(next)
			if !reflect.DeepEqual(s, before) {
				t.Errorf("%s: new state shares memory with the old", c.Name())
			}
		}
	}
}

// scribble changes everything reachable from s.
func scribble(s *State) {
	for _, n := range s.Nodes {
		n.Listen += "x"
		for i := range n.Tokens {
			n.Tokens[i]++
		}
	}
	for _, d := range s.DCs {
		for i := range d.Slots {
			d.Slots[i] += "x"
		}
		for _, g := range d.Groups {
			g.Master += "x"
			for i := range g.Replicas {
				g.Replicas[i] += "x"
			}
		}
	}
	for k := range s.Settings {
		s.Settings[k] += "x"
	}
	for _, m := range s.Migrations {
		m.State += "x"
		for i := range m.Slots {
			m.Slots[i].From++
		}
		for k := range m.FreezeAcks {
			m.FreezeAcks[k]++
		}
	}
	for k := range s.Applied {
		s.Applied[k]++
	}
}

// randomLog makes a log of a fixed setup followed by n random entries, valid and invalid, from
// a seeded generator.
func randomLog(seed int64, n int) [][]byte {
	r := rand.New(rand.NewSource(seed))
	ids := []string{"n1", "n2", "n3", "n4", "n5", "bad id"}
	dcs := []string{"east", "east", "west", "nowhere"}
	groups := []string{"g1", "g2", "g3"}
	addrs := []string{"10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379", "10.0.0.4:6379", "10.0.0.5:6379", "10.0.0.6:6379", "nope"}
	pick := func(a []string) string { return a[r.Intn(len(a))] }
	setup := []Command{
		&AddNode{Node: testNode("n1", "east", "001")},
		&AddNode{Node: testNode("n2", "east", "002")},
		&AddNode{Node: testNode("n3", "west", "003")},
		&AddGroup{DC: "east", Group: Group{ID: "g1", Master: "10.0.1.1:6379"}},
		&AddGroup{DC: "east", Group: Group{ID: "g2", Master: "10.0.1.2:6379"}},
		&AddGroup{DC: "west", Group: Group{ID: "g1", Master: "10.0.2.1:6379"}},
		&AssignSlots{DC: "east", Group: "g1", Ranges: []SlotRange{{0, 8191}}},
		&AssignSlots{DC: "east", Group: "g2", Ranges: []SlotRange{{8192, 16383}}},
		&AssignSlots{DC: "west", Group: "g1", Ranges: []SlotRange{{0, 16383}}},
	}
	var log [][]byte
	for len(log) < len(setup)+n {
		var c Command
		if len(log) < len(setup) {
			c = setup[len(log)]
		} else {
			switch r.Intn(14) {
			case 0:
				id := pick(ids)
				nd := testNode(id, pick(dcs), fmt.Sprintf("%03d", r.Intn(8)))
				if r.Intn(2) == 0 {
					nd.Tokens = []uint32{r.Uint32()}
				}
				c = &AddNode{Node: nd}
			case 1:
				c = &RemoveNode{ID: pick(ids)}
			case 2:
				c = &AddGroup{DC: pick(dcs), Group: Group{ID: pick(groups), Master: pick(addrs), Replicas: []string{pick(addrs)}}}
			case 3:
				c = &UpdateGroup{DC: pick(dcs), Group: Group{ID: pick(groups), Master: pick(addrs)}}
			case 4:
				c = &RemoveGroup{DC: pick(dcs), ID: pick(groups)}
			case 5:
				from := r.Intn(NumSlots+10) - 5
				c = &AssignSlots{DC: pick(dcs), Group: pick(groups), Ranges: []SlotRange{{from, from + r.Intn(3000)}}, Force: r.Intn(3) == 0}
			case 6:
				c = &SetSetting{Key: pick([]string{"max_voters", "flush_enabled", "nope"}), Value: pick([]string{"3", "true", "x"})}
			case 7, 8:
				from := r.Intn(NumSlots)
				c = &StartMigration{DC: pick(dcs), Slots: []SlotRange{{from, min(from+r.Intn(50), NumSlots-1)}}, To: pick(groups)}
			case 9, 10:
				c = &AckFreeze{ID: uint64(r.Intn(6)), Node: pick(ids)}
			case 11:
				c = &FinishMigration{ID: uint64(r.Intn(6))}
			case 12:
				c = &ControlMigration{ID: uint64(r.Intn(6)), Action: pick([]string{MigrationPause, MigrationResume, MigrationCancel, MigrationRate, "nope"}), Rate: int64(r.Intn(3) - 1)}
			case 13:
				c = &ReportMigration{ID: uint64(r.Intn(6)), KeysMoved: int64(r.Intn(100)), KeysTotal: int64(r.Intn(100))}
			}
		}
		b, err := Encode(c)
		if err != nil {
			panic(err)
		}
		if len(log) >= len(setup) && r.Intn(20) == 0 {
			b = b[:r.Intn(len(b))] // a damaged entry
		}
		log = append(log, b)
	}
	return log
}

func replay(s *State, first uint64, log [][]byte) (*State, []string) {
	var errs []string
	for i, e := range log {
		var err error
		s, err = Apply(s, first+uint64(i), e)
		if err != nil {
			errs = append(errs, err.Error())
		} else {
			errs = append(errs, "")
		}
	}
	return s, errs
}

func TestApplyDeterministic(t *testing.T) {
	migrations := 0
	for seed := int64(1); seed <= 2; seed++ {
		log := randomLog(seed, 150)
		a, aerrs := replay(New(), 1, log)
		b, berrs := replay(New(), 1, log)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("seed %d: two replays of one log differ", seed)
		}
		ok := 0
		for i := range aerrs {
			if (aerrs[i] == "") != (berrs[i] == "") {
				t.Errorf("seed %d entry %d: %q vs %q", seed, i, aerrs[i], berrs[i])
			}
			if aerrs[i] == "" {
				ok++
			}
		}
		if ok < len(log)/5 || ok == len(log) {
			t.Errorf("seed %d: %d of %d entries applied; the log should mix good and bad", seed, ok, len(log))
		}
		var sa, sb bytes.Buffer
		if err := WriteSnapshot(&sa, a); err != nil {
			t.Fatal(err)
		}
		if err := WriteSnapshot(&sb, b); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sa.Bytes(), sb.Bytes()) {
			t.Errorf("seed %d: snapshots of equal states differ", seed)
		}
		// A node restored from a snapshot half way ends where a node that replayed it all does.
		migrations += len(a.Migrations)
		half, _ := replay(New(), 1, log[:80])
		var buf bytes.Buffer
		if err := WriteSnapshot(&buf, half); err != nil {
			t.Fatal(err)
		}
		restored, err := ReadSnapshot(&buf)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := replay(restored, 81, log[80:])
		if !reflect.DeepEqual(a, c) {
			t.Errorf("seed %d: snapshot + rest of the log differs from the whole log", seed)
		}
	}
	if migrations == 0 {
		t.Error("the random logs started no migration")
	}
}

// FuzzApply feeds Apply arbitrary entries: it must return an error value, never panic, and
// never change its input state.
func FuzzApply(f *testing.F) {
	for _, c := range sampleCommands() {
		b, _ := Encode(c)
		f.Add(b)
	}
	for _, b := range randomLog(42, 30) {
		f.Add(b)
	}
	for _, b := range [][]byte{
		nil, {0}, {1}, {1, 1}, {0x80, 1}, {6, 1, 'n', 'u', 'l', 'l'}, {6, 9, '{', '}'},
		append([]byte{6, 1}, `{"dc":"east","group":"g1","ranges":[{"from":16383,"to":-1}]}`...),
		append([]byte{6, 1}, `{"dc":"east","group":"g1","ranges":[{"from":1e20,"to":2}]}`...),
		append([]byte{3, 1}, `{"dc":"east","group":{"id":"g9","master":"[::1]:1","replicas":["[::1]:1"]}}`...),
		append([]byte{1, 1}, `{"node":{"id":"n9","dc":"east","peer_listen":"\u0000","tokens":[4294967295,0]}}`...),
		append([]byte{7, 1}, `{"key":"max_voters","value":"9999999999999999999999"}`...),
	} {
		f.Add(b)
	}
	r := rand.New(rand.NewSource(7))
	for i := 0; i < 20; i++ {
		b := make([]byte, r.Intn(64))
		r.Read(b)
		f.Add(b)
	}
	base := testState(f)
	base.Migrations[3] = &Migration{ID: 3, DC: "east", Slots: []SlotRange{{0, 9}}, From: "g1", To: "g2", State: MigrationMigrating, FreezeAcks: map[string]uint64{"n1": 4}}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := base.Clone()
		next, err := Apply(s, 77, data)
		if !reflect.DeepEqual(s, base) {
			t.Fatalf("Apply(%q) changed its input state (err %v)", data, err)
		}
		if next == nil || next.Index != 77 {
			t.Fatalf("Apply(%q): next %v", data, next)
		}
		if err != nil {
			next.Index = base.Index
			if !reflect.DeepEqual(next, base) {
				t.Fatalf("Apply(%q) failed (%v) but changed the state", data, err)
			}
			return
		}
		// A state Apply made survives a snapshot round trip (compared as snapshots: an empty
		// map may come back nil) and has a ring in every DC.
		var buf bytes.Buffer
		if err := WriteSnapshot(&buf, next); err != nil {
			t.Fatal(err)
		}
		first := append([]byte(nil), buf.Bytes()...)
		back, err := ReadSnapshot(&buf)
		if err != nil {
			t.Fatal(err)
		}
		buf.Reset()
		if err := WriteSnapshot(&buf, back); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, buf.Bytes()) {
			t.Fatalf("Apply(%q): snapshot round trip differs", data)
		}
		for name, dc := range next.DCs {
			if len(dc.Slots) != NumSlots {
				t.Fatalf("datacenter %s has %d slots", name, len(dc.Slots))
			}
			_ = next.Owner(name, 0)
			_ = dc.SlotRanges()
		}
	})
}

// A leader of an older build refuses an entry with a field it does not know: the proposer
// recognises the refusal (RefusedAsUnknownField) and sends the entry without it.
func TestRefusedAsUnknownField(t *testing.T) {
	data, err := Encode(&AckFreeze{ID: 1, Node: "n1", Run: "fwd"})
	if err != nil {
		t.Fatal(err)
	}
	// An older build's AckFreeze has no Run: decode as it would.
	type oldAck struct {
		ID   uint64 `json:"id"`
		Node string `json:"node"`
	}
	derr := decodeStrict(data[2:], &oldAck{})
	if derr == nil {
		t.Fatal("an older build would read the field")
	}
	refusal := &Error{Code: "invalid", Msg: "the leader n2 refused the entry: fsm: decode ack_freeze: " + derr.Error() + ": " + ErrUnreadable.Error()}
	if !RefusedAsUnknownField(refusal) {
		t.Fatalf("not recognised: %v", refusal)
	}
	if RefusedAsUnknownField(&Error{Code: "busy", Msg: "migration 1 is migrating"}) || RefusedAsUnknownField(nil) {
		t.Fatal("another error taken for the refusal")
	}
}
