package fsm

import (
	"reflect"
	"testing"
)

func ringState(t *testing.T, nodes ...Node) *State {
	t.Helper()
	s := New()
	for i, n := range nodes {
		s = applyOK(t, s, uint64(i+1), &AddNode{Node: n})
	}
	return s
}

func TestSlotToken(t *testing.T) {
	if SlotToken(0) != 0 || SlotToken(1) != 1<<18 || SlotToken(NumSlots-1) != 0xFFFC0000 {
		t.Errorf("SlotToken: %d %d %d", SlotToken(0), SlotToken(1), SlotToken(NumSlots-1))
	}
	for s := 1; s < NumSlots; s++ {
		if SlotToken(s) <= SlotToken(s-1) {
			t.Fatalf("SlotToken not increasing at %d", s)
		}
	}
}

func TestRingTokenless(t *testing.T) {
	// Three nodes without tokens split the ring in thirds, in id order; a node of another DC
	// plays no part.
	s := ringState(t, testNode("c", "east", "003"), testNode("a", "east", "001"), testNode("b", "east", "002"), testNode("z", "west", "009"))
	ring := s.Ring("east")
	third := uint32((1 << 32) / 3)
	want := []RingEntry{{0, "a"}, {third, "b"}, {2 * third, "c"}}
	if !reflect.DeepEqual(ring, want) {
		t.Fatalf("ring = %v, want %v", ring, want)
	}
	count := map[string]int{}
	for slot := 0; slot < NumSlots; slot++ {
		count[s.Owner("east", slot)]++
	}
	// Slot 0 sits on a's token; the slots after it up to b's token belong to b, and so on; the
	// slots past c's token wrap around to a.
	if s.Owner("east", 0) != "a" || s.Owner("east", 1) != "b" || s.Owner("east", NumSlots-1) != "a" {
		t.Errorf("owners: %s %s %s", s.Owner("east", 0), s.Owner("east", 1), s.Owner("east", NumSlots-1))
	}
	for _, id := range []string{"a", "b", "c"} {
		if count[id] < NumSlots/3-2 || count[id] > NumSlots/3+2 {
			t.Errorf("node %s owns %d slots, want about %d", id, count[id], NumSlots/3)
		}
	}
	if count["z"] != 0 || s.Owner("west", 123) != "z" {
		t.Error("west's node in east's ring")
	}
	if s.Owner("nowhere", 0) != "" || OwnerIn(nil, 5) != "" {
		t.Error("an empty DC has an owner")
	}
	// One node owns everything.
	one := ringState(t, testNode("solo", "d", "001"))
	for _, slot := range []int{0, 1, 8191, NumSlots - 1} {
		if one.Owner("d", slot) != "solo" {
			t.Errorf("slot %d: %q", slot, one.Owner("d", slot))
		}
	}
}

func TestRingExplicitTokens(t *testing.T) {
	a, b, c := testNode("a", "d", "001"), testNode("b", "d", "002"), testNode("c", "d", "003")
	a.Tokens = []uint32{SlotToken(100), SlotToken(9000)}
	b.Tokens = []uint32{SlotToken(5000)}
	// c has no token: as the only bare node it sits at token 0.
	s := ringState(t, a, b, c)
	want := []RingEntry{{0, "c"}, {SlotToken(100), "a"}, {SlotToken(5000), "b"}, {SlotToken(9000), "a"}}
	if ring := s.Ring("d"); !reflect.DeepEqual(ring, want) {
		t.Fatalf("ring = %v, want %v", ring, want)
	}
	ring := s.Ring("d")
	for slot, owner := range map[int]string{
		0: "c", 1: "a", 100: "a", 101: "b", 5000: "b", 5001: "a", 9000: "a",
		9001: "c", NumSlots - 1: "c", // past the last token: wraps around to the first
	} {
		if got := s.Owner("d", slot); got != owner {
			t.Errorf("Owner(%d) = %s, want %s", slot, got, owner)
		}
		if got := OwnerIn(ring, slot); got != owner {
			t.Errorf("OwnerIn(%d) = %s, want %s", slot, got, owner)
		}
	}
	// Without c, the slots past the last token wrap to the first explicit token.
	s = applyOK(t, s, 10, &RemoveNode{ID: "c"})
	if s.Owner("d", 0) != "a" || s.Owner("d", NumSlots-1) != "a" || s.Owner("d", 9001) != "a" {
		t.Error("wraparound without a bare node")
	}
	// Equal tokens: the smaller id wins, on every node alike.
	x, y := testNode("x", "e", "011"), testNode("y", "e", "012")
	x.Tokens, y.Tokens = []uint32{77}, []uint32{77}
	s = ringState(t, y, x)
	if s.Owner("e", 0) != "x" || s.Owner("e", NumSlots-1) != "x" {
		t.Errorf("tie: %s", s.Owner("e", 0))
	}
}

func TestSlotRanges(t *testing.T) {
	d := newDC("d")
	if got := d.SlotRanges(); !reflect.DeepEqual(got, map[string][]SlotRange{"": {{0, NumSlots - 1}}}) {
		t.Errorf("empty DC: %v", got)
	}
	for i := 0; i < NumSlots; i++ {
		d.Slots[i] = "a"
	}
	d.Slots[0], d.Slots[NumSlots-1], d.Slots[500] = "b", "b", ""
	want := map[string][]SlotRange{"a": {{1, 499}, {501, NumSlots - 2}}, "b": {{0, 0}, {NumSlots - 1, NumSlots - 1}}, "": {{500, 500}}}
	if got := d.SlotRanges(); !reflect.DeepEqual(got, want) {
		t.Errorf("SlotRanges = %v, want %v", got, want)
	}
	if d.SlotCount("a") != NumSlots-3 || d.SlotCount("b") != 2 || d.SlotCount("") != 1 || d.SlotCount("z") != 0 {
		t.Error("SlotCount")
	}
	if (SlotRange{5, 5}).String() != "5" || (SlotRange{0, 8191}).String() != "0-8191" {
		t.Error("String")
	}
}

func TestParseSlotRanges(t *testing.T) {
	good := []struct {
		in   []string
		want []SlotRange
	}{
		{[]string{"0-8191"}, []SlotRange{{0, 8191}}},
		{[]string{"5"}, []SlotRange{{5, 5}}},
		{[]string{"0-8191 8192 10000-10010"}, []SlotRange{{0, 8191}, {8192, 8192}, {10000, 10010}}},
		{[]string{"1,2,3-4"}, []SlotRange{{1, 1}, {2, 2}, {3, 4}}},
		{[]string{"1, 2", " 16383 "}, []SlotRange{{1, 1}, {2, 2}, {16383, 16383}}},
		{[]string{"0-16383"}, []SlotRange{{0, 16383}}},
		{[]string{"7-7"}, []SlotRange{{7, 7}}},
	}
	for _, tc := range good {
		got, err := ParseSlotRanges(tc.in...)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseSlotRanges(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range [][]string{
		nil, {""}, {" , "}, {"x"}, {"1-x"}, {"-1"}, {"5-"}, {"16384"}, {"0-16384"}, {"10-5"}, {"1-2-3"}, {"1.5"}, {"0-8191", "bad"},
	} {
		if got, err := ParseSlotRanges(in...); err == nil {
			t.Errorf("ParseSlotRanges(%q) = %v, want an error", in, got)
		}
	}
}
