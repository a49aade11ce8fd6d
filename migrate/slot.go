package migrate

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"sync"
)

// NumSlots is the number of hash slots, as in Redis Cluster.
const NumSlots = 16384

// crcTab is the byte-wise table of CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0),
// the checksum Redis Cluster hashes keys with.
var crcTab = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()

// Slot returns the key's hash slot exactly as Redis Cluster computes it (CLUSTER KEYSLOT):
// CRC16 mod 16384 of the hash tag, the text between the first '{' and the next '}', when that
// text is not empty, else of the whole key. It does not allocate.
func Slot(key []byte) int { return slotOf(key) }

// SlotString is Slot for a string key, without converting it.
func SlotString(key string) int { return slotOf(key) }

// crcTab2 is crcTab for a byte followed by a zero byte: with it the CRC advances over two key
// bytes with two independent table lookups instead of two dependent ones (slicing by two).
var crcTab2 = func() (t [256]uint16) {
	for i, c := range crcTab {
		t[i] = c<<8 ^ crcTab[c>>8]
	}
	return t
}()

// crcTab3 and crcTab4 are crcTab for a byte followed by two and three zero bytes: the CRC
// advances over four key bytes with four independent lookups (slicing by four; the CRC is
// linear, so the two bytes crc carries into the step go through crcTab4 and crcTab3 as two
// key bytes followed by two zero bytes would).
var crcTab3, crcTab4 = func() (t3, t4 [256]uint16) {
	two := func(c uint16) uint16 { return crcTab2[c>>8] ^ crcTab[c&0xff] } // c, then two zero bytes
	for i := range t3 {
		t3[i], t4[i] = two(crcTab[i]), two(crcTab2[i])
	}
	return t3, t4
}()

func slotOf[T string | []byte](key T) int {
	from, to := tagBounds(key)
	var crc uint16
	i := from
	for ; i+3 < to; i += 4 {
		x := crc ^ (uint16(key[i])<<8 | uint16(key[i+1]))
		crc = crcTab4[x>>8] ^ crcTab3[x&0xff] ^ crcTab2[key[i+2]] ^ crcTab[key[i+3]]
	}
	for ; i+1 < to; i += 2 {
		x := crc ^ (uint16(key[i])<<8 | uint16(key[i+1]))
		crc = crcTab2[x>>8] ^ crcTab[x&0xff]
	}
	if i < to {
		crc = crc<<8 ^ crcTab[byte(crc>>8)^key[i]]
	}
	return int(crc & (NumSlots - 1))
}

// tagBounds returns the byte range of key that is hashed.
func tagBounds[T string | []byte](key T) (from, to int) {
	for i := 0; i < len(key); i++ {
		if key[i] != '{' {
			continue
		}
		for j := i + 1; j < len(key); j++ {
			if key[j] == '}' {
				if j == i+1 {
					return 0, len(key) // "{}": the whole key is hashed
				}
				return i + 1, j
			}
		}
		return 0, len(key) // no '}' after the first '{'
	}
	return 0, len(key)
}

// sameSlotTag returns "{tag}" such that any name that starts with a prefix free of '{' and then
// "{tag}" hashes to key's slot: key's own hash tag when it has one, else the whole key when it
// can stand between braces, else a short string precomputed for the slot.
func sameSlotTag(key string) string {
	from, to := tagBounds(key)
	tag := key[from:to]
	if tag != "" && !strings.ContainsRune(tag, '}') {
		return "{" + tag + "}"
	}
	return "{" + slotTags()[SlotString(key)] + "}"
}

// slotTags holds, per slot, a short alphanumeric string that hashes to it.
var slotTags = sync.OnceValue(func() *[NumSlots]string {
	const digits = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	var t [NumSlots]string
	left := NumSlots
	buf := make([]byte, 0, 8)
	for n := 0; left > 0; n++ {
		buf = buf[:0]
		for v := n; ; v /= len(digits) {
			buf = append(buf, digits[v%len(digits)])
			if v < len(digits) {
				break
			}
		}
		if s := Slot(buf); t[s] == "" {
			t[s] = string(buf)
			left--
		}
	}
	return &t
})

// SlotSet is a set of slots, one bit per slot; the zero value is empty.
type SlotSet [NumSlots / 64]uint64

// FromRanges returns the set of the inclusive ranges {from, to}; a single slot s is {s, s}.
func FromRanges(ranges ...[2]int) (SlotSet, error) {
	var s SlotSet
	for _, r := range ranges {
		if err := s.AddRange(r[0], r[1]); err != nil {
			return SlotSet{}, err
		}
	}
	return s, nil
}

// Add puts slot in the set; slots out of range are ignored.
func (s *SlotSet) Add(slot int) {
	if slot >= 0 && slot < NumSlots {
		s[slot>>6] |= 1 << (slot & 63)
	}
}

// AddRange puts the slots from..to (inclusive) in the set.
func (s *SlotSet) AddRange(from, to int) error {
	if from < 0 || to >= NumSlots || from > to {
		return fmt.Errorf("migrate: bad slot range %d-%d (want 0 <= from <= to < %d)", from, to, NumSlots)
	}
	for i := from; i <= to; i++ {
		s.Add(i)
	}
	return nil
}

// Contains reports whether slot is in the set.
func (s *SlotSet) Contains(slot int) bool {
	return slot >= 0 && slot < NumSlots && s[slot>>6]&(1<<(slot&63)) != 0
}

// Len returns the number of slots in the set.
func (s *SlotSet) Len() int {
	n := 0
	for _, w := range s {
		n += bits.OnesCount64(w)
	}
	return n
}

// Ranges returns the set as sorted inclusive {from, to} ranges.
func (s *SlotSet) Ranges() [][2]int {
	var out [][2]int
	for i := 0; i < NumSlots; i++ {
		if !s.Contains(i) {
			continue
		}
		j := i
		for j+1 < NumSlots && s.Contains(j+1) {
			j++
		}
		out = append(out, [2]int{i, j})
		i = j
	}
	return out
}

// String returns the set as "0-99,200" (empty for the empty set).
func (s *SlotSet) String() string {
	var b strings.Builder
	for i, r := range s.Ranges() {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(r[0]))
		if r[1] != r[0] {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(r[1]))
		}
	}
	return b.String()
}

// errEmptySlots is returned when a call is given no slots to work on.
var errEmptySlots = errors.New("migrate: empty slot set")
