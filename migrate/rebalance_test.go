package migrate

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testredis"
)

// span returns the slots from..to.
func span(from, to int) []int {
	var out []int
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// slotsMoved sums the slots the plan moves out of (out) and into (in) each group.
func slotsMoved(p Plan) (out, in map[string]int) {
	out, in = map[string]int{}, map[string]int{}
	for _, m := range p.Moves {
		out[m.From] += m.SlotCount()
		in[m.To] += m.SlotCount()
	}
	return out, in
}

func checkWithin(t *testing.T, p Plan) {
	t.Helper()
	if !p.Balanced {
		t.Fatalf("plan not balanced: %+v", p)
	}
	for _, g := range p.After {
		if math.Abs(g.Load-p.Mean) > p.Mean*p.Tolerance+1e-9 {
			t.Errorf("group %s load %.4f, mean %.4f", g.ID, g.Load, p.Mean)
		}
	}
}

// checkDisjoint verifies that no slot moves twice and that a group gives or receives, not both.
func checkDisjoint(t *testing.T, p Plan, groups []GroupLoad) {
	t.Helper()
	owner := map[int]string{}
	for _, g := range groups {
		for _, s := range g.Slots {
			owner[s] = g.ID
		}
	}
	seen := map[int]bool{}
	gave, got := map[string]bool{}, map[string]bool{}
	for _, m := range p.Moves {
		gave[m.From], got[m.To] = true, true
		for _, r := range m.Slots {
			for s := r.From; s <= r.To; s++ {
				if seen[s] {
					t.Fatalf("slot %d moves twice", s)
				}
				seen[s] = true
				if owner[s] != m.From {
					t.Fatalf("slot %d moved from %s but belongs to %s", s, m.From, owner[s])
				}
			}
		}
	}
	for g := range gave {
		if got[g] {
			t.Fatalf("group %s both gives and receives", g)
		}
	}
}

func TestRebalanceNewEmptyGroup(t *testing.T) {
	groups := []GroupLoad{
		{ID: "g2", Slots: span(8192, 16383), Keys: 100000, Bytes: 100 << 20},
		{ID: "g1", Slots: span(0, 8191), Keys: 100000, Bytes: 100 << 20},
		{ID: "g3"},
	}
	p := PlanRebalance(groups, PlanOptions{})
	checkWithin(t, p)
	checkDisjoint(t, p, groups)
	if len(p.Moves) != 2 {
		t.Fatalf("want 2 moves (g1->g3, g2->g3), got %+v", p.Moves)
	}
	out, in := slotsMoved(p)
	if in["g3"] < 5400 || in["g3"] > 5520 || abs(out["g1"]-out["g2"]) > 1 {
		t.Fatalf("g3 gets %d slots (g1 %d, g2 %d), want about 16384/3", in["g3"], out["g1"], out["g2"])
	}
	// Each move is one contiguous range, and g3's two ranges touch (adjacent to what it got).
	for _, m := range p.Moves {
		if len(m.Slots) != 1 {
			t.Errorf("move %s->%s not contiguous: %v", m.From, m.To, m.Slots)
		}
	}
	if p.Moves[0].Slots[0].To+1 != p.Moves[1].Slots[0].From {
		t.Errorf("g3's ranges do not touch: %v %v", p.Moves[0].Slots, p.Moves[1].Slots)
	}
	if k := p.Moves[0].EstKeys + p.Moves[1].EstKeys; k < 66000 || k > 67400 {
		t.Errorf("estimated keys %d, want about 200000/3", k)
	}
	last := p.After[2]
	if last.ID != "g3" || math.Abs(last.Load-1.0/3) > 0.01 {
		t.Errorf("after: %+v", p.After)
	}
	if p.Basis != "keys+memory" || p.Before[2].Load != 0 {
		t.Errorf("basis %s before %+v", p.Basis, p.Before)
	}
}

func TestRebalanceMemoryDensity(t *testing.T) {
	// Same keys and slots, but g1's values are twice as large: it carries more load per slot
	// and must shed more slots than an even split of slots (16384/3 from each) would.
	groups := []GroupLoad{
		{ID: "g1", Slots: span(0, 8191), Keys: 100000, Bytes: 200 << 20},
		{ID: "g2", Slots: span(8192, 16383), Keys: 100000, Bytes: 100 << 20},
		{ID: "g3"},
	}
	p := PlanRebalance(groups, PlanOptions{})
	checkWithin(t, p)
	checkDisjoint(t, p, groups)
	out, _ := slotsMoved(p)
	bySlotCount := 8192 - 16384/3
	if out["g1"] <= bySlotCount+500 || out["g2"] >= bySlotCount-500 {
		t.Fatalf("g1 sheds %d slots, g2 %d; slot counts alone: %d each", out["g1"], out["g2"], bySlotCount)
	}
	// Half the load is keys (even), half memory (2:1): g1's load is 7/12, so it keeps 4/7
	// of its slots.
	if want := 8192 - 8192*4/7; abs(out["g1"]-want) > 2 {
		t.Errorf("g1 sheds %d slots, want about %d", out["g1"], want)
	}
	// The group with more load per slot gives fewer slots for the same load: the plan moves
	// fewer slots than balancing slot counts would.
	total := out["g1"] + out["g2"]
	if total > 2*bySlotCount {
		t.Errorf("moves %d slots, more than the %d of an even slot split", total, 2*bySlotCount)
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func TestRebalanceAlreadyBalanced(t *testing.T) {
	groups := []GroupLoad{
		{ID: "a", Slots: span(0, 5460), Keys: 1010, Bytes: 10 << 20},
		{ID: "b", Slots: span(5461, 10922), Keys: 990, Bytes: 10<<20 + 1000},
		{ID: "c", Slots: span(10923, 16383), Keys: 1000, Bytes: 10<<20 - 5000},
	}
	p := PlanRebalance(groups, PlanOptions{})
	if len(p.Moves) != 0 || !p.Balanced {
		t.Fatalf("balanced DC got a plan: %+v", p)
	}
	if !reflect.DeepEqual(p.Before, p.After) {
		t.Fatalf("before %+v after %+v", p.Before, p.After)
	}
}

func TestRebalanceOneGroup(t *testing.T) {
	p := PlanRebalance([]GroupLoad{{ID: "g1", Slots: span(0, 16383), Keys: 5, Bytes: 5}}, PlanOptions{})
	if len(p.Moves) != 0 || !p.Balanced || len(p.After) != 1 || p.After[0].Load != 1 {
		t.Fatalf("one group: %+v", p)
	}
	if p := PlanRebalance(nil, PlanOptions{}); len(p.Moves) != 0 || !p.Balanced {
		t.Fatalf("no group: %+v", p)
	}
}

func TestRebalanceNoDataUsesSlots(t *testing.T) {
	groups := []GroupLoad{{ID: "g1", Slots: span(0, 16383)}, {ID: "g2"}, {ID: "g3"}, {ID: "g4"}}
	p := PlanRebalance(groups, PlanOptions{})
	checkWithin(t, p)
	checkDisjoint(t, p, groups)
	if p.Basis != "slots" || len(p.Moves) != 3 {
		t.Fatalf("plan %+v", p)
	}
	for _, g := range p.After {
		if g.Slots != 4096 {
			t.Errorf("group %s has %d slots after", g.ID, g.Slots)
		}
	}
}

func TestRebalanceDeterministic(t *testing.T) {
	groups := []GroupLoad{
		{ID: "b", Slots: append(span(0, 99), span(5000, 9999)...), Keys: 7000, Bytes: 9 << 20},
		{ID: "a", Slots: span(100, 4999), Keys: 1000, Bytes: 1 << 20},
		{ID: "c", Slots: span(10000, 16383), Keys: 3000, Bytes: 5 << 20},
		{ID: "d"},
	}
	first := PlanRebalance(groups, PlanOptions{Tolerance: 0.02})
	checkWithin(t, first)
	checkDisjoint(t, first, groups)
	for i := 0; i < 20; i++ {
		if p := PlanRebalance(groups, PlanOptions{Tolerance: 0.02}); !reflect.DeepEqual(p, first) {
			t.Fatalf("plans differ:\n%+v\n%+v", p, first)
		}
	}
}

func TestRebalanceHotSlotCannotBalance(t *testing.T) {
	// g1 has one slot holding nearly everything: moving it overshoots, so the plan stays
	// unbalanced and says why.
	groups := []GroupLoad{
		{ID: "g1", Slots: []int{7}, Keys: 1000000, Bytes: 1 << 30},
		{ID: "g2", Slots: span(8, 16383), Keys: 10, Bytes: 10},
	}
	p := PlanRebalance(groups, PlanOptions{})
	if p.Balanced || len(p.Moves) != 0 || len(p.Notes) == 0 {
		t.Fatalf("plan %+v", p)
	}
}

func TestGatherLoad(t *testing.T) {
	ctx := context.Background()
	s1 := testredis.Start(t)
	s2 := testredis.Start(t, testredis.WithPassword("sekret"))
	c1 := redis.NewClient(&redis.Options{Addr: s1.Addr})
	defer c1.Close()
	for i := 0; i < 50; i++ {
		c1.Set(ctx, fmt.Sprint("k", i), "v", 0)
	}
	c1.Do(ctx, "SELECT", 3)
	c13 := redis.NewClient(&redis.Options{Addr: s1.Addr, DB: 3})
	defer c13.Close()
	c13.Set(ctx, "other-db", "x", 0)
	dc := &fsm.DC{Name: "dc1", Groups: map[string]*fsm.Group{
		"g1": {ID: "g1", Master: s1.Addr},
		"g2": {ID: "g2", Master: s2.Addr, Password: "sekret"},
	}, Slots: make([]string, fsm.NumSlots)}
	for s := 0; s < 100; s++ {
		dc.Slots[s] = "g1"
	}
	loads, err := GatherLoad(ctx, dc)
	if err != nil {
		t.Fatal(err)
	}
	if len(loads) != 2 || loads[0].ID != "g1" || loads[0].Keys != 51 || len(loads[0].Slots) != 100 || loads[0].Bytes <= 0 {
		t.Fatalf("loads %+v", loads)
	}
	if loads[1].Keys != 0 || len(loads[1].Slots) != 0 {
		t.Fatalf("g2 %+v", loads[1])
	}
	dc.Groups["g2"].Password = "wrong"
	if _, err := GatherLoad(ctx, dc); err == nil {
		t.Fatal("wrong password accepted")
	} else {
		t.Logf("wrong password: %v", err)
	}
}

func TestRebalanceKeepsRangesTogether(t *testing.T) {
	// g2 holds 0-12000, g1 12001-16383, g3 is new. g3's share comes from g2's low end so that
	// g1 can take the slots next to its own: every group ends with one contiguous range.
	groups := []GroupLoad{
		{ID: "g1", Slots: span(12001, 16383), Keys: 4383, Bytes: 4383 << 10},
		{ID: "g2", Slots: span(0, 12000), Keys: 12001, Bytes: 12001 << 10},
		{ID: "g3"},
	}
	p := PlanRebalance(groups, PlanOptions{})
	checkWithin(t, p)
	checkDisjoint(t, p, groups)
	owner := make([]string, fsm.NumSlots)
	for _, g := range groups {
		for _, s := range g.Slots {
			owner[s] = g.ID
		}
	}
	for _, m := range p.Moves {
		for _, r := range m.Slots {
			for s := r.From; s <= r.To; s++ {
				owner[s] = m.To
			}
		}
	}
	dc := &fsm.DC{Slots: owner}
	for g, ranges := range dc.SlotRanges() {
		if len(ranges) != 1 {
			t.Errorf("group %s ends with ranges %v (moves %+v)", g, ranges, p.Moves)
		}
	}
}
