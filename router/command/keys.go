package command

import (
	"bytes"
	"strconv"
)

// Keys appends to dst the argument positions of the command's keys in args (args[0] is the
// command name), following Redis 7's key specs as getKeysUsingKeySpecs does with partial
// results: a spec that does not match the arguments contributes no keys, and the backend then
// reports the syntax error.
func (s *Spec) Keys(args [][]byte, dst []int) []int {
	argc := len(args)
	for i := range s.KeySpecs {
		ks := &s.KeySpecs[i]
		if ks.Unknown {
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
			n, err := strconv.Atoi(string(args[first+ks.KeyNumIdx]))
			if err != nil || n < 0 {
				continue
			}
			first += ks.FirstKey
			last = first + n - 1
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
