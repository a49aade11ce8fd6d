package xdc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/migrate"
	"github.com/redraft/redraft/router/resp"
)

// copyLockTTL bounds how long a crashed copier can keep a slot's writes refused.
const copyLockTTL = 60 * time.Second

// maxCopySlots bounds the slots one scan of the source copies.
const maxCopySlots = 512

// selfPrefix marks the inbox field under which a DC re-applies its own entries after a full
// copy replaced its data.
const selfPrefix = "~"

// copier copies, in full, the slots whose destination fell behind the outbox bound; slots
// queued together share one scan of the source master.
func (l *loop) copier(ctx context.Context, src *redis.Client, copies chan int) {
	backoff := 100 * time.Millisecond
	for {
		var slots []int
		select {
		case <-ctx.Done():
			return
		case s := <-copies:
			slots = append(slots, s)
		}
	drain:
		for len(slots) < maxCopySlots {
			select {
			case s := <-copies:
				slots = append(slots, s)
			default:
				break drain
			}
		}
		failed := l.copySlots(ctx, src, slots)
		if len(failed) == 0 {
			backoff = 100 * time.Millisecond
			continue
		}
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, 5*time.Second)
		for _, s := range failed {
			copies <- s
		}
	}
}

// copySlots copies slots to the destination DC: it locks them on the source master (WRITE
// refuses writes to a locked slot), reads every key with its expiry, the outbox's last id
// and the inbox, sends that to the destination, which replaces the slot with it, and then
// ships on from that id. It returns the slots that must be tried again.
func (l *loop) copySlots(ctx context.Context, src *redis.Client, slots []int) (failed []int) {
	want := map[int]bool{}
	token := lockToken("out", l.r.cfg.Cluster.ID())
	st0 := l.r.cfg.Cluster.State()
	for _, s := range slots {
		if why := l.uncopyable(st0, st0, s); why != "" {
			l.r.log.Debug("copy deferred", "dest", l.key.dest, "slot", s, "why", why)
			failed = append(failed, s)
			continue
		}
		// NX: a copy into this DC, or another copy out of it, holds the slot meanwhile.
		ok, err := src.SetNX(ctx, CopyLockKey(s), token, copyLockTTL).Result()
		if err != nil || !ok {
			failed = append(failed, s)
			continue
		}
		want[s] = true
	}
	defer func() {
		held := make([]int, 0, len(want))
		for s := range want {
			held = append(held, s)
		}
		l.r.unlockCopies(context.WithoutCancel(ctx), src, l.key.db, held, token)
	}()
	keys := map[int][]string{}
	var cursor uint64
	for {
		batch, next, err := src.Scan(ctx, cursor, "", 1000).Result()
		if err != nil {
			l.fail(fmt.Errorf("copy: scan: %w", err))
			return slots
		}
		for _, k := range batch {
			if s := migrate.SlotString(k); want[s] && copiedWithSlot(k) {
				keys[s] = append(keys[s], k)
			}
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	for s := range want {
		if err := l.copySlot(ctx, src, st0, s, keys[s]); err != nil {
			l.fail(fmt.Errorf("copy slot %d to %s: %w", s, l.key.dest, err))
			failed = append(failed, s)
		}
	}
	return failed
}

func isInternal(key string) bool { return strings.HasPrefix(key, InternalPrefix) }

// convergeState reports whether key holds convergence state of the data (a slot's metadata
// or pull hash, a key's element hash): a flush deletes it with the data.
func convergeState(key string) bool {
	return strings.HasPrefix(key, MetaPrefix) || strings.HasPrefix(key, ElemPrefix) || strings.HasPrefix(key, PullPrefix)
}

// copiedWithSlot reports whether a full copy carries key: the data keys and the element
// hashes of collections (docs/convergence.md); the slot's metadata hash is added by name.
func copiedWithSlot(key string) bool {
	return !isInternal(key) || strings.HasPrefix(key, ElemPrefix)
}

// unlockLua deletes a copy lock only if it still holds the caller's value: a lock that expired
// and was taken by another copy is not this caller's to release.
const unlockLua = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`

// unlockCopies releases the copy locks of slots that token holds on the master c (database
// db), in one round trip, and through the router the ones a migration concerns now or that it
// no longer finds there: a migration that began meanwhile moves a lock to the slot's target
// with the slot (migrate.CopyLockPrefix), where writes would wait for it until it expires,
// and a delete on the source while the mover copies it would leave the copy on the target.
func (r *Replicator) unlockCopies(ctx context.Context, c *redis.Client, db int, slots []int, token string) {
	st, own := r.cfg.Cluster.State(), r.cfg.Cluster.DC()
	pipe := c.Pipeline()
	cmds := make([]*redis.Cmd, len(slots))
	for i, s := range slots {
		if migrationOf(st, own, s) == 0 {
			cmds[i] = pipe.Eval(ctx, unlockLua, []string{CopyLockKey(s)}, token)
		}
	}
	_, _ = pipe.Exec(ctx)
	for i, s := range slots {
		if cmds[i] != nil {
			if n, err := cmds[i].Int(); err != nil || n != 0 {
				continue // released here, or the master is unreachable (the lock expires)
			}
		}
		lock := CopyLockKey(s)
		_, _ = r.internal(ctx, db, s, []string{lock}, []string{"EVAL", unlockLua, "1", lock, token})
	}
}

// lockToken is a copy lock's value: its direction ("in" or "out"), who holds it, and a
// nonce, so a holder releases only its own lock and APPLY knows its holder's re-applies.
func lockToken(dir, who string) string {
	return dir + ":" + who + ":" + strconv.FormatInt(time.Now().UnixNano(), 36)
}

// copySlot reads one locked slot and has the destination replace its copy with it.
func (l *loop) copySlot(ctx context.Context, src *redis.Client, st0 *fsm.State, slot int, keys []string) error {
	req := CopyRequest{Source: l.r.cfg.Cluster.DC(), DB: l.key.db, Slot: slot, Keys: make([]CopyKey, 0, len(keys))}
	if st := l.r.cfg.Cluster.State(); st.Flush.Active() {
		return fmt.Errorf("%s is in progress", st.Flush)
	} else {
		req.Flushes = st.Flushes
	}
	// The slot's metadata hash goes with its keys: the copy's stamps and counters are the
	// source's (docs/convergence.md, "Full copies").
	keys = append(keys[:len(keys):len(keys)], MetaKey(slot))
	pipe := src.Pipeline()
	dumps := make([]*redis.StringCmd, len(keys))
	exps := make([]*redis.Cmd, len(keys))
	for i, k := range keys {
		dumps[i] = pipe.Dump(ctx, k)
		exps[i] = pipe.Do(ctx, "PEXPIRETIME", k)
	}
	info := pipe.Do(ctx, "XINFO", "STREAM", OutboxKey(slot))
	inbox := pipe.HGetAll(ctx, InboxKey(slot))
	meta := pipe.HGetAll(ctx, MetaKey(slot))
	pulls := pipe.HGetAll(ctx, PullKey(slot))
	_, _ = pipe.Exec(ctx)
	// The reads are a snapshot of the slot only if no migration in this DC moved its keys
	// meanwhile: a migration's mover starts after every node of the DC, this one included,
	// acked its freeze, so a state that still shows no new migration after the reads proves
	// none began before them.
	if why := l.uncopyable(st0, l.r.cfg.Cluster.State(), slot); why != "" {
		return fmt.Errorf("copy read discarded: %s", why)
	}
	if err := info.Err(); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	req.Last, _ = streamInfoField(info.Val(), "last-generated-id").(string)
	if req.Last == "" {
		return errors.New("outbox has no last id")
	}
	in, err := inbox.Result()
	if err != nil {
		return fmt.Errorf("inbox: %w", err)
	}
	req.Inbox = in
	m, err := meta.Result()
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	req.Stamps = stampsOf(m)
	if req.Pulls, err = pulls.Result(); err != nil {
		return fmt.Errorf("pull records: %w", err)
	}
	for i, k := range keys {
		d, err := dumps[i].Result()
		if errors.Is(err, redis.Nil) {
			continue // expired or deleted before the lock
		}
		if err != nil {
			return fmt.Errorf("dump %q: %w", k, err)
		}
		ck := CopyKey{Key: k, Dump: []byte(d)}
		if ms, _ := exps[i].Int64(); ms > 0 {
			ck.Expire = ms
		}
		req.Keys = append(req.Keys, ck)
	}
	st := l.r.cfg.Cluster.State()
	if err := l.r.callDC(ctx, st, l.key.dest, fsm.OwnerIn(st.Ring(l.key.dest), slot), RPCCopy, req, nil); err != nil {
		return err
	}
	p := indexOf(l.slots, slot)
	l.mu.Lock()
	if p >= 0 {
		l.acked[p], l.pending[p] = req.Last, 0
	}
	delete(l.copying, slot)
	// The destination's last applied id is read again rather than taken to be req.Last: a
	// copy from a third DC may have replaced the slot there since ours, and the destination's
	// call to read the id again may have been handled while ours was answering, which req.Last
	// would undo; the quiet slot would then stay behind there for good (TestResetDuringCopy).
	l.reset[slot] = true
	l.mu.Unlock()
	l.hint(slot) // entries written since the copy's id; wakes the loop for the reset too
	l.r.counter(l.key.dest).copied.Add(1)
	l.r.recordAck(ctx, src, l.key.master, l.key.dest, l.key.db, slot, req.Last)
	l.r.log.Info("slot copied in full", "dest", l.key.dest, "slot", slot, "db", l.key.db, "keys", len(req.Keys), "at", req.Last)
	return nil
}

// uncopyable says why slot cannot be copied out of the loop's group now ("" when it can): the
// slot is not the group's in the current state, a migration of this DC covers it (its keys
// may be on two groups), or a migration began since st0, when the copy started.
func (l *loop) uncopyable(st0, st *fsm.State, slot int) string {
	if st.NextMigrationID != st0.NextMigrationID {
		return "a migration began during the copy"
	}
	dc := st.DCs[l.r.cfg.Cluster.DC()]
	if dc == nil || slot >= len(dc.Slots) || dc.Slots[slot] != l.key.group {
		return "the slot is no longer served by group " + l.key.group
	}
	if id := migrationOf(st, dc.Name, slot); id != 0 {
		return fmt.Sprintf("migration %d of this DC moves the slot", id)
	}
	return ""
}

// activeMigration returns the id of an active migration of DC dc, or 0.
func activeMigration(st *fsm.State, dc string) uint64 {
	for _, m := range st.Migrations {
		if m.DC == dc && m.Active() {
			return m.ID
		}
	}
	return 0
}

// migrationOf returns the id of the active migration of DC dc that moves slot, or 0.
func migrationOf(st *fsm.State, dc string, slot int) uint64 {
	for _, m := range st.Migrations {
		if m.DC != dc || !m.Active() {
			continue
		}
		for _, rg := range m.Slots {
			if slot >= rg.From && slot <= rg.To {
				return m.ID
			}
		}
	}
	return 0
}

func indexOf(slots []int, s int) int {
	for i, v := range slots {
		if v == s {
			return i
		}
	}
	return -1
}

// HandleCopy replaces slot req.Slot of this DC with req's copy, under the slot's copy lock
// (this DC's writes to it wait): this DC's own entries the source had not applied are read
// from the outbox, the slot's keys are deleted, the copy restored, the inbox set to the
// source's (with the source at req.Last), then those own entries applied again. The other
// DCs are told to read their last applied ids on the slot again.
func (r *Replicator) HandleCopy(ctx context.Context, req CopyRequest) (struct{}, error) {
	if err := r.checkSource(req.Source); err != nil {
		return struct{}{}, err
	}
	if req.Slot < 0 || req.Slot >= len(tags) {
		return struct{}{}, fmt.Errorf("xdc: slot %d out of range", req.Slot)
	}
	// The ids become inbox fields that every later APPLY from those DCs compares (cmpid): one
	// that is no stream id (an empty Last) stopped the slot's replication from that DC until
	// the next full copy.
	if badStreamID(req.Last) {
		return struct{}{}, fmt.Errorf("xdc: slot %d: bad last id %q", req.Slot, req.Last)
	}
	if err := checkDB(req.DB); err != nil {
		return struct{}{}, err
	}
	for dc, id := range req.Inbox {
		if id != "" && badStreamID(id) {
			return struct{}{}, fmt.Errorf("xdc: slot %d: bad inbox id %q of %s", req.Slot, id, dc)
		}
	}
	if err := r.enterCopy(req.Flushes); err != nil {
		return struct{}{}, err
	}
	defer r.leaveCopy()
	// Once begun, a copy runs to its end even if the source stops waiting (its loop was
	// replaced when ownership moved): stopping between the deletes and the restores below
	// would leave this DC without the slot's keys, at the old inbox position, for good.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), copyLockTTL)
	defer cancel()
	own, db, slot := r.cfg.Cluster.DC(), req.DB, req.Slot
	// The slot's keys are listed by one scan of each group (slotKeys): a key moving between
	// two groups while they are scanned would be missed, neither deleted nor merged. The copy
	// waits for a migration of the slot to end (the source tries it again).
	st0 := r.cfg.Cluster.State()
	if st0.DCs[own] == nil {
		return struct{}{}, fmt.Errorf("xdc: DC %s is not in this node's cluster state; try the copy again", own)
	}
	if id := migrationOf(st0, own, slot); id != 0 {
		return struct{}{}, fmt.Errorf("xdc: migration %d of %s moves slot %d; try the copy again after it", id, own, slot)
	}
	run := func(keys []string, args ...string) (resp.Value, error) {
		v, err := r.internal(ctx, db, slot, keys, args)
		if err == nil && v.IsError() {
			err = fmt.Errorf("%s: %s", args[0], v.Str)
		}
		return v, err
	}
	// The slot's copy lock, NX: two copies into one slot (from two DCs that both found this
	// one behind), or a copy in while this DC copies the slot out, would interleave their
	// deletes, restores and inbox writes. The source retries a refused copy.
	lock, token := CopyLockKey(slot), lockToken("in", req.Source)
	got, err := run([]string{lock}, "SET", lock, token, "NX", "PX", strconv.FormatInt(copyLockTTL.Milliseconds(), 10))
	if err != nil {
		return struct{}{}, err
	}
	if got.IsNull() {
		return struct{}{}, fmt.Errorf("xdc: slot %d of %s is being copied already; try again", slot, own)
	}
	defer func() {
		_, _ = r.internal(context.WithoutCancel(ctx), db, slot, []string{lock}, []string{"EVAL", unlockLua, "1", lock, token})
	}()
	// This DC's own entries the source has not applied yet.
	start := "-"
	if p := req.Inbox[own]; p != "" {
		start = "(" + p
	}
	ob := OutboxKey(slot)
	if v, err := r.internal(ctx, db, slot, []string{ob}, []string{"XINFO", "STREAM", ob}); err == nil && !v.IsError() {
		if lost := checkBehind(infoMap(v), req.Inbox[own]); lost != nil {
			r.lostOwn.Add(1)
			r.log.Error("a full copy replaces writes of this DC that the source never applied and this DC's outbox no longer holds: they are lost",
				"source", req.Source, "slot", slot, "db", db, "err", lost)
		}
	}
	v, err := run([]string{ob}, "XRANGE", ob, start, "+")
	if err != nil {
		return struct{}{}, err
	}
	mine, err := entriesOf(v)
	if err != nil {
		return struct{}{}, err
	}
	existing, err := r.slotKeys(ctx, db, slot)
	if err != nil {
		return struct{}{}, err
	}
	if cur := r.cfg.Cluster.State(); migrationOf(cur, own, slot) != 0 || cur.DCs[own] == nil || cur.DCs[own].Slots[slot] != st0.DCs[own].Slots[slot] {
		return struct{}{}, fmt.Errorf("xdc: slot %d of %s moved while its keys were listed; try the copy again", slot, own)
	}
	in := InboxKey(slot)
	args := []string{"HSET", in, req.Source, req.Last}
	for dc, id := range req.Inbox {
		if dc != own && dc != req.Source && id != "" && dc[:min(1, len(dc))] != selfPrefix {
			args = append(args, dc, id)
		}
	}
	setInbox := func() error {
		if _, err := run([]string{in}, "DEL", in); err != nil {
			return err
		}
		_, err := run([]string{in}, args...)
		return err
	}
	c := slotContent{keys: req.Keys, stamps: req.Stamps, pulls: req.Pulls, source: req.Source,
		horizon: slotCopyHorizon(r.cfg.Cluster.State(), req.Source, req.Inbox)}
	if err := r.replaceSlot(ctx, db, slot, token, existing, c, mine, setInbox); err != nil {
		return struct{}{}, err
	}
	// Tell the other DCs' shippers to read their last applied ids on this slot again, until
	// they hear it (a DC cut off now would otherwise find out only at its next entry for the
	// slot, by the gap).
	st := r.cfg.Cluster.State()
	for _, id := range st.NodeIDs() {
		n := st.Nodes[id]
		if n.DC == own || n.DC == req.Source {
			continue
		}
		go func() {
			tctx, cancel := context.WithTimeout(context.Background(), resetFor)
			defer cancel()
			for wait := 200 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
				cctx, c2 := context.WithTimeout(tctx, 5*time.Second)
				err := r.cfg.Peers.CallPeer(cctx, n.Peer, RPCReset, ResetRequest{Source: n.DC, Dest: own, DB: db, Slot: slot}, nil)
				c2()
				if err == nil || !sleep(tctx, wait) {
					return
				}
			}
		}()
	}
	r.log.Info("slot replaced by a full copy", "source", req.Source, "slot", slot, "db", db, "keys", len(req.Keys), "own_entries_reapplied", len(mine))
	return struct{}{}, nil
}

// slotContent is what a full copy brings of one slot (CopyRequest, LogCopySlot).
type slotContent struct {
	keys    []CopyKey
	stamps  map[string]string // the source's stamps of the slot's keys
	pulls   map[string]string // the source's pull records of the slot (pull.go)
	horizon int64             // copyhorizon.go
	source  string            // the source DC
}

// replaceSlot replaces slot's keys here (existing, found on the groups serving it) with a full
// copy's (cp), under the slot's copy lock held as token: a key whose stamp here is newer than
// the copy's keeps this DC's state (unless the stamp's origin is the source DC: its own write
// that it no longer has, lost with a failed-over master, which this DC then loses too; or the
// stamp is below the copy's horizon), this DC's own increments join the copy's counters, the
// source's pull records become this DC's (the keys' newer states are pulled here too),
// setInbox sets where this DC stands in what the source had applied, and mine, this DC's own
// entries the source had not applied, are applied again over the copy.
func (r *Replicator) replaceSlot(ctx context.Context, db, slot int, token string, existing []string, cp slotContent, mine []Entry, setInbox func() error) error {
	keys := cp.keys
	own := r.cfg.Cluster.DC()
	run := func(keys []string, args ...string) (resp.Value, error) {
		v, err := r.internal(ctx, db, slot, keys, args)
		if err == nil && v.IsError() {
			err = fmt.Errorf("%s: %s", args[0], v.Str)
		}
		return v, err
	}
	kept, stale, err := r.newerHere(ctx, db, slot, cp.stamps, cp.source, cp.horizon)
	if err != nil {
		return err
	}
	counters, err := r.countersHere(ctx, db, slot, existing)
	if err != nil {
		return err
	}
	// A key the copy holds is replaced in place (RESTORE REPLACE below), not deleted first: a
	// reader here never finds a key gone that both DCs hold.
	now := time.Now().UnixMilli()
	inCopy := make(map[string]bool, len(keys))
	for _, k := range keys {
		inCopy[k.Key] = k.Expire <= 0 || k.Expire > now // one expired at the source goes here too
	}
	gone := slices.DeleteFunc(slices.Clone(existing), func(k string) bool { return inCopy[k] })
	gone = append(gone, MetaKey(slot), PullKey(slot))
	for i := 0; i < len(gone); i += 256 {
		part := gone[i:min(len(gone), i+256)]
		if _, err := run(part, append([]string{"DEL"}, part...)...); err != nil {
			return err
		}
	}
	for _, k := range keys {
		if !inCopy[k.Key] {
			continue
		}
		if _, err := run([]string{k.Key}, "RESTORE", k.Key, strconv.FormatInt(k.Expire, 10), string(k.Dump), "REPLACE", "ABSTTL"); err != nil {
			return err
		}
	}
	if err := r.restoreKept(ctx, db, slot, kept); err != nil {
		return err
	}
	keptKeys := map[string]bool{}
	for _, k := range kept {
		keptKeys[k.key] = true
	}
	// Increments are never superseded: this DC's own that the source had not applied join the
	// copy's counters (a third DC's the copy lacks come again: the inbox is the copy's). A
	// kept key's counters were set the same way in restoreKept. A stale key's go with it: the
	// source deleted the key after those it had applied, and this DC's own that it had not
	// are applied again below, from mine.
	for key, c := range counters {
		if keptKeys[key] || stale[key] {
			continue
		}
		argv := append([]any{c.vec, own, "copy"}, c.elems...)
		if v, err := r.runScript(ctx, db, slot, mergeCountersScript.Hash(), mergeCountersLua, []string{key, MetaKey(slot), ElemKey(slot, key)}, argv); err != nil || v.IsError() {
			return fmt.Errorf("merge counters of %q into the copy: %v%s", key, err, v.Str)
		}
	}
	// The source's conflicts still to pull: this DC's positions become the source's, past the
	// entries that made them, so nothing here would record them again, and a state the
	// source pulls later reaches no other DC (pulls are not shipped). Before the own entries
	// below: a conflict they record is newer and replaces the source's record.
	if pulls := pullArgs(slot, cp.pulls, own); len(pulls) > 2 {
		if _, err := run([]string{PullKey(slot)}, pulls...); err != nil {
			return err
		}
		defer r.pulls.note(db, slot)
	}
	if err := setInbox(); err != nil {
		return err
	}
	for _, e := range mine {
		e.DC = selfPrefix + own
		// A kept key's state here already holds every own write, and every key's counters
		// hold this DC's own increments (merged above; a stale key's were not): applying them
		// again would count them twice.
		e.Cmds = slices.DeleteFunc(e.Cmds, func(c []string) bool {
			return len(c) > 1 && ((c[0] == "~c" || c[0] == "~i") && !stale[c[1]] || strings.HasPrefix(c[0], "~") && keptKeys[c[1]])
		})
		akeys, argv := ApplyArgs(slot, e, "", token)
		v, err := r.runFunc(ctx, db, slot, ApplyFunc, akeys, argv)
		if err != nil || v.IsError() {
			return fmt.Errorf("re-apply own entry %s: %v%s", e.ID, err, v.Str)
		}
		// An own write the copy lacks that its key's stamp in the copy supersedes is lost
		// here: the copy's stamp came from a state that never saw it.
		if len(v.Elems) > 3 && v.Elems[3].Int > 0 {
			r.log.Warn("an own write applied again over a full copy was superseded by the copy's stamps",
				"slot", slot, "db", db, "entry", e.ID, "superseded", v.Elems[3].Int, "stamps", cp.stamps)
		}
	}
	return nil
}

// resetFor is how long a DC that got a full copy keeps telling another DC's node to read its
// last applied id on the slot again.
const resetFor = 2 * time.Minute

// HandleReset marks a slot's last applied id in DC req.Dest for reading again.
func (r *Replicator) HandleReset(_ context.Context, req ResetRequest) (struct{}, error) {
	if req.Source != r.cfg.Cluster.DC() {
		return struct{}{}, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, l := range r.loops {
		if k.dest == req.Dest && k.db == req.DB && indexOf(l.slots, req.Slot) >= 0 {
			l.mu.Lock()
			l.reset[req.Slot] = true
			l.mu.Unlock()
			l.signal()
		}
	}
	return struct{}{}, nil
}

// slotKeys lists the keys of slot in this DC that a copy replaces (copiedWithSlot), on the group serving it
// and, while it migrates, on the migration's other group too.
func (r *Replicator) slotKeys(ctx context.Context, db, slot int) ([]string, error) {
	st := r.cfg.Cluster.State()
	dc := st.DCs[r.cfg.Cluster.DC()]
	if dc == nil || dc.Slots[slot] == "" {
		return nil, fmt.Errorf("xdc: slot %d is not served in DC %s", slot, r.cfg.Cluster.DC())
	}
	groups := map[string]bool{dc.Slots[slot]: true}
	for _, m := range st.Migrations {
		if m.DC != dc.Name {
			continue
		}
		for _, rg := range m.Slots {
			if slot >= rg.From && slot <= rg.To {
				groups[m.From], groups[m.To] = true, true
			}
		}
	}
	var out []string
	for gid := range groups {
		g := dc.Groups[gid]
		if g == nil {
			continue
		}
		c := r.client(serverOf(g), db)
		var cursor uint64
		for {
			batch, next, err := c.Scan(ctx, cursor, "", 1000).Result()
			if err != nil {
				return nil, fmt.Errorf("xdc: scan %s: %w", g.Master, err)
			}
			for _, k := range batch {
				if migrate.SlotString(k) == slot && copiedWithSlot(k) {
					out = append(out, k)
				}
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
	}
	return out, nil
}

// infoMap turns an XINFO STREAM reply read through the router into the form checkBehind reads.
func infoMap(v resp.Value) []any {
	out := make([]any, 0, len(v.Elems))
	for _, e := range v.Elems {
		switch e.Type {
		case ':':
			out = append(out, e.Int)
		default:
			out = append(out, string(e.Str))
		}
	}
	return out
}

// entriesOf converts an XRANGE reply read through the router into entries.
func entriesOf(v resp.Value) ([]Entry, error) {
	out := make([]Entry, 0, len(v.Elems))
	for _, it := range v.Elems {
		if len(it.Elems) != 2 {
			return nil, errors.New("xdc: XRANGE: unexpected reply")
		}
		fields := make([]string, len(it.Elems[1].Elems))
		for i, f := range it.Elems[1].Elems {
			fields[i] = string(f.Str)
		}
		e, err := ParseEntry(string(it.Elems[0].Str), fields)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// stampsOf returns the key → stamp fields of a slot's metadata hash.
func stampsOf(meta map[string]string) map[string]string {
	out := map[string]string{}
	for f, v := range meta {
		if k, ok := strings.CutPrefix(f, "s:"); ok {
			out[k] = v
		}
	}
	return out
}

// keptKey is a key of the receiving DC whose stamp is newer than the copy's: its state (or
// its absence, a tombstone) and metadata stay.
type keptKey struct {
	key, stamp, c, v string
	b                string // a float counter's base ("b:"), kept only when hasB (it may be "")
	hasB             bool
	dump, elems      string // "" when absent
	expire           int64
}

// newerHere reads the keys of the slot whose stamp here is newer than the copy's (a write of
// this DC, or applied here, that the source had not seen), so that the copy keeps them: last
// writer wins holds for a full copy too (docs/convergence.md, "Full copies").
//
// A key the copy has no stamp of, whose stamp here is below the copy's horizon (ms, 0: none),
// is not kept but returned in stale: the source had applied it and then collected the key's
// tombstone (copyhorizon.go).
func (r *Replicator) newerHere(ctx context.Context, db, slot int, src map[string]string, lostOrigin string, horizon int64) (out []keptKey, stale map[string]bool, err error) {
	mv, err := r.internal(ctx, db, slot, []string{MetaKey(slot)}, []string{"HGETALL", MetaKey(slot)})
	if err != nil || mv.IsError() {
		return nil, nil, fmt.Errorf("read metadata: %v%s", err, mv.Str)
	}
	meta := map[string]string{}
	for i := 0; i+1 < len(mv.Elems); i += 2 {
		meta[string(mv.Elems[i].Str)] = string(mv.Elems[i+1].Str)
	}
	here := stampsOf(meta)
	unknown := map[string]string{} // keys the copy has no stamp of
	for k, st := range here {
		if src[k] == "" {
			unknown[k] = st
		}
	}
	if stale, err = r.staleHere(ctx, db, slot, horizon, unknown); err != nil {
		return nil, nil, err
	}
	for k, st := range here {
		if !newer(st, src[k]) || stale[k] {
			continue
		}
		if _, origin, _ := strings.Cut(st, ":"); lostOrigin != "" && origin == lostOrigin {
			continue // a write the source DC made and then lost (replaceSlot)
		}
		kk := keptKey{key: k, stamp: st, c: meta["c:"+k], v: meta["v:"+k]}
		kk.b, kk.hasB = meta["b:"+k]
		for i, key := range []string{k, ElemKey(slot, k)} {
			d, err := r.internal(ctx, db, slot, []string{key}, []string{"DUMP", key})
			if err != nil || d.IsError() {
				return nil, nil, fmt.Errorf("dump %q: %v%s", key, err, d.Str)
			}
			if i == 0 {
				kk.dump = string(d.Str)
				if x, err := r.internal(ctx, db, slot, []string{key}, []string{"PEXPIRETIME", key}); err == nil && x.Int > 0 {
					kk.expire = x.Int
				}
			} else {
				kk.elems = string(d.Str)
			}
		}
		out = append(out, kk)
	}
	return out, stale, nil
}

// heldCounters are one key's counters in this DC before a full copy replaces the slot: its
// counter vector and its element states that count (element, msgpack state, ...).
type heldCounters struct {
	vec   string
	elems []any
}

// countersHere reads the counters of the slot's keys (keys: the slot's keys here, element
// hashes included) before a full copy replaces them, for mergeCountersLua.
func (r *Replicator) countersHere(ctx context.Context, db, slot int, keys []string) (map[string]*heldCounters, error) {
	out := map[string]*heldCounters{}
	mv, err := r.internal(ctx, db, slot, []string{MetaKey(slot)}, []string{"HGETALL", MetaKey(slot)})
	if err != nil || mv.IsError() {
		return nil, fmt.Errorf("read metadata: %v%s", err, mv.Str)
	}
	for i := 0; i+1 < len(mv.Elems); i += 2 {
		if k, ok := strings.CutPrefix(string(mv.Elems[i].Str), "c:"); ok {
			out[k] = &heldCounters{vec: string(mv.Elems[i+1].Str)}
		}
	}
	prefix := ElemKey(slot, "")
	for _, ek := range keys {
		k, ok := strings.CutPrefix(ek, prefix)
		if !ok {
			continue
		}
		v, err := r.runScript(ctx, db, slot, countedStatesScript.Hash(), countedStatesLua, []string{ek}, nil)
		if err != nil || v.IsError() {
			return nil, fmt.Errorf("read element counters of %q: %v%s", k, err, v.Str)
		}
		if len(v.Elems) == 0 {
			continue
		}
		h := out[k]
		if h == nil {
			h = &heldCounters{}
			out[k] = h
		}
		for _, e := range v.Elems {
			h.elems = append(h.elems, string(e.Str))
		}
	}
	return out, nil
}

// countedStatesLua answers the element states of an element hash (KEYS[1]) that hold
// counters, as element, state, ...
const countedStatesLua = `
local all, out = redis.call('HGETALL', KEYS[1]), {}
for i = 1, #all, 2 do
  local st = cmsgpack.unpack(all[i + 1])
  if st.c and next(st.c) then
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
  end
end
return out
`

var countedStatesScript = redis.NewScript(countedStatesLua)

// restoreKept puts the keys newerHere kept back over the copy, with their metadata.
func (r *Replicator) restoreKept(ctx context.Context, db, slot int, kept []keptKey) error {
	run := func(keys []string, args ...string) error {
		v, err := r.internal(ctx, db, slot, keys, args)
		if err == nil && v.IsError() {
			err = fmt.Errorf("%s: %s", args[0], v.Str)
		}
		return err
	}
	meta := MetaKey(slot)
	for _, k := range kept {
		ek := ElemKey(slot, k.key)
		// The copy's counters of the key: increments are never superseded, so the kept
		// state takes those it lacks (mergeCounters, below).
		cc, err := r.internal(ctx, db, slot, []string{meta}, []string{"HGET", meta, "c:" + k.key})
		if err != nil || cc.IsError() {
			return fmt.Errorf("read the copy's counters: %v%s", err, cc.Str)
		}
		ce, err := r.internal(ctx, db, slot, []string{ek}, []string{"HGETALL", ek})
		if err != nil || ce.IsError() {
			return fmt.Errorf("read the copy's element counters: %v%s", err, ce.Str)
		}
		if err := run([]string{k.key, ek}, "DEL", k.key, ek); err != nil {
			return err
		}
		if k.dump != "" {
			if err := run([]string{k.key}, "RESTORE", k.key, strconv.FormatInt(k.expire, 10), k.dump, "REPLACE", "ABSTTL"); err != nil {
				return err
			}
		}
		if k.elems != "" {
			if err := run([]string{ek}, "RESTORE", ek, "0", k.elems, "REPLACE"); err != nil {
				return err
			}
		}
		if err := run([]string{meta}, "HSET", meta, "s:"+k.key, k.stamp); err != nil {
			return err
		}
		for _, f := range []struct {
			name, val string
			keep      bool
		}{{"c:", k.c, k.c != ""}, {"v:", k.v, k.v != ""}, {"b:", k.b, k.hasB}} {
			args := []string{"HDEL", meta, f.name + k.key}
			if f.keep {
				args = []string{"HSET", meta, f.name + k.key, f.val}
			}
			if err := run([]string{meta}, args...); err != nil {
				return err
			}
		}
		argv := []any{string(cc.Str), r.cfg.Cluster.DC(), "kept"}
		for _, e := range ce.Elems {
			argv = append(argv, string(e.Str))
		}
		if v, err := r.runScript(ctx, db, slot, mergeCountersScript.Hash(), mergeCountersLua, []string{k.key, meta, ek}, argv); err != nil || v.IsError() {
			return fmt.Errorf("merge the copy's counters of %q: %v%s", k.key, err, v.Str)
		}
	}
	return nil
}

// mergeCountersLua sets a key's counters after a full copy replaced its slot: the counts of
// this DC's own increments are the higher of the copy's and those it held (its own increments
// the source had not applied, which its outbox may no longer hold, are counted here and
// nowhere else), the other DCs' are the copy's (the inbox is the copy's too: they send again
// what the copy lacks). The key's value (or each element's) is then what its base and
// counters make it. KEYS: the key, the slot's metadata hash, the key's element hash. ARGV:
// the other side's counter vector of the key, this DC's name, "copy" when the key's state in
// Redis is the copy's ("kept": it is the state this DC held, put back over the copy), then
// the other side's element states that count (element, state, ...).
const mergeCountersLua = `#!lua
local k, meta = KEYS[1], KEYS[2]
` + stampLua + elemLua + `
local own, curIsCopy = ARGV[2], ARGV[3] == 'copy'
-- target returns the counters to hold, from those in Redis (cur) and the other side's.
local function target(cur, other)
  cur, other = cur or {}, other or {}
  local t = {}
  local copy = other
  if curIsCopy then copy = cur end
  for d, x in pairs(copy) do
    if d ~= own then t[d] = x end
  end
  local a, b = cur[own], other[own]
  if a and (not b or a[1] >= b[1]) then t[own] = a elseif b then t[own] = b end
  return t
end
local C, V = vecsOf(k)
local T = target(C, vecParse(ARGV[1]))
if vecString(T) ~= vecString(C) then
  local before, after = unseen(C, V), unseen(T, V)
  local float = redis.call('HEXISTS', meta, 'b:' .. k) == 1
  if not float and allInt(before) and allInt(after) then
    if next(T) then redis.call('HSET', meta, 'c:' .. k, vecString(T)) else redis.call('HDEL', meta, 'c:' .. k) end
    local negs = {}
    for i, x in ipairs(before) do negs[i] = neg(x) end
    local d = sum(sum('0', after) or '0', negs)
    if d and d ~= '0' then redis.pcall('INCRBY', k, d) end
  else
    floatMode(k, nil)
    redis.call('HSET', meta, 'c:' .. k, vecString(T))
    recompute(k)
  end
end
local others, names = {}, {}
for i = 4, #ARGV, 2 do
  others[ARGV[i]] = cmsgpack.unpack(ARGV[i + 1])
  names[#names + 1] = ARGV[i]
end
local here = redis.call('HGETALL', ekey(k))
for i = 1, #here, 2 do
  if not others[here[i]] then names[#names + 1] = here[i] end
end
local K = stampOf(k)
local have = redis.call('TYPE', k)['ok']
for _, e in ipairs(names) do
  local os = others[e] or {}
  local p = redis.call('HGET', ekey(k), e)
  local ty = os.t
  if p then ty = cmsgpack.unpack(p).t end
  if ty and (p or (os.c and next(os.c))) then
    local st, cur = eload(ty, k, e)
    local t = target(st.c, os.c)
    if vecString(t) ~= vecString(st.c or {}) then
      if not st.c then
        st.bs = st.bs or {}
        if newest(st, K) == nil then st.bv = cur end
      end
      st.c = t
      if have ~= 'none' and have ~= ty then esave(k, e, st) else esettle(ty, k, e, st, nil, K) end
    end
  end
end
return 1
`

var mergeCountersScript = redis.NewScript(mergeCountersLua)
