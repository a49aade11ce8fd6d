package migrate

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
)

// DefaultTolerance is how far, as a fraction of the mean, a group's load may stay from the
// mean before a rebalance moves slots: 5%.
const DefaultTolerance = 0.05

// GroupLoad is one group of a DC as the rebalance planner sees it.
type GroupLoad struct {
	// ID is the group's id.
	ID string `json:"id"`
	// Slots are the slots the group serves, ascending.
	Slots []int `json:"-"`
	// Keys is the number of keys on the group's master, every db (INFO keyspace).
	Keys int64 `json:"keys"`
	// Bytes is the memory the master's data takes (INFO memory: used_memory_dataset).
	Bytes int64 `json:"bytes"`
}

// Move is one planned migration: whole slots of one source group to one target group.
type Move struct {
	From  string          `json:"from"`
	To    string          `json:"to"`
	Slots []fsm.SlotRange `json:"slots"`
	// EstKeys and EstBytes estimate the data that moves, assuming a group's keys and memory
	// spread evenly over its slots.
	EstKeys  int64 `json:"est_keys"`
	EstBytes int64 `json:"est_bytes"`
}

// SlotCount returns the number of slots the move carries.
func (m Move) SlotCount() int {
	n := 0
	for _, r := range m.Slots {
		n += r.To - r.From + 1
	}
	return n
}

// GroupShare is one group's part of its DC before or after a plan.
type GroupShare struct {
	ID    string `json:"id"`
	Slots int    `json:"slots"`
	// Keys and Bytes are measured (before) or estimated (after).
	Keys  int64 `json:"keys"`
	Bytes int64 `json:"bytes"`
	// Load is the group's share of the DC's load, 0..1 (see Plan.Basis).
	Load float64 `json:"load"`
}

// Plan is a rebalance plan for one DC: the moves, and each group's load before and after.
type Plan struct {
	Moves  []Move       `json:"moves"`
	Before []GroupShare `json:"before"`
	After  []GroupShare `json:"after"`
	// Mean is the load every group aims at (1/number of groups); Tolerance the fraction of it
	// a group may be off.
	Mean      float64 `json:"mean"`
	Tolerance float64 `json:"tolerance"`
	// Basis says what load is: "keys+memory" (half each), "keys", "memory", or "slots" when
	// the DC holds no data.
	Basis string `json:"basis"`
	// Balanced reports whether every group is within tolerance after the plan.
	Balanced bool `json:"balanced"`
	// Notes explain a plan that cannot balance, for people.
	Notes []string `json:"notes,omitempty"`
}

// PlanOptions tunes PlanRebalance.
type PlanOptions struct {
	// Tolerance is the fraction of the mean load a group may be off (default DefaultTolerance).
	Tolerance float64
}

// planGroup is a group while planning.
type planGroup struct {
	id                      string
	perSlot                 float64 // load of one of this group's own slots
	keysPerSlot, bytesSlot  float64
	avail                   []int        // own slots not given away yet, ascending
	owned                   map[int]bool // slots served after the moves so far
	load, keys, bytes       float64
	gave, got               bool
	origKeys, origBytes     int64
	origSlots, currentSlots int
}

// PlanRebalance plans moves of whole slots that bring every group's load within the
// tolerance of the mean. A group's load is half its share of the DC's keys and half its share
// of its memory (only keys or only memory when the other is zero everywhere; slot counts
// when the DC holds no data), and a group's load is taken to spread evenly over its slots, so
// a slot carries its group's load per slot. Groups without slots (just added) receive slots.
//
// The planner moves load from the most loaded group to the least loaded until one of the two
// reaches the mean, and repeats. A group gives or receives, never both, and no slot moves
// twice, so the moves can run at once. Slots are taken as contiguous runs, next to the
// receiver's own slots when possible, else from an end of the smallest run that is long
// enough. The result depends only on the input (groups are ordered by id).
func PlanRebalance(groups []GroupLoad, opts PlanOptions) Plan {
	tol := opts.Tolerance
	if tol <= 0 {
		tol = DefaultTolerance
	}
	gs := make([]*planGroup, 0, len(groups))
	var totalKeys, totalBytes float64
	totalSlots := 0
	for _, g := range groups {
		pg := &planGroup{id: g.ID, owned: map[int]bool{}, origKeys: g.Keys, origBytes: g.Bytes}
		pg.avail = append([]int(nil), g.Slots...)
		sort.Ints(pg.avail)
		for _, s := range pg.avail {
			pg.owned[s] = true
		}
		pg.origSlots, pg.currentSlots = len(pg.avail), len(pg.avail)
		if pg.origSlots > 0 { // keys of a group without slots belong to no slot it serves
			totalKeys += float64(g.Keys)
			totalBytes += float64(g.Bytes)
		}
		totalSlots += pg.origSlots
		gs = append(gs, pg)
	}
	sort.Slice(gs, func(i, j int) bool { return gs[i].id < gs[j].id })
	p := Plan{Tolerance: tol, Moves: []Move{}}
	if len(gs) > 0 {
		p.Mean = 1 / float64(len(gs))
	}
	wk, wb := 0.5, 0.5
	switch {
	case totalKeys > 0 && totalBytes > 0:
		p.Basis = "keys+memory"
	case totalKeys > 0:
		p.Basis, wk, wb = "keys", 1, 0
	case totalBytes > 0:
		p.Basis, wk, wb = "memory", 0, 1
	default:
		p.Basis = "slots"
	}
	for _, g := range gs {
		if g.origSlots == 0 {
			continue
		}
		n := float64(g.origSlots)
		g.keysPerSlot, g.bytesSlot = float64(g.origKeys)/n, float64(g.origBytes)/n
		g.keys, g.bytes = float64(g.origKeys), float64(g.origBytes)
		if p.Basis == "slots" {
			g.perSlot = 1 / float64(totalSlots)
		} else {
			g.perSlot = (wk*share(g.origKeys, totalKeys) + wb*share(g.origBytes, totalBytes)) / n
		}
		g.load = g.perSlot * n
	}
	p.Before = shares(gs)
	switch {
	case len(gs) < 2:
		p.Balanced = true
		return finish(p, gs)
	case totalSlots == 0:
		p.Notes = append(p.Notes, "no group serves any slot: assign slots first (redraft slots assign)")
		return finish(p, gs)
	}
	lo, hi := p.Mean*(1-tol), p.Mean*(1+tol)
	moves := map[[2]string][]int{}
	for !within(gs, lo, hi) {
		if !step(gs, p.Mean, lo, hi, moves) {
			break
		}
	}
	for key, slots := range moves {
		from := find(gs, key[0])
		sort.Ints(slots)
		p.Moves = append(p.Moves, Move{
			From: key[0], To: key[1], Slots: toRanges(slots),
			EstKeys:  int64(from.keysPerSlot*float64(len(slots)) + 0.5),
			EstBytes: int64(from.bytesSlot*float64(len(slots)) + 0.5),
		})
	}
	sort.Slice(p.Moves, func(i, j int) bool {
		if p.Moves[i].From != p.Moves[j].From {
			return p.Moves[i].From < p.Moves[j].From
		}
		return p.Moves[i].To < p.Moves[j].To
	})
	p.Balanced = within(gs, lo, hi)
	if !p.Balanced {
		for _, g := range gs {
			if g.load > hi && g.perSlot > hi-p.Mean {
				p.Notes = append(p.Notes, fmt.Sprintf("group %s stays above the mean: one of its slots carries %.1f%% of the load, more than the tolerance allows (few slots hold much data: hot keys or big keys?)", g.id, 100*g.perSlot))
			}
		}
		if len(p.Notes) == 0 {
			p.Notes = append(p.Notes, fmt.Sprintf("whole slots cannot bring every group within %.1f%% of the mean; the plan gets as close as it can", 100*tol))
		}
	}
	return finish(p, gs)
}

func share(v int64, total float64) float64 {
	if total <= 0 {
		return 0
	}
	return float64(v) / total
}

func finish(p Plan, gs []*planGroup) Plan {
	p.After = shares(gs)
	return p
}

func find(gs []*planGroup, id string) *planGroup {
	for _, g := range gs {
		if g.id == id {
			return g
		}
	}
	return nil
}

func shares(gs []*planGroup) []GroupShare {
	out := make([]GroupShare, 0, len(gs))
	for _, g := range gs {
		out = append(out, GroupShare{ID: g.id, Slots: g.currentSlots, Keys: int64(g.keys + 0.5), Bytes: int64(g.bytes + 0.5), Load: g.load})
	}
	return out
}

// within reports whether every group's load lies in [lo, hi] (with room for float error).
func within(gs []*planGroup, lo, hi float64) bool {
	const eps = 1e-12
	for _, g := range gs {
		if g.load < lo-eps || g.load > hi+eps {
			return false
		}
	}
	return true
}

// step makes one move, from the most loaded group that can give to the least loaded one that
// can receive, of as many slots as bring one of them to the mean. It reports false when no
// pair can move a whole slot usefully.
func step(gs []*planGroup, mean, lo, hi float64, moves map[[2]string][]int) bool {
	var donors, receivers []*planGroup
	for _, g := range gs {
		if !g.got && g.load > mean && len(g.avail) > 0 && g.perSlot > 0 {
			donors = append(donors, g)
		}
		if !g.gave && g.load < mean {
			receivers = append(receivers, g)
		}
	}
	sort.SliceStable(donors, func(i, j int) bool { return donors[i].load > donors[j].load })
	sort.SliceStable(receivers, func(i, j int) bool { return receivers[i].load < receivers[j].load })
	for _, d := range donors {
		for _, r := range receivers {
			if d.load <= hi && r.load >= lo {
				continue // both already within tolerance
			}
			want := min(d.load-mean, mean-r.load)
			n := min(int(want/d.perSlot+0.5), len(d.avail))
			if n < 1 {
				continue
			}
			taken := take(gs, d, r, mean, n)
			d.gave, r.got = true, true
			k := float64(n)
			d.load -= k * d.perSlot
			r.load += k * d.perSlot
			d.keys -= k * d.keysPerSlot
			r.keys += k * d.keysPerSlot
			d.bytes -= k * d.bytesSlot
			r.bytes += k * d.bytesSlot
			d.currentSlots -= n
			r.currentSlots += n
			for _, s := range taken {
				delete(d.owned, s)
				r.owned[s] = true
			}
			key := [2]string{d.id, r.id}
			moves[key] = append(moves[key], taken...)
			return true
		}
	}
	return false
}

// take removes n slots from d's available slots and returns them: from a run next to r's
// slots when one is long enough, else from the shortest run long enough, at its high end
// unless that end touches another group still due to receive (which may then get slots next
// to its own), else whole runs, longest first.
func take(gs []*planGroup, d, r *planGroup, mean float64, n int) []int {
	// waiting reports whether slot belongs to a group other than d and r that may receive.
	waiting := func(slot int) bool {
		for _, g := range gs {
			if g != d && g != r && !g.gave && g.load < mean && g.owned[slot] {
				return true
			}
		}
		return false
	}
	var out []int
	for n > 0 {
		runs := runsOf(d.avail)
		pick, fromLow := -1, false
		for i, rn := range runs { // next to the receiver
			size := rn[1] - rn[0] + 1
			if size < n {
				continue
			}
			if r.owned[rn[0]-1] {
				pick, fromLow = i, true
				break
			}
			if r.owned[rn[1]+1] {
				pick = i
				break
			}
		}
		if pick < 0 { // best fit
			for i, rn := range runs {
				size := rn[1] - rn[0] + 1
				if size >= n && (pick < 0 || size < runs[pick][1]-runs[pick][0]+1) {
					pick = i
				}
			}
			if pick >= 0 {
				fromLow = waiting(runs[pick][1]+1) && !waiting(runs[pick][0]-1)
			}
		}
		var lo, hi int
		if pick < 0 { // no run is long enough: the longest whole
			for i, rn := range runs {
				if pick < 0 || rn[1]-rn[0] > runs[pick][1]-runs[pick][0] {
					pick = i
				}
			}
			lo, hi = runs[pick][0], runs[pick][1]
		} else if fromLow {
			lo, hi = runs[pick][0], runs[pick][0]+n-1
		} else {
			lo, hi = runs[pick][1]-n+1, runs[pick][1]
		}
		rest := d.avail[:0:0]
		for _, s := range d.avail {
			if s >= lo && s <= hi {
				out = append(out, s)
			} else {
				rest = append(rest, s)
			}
		}
		d.avail = rest
		n -= hi - lo + 1
	}
	return out
}

// runsOf returns the contiguous runs of ascending slots as inclusive {from, to} pairs.
func runsOf(slots []int) [][2]int {
	var out [][2]int
	for i := 0; i < len(slots); {
		j := i
		for j+1 < len(slots) && slots[j+1] == slots[j]+1 {
			j++
		}
		out = append(out, [2]int{slots[i], slots[j]})
		i = j + 1
	}
	return out
}

// toRanges turns ascending slots into the state's ranges.
func toRanges(slots []int) []fsm.SlotRange {
	var out []fsm.SlotRange
	for _, r := range runsOf(slots) {
		out = append(out, fsm.SlotRange{From: r[0], To: r[1]})
	}
	return out
}

// GroupSlots returns, per group id of dc, the slots it serves, ascending.
func GroupSlots(dc *fsm.DC) map[string][]int {
	out := map[string][]int{}
	for s, g := range dc.Slots {
		if g != "" {
			out[g] = append(out[g], s)
		}
	}
	return out
}

// GatherLoad reads, from each group master of dc, its key count (INFO keyspace, every db)
// and data memory (INFO memory: used_memory_dataset, else used_memory), with the group's
// password, asking every master at once. It fails, naming them, if any master does not answer.
func GatherLoad(ctx context.Context, dc *fsm.DC) ([]GroupLoad, error) {
	slots := GroupSlots(dc)
	ids := dc.GroupIDs()
	out := make([]GroupLoad, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		g := dc.Groups[id]
		out[i] = GroupLoad{ID: id, Slots: slots[id]}
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys, bytes, err := masterLoad(ctx, EndpointOf(g))
			if err != nil {
				errs[i] = fmt.Errorf("group %s (master %s): %w", id, g.Master, err)
				return
			}
			out[i].Keys, out[i].Bytes = keys, bytes
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// masterLoad asks one Redis for its key count and data memory.
func masterLoad(ctx context.Context, e Endpoint) (keys, bytes int64, err error) {
	c := redis.NewClient(&redis.Options{
		Addr: e.Addr, Username: e.Username, Password: e.Password, Dialer: e.Dialer,
		Protocol: 2, DisableIdentity: true, MaxRetries: -1,
		DialTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
		PoolSize: 1, ContextTimeoutEnabled: true,
	})
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, keys, err = keyspace(cctx, c)
	if err != nil {
		return 0, 0, err
	}
	info, err := c.Info(cctx, "memory").Result()
	if err != nil {
		return 0, 0, fmt.Errorf("INFO memory: %w", err)
	}
	fields := InfoFields(info)
	v, ok := fields["used_memory_dataset"]
	if !ok {
		v = fields["used_memory"]
	}
	bytes, err = strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("INFO memory has no used_memory_dataset or used_memory")
	}
	return keys, bytes, nil
}

// InfoFields parses INFO's "key:value" lines.
func InfoFields(info string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && !strings.HasPrefix(k, "#") {
			out[k] = v
		}
	}
	return out
}
