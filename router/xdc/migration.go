package xdc

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/migrate"
)

// A migration in this DC at data format 3 (migrate.Replication; docs/replication.md, "Slot
// migrations with group logs"). Two things must hold across it:
//
//   - As a source DC: every entry of the slots in the source group's log is applied elsewhere
//     before any the target group's log gets after the switch of writes. The slot owner acks
//     the freeze last (AckLast), once no write to the slots runs on the source group any
//     more, and first appends a handoff entry to the target group's log (Frozen): the source
//     group's log and its last id then. A receiving group does not pass it before it applied
//     the source group's log through that id (applyLogLua, "HOLD").
//   - As a receiving DC: the slots' positions in the other DCs' logs move with their keys.
//     While the slots migrate, their entries end the ranges this DC applies (logCut), so no
//     entry of them is applied anywhere meanwhile; once the mover moved every key (Moved),
//     the source group's position for each slot in each log is copied into the target
//     group's inbox as the slot's field.

// HandoffCmd is the one effect of a handoff entry of a group log: HandoffCmd <group> <id>
// says that the group's log through id holds every earlier entry of the slots this log writes
// next. It is no Redis command, so no client write can record it.
const HandoffCmd = "!handoff"

// IsHandoff reports whether e is a handoff entry, and of which group's log through which id.
// A receiving node adds a fourth argument, the id of the entry before the handoff in the range
// it applies (handoffBefore).
func IsHandoff(cmds [][]string) (group, through string, ok bool) {
	if len(cmds) == 1 && (len(cmds[0]) == 3 || len(cmds[0]) == 4) && cmds[0][0] == HandoffCmd {
		return cmds[0][1], cmds[0][2], true
	}
	return "", "", false
}

// handoffBefore returns e, a handoff, with the id of the entry before it in the range (before)
// as its fourth argument: a group held there stands at that id, though the range's entries
// between its own last one and the handoff are other groups'. Without it, two logs handed over
// to each other (slots moved and moved back) held each other's groups below the ids they wait
// for.
func handoffBefore(e LogEntry, before string) LogEntry {
	c := e.Cmds[0]
	e.Cmds = WireCmds{{c[0], c[1], c[2], before}}
	return e
}

// AckLast implements migrate.Replication: at data format 3, the slot owner acks last.
func (r *Replicator) AckLast(st *fsm.State) bool { return st.Format() >= LogDataFormat }

// Frozen implements migrate.Replication: in every database where the source group has a log,
// it appends to the target group's log a handoff entry naming the source group's log and its
// last id. Run it once no write to m's slots runs on the source group and before any runs on
// the target group (after every other node's freeze ack, before the slot owner's own).
func (r *Replicator) Frozen(ctx context.Context, st *fsm.State, m *fsm.Migration) error {
	src, dst, dbs, err := r.migrationServers(ctx, st, m)
	if err != nil || src == nil {
		return err
	}
	for _, db := range dbs {
		info, err := r.client(serverOf(src), db).XInfoStream(ctx, LogKey).Result()
		if err != nil && strings.Contains(err.Error(), "no such key") {
			continue
		}
		if err != nil {
			return fmt.Errorf("xdc: the source group %s's log in db %d: %w", src.ID, db, err)
		}
		args := []any{"XADD", LogKey, "*"}
		for _, f := range EntryFields(r.cfg.Cluster.DC(), [][]string{{HandoffCmd, src.ID, info.LastGeneratedID}}) {
			args = append(args, f)
		}
		id, err := r.client(serverOf(dst), db).Do(ctx, args...).Text()
		if err != nil {
			return fmt.Errorf("xdc: handoff entry in the target group %s's log in db %d: %w", dst.ID, db, err)
		}
		r.log.Info("group log: handoff", "migration", m.ID, "db", db, "log", dst.ID, "entry", id,
			"after", LogID{DC: m.DC, Group: src.ID}.String(), "through", info.LastGeneratedID)
	}
	return nil
}

// Moved implements migrate.Replication: in every database of the source group's master, for
// every other DC's group log, it copies the source group's position for each of m's slots
// into the target group's inbox (its "s<slot>" field; none where it equals the target's own
// position). A target group that has no inbox for a log and holds no other slot takes the
// lowest of them as its position. A log the source group has no inbox for while the target
// has one gets "0-0" for the slots: nothing of them is known applied, and the shipper, which
// cannot go back that far, reports the log behind instead of skipping entries.
//
// The run back of a cancelled migration copies nothing: the slots were never served by the
// group they move back from (the switch gives them to the target, and a migration is not
// cancelled after it), nothing of them was applied anywhere while they migrated (HandleLog
// cuts a range before them), so the group they return to stands where it did. Copied from the
// other group, which has no inbox or only the forward run's copy, they went back to "0-0"
// until session 45, and every other DC's log answered a gap.
func (r *Replicator) Moved(ctx context.Context, st *fsm.State, m *fsm.Migration) error {
	src, dst, dbs, err := r.migrationServers(ctx, st, m)
	if err != nil || src == nil || m.Cancelling {
		return err
	}
	var logs []LogID
	for _, name := range st.DCNames() {
		if name == m.DC {
			continue
		}
		for gid := range st.DCs[name].Groups {
			logs = append(logs, LogID{DC: name, Group: gid})
		}
	}
	if len(logs) == 0 {
		return nil
	}
	sort.Slice(logs, func(i, j int) bool { return logs[i].String() < logs[j].String() })
	var slots []int
	moving := migrate.SlotSetOf(m.Slots)
	for _, rg := range m.Slots {
		for s := max(rg.From, 0); s <= rg.To && s < fsm.NumSlots; s++ {
			slots = append(slots, s)
		}
	}
	others := false // the target serves slots besides m's
	for s, gid := range st.DCs[m.DC].Slots {
		if gid == dst.ID && !moving.Contains(s) {
			others = true
			break
		}
	}
	keys := make([]string, len(logs))
	for i, l := range logs {
		keys[i] = LogInboxKey(l)
	}
	// The databases at once, a few at a time: one after the other, 16 databases' round trips
	// took the mover seconds on a loaded host, and its switch waits for them.
	var g errgroup.Group
	g.SetLimit(movedParallel)
	for _, db := range dbs {
		g.Go(func() error { return r.movedIn(ctx, src, dst, db, keys, slots, others) })
	}
	return g.Wait()
}

// movedParallel bounds the databases Moved copies positions in at once.
const movedParallel = 4

// movedIn is Moved in database db: the source group's inboxes of keys, read, then the slots'
// positions written into the target group's.
func (r *Replicator) movedIn(ctx context.Context, src, dst *fsm.Group, db int, keys []string, slots []int, others bool) error {
	// The source's positions go on moving while the copy runs (ranges without entries of the
	// slots still pass), so a value written can be below what the DC answered meanwhile: the
	// next call there is a gap, and the sender goes back to it. That is safe because the
	// sender keeps its log from where the DC stood before the migration while the DC's
	// answers say it migrates (LogResponse.Migrating).
	pipe := r.client(serverOf(src), db).Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.HGetAll(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("xdc: the source group %s's inboxes in db %d: %w", src.ID, db, err)
	}
	argv := []any{others}
	for _, c := range cmds {
		argv = append(argv, movedPositions(c.Val(), slots)...)
	}
	if err := r.client(serverOf(dst), db).Eval(ctx, movedInLua, keys, argv...).Err(); err != nil {
		return fmt.Errorf("xdc: the slots' positions into the target group %s's inboxes in db %d: %w", dst.ID, db, err)
	}
	return nil
}

// movedPositions is movedInLua's arguments for one log: the source group's inbox h and the
// moving slots (ascending) give whether the source had the inbox ("" when not: its slots then
// get "0-0"), the lowest of the slots' positions, the number of positions, then per position
// the position, the number of slot ranges and each range's first and last slot. A slot's
// position is its "s<slot>" field, or "f": the few slots with a field of their own are read
// from h once, and the slots go as ranges, since 4,096 slots one by one cost the mover seconds
// per database under load (TestXDCLogMigrations' stuck migrations, docs/replication.md).
func movedPositions(h map[string]string, slots []int) []any {
	own := map[int]string{}
	for k, v := range h {
		if rest, ok := strings.CutPrefix(k, "s"); ok {
			if n, err := strconv.Atoi(rest); err == nil {
				own[n] = v
			}
		}
	}
	f := h["f"]
	if f == "" {
		f = "0-0"
	}
	by := map[string][]int{} // position -> from, to, from, to...
	var order []string
	lo := ""
	for _, s := range slots {
		p, ok := own[s]
		if !ok || p == "" {
			p = f
		}
		rs, seen := by[p]
		if !seen {
			order = append(order, p)
			if lo == "" || CompareIDs(p, lo) < 0 {
				lo = p
			}
		}
		if n := len(rs); n > 0 && rs[n-1] == s-1 {
			rs[n-1] = s
		} else {
			rs = append(rs, s, s)
		}
		by[p] = rs
	}
	had := "1"
	if len(h) == 0 {
		had = ""
	}
	out := []any{had, lo, len(order)}
	for _, p := range order {
		out = append(out, p, len(by[p])/2)
		for _, s := range by[p] {
			out = append(out, s)
		}
	}
	return out
}

// movedInLua writes the moving slots' positions into the target group's inboxes (KEYS, one
// per source log). ARGV: whether the target serves other slots ("1"/"0"), then per key
// movedPositions' arguments (it finds the lowest position: the ids compare in Go,
// CompareIDs). Where the target has no inbox: if the source had none either, nothing; else,
// if the target serves no other slot, its position "f" becomes the lowest of the slots'
// positions. Each slot's field is then its position, or none where that equals "f" (fields
// go 500 to a call).
const movedInLua = `
local others, i = ARGV[1] == '1', 2
local function flush(cmd, key, args)
  if #args > 0 then redis.call(cmd, key, unpack(args)) end
  return {}
end
for k = 1, #KEYS do
  local had, lo, np = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  i = i + 3
  local groups = {}
  for _ = 1, np do
    local pos, nr = ARGV[i], tonumber(ARGV[i + 1])
    groups[#groups + 1] = {pos, i + 2, nr}
    i = i + 2 + 2 * nr
  end
  local key = KEYS[k]
  local f = redis.call('HGET', key, 'f')
  local exists = f or redis.call('EXISTS', key) == 1
  if exists or had ~= '' then
    if not f and not exists and not others and lo ~= '' then
      f = lo
      redis.call('HSET', key, 'f', f)
    end
    local dels, sets = {}, {}
    for _, g in ipairs(groups) do
      local pos, at, nr = g[1], g[2], g[3]
      for r = 0, nr - 1 do
        for s = tonumber(ARGV[at + 2 * r]), tonumber(ARGV[at + 2 * r + 1]) do
          if f and pos == f then
            dels[#dels + 1] = 's' .. s
            if #dels == 500 then dels = flush('HDEL', key, dels) end
          else
            sets[#sets + 1] = 's' .. s
            sets[#sets + 1] = pos
            if #sets == 1000 then sets = flush('HSET', key, sets) end
          end
        end
      end
    end
    flush('HDEL', key, dels)
    flush('HSET', key, sets)
  end
end
return 0
`

// migrationServers returns, at data format 3, m's source and target groups in st (the run's: a
// cancelled migration runs back) and the databases either master holds keys in besides the
// marks, read now (INFO keyspace, usedDatabases); below it, nothing.
func (r *Replicator) migrationServers(ctx context.Context, st *fsm.State, m *fsm.Migration) (src, dst *fsm.Group, dbs []int, err error) {
	d := st.DCs[m.DC]
	if d == nil {
		// The empty state of a node that stopped acting (format 1, no DC): taking it for a
		// cluster below group logs would skip the handoff or the positions' copy and let the
		// freeze ack or the switch go ahead without them.
		return nil, nil, nil, fmt.Errorf("xdc: migration %d: DC %s is not in the state this node acts on", m.ID, m.DC)
	}
	if st.Format() < LogDataFormat {
		return nil, nil, nil, nil
	}
	if d.Groups[m.Source()] == nil || d.Groups[m.Target()] == nil {
		return nil, nil, nil, fmt.Errorf("xdc: migration %d: its groups are gone", m.ID)
	}
	src, dst = d.Groups[m.Source()], d.Groups[m.Target()]
	// The source's databases and the target's: a database where the source holds only the
	// marks but the target has inboxes still needs Moved's "0-0" for the slots.
	for _, g := range []*fsm.Group{src, dst} {
		used, err := r.usedDatabases(ctx, serverOf(g))
		if err != nil {
			return nil, nil, nil, fmt.Errorf("xdc: databases of group %s: %w", g.ID, err)
		}
		for _, db := range used {
			if !slices.Contains(dbs, db) {
				dbs = append(dbs, db)
			}
		}
	}
	slices.Sort(dbs)
	return src, dst, dbs, nil
}
