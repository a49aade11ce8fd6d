package command

import (
	"bytes"
	"math"
	"strings"
)

// Keys appends to dst the argument positions of the command's keys in args (args[0] is the
// command name), following Redis 7's key specs as getKeysUsingKeySpecs does with partial
// results: a spec that does not match the arguments contributes no keys, and the backend then
// reports the syntax error.
func (s *Spec) Keys(args [][]byte, dst []int) []int { return s.keys(args, dst, false) }

// WrittenKeys is Keys restricted to the keys the command may change: those of key specs
// flagged RW, OW or RM (SORT's STORE destination included), not the ones it only reads.
func (s *Spec) WrittenKeys(args [][]byte, dst []int) []int { return s.keys(args, dst, true) }

// writes reports whether a key spec's keys may be changed (flag RW, OW or RM).
func (ks *KeySpec) writes() bool {
	for _, f := range strings.Fields(ks.Flags) {
		if f == "RW" || f == "OW" || f == "RM" {
			return true
		}
	}
	return false
}

// setOneKey sets s.oneKey and s.oneKeyWrites from the key specs (see Spec).
func (s *Spec) setOneKey() {
	if len(s.KeySpecs) != 1 || s.Name == "sort" || s.Name == "sort_ro" {
		return
	}
	ks := &s.KeySpecs[0]
	if ks.Unknown || ks.Keyword != "" || ks.KeyNum || ks.LastKey != 0 || ks.KeyStep <= 0 || ks.BeginIndex < 1 {
		return
	}
	s.oneKey, s.oneKeyWrites = ks.BeginIndex, ks.writes()
}

func (s *Spec) keys(args [][]byte, dst []int, writtenOnly bool) []int {
	if s.oneKey > 0 {
		if s.oneKey < len(args) && (s.oneKeyWrites || !writtenOnly) {
			dst = append(dst, s.oneKey)
		}
		return dst
	}
	return s.specKeys(args, dst, writtenOnly)
}

// specKeys is keys read from the key specs, for any command.
func (s *Spec) specKeys(args [][]byte, dst []int, writtenOnly bool) []int {
	argc := len(args)
	for i := range s.KeySpecs {
		ks := &s.KeySpecs[i]
		if ks.Unknown || (writtenOnly && !ks.writes()) {
			continue
		}
		first := 0
		if ks.Keyword == "" {
			first = ks.BeginIndex
		} else {
			start, end := ks.StartFrom, argc-1
			if start <= 0 {
				start, end = argc+ks.StartFrom, 0
			}
			for j := start; ; {
				if j >= argc || j < 1 {
					break
				}
				if bytes.EqualFold(args[j], []byte(ks.Keyword)) {
					first = j + 1
					break
				}
				if j == end {
					break
				}
				if start <= end {
					j++
				} else {
					j--
				}
			}
			if first == 0 {
				continue
			}
		}
		var last, step int
		if !ks.KeyNum {
			step = ks.KeyStep
			switch {
			case ks.LastKey >= 0:
				last = first + ks.LastKey
			case ks.Limit == 0:
				last = argc + ks.LastKey
			default:
				last = first + ((argc-first)/ks.Limit + ks.LastKey)
			}
		} else {
			step = ks.KeyStep
			if ks.KeyNumIdx >= argc-first {
				continue
			}
			n, ok := ParseInt(args[first+ks.KeyNumIdx])
			if !ok || n < 0 || n > int64(argc) {
				continue
			}
			first += ks.FirstKey
			last = first + int(n) - 1
		}
		if last >= argc || last < first || first >= argc || step <= 0 {
			continue
		}
		for j := first; j <= last; j += step {
			dst = append(dst, j)
		}
	}
	if s.Name == "sort" || s.Name == "sort_ro" {
		dst = sortKeys(args, dst)
	}
	return dst
}

// sortKeys finds SORT's STORE destination (the key itself comes from the first key spec), as
// Redis's sortGetKeys does.
func sortKeys(args [][]byte, dst []int) []int {
	store := 0
	for j := 2; j < len(args); j++ {
		a := args[j]
		switch {
		case bytes.EqualFold(a, []byte("limit")):
			j += 2
		case bytes.EqualFold(a, []byte("get")), bytes.EqualFold(a, []byte("by")):
			j++
		case bytes.EqualFold(a, []byte("store")):
			if j+1 < len(args) {
				store = j + 1
			}
			j++
		}
	}
	if store > 0 {
		dst = append(dst, store)
	}
	return dst
}

// ParseInt parses b as Redis parses integer arguments (string2ll): an optional '-', then
// decimal digits without a leading zero (except "0" itself), no '+', no spaces, within int64.
// Numeric arguments that Redis reads this way (numkeys, counts, timeouts in ms) must be judged
// the same way here, or redraft and Redis disagree about which arguments are keys.
func ParseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	if len(b) == 1 && b[0] == '0' {
		return 0, true
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || b[0] < '1' || b[0] > '9' {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if v > (math.MaxUint64-9)/10 {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	switch {
	case !neg && v <= math.MaxInt64:
		return int64(v), true
	case neg && v <= 1<<63:
		return -int64(v), true // -(1<<63) wraps to itself: math.MinInt64
	}
	return 0, false
}
