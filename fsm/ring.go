package fsm

import "sort"

// RingEntry is one token of a DC's token ring.
type RingEntry struct {
	Token uint32 `json:"token"`
	Node  string `json:"node"`
}

// SlotToken places a slot on the 32-bit token ring: slots are spread evenly in order.
func SlotToken(slot int) uint32 { return uint32(slot) << 18 }

// Ring returns the DC's token ring, sorted by token. Nodes that gave tokens keep them; the
// others are spread evenly over the ring in id order (Dynomite's tokens, filled in when absent).
func (s *State) Ring(dc string) []RingEntry {
	var ring []RingEntry
	var bare []string
	for _, id := range s.NodeIDs() {
		n := s.Nodes[id]
		if n.DC != dc {
			continue
		}
		if len(n.Tokens) == 0 {
			bare = append(bare, id)
			continue
		}
		for _, t := range n.Tokens {
			ring = append(ring, RingEntry{Token: t, Node: id})
		}
	}
	step := uint64(1<<32) / uint64(max(len(bare), 1))
	for i, id := range bare {
		ring = append(ring, RingEntry{Token: uint32(uint64(i) * step), Node: id})
	}
	sort.Slice(ring, func(i, j int) bool {
		if ring[i].Token != ring[j].Token {
			return ring[i].Token < ring[j].Token
		}
		return ring[i].Node < ring[j].Node
	})
	return ring
}

// Owner returns the id of the node that owns slot's duties in the DC: the node whose token is
// the first at or after SlotToken(slot), wrapping around. It returns "" for a DC without nodes.
func (s *State) Owner(dc string, slot int) string {
	return OwnerIn(s.Ring(dc), slot)
}

// OwnerIn is Owner over a ring computed once with Ring.
func OwnerIn(ring []RingEntry, slot int) string {
	if len(ring) == 0 {
		return ""
	}
	t := SlotToken(slot)
	i := sort.Search(len(ring), func(i int) bool { return ring[i].Token >= t })
	if i == len(ring) {
		i = 0
	}
	return ring[i].Node
}
