package command

import (
	"sort"
	"strings"
)

var (
	byName map[string]*Spec
	all    []*Spec
)

func init() {
	specs := append(generated[:len(generated):len(generated)], extraSpecs...)
	byName = make(map[string]*Spec, len(specs))
	for i := range specs {
		s := &specs[i]
		s.ID = i
		all = append(all, s)
		byName[s.Name] = s
		s.Write = s.HasFlag("write")
		s.Blocking = s.HasFlag("blocking")
		s.setOneKey()
		if h, ok := overlay[s.Name]; ok {
			s.Kind, s.Note = h.kind, h.note
		} else if len(s.KeySpecs) > 0 && s.inDataCategory() {
			s.Kind = Forward
			if s.Blocking {
				s.Kind = Block
			}
		}
		if s.Kind == Unsupported && s.Note == "" {
			s.Note = reasonFor(s)
		}
	}
	for _, s := range all {
		if parent, sub, ok := strings.Cut(s.Name, "|"); ok {
			p := byName[parent]
			if p.Subs == nil {
				p.Subs = map[string]*Spec{}
			}
			p.Subs[sub] = s
		}
	}
	// HELP of a served container is answered by any group.
	for _, s := range all {
		if parent, sub, ok := strings.Cut(s.Name, "|"); ok && sub == "help" && s.Kind == Unsupported {
			if p := byName[parent]; p.Kind != Unsupported || anyServed(p) {
				s.Kind, s.Note = Any, ""
			}
		}
	}
	// A container is served when any of its subcommands is.
	for _, s := range all {
		if s.Subs != nil && s.Kind == Unsupported {
			for _, sub := range s.Subs {
				if sub.Kind != Unsupported {
					s.Kind, s.Note = Local, "see subcommands"
					break
				}
			}
		}
	}
}

func (s *Spec) inDataCategory() bool {
	for _, c := range dataCategories {
		if s.InCategory(c) {
			return true
		}
	}
	return false
}

// Lookup finds the spec for a request, resolving container subcommands ("OBJECT ENCODING");
// name matching ignores case. It returns nil for an unknown command; for an unknown
// subcommand it returns the container's spec.
func Lookup(args [][]byte) *Spec {
	if len(args) == 0 {
		return nil
	}
	var buf [48]byte
	name := lower(buf[:0], args[0])
	if name == nil {
		return nil
	}
	s := byName[string(name)]
	if s == nil || s.Subs == nil || len(args) < 2 {
		return s
	}
	full := append(name, '|')
	full = lower(full, args[1])
	if full == nil {
		return s
	}
	if sub := byName[string(full)]; sub != nil {
		return sub
	}
	return s
}

// lower appends b in lower case to dst, or returns nil when the result would not fit dst's
// capacity (no command name is that long).
func lower(dst, b []byte) []byte {
	if len(dst)+len(b) > cap(dst) {
		return nil
	}
	for _, c := range b {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// ByName returns the spec of a lower-case command name ("get", "object|encoding"), or nil.
func ByName(name string) *Spec { return byName[name] }

// All returns every spec in name order.
func All() []*Spec {
	out := append([]*Spec(nil), all...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Count is the number of specs, for per-command arrays indexed by Spec.ID.
func Count() int { return len(all) }

func anyServed(p *Spec) bool {
	for name, sub := range p.Subs {
		if name != "help" && sub.Kind != Unsupported {
			return true
		}
	}
	return false
}

// Memo is Lookup with a one-entry memory of the last command name it resolved, for one
// connection: clients mostly repeat a few commands, and a name byte-equal to the last one
// (the same case too) skips the lower-casing and the map lookup. Containers and their
// subcommands are not remembered (the subcommand decides). The zero Memo is ready to use.
type Memo struct {
	name [15]byte
	n    uint8
	spec *Spec
}

// Lookup is command.Lookup(args), from memory when args[0] is the last name resolved.
func (m *Memo) Lookup(args [][]byte) *Spec {
	if len(args) > 0 && m.spec != nil && int(m.n) == len(args[0]) && string(m.name[:m.n]) == string(args[0]) {
		return m.spec
	}
	s := Lookup(args)
	if s != nil && s.Subs == nil && !strings.Contains(s.Name, "|") && len(args[0]) <= len(m.name) {
		m.n = uint8(copy(m.name[:], args[0]))
		m.spec = s
	}
	return s
}
