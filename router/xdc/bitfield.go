package xdc

import (
	"bytes"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/redraft/redraft/router/command"
)

// BITFIELDs whose replies Lua would round: inside WRITE an integer reply is a Lua number, a
// double, and past 2^53 it is no longer the integer Redis computed. WRITE runs such a BITFIELD
// (plan "w") one operation at a time and answers each field's bytes, which FixReply turns
// into the exact integer (bitsReply).

// maxExactBits is the widest integer field a Lua number holds exactly.
const maxExactBits = 53

// protoMaxBulkLen is Redis's default proto-max-bulk-len, which bounds a BITFIELD offset.
const protoMaxBulkLen = 512 << 20

// WideBitfield reports whether BITFIELD args sets or increments a field and names a field
// wider than maxExactBits, with arguments Redis accepts as Redis 7.0's bitfieldGeneric reads
// them. Any argument Redis would refuse leaves the command on the WRITE path, where Redis
// answers the error and nothing is recorded.
func WideBitfield(args [][]byte) bool {
	writes, wide := false, false
	for j := 2; j < len(args); j++ {
		rem := len(args) - j - 1
		sub := args[j]
		n := 0 // the op's arguments after the type and offset
		switch {
		case bytes.EqualFold(sub, []byte("get")) && rem >= 2:
		case (bytes.EqualFold(sub, []byte("set")) || bytes.EqualFold(sub, []byte("incrby"))) && rem >= 3:
			writes, n = true, 1
		case bytes.EqualFold(sub, []byte("overflow")) && rem >= 1:
			o := args[j+1]
			if !bytes.EqualFold(o, []byte("wrap")) && !bytes.EqualFold(o, []byte("sat")) && !bytes.EqualFold(o, []byte("fail")) {
				return false
			}
			j++
			continue
		default:
			return false
		}
		bits, ok := bitfieldType(args[j+1])
		if !ok || !bitfieldOffset(args[j+2], bits) {
			return false
		}
		if n == 1 {
			if _, ok := command.ParseInt(args[j+3]); !ok {
				return false
			}
		}
		wide = wide || bits > maxExactBits
		j += 2 + n
	}
	return writes && wide
}

// bitfieldType reads a field type (i1..i64, u1..u63, either case) and returns its width.
func bitfieldType(t []byte) (int64, bool) {
	if len(t) < 2 {
		return 0, false
	}
	signed := t[0] == 'i' || t[0] == 'I'
	if !signed && t[0] != 'u' && t[0] != 'U' {
		return 0, false
	}
	bits, ok := command.ParseInt(t[1:])
	if !ok || bits < 1 || (signed && bits > 64) || (!signed && bits > 63) {
		return 0, false
	}
	return bits, true
}

// bitfieldOffset reports whether o is an offset Redis accepts for a field of bits: a
// non-negative integer, or #n for n fields of bits, the field within proto-max-bulk-len bytes.
func bitfieldOffset(o []byte, bits int64) bool {
	mul := int64(1)
	if len(o) > 0 && o[0] == '#' {
		o, mul = o[1:], bits
	}
	v, ok := command.ParseInt(o)
	if !ok || v < 0 || v > (protoMaxBulkLen*8)/mul {
		return false
	}
	// The field's last byte too: Redis refuses to grow a string past the bound.
	return (v*mul+bits-1)>>3 < protoMaxBulkLen
}

// bitsValue reads WRITE's "<i|u> <bits> <first bit> <hex bytes>" (bitsAt) and returns the
// field's integer in decimal: bits bits from the first bit on, big-endian as Redis stores
// them, bytes past the string's end reading as zeros, two's complement when signed.
func bitsValue(s string) ([]byte, bool) {
	f := strings.Fields(s)
	if len(f) < 3 || len(f) > 4 || (f[0] != "i" && f[0] != "u") {
		return nil, false
	}
	bits, err1 := strconv.Atoi(f[1])
	first, err2 := strconv.Atoi(f[2])
	var raw []byte
	var err3 error
	if len(f) == 4 {
		raw, err3 = hex.DecodeString(f[3])
	}
	if err1 != nil || err2 != nil || err3 != nil || bits < 1 || bits > 64 || first < 0 || first > 7 {
		return nil, false
	}
	var v uint64
	for i := range bits {
		p := first + i
		var bit uint64
		if p/8 < len(raw) {
			bit = uint64(raw[p/8]>>(7-p%8)) & 1
		}
		v = v<<1 | bit
	}
	if f[0] == "u" {
		return strconv.AppendUint(nil, v, 10), true
	}
	if bits < 64 && v&(1<<(bits-1)) != 0 {
		return strconv.AppendInt(nil, int64(v)-int64(1)<<bits, 10), true
	}
	return strconv.AppendInt(nil, int64(v), 10), true
}
