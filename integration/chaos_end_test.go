package integration

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/migrate"
)

// The end of a chaos run: once every fault healed and the clients stopped, the cluster is
// let settle, the keys' final values are read through every node, and the histories, the
// slot tables and the groups' contents are checked.

// finish waits for the cluster to settle and returns every violation found.
func (r *chaosRun) finish() []violation {
	t := r.t
	waitFor(t, 120*time.Second, "no migration in flight", func() error {
		st, err := statusOf(r.members()[0].proc)
		if err != nil {
			return err
		}
		for _, m := range st.Migrations {
			if m.State != fsm.MigrationDone && m.State != fsm.MigrationCancelled {
				return fmt.Errorf("migration %d %s", m.ID, m.State)
			}
		}
		return nil
	})
	r.waitWhole(60 * time.Second)
	waitFor(t, 30*time.Second, "every member at the same applied index", func() error {
		var idx []string
		var first uint64
		for i, m := range r.members() {
			st, err := statusOf(m.proc)
			if err != nil {
				return err
			}
			if i == 0 {
				first = st.AppliedIndex
			}
			idx = append(idx, fmt.Sprintf("%s:%d", m.ID, st.AppliedIndex))
			if st.AppliedIndex != first {
				return fmt.Errorf("applied %v", idx)
			}
		}
		return nil
	})
	var vs []violation
	if len(r.x.dcs) > 1 {
		vs = append(vs, r.converge(120*time.Second)...)
	}
	end := r.h.since()
	final, reads := r.readFinal()
	vs = append(vs, reads...)
	ops := r.h.all()
	vs = append(vs, checkCounters(ops, final)...)
	vs = append(vs, checkLists(ops, final)...)
	vs = append(vs, checkRegisters(ops, final, end)...)
	vs = append(vs, r.checkRemoved(ops)...)
	vs = append(vs, r.checkSlotTables()...)
	vs = append(vs, r.checkGroups()...)
	return vs
}

// converge waits, up to d, until every DC holds the same data; DCs that still differ then are
// a violation (and the checks go on).
func (r *chaosRun) converge(d time.Duration) []violation {
	masters := r.x.masters()
	deadline := time.Now().Add(d)
	for {
		_, err := r.x.differences(masters)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return []violation{newViolation("dcs-diverge", nil, "%v after every fault healed and writes stopped: %v", d, err)}
		}
		time.Sleep(500 * time.Millisecond) // poll interval
	}
}

// readFinal reads every key through every member (retrying answers that say the node is not
// ready) and returns the values of the first; members that disagree are violations.
func (r *chaosRun) readFinal() (map[string]finalValue, []violation) {
	var keys []string
	for _, dc := range r.x.dcs {
		keys = append(keys, r.keys[dc].all()...)
	}
	var vs []violation
	var ref map[string]finalValue
	refID := ""
	for _, m := range r.members() {
		var got map[string]finalValue
		waitFor(r.t, 30*time.Second, "final reads through "+m.ID, func() (err error) {
			got, err = readKeys(m.Listen, keys)
			return err
		})
		if ref == nil {
			ref, refID = got, m.ID
			continue
		}
		for _, k := range keys {
			a, b := ref[k], got[k]
			if a.missing != b.missing || a.n != b.n || strings.Join(a.list, ",") != strings.Join(b.list, ",") {
				vs = append(vs, newViolation("final-read", nil, "%s reads %+v through %s but %+v through %s", k, a, refID, b, m.ID))
			}
		}
	}
	return ref, vs
}

// readKeys reads keys (counters and registers with GET, lists with LRANGE) in one pipeline.
func readKeys(addr string, keys []string) (map[string]finalValue, error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, ReadTimeout: 10 * time.Second})
	defer rdb.Close()
	ctx := context.Background()
	pipe := rdb.Pipeline()
	gets := map[string]*redis.StringCmd{}
	lists := map[string]*redis.StringSliceCmd{}
	for _, k := range keys {
		if strings.Contains(k, "lst:") {
			lists[k] = pipe.LRange(ctx, k, 0, -1)
		} else {
			gets[k] = pipe.Get(ctx, k)
		}
	}
	_, _ = pipe.Exec(ctx)
	out := map[string]finalValue{}
	for k, c := range gets {
		n, err := c.Int64()
		if err == redis.Nil {
			out[k] = finalValue{missing: true}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("GET %s: %v", k, err)
		}
		out[k] = finalValue{n: n}
	}
	for k, c := range lists {
		l, err := c.Result()
		if err != nil {
			return nil, fmt.Errorf("LRANGE %s: %v", k, err)
		}
		out[k] = finalValue{list: l, missing: len(l) == 0}
	}
	return out, nil
}

// checkRemoved: a node removed while cut off acknowledges nothing keyed sent to it more than
// removedGrace after its removal was committed.
func (r *chaosRun) checkRemoved(ops []op) []violation {
	var vs []violation
	for id, at := range r.removed {
		var served []*op
		for i := range ops {
			if o := &ops[i]; o.node == id && o.out == outOK && o.inv > at+removedGrace {
				served = append(served, o)
			}
		}
		if len(served) > 0 {
			sort.Slice(served, func(i, j int) bool { return served[i].inv < served[j].inv })
			v := newViolation("removed-node", served, "%s, removed at %.3fs while cut off, acknowledged %d keyed requests sent after %.3fs",
				id, at.Seconds(), len(served), (at + removedGrace).Seconds())
			v.key = id // one per removed node, whatever keys it served
			vs = append(vs, v)
		}
	}
	return vs
}

// slotTable is a node's slot table as text: per DC, group -> ranges.
func slotTable(p *proc) (string, error) {
	st, err := statusOf(p)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, d := range st.DCs {
		for _, g := range d.Groups {
			fmt.Fprintf(&b, "%s/%s=%s ", d.Name, g.ID, strings.Join(g.Ranges, ","))
		}
	}
	return b.String(), nil
}

// checkSlotTables: every member's admin /status shows the same slot table.
func (r *chaosRun) checkSlotTables() []violation {
	var vs []violation
	ms := r.members()
	ref, err := slotTable(ms[0].proc)
	if err != nil {
		return []violation{newViolation("slot-table", nil, "%s: %v", ms[0].ID, err)}
	}
	for _, m := range ms[1:] {
		got, err := slotTable(m.proc)
		if err != nil || got != ref {
			vs = append(vs, newViolation("slot-table", nil, "%s: %q (%v), %s: %q", ms[0].ID, ref, err, m.ID, got))
		}
	}
	return vs
}

// checkGroups scans every group's redis-server directly: no key in two groups of a DC, and
// none on a group that does not serve its slot.
func (r *chaosRun) checkGroups() []violation {
	st, err := statusOf(r.members()[0].proc)
	if err != nil {
		return []violation{newViolation("groups", nil, "status: %v", err)}
	}
	var vs []violation
	ctx := context.Background()
	for _, d := range st.DCs {
		where := map[string][]string{} // key -> groups holding it
		for _, g := range d.Groups {
			rdb := redis.NewClient(&redis.Options{Addr: g.Master, ReadTimeout: 10 * time.Second})
			iter := rdb.Scan(ctx, 0, "*", 1000).Iterator()
			for iter.Next(ctx) {
				if k := iter.Val(); !strings.HasPrefix(k, "__redraft:") {
					where[k] = append(where[k], g.ID)
				}
			}
			err := iter.Err()
			rdb.Close()
			if err != nil {
				vs = append(vs, newViolation("groups", nil, "scanning %s/%s at %s: %v", d.Name, g.ID, g.Master, err))
			}
		}
		var twice, stray []string
		for k, gs := range where {
			if len(gs) > 1 {
				twice = append(twice, fmt.Sprintf("%s on %v", k, gs))
			} else if own := ownerGroup(st, d.Name, migrate.SlotString(k)); own != gs[0] {
				stray = append(stray, fmt.Sprintf("%s (slot %d) on %s, served by %s", k, migrate.SlotString(k), gs[0], own))
			}
		}
		sort.Strings(twice)
		sort.Strings(stray)
		if len(twice) > 0 {
			vs = append(vs, newViolation("key-in-two-groups", nil, "%s: %d keys, e.g. %v", d.Name, len(twice), twice[:min(5, len(twice))]))
		}
		if len(stray) > 0 {
			vs = append(vs, newViolation("stray-key", nil, "%s: %d keys on a group that does not serve their slot, e.g. %v", d.Name, len(stray), stray[:min(5, len(stray))]))
		}
	}
	return vs
}

// summary tabulates, per fault, the operations sent while it was on (from its injection until
// the cluster was whole again plus a quiet moment), the violations whose first operation was
// sent then, and how long clients saw errors after its injection (p50 and max over its
// occurrences). "none" is the time outside every fault.
func (r *chaosRun) summary(ops []op, vs []violation) string {
	type row struct {
		n                      int
		ok, failed, unknown, v int
		windows                []time.Duration
	}
	rows := map[string]*row{"none": {}}
	order := []string{}
	faultAt := func(t time.Duration) (int, bool) {
		for i, f := range r.faults {
			if t >= f.start && t < f.end {
				return i, true
			}
		}
		return 0, false
	}
	windows := make([]time.Duration, len(r.faults))
	for _, f := range r.faults {
		if rows[f.name] == nil {
			rows[f.name] = &row{}
			order = append(order, f.name)
		}
		rows[f.name].n++
	}
	total := &row{}
	for i := range ops {
		o := &ops[i]
		rw := rows["none"]
		if fi, ok := faultAt(o.inv); ok {
			rw = rows[r.faults[fi].name]
			if o.out != outOK {
				windows[fi] = max(windows[fi], o.cmp-r.faults[fi].start)
			}
		}
		for _, x := range []*row{rw, total} {
			switch o.out {
			case outOK:
				x.ok++
			case outFailed:
				x.failed++
			default:
				x.unknown++
			}
		}
	}
	for i, f := range r.faults {
		rows[f.name].windows = append(rows[f.name].windows, windows[i])
	}
	for _, v := range vs {
		rw := rows["none"]
		if fi, ok := faultAt(v.at); ok && v.ops != nil {
			rw = rows[r.faults[fi].name]
		}
		rw.v++
		total.v++
	}
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "fault\ttimes\tacknowledged\tfailed\tunknown\tviolations\terrors for p50\tmax\t")
	for _, name := range append(order, "none") {
		x := rows[name]
		p50, mx := "-", "-"
		if len(x.windows) > 0 {
			sort.Slice(x.windows, func(i, j int) bool { return x.windows[i] < x.windows[j] })
			p50 = x.windows[(len(x.windows)-1)/2].Round(10 * time.Millisecond).String()
			mx = x.windows[len(x.windows)-1].Round(10 * time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t\n", name, x.n, x.ok, x.failed, x.unknown, x.v, p50, mx)
	}
	fmt.Fprintf(tw, "all\t%d\t%d\t%d\t%d\t%d\t\t\t\n", len(r.faults), total.ok, total.failed, total.unknown, total.v)
	tw.Flush()
	return b.String()
}
