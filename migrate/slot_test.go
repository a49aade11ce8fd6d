package migrate

import (
	"math/rand/v2"
	"testing"
)

func TestSlotVectors(t *testing.T) {
	// Answers of CLUSTER KEYSLOT from the Redis documentation and the CRC16 reference value.
	for key, want := range map[string]int{
		"foo":           12182,
		"bar":           5061,
		"hello":         866,
		"somekey":       11058,
		"foo{hash_tag}": 2515,
		"bar{hash_tag}": 2515,
		"123456789":     0x31C3, // CRC16-XMODEM check value
		"":              0,
	} {
		if got := SlotString(key); got != want {
			t.Errorf("SlotString(%q) = %d, want %d", key, got, want)
		}
		if got := Slot([]byte(key)); got != want {
			t.Errorf("Slot(%q) = %d, want %d", key, got, want)
		}
	}
	same := func(a, b string) {
		t.Helper()
		if SlotString(a) != SlotString(b) {
			t.Errorf("%q (slot %d) and %q (slot %d) should share a slot", a, SlotString(a), b, SlotString(b))
		}
	}
	same("{user1000}.following", "{user1000}.followers")
	same("{user1000}.following", "user1000")
	same("foo{}{bar}", "foo{}{bar}") // hashes the whole key...
	if SlotString("foo{}{bar}") == SlotString("bar") {
		t.Error(`"foo{}{bar}" must hash the whole key, not "bar"`)
	}
	same("foo{{bar}}zap", "{bar")
	same("foo{bar}{zap}", "bar")
	same("{a", "{a")
	if SlotString("x{a") != naiveSlot("x{a") {
		t.Error("an unclosed '{' hashes the whole key")
	}
}

// naiveSlot is a bit-by-bit CRC16 and a straightforward hash tag, to check the table version.
func naiveSlot(key string) int {
	h := key
	if i := indexByte(key, '{'); i >= 0 {
		if j := indexByte(key[i+1:], '}'); j > 0 {
			h = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for i := 0; i < len(h); i++ {
		crc ^= uint16(h[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc % NumSlots)
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func randKey(r *rand.Rand) string {
	const alpha = "ab{}:x"
	b := make([]byte, r.IntN(12))
	for i := range b {
		b[i] = alpha[r.IntN(len(alpha))]
	}
	return string(b)
}

func TestSlotMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		k := randKey(r)
		if got, want := SlotString(k), naiveSlot(k); got != want {
			t.Fatalf("SlotString(%q) = %d, want %d", k, got, want)
		}
	}
}

func TestSlotDoesNotAllocate(t *testing.T) {
	key := []byte("{user1000}.following")
	s := "some:longer:key:without:a:tag:0123456789"
	if n := testing.AllocsPerRun(1000, func() { _ = Slot(key); _ = SlotString(s) }); n != 0 {
		t.Fatalf("Slot allocates %v times per call", n)
	}
}

// The temp and fence keys must hash to the key's slot whatever the key looks like.
func TestInternalKeysShareTheSlot(t *testing.T) {
	keys := []string{"", "a", "a}b", "}", "{}", "{}x", "x{", "{a}", "}{", "{{}}", "a{b}c", "{a}}", "x{}}y"}
	r := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		keys = append(keys, randKey(r))
	}
	for _, k := range keys {
		want := SlotString(k)
		for _, ik := range []string{tmpKey(k), fenceKey(k)} {
			if got := SlotString(ik); got != want {
				t.Fatalf("%q hashes to %d, its key %q to %d", ik, got, k, want)
			}
		}
	}
	for s, tag := range slotTags() {
		if SlotString(tag) != s {
			t.Fatalf("slot tag %q does not hash to %d", tag, s)
		}
	}
}

func TestSlotSet(t *testing.T) {
	s, err := FromRanges([2]int{0, 99}, [2]int{200, 200}, [2]int{16000, 16383})
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 100+1+384 {
		t.Errorf("Len = %d", s.Len())
	}
	for _, c := range []struct {
		slot int
		in   bool
	}{{0, true}, {99, true}, {100, false}, {200, true}, {201, false}, {16383, true}, {-1, false}, {16384, false}} {
		if s.Contains(c.slot) != c.in {
			t.Errorf("Contains(%d) = %v", c.slot, !c.in)
		}
	}
	if got := s.String(); got != "0-99,200,16000-16383" {
		t.Errorf("String = %q", got)
	}
	if _, err := FromRanges([2]int{5, 4}); err == nil {
		t.Error("a reversed range must fail")
	}
	if _, err := FromRanges([2]int{0, NumSlots}); err == nil {
		t.Error("a range past the last slot must fail")
	}
}

func BenchmarkSlot(b *testing.B) {
	key := []byte("{user1000}.following")
	for b.Loop() {
		_ = Slot(key)
	}
}

func BenchmarkSlotLongKey(b *testing.B) {
	s := "some:longer:key:without:a:tag:0123456789"
	for b.Loop() {
		_ = SlotString(s)
	}
}
