package xdc

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/migrate"
	"github.com/redraft/redraft/router/resp"
)

// The full copy of a group (data format 3; docs/replication.md, "Full copy of a group"): a
// destination DC whose position a group's log no longer holds (trimmed past it while the DC
// was away, never shipped to a DC added later, or applied from a master that failed over and
// lost it) gets every slot of the group copied, a chunk of slots at a time, each chunk under
// its slots' copy locks on the source (WRITE refuses their writes meanwhile), and then stands
// at the log's entry read before the first chunk. The receiving side reuses the per-slot
// copy's rules (copy.go, replaceSlot): keys newer here kept, own increments merged, own
// entries the source had not applied applied again.

// The peer calls of a group's full copy.
const (
	// RPCLogCopy replaces slots of the receiving DC with a chunk of a group's full copy
	// (LogCopyRequest).
	RPCLogCopy = "xdc-log-copy"
	// RPCLogStart sets where the receiving DC stands in a log after its group's full copy
	// (LogStartRequest).
	RPCLogStart = "xdc-log-start"
)

// logCopyChunk bounds the slots one chunk of a group's copy locks, reads and sends (a
// variable for tests).
var logCopyChunk = 512

// LogCopyRequest is a chunk of the full copy of source log Log's group in database DB.
type LogCopyRequest struct {
	Log LogID `json:"log"`
	DB  int   `json:"db"`
	// Flushes is how many flushes the source's state counted done before it read the keys.
	Flushes uint64 `json:"flushes,omitempty"`
	// Unchecked says the source group's master had not been checked toward the destination
	// when the copy began (checked.go): both copies crossing come from masters that changed.
	// Loss says the copy follows writes the destination applied that the source's master lost.
	Unchecked bool          `json:"unchecked,omitempty"`
	Loss      bool          `json:"loss,omitempty"`
	Slots     []LogCopySlot `json:"slots"`
}

// LogCopySlot is one slot of a LogCopyRequest, read under its copy lock.
type LogCopySlot struct {
	Slot int `json:"slot"`
	// Last is the log's last entry when the slot was read: every entry of the slot through it
	// is in the copy.
	Last string `json:"last"`
	// Positions are the source group's positions for the slot in every other DC's log it
	// applies (LogID.String() to id): the destination's positions become them.
	Positions map[string]string `json:"positions,omitempty"`
	// Outbox is the last id of the slot's outbox from before group logs ("" for none): the
	// destination stands there too, so the per-slot loops ship nothing the copy holds.
	Outbox string            `json:"outbox,omitempty"`
	Keys   []CopyKey         `json:"keys"`
	Stamps map[string]string `json:"stamps,omitempty"`
	// Pulls are the source's pull records of the slot (key to the stamp of the newer state
	// and its DC): the destination pulls those states too.
	Pulls map[string]string `json:"pulls,omitempty"`
}

// LogStartRequest tells the receiving DC that it stands at At in source log Log, in DB, once
// every slot of the log's group was copied to it.
type LogStartRequest struct {
	Log LogID  `json:"log"`
	DB  int    `json:"db"`
	At  string `json:"at"`
	// NotAfter (unix ms, 0: none) is when the copy's lock may lapse at the earliest, less a
	// margin: a start that reaches the destination later is refused, since another node may
	// be copying the group by then, and a late start would lower where the destination stands
	// below what that copy's shipping applied since (entries applied twice).
	NotAfter int64 `json:"not_after,omitempty"`
}

// copyGroup copies the shipper's group in full to its destination and returns the position
// it ships on from; loss says the check before it found writes the destination applied that
// this master lost. It stops, to be tried again, when a migration or a flush of this DC
// begins, or a slot is locked by another copy.
func (s *logShipper) copyGroup(ctx context.Context, loss bool) (string, error) {
	g, r := s.g, s.g.r
	if loss { // a copy from the destination waits for this one (checked.go)
		if err := g.c.Set(ctx, checkedKey(s.dest), lossRecord, 0).Err(); err != nil {
			r.log.Debug("group log: record the loss", "log", g.log.String(), "to", s.dest, "err", err)
		}
	}
	own := r.cfg.Cluster.DC()
	st0 := r.cfg.Cluster.State()
	if why := groupUncopyable(st0, st0, own, g.log.Group); why != "" {
		return "", errors.New(why)
	}
	var slots []int
	for slot, gid := range st0.DCs[own].Slots {
		if gid == g.log.Group {
			slots = append(slots, slot)
		}
	}
	hold, unlock, err := s.lockGroupCopy(ctx)
	if err != nil {
		return "", err
	}
	defer unlock()
	checked, err := checkedHere(ctx, g.c, s.dest)
	if err != nil {
		return "", fmt.Errorf("whether this master was checked toward %s: %w", s.dest, err)
	}
	unchecked := checked != checkedNow
	// A copy tried again, or by another node (which has no memo of the loss), is still the
	// loss's while the record says so: it keeps its priority (checked.go).
	loss = loss || checked == checkedLoss
	// The log's last entry now: every chunk's Last is at or after it, and the destination
	// stands there once every slot is copied. Until it answers from there the shipper keeps no
	// answer of it (acked), so no trim passes it.
	tail, err := g.c.XRevRangeN(ctx, LogKey, "+", "-", 1).Result()
	if err != nil {
		return "", fmt.Errorf("the log's last entry: %w", err)
	}
	if len(tail) == 0 {
		return "", errors.New("the log is empty")
	}
	at := tail[0].ID
	r.log.Info("group log: copying the group in full", "log", g.log.String(), "to", s.dest, "slots", len(slots), "at", at)
	keys := 0
	for lo := 0; lo < len(slots); lo += logCopyChunk {
		if err := hold(ctx); err != nil {
			return "", err
		}
		// Before the chunk takes its locks on the master: a migration begun meanwhile moves
		// the slots' locks to their target, and one taken on the source after that would be
		// moved over a copy's lock there (the copy starts over once it ends).
		if why := groupUncopyable(st0, r.cfg.Cluster.State(), own, g.log.Group); why != "" {
			return "", errors.New(why)
		}
		chunk := slots[lo:min(lo+logCopyChunk, len(slots))]
		// A chunk is tried again a few times before the copy starts over: a copy into the
		// destination from another DC locks the same slots for a moment.
		var n int
		var err error
		for try, wait := 0, 100*time.Millisecond; ; try, wait = try+1, min(2*wait, time.Second) {
			n, err = s.copyChunk(ctx, st0, chunk, unchecked, loss)
			// Refused until the destination's own shipper checked its new master: the copy
			// stops, and the shipper tries again after its pause (checked.go).
			if err == nil || try == 9 || strings.Contains(err.Error(), uncheckedRefusal) || !sleep(ctx, wait) {
				break
			}
			r.log.Debug("group log: a chunk of the group's copy is tried again", "log", g.log.String(), "to", s.dest, "err", err)
		}
		if err != nil {
			return "", fmt.Errorf("copy slots %d-%d: %w", chunk[0], chunk[len(chunk)-1], err)
		}
		keys += n
	}
	// The lock must still be this copy's when the start lands: renewed now, it lasts
	// copyLockTTL, and the start is refused after half of that (a slow chunk or a slow
	// destination may have outlived the lock, and another node may copy the group now).
	if err := hold(ctx); err != nil {
		return "", err
	}
	req := LogStartRequest{Log: g.log, DB: g.db, At: at, NotAfter: time.Now().Add(copyLockTTL / 2).UnixMilli()}
	sctx, cancel := context.WithTimeout(ctx, copyLockTTL/2)
	err = r.callDC(sctx, r.cfg.Cluster.State(), s.dest, "", RPCLogStart, req, nil)
	cancel()
	if err != nil {
		return "", fmt.Errorf("start from %s: %w", at, err)
	}
	// The copy holds whatever the slots' outboxes held (logdrain.go).
	if err := g.c.Set(ctx, drainedKey(s.dest), "1", 0).Err(); err != nil {
		return "", err
	}
	r.counter(s.dest).copied.Add(int64(len(slots)))
	r.log.Info("group log: group copied in full", "log", g.log.String(), "to", s.dest, "slots", len(slots), "keys", keys, "at", at)
	return at, nil
}

// groupCopyKey is, on a group's master, the lock that one node holds while it copies the
// group in full to destination dest (copyGroup). Two nodes ship a log for a while when the
// ring's owner of the group's shipping slot moves, and each may find the destination behind the
// log: their copies' chunks interleaved, each copy's start (RPCLogStart) dropped the slot
// positions below its own start, which a chunk of the other copy, read earlier, had set, and
// a start that came last lowered where the destination stood below what the other's
// shipping had applied since (increments applied twice). The lock makes it one copy at a
// time; the other node waits, then asks the destination where it stands, and ships from
// there. It starts with LogKey: migrations do not move it.
func groupCopyKey(dest string) string { return LogKey + ":copying:" + dest }

// renewLua extends a lock's time to live (ARGV[2] ms) if it still holds the caller's value
// ARGV[1]; it answers 0 when the lock is another's or gone.
const renewLua = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`

// errGroupCopying says that another node is copying the group to the destination.
var errGroupCopying = errors.New("another node is copying the group to this destination")

// lockGroupCopy takes the group's copy lock toward the shipper's destination (groupCopyKey,
// copyLockTTL: how long a node that stopped mid-copy holds it). It returns hold, which renews
// the lock before a chunk and fails once it expired (another node may copy then), and the
// lock's release.
func (s *logShipper) lockGroupCopy(ctx context.Context) (hold func(context.Context) error, unlock func(), err error) {
	c, key := s.g.c, groupCopyKey(s.dest)
	token := lockToken("group", s.g.r.cfg.Cluster.ID())
	ok, err := c.SetNX(ctx, key, token, copyLockTTL).Result()
	if err != nil {
		return nil, nil, fmt.Errorf("the group's copy lock: %w", err)
	}
	if !ok {
		return nil, nil, errGroupCopying
	}
	hold = func(ctx context.Context) error {
		n, err := c.Eval(ctx, renewLua, []string{key}, token, copyLockTTL.Milliseconds()).Int()
		if err != nil {
			return fmt.Errorf("renew the group's copy lock: %w", err)
		}
		if n == 0 {
			return errors.New("the group's copy lock expired during the copy")
		}
		return nil
	}
	unlock = func() { _ = c.Eval(context.WithoutCancel(ctx), unlockLua, []string{key}, token).Err() }
	return hold, unlock, nil
}

// copyChunk locks slots on the source, reads them and has the destination replace its copy
// with them; it returns how many keys it sent.
func (s *logShipper) copyChunk(ctx context.Context, st0 *fsm.State, slots []int, unchecked, loss bool) (int, error) {
	g, r := s.g, s.g.r
	if st := r.cfg.Cluster.State(); st.Flush.Active() {
		return 0, fmt.Errorf("%s is in progress", st.Flush)
	}
	token := lockToken("out", r.cfg.Cluster.ID())
	var locked []int
	defer func() { r.unlockCopies(context.WithoutCancel(ctx), g.c, g.db, locked, token) }()
	want := map[int]bool{}
	// NX: a copy into this DC, or another copy out of it, holds a slot meanwhile. One round
	// trip for the chunk's locks.
	lockPipe := g.c.Pipeline()
	sets := make([]*redis.BoolCmd, len(slots))
	for i, slot := range slots {
		sets[i] = lockPipe.SetNX(ctx, CopyLockKey(slot), token, copyLockTTL)
	}
	if _, err := lockPipe.Exec(ctx); err != nil {
		for i, slot := range slots { // release what the round took before it failed
			if sets[i].Err() == nil && sets[i].Val() {
				locked = append(locked, slot)
			}
		}
		return 0, err
	}
	busy := -1
	for i, slot := range slots {
		if sets[i].Val() {
			locked = append(locked, slot)
			want[slot] = true
		} else {
			busy = slot
		}
	}
	if busy >= 0 {
		return 0, fmt.Errorf("slot %d is being copied already", busy)
	}
	// The slots' keys, listed after the locks (no write adds one meanwhile), and the inboxes
	// of the logs this group applies.
	names := map[int][]string{}
	var inboxes []string
	if err := scanEach(ctx, g.c, func(k string) {
		if strings.HasPrefix(k, logInboxPrefix) {
			inboxes = append(inboxes, k)
		} else if slot := migrate.SlotString(k); want[slot] && copiedWithSlot(k) {
			names[slot] = append(names[slot], k)
		}
	}); err != nil {
		return 0, err
	}
	req := LogCopyRequest{Log: g.log, DB: g.db, Flushes: st0.Flushes, Unchecked: unchecked, Loss: loss}
	pipe := g.c.Pipeline()
	type read struct {
		keys  []string
		dumps []*redis.StringCmd
		exps  []*redis.Cmd
		meta  *redis.MapStringStringCmd
		pulls *redis.MapStringStringCmd
		ob    *redis.XMessageSliceCmd
	}
	reads := make([]read, len(slots))
	for i, slot := range slots {
		rd := &reads[i]
		rd.keys = append(names[slot], MetaKey(slot)) // the metadata goes with the keys
		for _, k := range rd.keys {
			rd.dumps = append(rd.dumps, pipe.Dump(ctx, k))
			rd.exps = append(rd.exps, pipe.Do(ctx, "PEXPIRETIME", k))
		}
		rd.meta = pipe.HGetAll(ctx, MetaKey(slot))
		rd.pulls = pipe.HGetAll(ctx, PullKey(slot))
		rd.ob = pipe.XRevRangeN(ctx, OutboxKey(slot), "+", "-", 1)
	}
	ins := make([]*redis.MapStringStringCmd, len(inboxes))
	for i, in := range inboxes {
		ins[i] = pipe.HGetAll(ctx, in)
	}
	last := pipe.XRevRangeN(ctx, LogKey, "+", "-", 1)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("read: %w", err)
	}
	// The reads are a snapshot only if no migration of this DC moved keys meanwhile (copy.go,
	// copySlot).
	if why := groupUncopyable(st0, r.cfg.Cluster.State(), r.cfg.Cluster.DC(), g.log.Group); why != "" {
		return 0, fmt.Errorf("copy read discarded: %s", why)
	}
	tail := last.Val()
	if len(tail) == 0 {
		return 0, errors.New("the log is empty")
	}
	positions := make([]map[string]string, len(inboxes)) // per inbox, its fields
	for i, in := range ins {
		if positions[i] = in.Val(); in.Err() != nil {
			return 0, fmt.Errorf("read %s: %w", inboxes[i], in.Err())
		}
	}
	sent := 0
	for i, slot := range slots {
		rd := &reads[i]
		cs := LogCopySlot{Slot: slot, Last: tail[0].ID, Positions: map[string]string{}, Keys: []CopyKey{}}
		for j, in := range inboxes {
			p := positions[j]["s"+strconv.Itoa(slot)]
			if p == "" {
				p = positions[j]["f"]
			}
			cs.Positions[strings.TrimPrefix(in, logInboxPrefix)] = p
		}
		if m := rd.ob.Val(); len(m) > 0 {
			cs.Outbox = m[0].ID
		}
		m, err := rd.meta.Result()
		if err != nil {
			return 0, fmt.Errorf("metadata of slot %d: %w", slot, err)
		}
		cs.Stamps = stampsOf(m)
		if p, err := rd.pulls.Result(); err != nil {
			return 0, fmt.Errorf("pull records of slot %d: %w", slot, err)
		} else if len(p) > 0 {
			cs.Pulls = p
		}
		for j, k := range rd.keys {
			d, err := rd.dumps[j].Result()
			if errors.Is(err, redis.Nil) {
				continue // expired or deleted before the lock
			}
			if err != nil {
				return 0, fmt.Errorf("dump %q: %w", k, err)
			}
			ck := CopyKey{Key: k, Dump: []byte(d)}
			if ms, _ := rd.exps[j].Int64(); ms > 0 {
				ck.Expire = ms
			}
			cs.Keys = append(cs.Keys, ck)
		}
		sent += len(cs.Keys)
		req.Slots = append(req.Slots, cs)
	}
	if err := r.callDC(ctx, r.cfg.Cluster.State(), s.dest, "", RPCLogCopy, req, nil); err != nil {
		return 0, err
	}
	return sent, nil
}

// perSlot runs cmd(slot) for every slot of slots on the group serving it here, one pipelined
// round per group, and returns each slot's reply; a reply that is an error is an error.
func (r *Replicator) perSlot(ctx context.Context, db int, slots []int, cmd func(slot int) []string) (map[int]resp.Value, error) {
	sent := make(map[int][]string, len(slots)) // by position in slots (build runs once per group, in turn)
	parts, rest, err := r.cfg.Local.InternalOwned(ctx, db, slots, func(pos, _ []int) [][]string {
		cmds := make([][]string, len(pos))
		for i, p := range pos {
			cmds[i] = cmd(slots[p])
			sent[p] = cmds[i]
		}
		return cmds
	})
	if err == nil {
		err = ownedErr(parts)
	}
	if err != nil {
		return nil, err
	}
	if len(rest) > 0 {
		return nil, fmt.Errorf("xdc: slot %d has no group here now (a migration or failover); try again", slots[rest[0]])
	}
	out := make(map[int]resp.Value, len(slots))
	for _, part := range parts {
		for i, p := range part.Pos {
			args := sent[p]
			v, err := parseReply(args, part.Replies[i])
			if err == nil && v.IsError() {
				err = fmt.Errorf("%s: %s", args[0], v.Str)
			}
			if err != nil {
				return nil, fmt.Errorf("slot %d: %w", slots[p], err)
			}
			out[slots[p]] = v
		}
	}
	return out, nil
}

// groupUncopyable says why group gid of DC dc cannot be copied now ("" when it can): a
// migration of the DC is active (its keys may be on two groups) or began since st0, when the
// copy started.
func groupUncopyable(st0, st *fsm.State, dc, gid string) string {
	if st.NextMigrationID != st0.NextMigrationID {
		return "a migration began during the copy"
	}
	if st.DCs[dc] == nil || st.DCs[dc].Groups[gid] == nil {
		return "group " + gid + " is not in DC " + dc
	}
	if m := activeMigration(st, dc); m != 0 {
		return fmt.Sprintf("migration %d of this DC is active", m)
	}
	return ""
}

// scanEach calls each for every key of c's database, by one SCAN.
func scanEach(ctx context.Context, c *redis.Client, each func(key string)) error {
	var cursor uint64
	for {
		batch, next, err := c.Scan(ctx, cursor, "", 1000).Result()
		if err != nil {
			return fmt.Errorf("scan: %w", err)
		}
		for _, k := range batch {
			each(k)
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// HandleLogCopy replaces the slots of req, a chunk of a source group's full copy, in this DC:
// per slot under its copy lock, as HandleCopy does one slot, with this DC's positions in the
// source's log and in the third DCs' logs set to the source's for the slot, and this DC's
// own entries (from its own groups' logs) that the source had not applied applied again.
func (r *Replicator) HandleLogCopy(ctx context.Context, req LogCopyRequest) (struct{}, error) {
	if err := r.checkSource(req.Log.DC); err != nil {
		return struct{}{}, err
	}
	st := r.cfg.Cluster.State()
	if st.Format() < LogDataFormat {
		return struct{}{}, fmt.Errorf("xdc: the cluster's data format is %d; group logs need %d", st.Format(), LogDataFormat)
	}
	own := r.cfg.Cluster.DC()
	dc := st.DCs[own]
	if dc == nil {
		return struct{}{}, fmt.Errorf("xdc: DC %s is not in the cluster state", own)
	}
	if len(req.Slots) == 0 {
		return struct{}{}, errors.New("xdc: a copy of a group's log without slots")
	}
	if err := checkDB(req.DB); err != nil {
		return struct{}{}, err
	}
	for _, cs := range req.Slots {
		if cs.Slot < 0 || cs.Slot >= len(dc.Slots) || dc.Slots[cs.Slot] == "" {
			return struct{}{}, fmt.Errorf("xdc: slot %d is not served in DC %s", cs.Slot, own)
		}
		if badStreamID(cs.Last) {
			return struct{}{}, fmt.Errorf("xdc: bad log id %q", cs.Last)
		}
		// The positions become inbox fields that every later APPLY of those logs compares
		// (cmpid), and their names inbox keys: an id that is no stream id stopped those logs
		// here for good, a name could be any key under the inboxes' prefix.
		if cs.Outbox != "" && badStreamID(cs.Outbox) {
			return struct{}{}, fmt.Errorf("xdc: slot %d: bad outbox id %q", cs.Slot, cs.Outbox)
		}
		for name, p := range cs.Positions {
			dcName, group, ok := strings.Cut(name, ":")
			if !ok || dcName == "" || group == "" || strings.Contains(group, ":") || (p != "" && badStreamID(p)) {
				return struct{}{}, fmt.Errorf("xdc: slot %d: bad position %q of log %q", cs.Slot, p, name)
			}
		}
	}
	// A migration here copies positions between groups (migration.go, Moved): the copy waits.
	if groups := r.representatives(st); groups.migrating {
		return struct{}{}, errors.New("xdc: a slot migration of this DC is active; try again")
	}
	if err := r.refuseUnchecked(ctx, dc, req); err != nil {
		return struct{}{}, err
	}
	if err := r.enterCopy(req.Flushes); err != nil {
		return struct{}{}, err
	}
	defer r.leaveCopy()
	// Once begun, a chunk runs to its end even if the source stops waiting (HandleCopy).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), copyLockTTL)
	defer cancel()
	db := req.DB
	token := lockToken("in", req.Log.DC)
	slots := make([]int, len(req.Slots))
	for i, cs := range req.Slots {
		slots[i] = cs.Slot
	}
	// The chunk's slots are locked, read and released a round trip per group each, not per
	// slot: a group's copy is 16,384 slots, most of them empty in a sparse keyspace.
	var locked []int
	defer func() {
		if len(locked) > 0 {
			uctx := context.WithoutCancel(ctx)
			if _, err := r.perSlot(uctx, db, locked, func(slot int) []string {
				return []string{"EVAL", unlockLua, "1", CopyLockKey(slot), token}
			}); err != nil {
				// A group unreachable, or a migration begun meanwhile (perSlot runs only
				// where none is): slot by slot through the router, which finds a lock that
				// moved with its slot.
				for _, slot := range locked {
					lock := CopyLockKey(slot)
					_, _ = r.internal(uctx, db, slot, []string{lock}, []string{"EVAL", unlockLua, "1", lock, token})
				}
			}
		}
	}()
	got, err := r.perSlot(ctx, db, slots, func(slot int) []string {
		return []string{"SET", CopyLockKey(slot), token, "NX", "PX", strconv.FormatInt(copyLockTTL.Milliseconds(), 10)}
	})
	if err != nil {
		locked = slots // the groups that answered hold their locks: release them (by token)
		return struct{}{}, err
	}
	busy := -1
	for _, slot := range slots {
		if got[slot].IsNull() {
			busy = slot
		} else {
			locked = append(locked, slot)
		}
	}
	if busy >= 0 {
		return struct{}{}, fmt.Errorf("xdc: slot %d of %s is being copied already; try again", busy, own)
	}
	existing, err := r.chunkKeys(ctx, st, db, req.Slots)
	if err != nil {
		return struct{}{}, err
	}
	mine, err := r.ownLogEntries(ctx, st, db, req)
	if err != nil {
		return struct{}{}, err
	}
	metas, err := r.perSlot(ctx, db, slots, func(slot int) []string { return []string{"HGETALL", MetaKey(slot)} })
	if err != nil {
		return struct{}{}, err
	}
	srcLog := req.Log.String()
	// inboxArgs are the HSETs that make this DC stand where the source stood for cs's slot
	// (in the source's log, in third DCs' logs and in the slot's outbox from before the logs).
	// The inboxes belong to the group's master, not to the slot: set there directly (no
	// migration of this DC runs, checked above).
	inboxArgs := func(cs LogCopySlot) [][]any {
		field := "s" + strconv.Itoa(cs.Slot)
		out := [][]any{{"HSET", LogInboxKey(req.Log), field, cs.Last}}
		for name, p := range cs.Positions {
			if name == srcLog || strings.HasPrefix(name, own+":") {
				continue // the source's own logs come through this copy; this DC's own are not applied here
			}
			if p == "" {
				p = "0-0" // the source applied nothing of that log: nor does this DC
			}
			out = append(out, []any{"HSET", logInboxPrefix + name, field, p})
		}
		if cs.Outbox != "" {
			out = append(out, []any{"HSET", InboxKey(cs.Slot), req.Log.DC, cs.Outbox})
		}
		return out
	}
	setInboxes := func(master *redis.Client, css ...LogCopySlot) error {
		pipe := master.Pipeline()
		for _, cs := range css {
			for _, args := range inboxArgs(cs) {
				pipe.Do(ctx, args...)
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("set the positions of slots %d-%d: %w", css[0].Slot, css[len(css)-1].Slot, err)
		}
		return nil
	}
	// An empty slot (no key on either side, no metadata here, none in the copy, no own entry
	// to apply again) needs only its pull records dropped and its positions set, which go in
	// one round per group; the others are replaced one by one (replaceSlot).
	var empty []int
	emptyOf := map[string][]LogCopySlot{} // by group
	for _, cs := range req.Slots {
		gid := dc.Slots[cs.Slot]
		if len(existing[cs.Slot]) == 0 && len(cs.Keys) == 0 && len(cs.Stamps) == 0 && len(cs.Pulls) == 0 && len(mine[cs.Slot]) == 0 && len(metas[cs.Slot].Elems) == 0 {
			empty = append(empty, cs.Slot)
			emptyOf[gid] = append(emptyOf[gid], cs)
			continue
		}
		if err := movedSince(r.cfg.Cluster.State(), own, dc, cs.Slot); err != nil {
			return struct{}{}, err
		}
		master := r.client(serverOf(dc.Groups[gid]), db)
		setInbox := func() error { // after the slot's replace, which takes a while: check again
			if err := movedSince(r.cfg.Cluster.State(), own, dc, cs.Slot); err != nil {
				return err
			}
			return setInboxes(master, cs)
		}
		c := slotContent{keys: cs.Keys, stamps: cs.Stamps, pulls: cs.Pulls, source: req.Log.DC, horizon: logCopyHorizon(st, req.Log.DC, cs)}
		if err := r.replaceSlot(ctx, db, cs.Slot, token, existing[cs.Slot], c, mine[cs.Slot], setInbox); err != nil {
			return struct{}{}, fmt.Errorf("slot %d: %w", cs.Slot, err)
		}
	}
	if len(empty) > 0 {
		if _, err := r.perSlot(ctx, db, empty, func(slot int) []string { return []string{"DEL", PullKey(slot)} }); err != nil {
			return struct{}{}, err
		}
		cur := r.cfg.Cluster.State()
		for _, slot := range empty {
			if err := movedSince(cur, own, dc, slot); err != nil {
				return struct{}{}, err
			}
		}
		for gid, css := range emptyOf {
			if err := setInboxes(r.client(serverOf(dc.Groups[gid]), db), css...); err != nil {
				return struct{}{}, err
			}
		}
	}
	r.log.Debug("slots replaced by a group's full copy", "log", srcLog, "db", db, "slots", len(req.Slots),
		"first", req.Slots[0].Slot, "last", req.Slots[len(req.Slots)-1].Slot)
	return struct{}{}, nil
}

// movedSince reports, as an error to try the copy again on, a migration of DC own that st has
// active, or slot served by another group in st than in dc (the DC as the copy began): a
// migration begun during a group copy's chunk moves keys and positions under it (it sets the
// positions on the masters directly), and one may even have ended already. The source copies
// again, which waits for a migration's end.
func movedSince(st *fsm.State, own string, dc *fsm.DC, slot int) error {
	if m := activeMigration(st, own); m != 0 {
		return fmt.Errorf("xdc: migration %d of this DC began during the copy; try again after it", m)
	}
	if now := st.DCs[own]; now == nil || now.Slots[slot] != dc.Slots[slot] {
		return fmt.Errorf("xdc: slot %d moved to another group during the copy; try again", slot)
	}
	return nil
}

// chunkKeys lists, per slot of a copy's chunk, this DC's keys that the copy replaces, by one
// scan of each group serving any of them.
func (r *Replicator) chunkKeys(ctx context.Context, st *fsm.State, db int, slots []LogCopySlot) (map[int][]string, error) {
	dc := st.DCs[r.cfg.Cluster.DC()]
	want, groups := map[int]bool{}, map[string]bool{}
	for _, cs := range slots {
		want[cs.Slot], groups[dc.Slots[cs.Slot]] = true, true
	}
	out := map[int][]string{}
	for gid := range groups {
		g := dc.Groups[gid]
		if g == nil {
			continue
		}
		if err := scanEach(ctx, r.client(serverOf(g), db), func(k string) {
			if slot := migrate.SlotString(k); want[slot] && copiedWithSlot(k) {
				out[slot] = append(out[slot], k)
			}
		}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ownLogEntries returns, per slot of req, this DC's own entries of it that the source had not
// applied: from the log of the group serving the slot here, after the source's position for
// the slot in that log.
func (r *Replicator) ownLogEntries(ctx context.Context, st *fsm.State, db int, req LogCopyRequest) (map[int][]Entry, error) {
	own := r.cfg.Cluster.DC()
	dc := st.DCs[own]
	type groupRead struct {
		via   int // a slot of the group, to route through
		from  string
		slots map[int]string // slot -> the source's position in the group's log
	}
	byGroup := map[string]*groupRead{}
	for _, cs := range req.Slots {
		gid := dc.Slots[cs.Slot]
		p := cs.Positions[LogID{DC: own, Group: gid}.String()]
		gr := byGroup[gid]
		if gr == nil {
			gr = &groupRead{via: cs.Slot, from: p, slots: map[int]string{}}
			byGroup[gid] = gr
		}
		if p == "" || gr.from != "" && CompareIDs(p, gr.from) < 0 {
			gr.from = p
		}
		gr.slots[cs.Slot] = p
	}
	out := map[int][]Entry{}
	for gid, gr := range byGroup {
		master := r.client(serverOf(dc.Groups[gid]), db) // the log belongs to the master
		info, err := master.Do(ctx, "XINFO", "STREAM", LogKey).Result()
		if err != nil && strings.Contains(err.Error(), "no such key") {
			continue // no log here: this DC wrote nothing to the group's slots
		}
		if err != nil {
			return nil, fmt.Errorf("read this DC's log of group %s: %w", gid, err)
		}
		// The log trimmed past the source's position lost none of the slots' entries when
		// the trim followed the source's answers (which cannot pass an entry of a slot locked
		// there), but it did when WRITE's cap cut it: which one, the log cannot tell.
		if trimmed := checkBehind(info, gr.from); trimmed != nil && r.firstTrimWarning(req.Log, gid, db, gr.from) {
			r.log.Warn("a group's full copy may replace writes of this DC that the source never applied, if the log's bound cut them",
				"source", req.Log.String(), "log", LogID{DC: own, Group: gid}.String(), "db", db, "err", trimmed)
		}
		start := "-"
		if gr.from != "" {
			start = "(" + gr.from
		}
		for {
			raw, err := master.Do(ctx, "XRANGE", LogKey, start, "+", "COUNT", 1000).Slice()
			if err != nil {
				return nil, fmt.Errorf("read this DC's log of group %s: %w", gid, err)
			}
			entries, err := parseRange(raw)
			if err != nil {
				return nil, err
			}
			for _, e := range entries {
				if _, _, ok := IsHandoff(e.Cmds); ok {
					continue
				}
				slot := EntrySlot(e)
				if p, ok := gr.slots[slot]; ok && len(e.Cmds) > 0 && (p == "" || CompareIDs(e.ID, p) > 0) {
					out[slot] = append(out[slot], e)
				}
			}
			if len(entries) < 1000 {
				break
			}
			start = "(" + entries[len(entries)-1].ID
		}
	}
	return out, nil
}

// firstTrimWarning reports whether ownLogEntries has not yet warned that group gid's log was
// trimmed past source log src's position from (once per copy: the chunks of one copy share
// the position).
func (r *Replicator) firstTrimWarning(src LogID, gid string, db int, from string) bool {
	prev, loaded := r.trimWarned.Swap(fmt.Sprintf("%s %s %d", src, gid, db), from)
	return !loaded || prev != from
}

// HandleLogStart sets, once a source group was copied here in full, every group of this DC
// that holds slots at req.At in the group's log (LogStartFunc).
func (r *Replicator) HandleLogStart(ctx context.Context, req LogStartRequest) (struct{}, error) {
	if err := r.checkSource(req.Log.DC); err != nil {
		return struct{}{}, err
	}
	if err := checkDB(req.DB); err != nil {
		return struct{}{}, err
	}
	if req.NotAfter > 0 && time.Now().UnixMilli() > req.NotAfter {
		return struct{}{}, fmt.Errorf("xdc: the start of %s's copy at %s came after its lock may have lapsed: the copy starts over", req.Log, req.At)
	}
	st := r.cfg.Cluster.State() // LOG_START refuses a bad id before it changes anything
	groups := r.representatives(st)
	if groups.migrating {
		return struct{}{}, errors.New("xdc: a slot migration of this DC is active; try again")
	}
	dc := st.DCs[r.cfg.Cluster.DC()]
	// The source group's slots: their fields below At were set by another DC's copy since
	// this one's (LOG_START keeps them).
	args := []any{req.At}
	if src := st.DCs[req.Log.DC]; src != nil {
		for _, rg := range src.SlotRanges()[req.Log.Group] {
			args = append(args, rg.From, rg.To)
		}
	}
	for _, slots := range groups.slots {
		if len(slots) == 0 || dc.Slots[slots[0]] == "" {
			continue
		}
		gid := dc.Slots[slots[0]]
		master := r.client(serverOf(dc.Groups[gid]), req.DB) // the inbox belongs to the master
		if err := FCall(ctx, master, LogStartFunc, []string{LogInboxKey(req.Log)}, args...).Err(); err != nil {
			return struct{}{}, fmt.Errorf("xdc: start group %s at %s: %w", gid, req.At, err)
		}
	}
	r.log.Info("a group's full copy is complete here", "log", req.Log.String(), "db", req.DB, "at", req.At)
	return struct{}{}, nil
}

// badStreamID reports whether id is not a stream id (ms-seq).
func badStreamID(id string) bool {
	ms, seq, ok := strings.Cut(id, "-")
	if !ok {
		return true
	}
	_, e1 := strconv.ParseUint(ms, 10, 64)
	_, e2 := strconv.ParseUint(seq, 10, 64)
	return e1 != nil || e2 != nil
}
