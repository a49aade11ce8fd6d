// Package fsm holds redraft's cluster state and the typed commands that change it; it is pure (no I/O, clock or randomness).
package fsm

import (
	"fmt"
	"slices"
	"sort"
)

// NumSlots is the number of hash slots, as in Redis Cluster.
const NumSlots = 16384

// State is the whole cluster state. A State published to readers is never mutated: Apply works
// on a Clone and the caller swaps the pointer.
type State struct {
	// Index is the Raft index of the last entry applied to this state.
	Index uint64 `json:"index"`
	// Nodes are the cluster members by id.
	Nodes map[string]*Node `json:"nodes"`
	// DCs are the datacenters by name, each with its groups and slot table.
	DCs map[string]*DC `json:"dcs"`
	// Settings are the cluster-wide settings, by key.
	Settings map[string]string `json:"settings"`
	// Migrations are the slot migrations, by id, kept after they finish for the record.
	Migrations map[uint64]*Migration `json:"migrations"`
	// NextMigrationID is the id the next migration gets.
	NextMigrationID uint64 `json:"next_migration_id"`
	// Applied counts applied commands by type name (for metrics).
	Applied map[string]uint64 `json:"applied"`
	// Removed records, per removed node id, the index of its removal; a join clears it.
	Removed map[string]uint64 `json:"removed,omitempty"`
	// Flush is the current or last flush (cmd_flush.go); Flushes counts the flushes done, so
	// a slot copy read before one is told from one read after it.
	Flush   *Flush `json:"flush,omitempty"`
	Flushes uint64 `json:"flushes,omitempty"`
	// DataFormat is the data format every node reads and writes (cmd_format.go; 0 is
	// FirstDataFormat: Format reads it).
	DataFormat int `json:"data_format,omitempty"`
}

// Node is one redraft process: a Raft member and a RESP proxy.
type Node struct {
	ID        string   `json:"id"`
	DC        string   `json:"dc"`
	Rack      string   `json:"rack,omitempty"`
	Tokens    []uint32 `json:"tokens,omitempty"`
	Listen    string   `json:"listen"`
	Peer      string   `json:"peer_listen"`
	Admin     string   `json:"admin_listen"`
	JoinIndex uint64   `json:"join_index"`
	// MaxFormat is the highest data format the node's build runs, Format the one it last
	// reported acting on (cmd_format.go; 0 is FirstDataFormat).
	MaxFormat int `json:"max_data_format,omitempty"`
	Format    int `json:"data_format,omitempty"`
}

// DC is one datacenter: its groups and its slot table.
type DC struct {
	Name   string            `json:"name"`
	Groups map[string]*Group `json:"groups"`
	// Slots maps each slot to the id of the group that serves it ("" when unassigned).
	Slots []string `json:"slots"`
}

// Group is one Redis master plus replicas in one DC.
type Group struct {
	ID       string   `json:"id"`
	Master   string   `json:"master"`
	Replicas []string `json:"replicas,omitempty"`
	// User and Password are the backends' admin credentials (an empty User is Redis's
	// default user, Password its requirepass): redraft creates its two ACL users with them
	// (internal/backendacl) and derives those users' passwords from Password.
	User     string `json:"user,omitempty"`
	Password string `json:"password,omitempty"`
	// Priority ranks replicas for a promotion, by address: lower is preferred, 0 never promoted
	// (Redis's replica-priority); an address not listed has DefaultPriority.
	Priority map[string]int `json:"priority,omitempty"`
	// Fenced are former masters a failover took out of service: nothing is routed to them, and
	// the watchers make each a replica of Master as soon as it answers (RejoinServer then lists
	// it among Replicas again).
	Fenced []string `json:"fenced,omitempty"`
	// Epoch counts the group's failovers, finished or cancelled; each one carries the next.
	Epoch uint64 `json:"epoch,omitempty"`
	// Failovers counts the failovers that promoted a replica; LostBytes sums their LostBytes.
	Failovers uint64 `json:"failovers,omitempty"`
	LostBytes int64  `json:"lost_bytes,omitempty"`
	// DownVotes are, by node id, the master address the node has not reached for
	// master_down_after (ReportServer); a majority of the DC's nodes starts a failover.
	DownVotes map[string]string `json:"down_votes,omitempty"`
	// DownAt are, by node id, when its down vote was cast or last renewed, on that node's
	// clock (unix ms; none for a vote of a build before it). A vote older than DownVoteLife
	// against the newest one counts for no failover: its node may be dead or cut off, and a
	// live voter renews its vote every DownVoteRenew.
	DownAt map[string]int64 `json:"down_at,omitempty"`
	// Failover is the failover in progress, if any; LastFailover the last one that ended.
	Failover     *Failover `json:"failover,omitempty"`
	LastFailover *Failover `json:"last_failover,omitempty"`
}

// String shows the group with its password as "set" or "unset", never the value (fmt's %v
// and %+v use it, so a group in a log line or an error keeps its secret).
func (g Group) String() string {
	pw := "unset"
	if g.Password != "" {
		pw = "set"
	}
	if g.User != "" {
		return fmt.Sprintf("{ID:%s Master:%s Replicas:%v User:%s Password:%s}", g.ID, g.Master, g.Replicas, g.User, pw)
	}
	return fmt.Sprintf("{ID:%s Master:%s Replicas:%v Password:%s}", g.ID, g.Master, g.Replicas, pw)
}

// GoString is String for %#v.
func (g Group) GoString() string { return g.String() }

// New returns an empty state.
func New() *State {
	return &State{
		Nodes:           map[string]*Node{},
		DCs:             map[string]*DC{},
		Settings:        map[string]string{},
		Migrations:      map[uint64]*Migration{},
		NextMigrationID: 1,
		Applied:         map[string]uint64{},
		Removed:         map[string]uint64{},
	}
}

// Clone returns a deep copy of s.
func (s *State) Clone() *State {
	c := s.cow()
	for k, d := range s.DCs {
		c.DCs[k] = d.clone()
	}
	return c
}

// writableDC returns the DC named name for a command to change, first replacing it by a copy:
// apply shares DCs (their 16384-slot tables) with the previous state until a command writes.
func (s *State) writableDC(name string) *DC {
	d := s.DCs[name]
	if d == nil {
		return nil
	}
	d = d.clone()
	s.DCs[name] = d
	return d
}

// cow copies s for an apply: everything but the DCs, which are shared until writableDC.
func (s *State) cow() *State {
	c := &State{
		Index:           s.Index,
		Nodes:           make(map[string]*Node, len(s.Nodes)),
		DCs:             make(map[string]*DC, len(s.DCs)),
		Settings:        make(map[string]string, len(s.Settings)),
		Migrations:      make(map[uint64]*Migration, len(s.Migrations)),
		NextMigrationID: s.NextMigrationID,
		Applied:         make(map[string]uint64, len(s.Applied)),
		Removed:         make(map[string]uint64, len(s.Removed)),
		Flush:           s.Flush.clone(),
		Flushes:         s.Flushes,
		DataFormat:      s.DataFormat,
	}
	for k, v := range s.Removed {
		c.Removed[k] = v
	}
	for k, n := range s.Nodes {
		nn := *n
		nn.Tokens = append([]uint32(nil), n.Tokens...)
		c.Nodes[k] = &nn
	}
	for k, d := range s.DCs {
		c.DCs[k] = d
	}
	for k, v := range s.Settings {
		c.Settings[k] = v
	}
	for k, m := range s.Migrations {
		c.Migrations[k] = m.clone()
	}
	for k, v := range s.Applied {
		c.Applied[k] = v
	}
	return c
}

func (d *DC) clone() *DC {
	c := &DC{Name: d.Name, Groups: make(map[string]*Group, len(d.Groups)), Slots: append([]string(nil), d.Slots...)}
	for k, g := range d.Groups {
		c.Groups[k] = g.clone()
	}
	return c
}

// clone returns a deep copy of g.
func (g *Group) clone() *Group {
	c := *g
	c.Replicas = append([]string(nil), g.Replicas...)
	c.Fenced = slices.Clone(g.Fenced)
	c.Priority = copyMap(g.Priority)
	c.DownVotes = copyMap(g.DownVotes)
	c.DownAt = copyMap(g.DownAt)
	if g.Failover != nil {
		f := *g.Failover
		c.Failover = &f
	}
	if g.LastFailover != nil {
		f := *g.LastFailover
		c.LastFailover = &f
	}
	return &c
}

func copyMap[V any](m map[string]V) map[string]V {
	if m == nil {
		return nil
	}
	c := make(map[string]V, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func newDC(name string) *DC {
	return &DC{Name: name, Groups: map[string]*Group{}, Slots: make([]string, NumSlots)}
}

// NodeIDs returns the node ids in sorted order.
func (s *State) NodeIDs() []string {
	ids := make([]string, 0, len(s.Nodes))
	for id := range s.Nodes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// DCNames returns the DC names in sorted order.
func (s *State) DCNames() []string {
	names := make([]string, 0, len(s.DCs))
	for n := range s.DCs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// SeveralDCs reports whether the cluster has more than one DC: writes are then replicated
// between DCs, and every server is kept at maxmemory-policy noeviction.
func (s *State) SeveralDCs() bool { return len(s.DCs) > 1 }

// GroupIDs returns the DC's group ids in sorted order.
func (d *DC) GroupIDs() []string {
	ids := make([]string, 0, len(d.Groups))
	for id := range d.Groups {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// SlotRange is an inclusive range of slots.
type SlotRange struct {
	From int `json:"from"`
	To   int `json:"to"`
}

// String renders the range as Redis does: "5" or "0-8191".
func (r SlotRange) String() string {
	if r.From == r.To {
		return fmt.Sprint(r.From)
	}
	return fmt.Sprintf("%d-%d", r.From, r.To)
}

// SlotRanges returns the ranges of slots each group of the DC serves, by group id; unassigned
// slots are under "".
func (d *DC) SlotRanges() map[string][]SlotRange {
	out := map[string][]SlotRange{}
	start := 0
	for i := 1; i <= NumSlots; i++ {
		if i == NumSlots || d.Slots[i] != d.Slots[start] {
			g := d.Slots[start]
			out[g] = append(out[g], SlotRange{From: start, To: i - 1})
			start = i
		}
	}
	return out
}

// SlotCount returns how many slots group g serves in the DC.
func (d *DC) SlotCount(g string) int {
	n := 0
	for _, o := range d.Slots {
		if o == g {
			n++
		}
	}
	return n
}
