package xdc

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
)

// Tombstones (docs/convergence.md, "Tombstones"): the stamp of a key that is gone (deleted,
// or expired) stays in the slot's metadata hash, so that an older write arriving late from
// another DC does not bring the key back. It is collected once this DC applied, from every
// other DC, an entry of the slot written after the tombstone (plus TombstoneMargin for the clocks):
// an entry's outbox id is taken after its stamp, from the same clock, so every older write of
// that DC is then applied. The collector walks the slots this node ships, a few per tick, with
// an HSCAN cursor per slot: its work per tick does not grow with the number of slots.
//
// A tombstone of a key that kept counters (a c: vector, or element states with counters) waits
// CounterMargin instead: each DC collects on its own schedule and restarts the key's counts
// from nothing, so a write of the key landing between two DCs' collections is counted against
// different vectors there (docs/convergence.md, "What is not built yet"). The long margin keeps
// that window away from a counter deleted and soon written again.

// gcSlotsPerTick bounds the slots the collector looks at per tick.
const gcSlotsPerTick = 64

// elemStatesLua defines elemStates for scripts that have stampLua and elemLua (and meta set).
const elemStatesLua = `
-- elemStates reads k's element states once: the newest stamp they record, in ms (an add, the
-- add a remove had seen, a remove's own; 0 without states), and whether any holds counters.
-- More than 128 states are not unpacked: no stamp, and taken to hold counters, so that such a
-- key waits the counter margin. A tombstone's element states go with it, so they must be older
-- than every other DC's position too: a remove's record of an add still on its way here is
-- what keeps that add out.
local function elemStates(k)
  local ek = ekey(k)
  local n = redis.call('HLEN', ek)
  if n == 0 then return 0, false end
  if n > 128 then return nil, true end
  local top, counters = 0, false
  local all = redis.call('HVALS', ek)
  for i = 1, #all do
    local st = cmsgpack.unpack(all[i])
    if st.c then counters = true end
    for _, a in pairs(st.a or {}) do if a[1] > top then top = a[1] end end
    for _, x in pairs(st.r or {}) do if x > top then top = x end end
    for _, x in pairs(st.rc or {}) do if x[1] > top then top = x[1] end end
  end
  return top / 4096, counters
end
`

// gcLua collects tombstones of one slot. KEYS: metadata hash, inbox, pull hash (a tombstone
// of a key with a pull record waits: the pull compares the pulled state's stamp with the
// key's, and without the tombstone an older state would come back). ARGV: HSCAN cursor,
// count, margin in ms, counter margin in ms, then the other DCs' names; or, at data format 3
// (group logs), "log", the slot, and the inbox keys of every group log of the other DCs
// (undeclared, as APPLY's: they belong to the server, not to the slot), whose position for
// the slot (its field s<slot>, else f) is each log's horizon. It answers {next cursor,
// tombstones seen, collected, 1 when a tombstone waited for a pull}.
const gcLua = `
local meta, inbox, pull = KEYS[1], KEYS[2], KEYS[3]
` + stampLua + elemLua + `
` + elemStatesLua + `
local horizon = nil
local function lower(id)
  local ms = id and tonumber(string.match(id, '^(%d+)')) or 0
  if horizon == nil or ms < horizon then horizon = ms end
end
if ARGV[5] == 'log' then
  local field = 's' .. ARGV[6]
  for i = 7, #ARGV do
    local p = redis.call('HMGET', ARGV[i], field, 'f')
    lower(p[1] or p[2])
  end
else
  for i = 5, #ARGV do lower(redis.call('HGET', inbox, ARGV[i])) end
end
horizon = horizon or 0
local margin, cmargin = tonumber(ARGV[3]), tonumber(ARGV[4])
local r = redis.call('HSCAN', meta, ARGV[1], 'COUNT', ARGV[2])
local seen, gone, pending = 0, 0, 0
local f = r[2]
for i = 1, #f, 2 do
  local k = string.match(f[i], '^s:(.*)$')
  local absent = k and redis.call('EXISTS', k) == 0
  if absent and pull and redis.call('HEXISTS', pull, k) == 1 then
    pending = 1
    absent = false
  end
  if absent then
    seen = seen + 1
    local ms = tsOf(f[i + 1]) / 4096
    if ms < horizon - margin then
      -- A key that kept counters (a c: vector, or element states with counters) waits the
      -- counter margin.
      local newest, counters = elemStates(k)
      ms = math.max(ms, newest or 0)
      if ms < horizon - margin and (ms < horizon - cmargin or
          (not counters and redis.call('HEXISTS', meta, 'c:' .. k) == 0)) then
        redis.call('HDEL', meta, f[i], 'c:' .. k, 'v:' .. k, 'b:' .. k)
        redis.call('DEL', ekey(k))
        gone = gone + 1
      end
    end
  end
end
return {r[1], seen, gone, pending}
`

var gcScript = redis.NewScript(gcLua)

// collector is the tombstone collector's state: where each slot's scan is, and the
// tombstones each slot held at its last full pass.
type collector struct {
	mu      sync.Mutex
	next    int // the next position in the node's slot list
	cursors map[dbSlot]string
	count   map[dbSlot]int64 // tombstones seen in the slot's current pass
	last    map[dbSlot]int64 // tombstones of the slot's last full pass
	total   int64            // sum of last
	removed int64
	hot     map[dbSlot]bool // slots that shipped or received entries since their last look
}

// maxHot bounds the slots waiting for an early look; past it they wait for their turn.
const maxHot = 4096

// markHot asks for an early look at a slot that shipped or received entries: deletes make
// tombstones there, and other DCs' entries advance the slot's horizon.
func (c *collector) markHot(db, slot int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.markHotLocked(db, slot)
}

// markHotLocked is markHot with c.mu held.
func (c *collector) markHotLocked(db, slot int) {
	if c.hot == nil {
		c.hot = map[dbSlot]bool{}
	}
	if len(c.hot) < maxHot {
		c.hot[dbSlot{db, slot}] = true
	}
}

// markLogHot asks for an early look at the slots of a group log's entries with effects, shipped
// or received (data format 3). Any node ships or receives a log's entries for any slot, so
// the collector looks at such a slot wherever it is marked, not only on its owner (collect).
func (r *Replicator) markLogHot(db int, entries []LogEntry) {
	c := &r.gc
	c.mu.Lock() // once per range: this runs for every range shipped or received
	defer c.mu.Unlock()
	for _, e := range entries {
		if len(e.Cmds) > 0 {
			c.markHotLocked(db, e.Slot)
		}
	}
}

// Tombstones returns the tombstones counted at the collector's last pass over each slot, and
// how many it collected since the node started.
func (r *Replicator) Tombstones() (alive, collected int64) {
	r.gc.mu.Lock()
	defer r.gc.mu.Unlock()
	return r.gc.total, r.gc.removed
}

// collect runs one tick of the collector: up to gcSlotsPerTick/2 slots that shipped or
// received entries lately, then the next slots this node ships in turn, gcSlotsPerTick in all.
func (r *Replicator) collect(ctx context.Context) {
	st := r.cfg.Cluster.State()
	own := st.DCs[r.cfg.Cluster.DC()]
	others := r.destinations(st)
	if own == nil || len(others) == 0 {
		return
	}
	ring, me := r.liveRing(st, own.Name), r.cfg.Cluster.ID()
	var mine []int
	for slot, gid := range own.Slots {
		if gid != "" && fsm.OwnerIn(ring, slot) == me {
			mine = append(mine, slot)
		}
	}
	logs := st.Format() >= LogDataFormat // hot slots then come from any slot's entries (markLogHot)
	if len(mine) == 0 && !logs {
		return
	}
	c := &r.gc
	c.mu.Lock()
	if c.cursors == nil {
		c.cursors, c.count, c.last = map[dbSlot]string{}, map[dbSlot]int64{}, map[dbSlot]int64{}
	}
	var hot []dbSlot
	for k := range c.hot {
		if len(hot) == gcSlotsPerTick/2 {
			break
		}
		hot = append(hot, k)
		delete(c.hot, k)
	}
	n, start := min(gcSlotsPerTick-len(hot), len(mine)), 0
	if len(mine) > 0 {
		start = c.next % len(mine)
	}
	c.next = start + n
	c.mu.Unlock()
	for _, k := range hot {
		if gid := own.Slots[k.slot]; gid != "" && (logs || fsm.OwnerIn(ring, k.slot) == me) {
			r.collectSlot(ctx, st, k.db, k.slot, others)
		}
	}
	for i := 0; i < n; i++ {
		slot := mine[(start+i)%len(mine)]
		g := own.Groups[own.Slots[slot]]
		for _, db := range r.databases(g.Master) {
			r.collectSlot(ctx, st, db, slot, others)
		}
	}
}

// collectSlot collects the tombstones of slot in db that every DC of others has applied past,
// by the positions of st's format (the state collect read: one state for the whole tick).
func (r *Replicator) collectSlot(ctx context.Context, st *fsm.State, db, slot int, others []string) {
	c, k := &r.gc, dbSlot{db, slot}
	c.mu.Lock()
	cursor := c.cursors[k]
	c.mu.Unlock()
	if cursor == "" {
		cursor = "0"
	}
	argv := []any{cursor, "500", strconv.FormatInt(r.cfg.TombstoneMargin.Milliseconds(), 10),
		strconv.FormatInt(r.cfg.CounterMargin.Milliseconds(), 10)}
	if st.Format() >= LogDataFormat {
		// Every group log of the other DCs: a DC's writes to the slot come from whichever of
		// its groups serves it there, and a log without an inbox here holds the horizon at 0.
		argv = append(argv, "log", strconv.Itoa(slot))
		for _, o := range others {
			if dc := st.DCs[o]; dc != nil {
				for _, gid := range dc.GroupIDs() {
					argv = append(argv, LogInboxKey(LogID{DC: o, Group: gid}))
				}
			}
		}
	} else {
		for _, o := range others {
			argv = append(argv, o)
		}
	}
	// A key it finds absent may be on the other group of a migration, alive: the script runs
	// only while none moves the slot, or it would take the key's stamp and counts for a
	// tombstone's.
	v, ran, err := r.runOwnedScript(ctx, db, slot, gcScript.Hash(), gcLua, []string{MetaKey(slot), InboxKey(slot), PullKey(slot)}, argv)
	if err != nil || !ran || v.IsError() || len(v.Elems) != 4 {
		return // the next pass tries again
	}
	if v.Elems[3].Int == 1 {
		// A pull record this node may not know of (left by a run before a restart, in a
		// database the start's scan did not see): pull it, so its tombstone can go.
		r.pulls.note(db, slot)
	}
	next := string(v.Elems[0].Str)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count[k] += v.Elems[1].Int
	c.removed += v.Elems[2].Int
	c.cursors[k] = next
	if next == "0" {
		c.total += c.count[k] - c.last[k]
		c.last[k], c.count[k] = c.count[k], 0
	}
}

// runCollector runs the collector every interval until ctx is done.
func (r *Replicator) runCollector(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.collect(ctx)
		}
	}
}
