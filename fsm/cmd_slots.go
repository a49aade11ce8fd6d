package fsm

import (
	"fmt"
	"strconv"
	"strings"
)

// AssignSlots makes a group serve slots of its DC. Without Force only free slots may be assigned;
// with Force owned slots are reassigned too (no data moves: that is what a migration is for).
type AssignSlots struct {
	DC     string      `json:"dc"`
	Group  string      `json:"group"`
	Ranges []SlotRange `json:"ranges"`
	Force  bool        `json:"force,omitempty"`
}

func init() {
	register(TypeAssignSlots, func() Command { return &AssignSlots{} })
}

// Type implements Command.
func (*AssignSlots) Type() CmdType { return TypeAssignSlots }

// Name implements Command.
func (*AssignSlots) Name() string { return "assign_slots" }

func (c *AssignSlots) apply(s *State, _ uint64) error {
	dc, ok := s.DCs[c.DC]
	if !ok || dc.Groups[c.Group] == nil {
		return errf("not_found", "group %s does not exist in datacenter %s", c.Group, c.DC)
	}
	if len(c.Ranges) == 0 {
		return errf("invalid", "no slots given")
	}
	for _, r := range c.Ranges {
		if err := r.Valid(); err != nil {
			return err
		}
		for _, m := range s.Migrations {
			if m.Active() && m.DC == c.DC {
				for sl := r.From; sl <= r.To; sl++ {
					if m.Covers(sl) {
						return errf("busy", "slot %d is being migrated (migration %d); wait for it or cancel it", sl, m.ID)
					}
				}
			}
		}
		if !c.Force {
			for sl := r.From; sl <= r.To; sl++ {
				if o := dc.Slots[sl]; o != "" && o != c.Group {
					return errf("busy", "slot %d already belongs to group %s: migrate it (redraft migrate) or reassign with --force, which moves no data", sl, o)
				}
			}
		}
	}
	dc = s.writableDC(c.DC)
	for _, r := range c.Ranges {
		for sl := r.From; sl <= r.To; sl++ {
			dc.Slots[sl] = c.Group
		}
	}
	return nil
}

// Valid checks that the range lies within 0..16383 and is not reversed.
func (r SlotRange) Valid() error {
	if r.From < 0 || r.To >= NumSlots || r.From > r.To {
		return errf("invalid", "slot range %d-%d is outside 0-%d or reversed", r.From, r.To, NumSlots-1)
	}
	return nil
}

// ParseSlotRanges parses "0-8191 8192 10000-10010" or comma-separated forms.
func ParseSlotRanges(args ...string) ([]SlotRange, error) {
	var out []SlotRange
	for _, a := range args {
		for _, part := range strings.FieldsFunc(a, func(r rune) bool { return r == ',' || r == ' ' }) {
			from, to, isRange := strings.Cut(part, "-")
			f, err := strconv.Atoi(from)
			if err != nil {
				return nil, fmt.Errorf("slot range %q: %q is not a number", part, from)
			}
			t := f
			if isRange {
				if t, err = strconv.Atoi(to); err != nil {
					return nil, fmt.Errorf("slot range %q: %q is not a number", part, to)
				}
			}
			r := SlotRange{From: f, To: t}
			if err := r.Valid(); err != nil {
				return nil, err
			}
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no slot range given (example: 0-8191)")
	}
	return out, nil
}
