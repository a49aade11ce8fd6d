package xdc

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/migrate"
)

// Pulls (docs/convergence.md, "Conflicts"): an effect recorded as a command (~o: a list push,
// a stream entry, a hash field...) applies only where its key is in the state it saw at its
// origin. Where it is not (another DC wrote the key meanwhile) and the effect is newer than
// the key's state here, APPLY records the key in the slot's pull hash; the receiving node then
// asks the origin DC for the key's whole state and installs it if it is newer than its own,
// in one script. Every DC thus ends with the state of the key's newest write.

// RPCKeyState answers the whole state of keys (KeyStateRequest) from the slot's owner.
const RPCKeyState = "xdc-keystate"

// KeyStateRequest asks a node of the origin DC for the state of keys of one slot.
type KeyStateRequest struct {
	Source string   `json:"source"` // the asking DC
	DB     int      `json:"db"`
	Slot   int      `json:"slot"`
	Keys   []string `json:"keys"`
}

// KeyState is one key's whole state and stamp.
type KeyState struct {
	Key   string `json:"key"`
	Stamp string `json:"stamp"`
	Kind  string `json:"kind"` // "r" (Dump) or "d" (absent)
	V     string `json:"v"`    // the increments the state holds (counter vector)
	PXAT  string `json:"pxat"`
	Dump  []byte `json:"dump,omitempty"`
}

// KeyStateResponse holds one state per requested key.
type KeyStateResponse struct {
	States []KeyState `json:"states"`
}

// keyStateLua reads a key's whole state. KEYS: the key, the slot's metadata hash, the key's
// element hash (declared so that a migration moves it with the key), the slot's copy lock.
// While a full copy into the slot runs (its lock "in:..."), the slot holds the copy's older
// state for a moment: it answers TRYAGAIN, and the puller asks again.
const keyStateLua = `
local k, meta = KEYS[1], KEYS[2]
local held = redis.call('GET', KEYS[4])
if held and string.sub(held, 1, 3) == 'in:' then
  return redis.error_reply('TRYAGAIN redraft: the slot is being replaced by a full copy, retry shortly')
end
` + stampLua + elemLua + `
local st = redis.call('HGET', meta, 's:' .. k) or ''
local v = redis.call('HGET', meta, 'c:' .. k) or ''
-- The element counters the state holds (all of them: it is this DC's whole state).
local all, E, any = redis.call('HGETALL', KEYS[3]), {}, false
for i = 1, #all, 2 do
  local st = cmsgpack.unpack(all[i + 1])
  if st.c then E[all[i]], any = {st.t, eall(st)}, true end
end
if any then v = v .. '#' .. cmsgpack.pack(E) end
if redis.call('EXISTS', k) == 0 then return {st, 'd', v, '0', ''} end
return {st, 'r', v, string.format('%.0f', redis.call('PEXPIRETIME', k)), redis.call('DUMP', k)}
`

// pulledLua installs a pulled state. KEYS: the key, the slot's metadata hash, its pull hash,
// the key's element hash, the slot's copy lock.
// ARGV: stamp, kind, counter vector, pxat, dump, the pull record read before the pull. The
// state is installed when the key still has a pull record and the state is newer than the
// key's; the record is removed unless a newer conflict replaced it meanwhile. No record means
// something replaced the slot's state since the pull began (a flush deleted the database, a
// full copy its slot; both delete the pull hash): installing would bring back what they
// removed. While a full copy of the slot runs, into it or out of it (its lock held), it
// answers TRYAGAIN: a copy into it restores keys before their stamps, and a pull installed in
// between would be stamped over by the copy's metadata; a copy out of it reads the keys and
// then their stamps, and could send a stamp without its key. Nor while a flush deletes the
// database (its fence, FlushFenceKey, says so, of a flush after ARGV[7], the last one the
// caller's state knows is over: a fence left at deleting by a master that failed over before
// it was closed holds no pull for good): its pass deletes keys, metadata and pull hash in the
// order SCAN finds them, and a state installed behind it, from an origin that had not deleted
// yet, stayed (until session 45). It answers {installed 0/1, the record}, or an error when the
// state cannot be installed (a RESTORE refused): the key then keeps its state, stamp and
// record, and the puller tries again, rather than stamping the old value as the new one (every
// later write's effect would then be skipped as superseded, silently).
const pulledLua = `#!lua
local k, meta, pull = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', KEYS[5]) == 1 then
  return redis.error_reply('TRYAGAIN redraft: a full copy of the slot runs, retry shortly')
end
local fence = redis.call('GET', '` + FlushFenceKey + `')
if fence and string.sub(fence, -9) == ':deleting' and (tonumber(string.match(fence, '^(%d+)')) or 0) > (tonumber(ARGV[7]) or 0) then
  return redis.error_reply('TRYAGAIN redraft: a flush deletes this database, retry shortly')
end
` + stampLua + elemLua + `
local st, done = ARGV[1], 0
local p = redis.call('HGET', pull, k)
if p and newer(st, stampOf(k)) then
  local V, E = splitV(ARGV[3])
  local r = putState(ARGV[2], k, ARGV[4], ARGV[5])
  if type(r) == 'table' and r['err'] then
    return redis.error_reply('ERR redraft: a pulled state cannot be installed: ' .. r['err'])
  end
  adopt(k, V)
  restamp(k, st)
  erebase(k, st, E)
  done = 1
end
if p and p == ARGV[6] then redis.call('HDEL', pull, k) end
return {done, p or ''}
`

var (
	keyStateScript = redis.NewScript(keyStateLua)
	pulledScript   = redis.NewScript(pulledLua)
)

// pullSet is the set of (database, slot) whose pull hash has records, as this node knows it,
// and the slots it suspects of holding some (suspect).
type pullSet struct {
	mu       sync.Mutex
	set      map[dbSlot]bool
	suspects map[dbSlot]bool
	nsuspect atomic.Int32 // len(suspects), read without mu on the apply path
	wake     chan struct{}
}

// suspect marks a slot whose APPLY lost its answer (its group's connection failed): the call
// may have run and recorded conflicts that no answer reported, and its entries, sent again,
// are then skipped without a word. The slot is noted once an APPLY of it answers again
// (settle), not now: its group is likely still unreachable, and the puller would only fail
// and retry.
func (p *pullSet) suspect(db, slot int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.suspects == nil {
		p.suspects = map[dbSlot]bool{}
	}
	k := dbSlot{db, slot}
	if !p.suspects[k] {
		p.suspects[k] = true
		p.nsuspect.Add(1)
		// The entries sent again may go to another node (the ring moved): noted anyway.
		time.AfterFunc(suspectFor, func() { p.settle(db, slot) })
	}
}

// suspectFor is how long a suspected slot waits for an APPLY of it to answer before it is
// pulled anyway.
const suspectFor = time.Minute

// anySuspect reports whether some slot is suspected, without the lock: every APPLY answered
// would settle its slots, and almost always there is none to settle.
func (p *pullSet) anySuspect() bool { return p.nsuspect.Load() > 0 }

// settle notes a suspected slot (suspect) now that an APPLY of it answered.
func (p *pullSet) settle(db, slot int) {
	if !p.anySuspect() {
		return
	}
	p.mu.Lock()
	k := dbSlot{db, slot}
	was := p.suspects[k]
	if was {
		delete(p.suspects, k)
		p.nsuspect.Add(-1)
	}
	p.mu.Unlock()
	if was {
		p.note(db, slot)
	}
}

// note marks a slot's pull hash as holding records and wakes the puller.
func (p *pullSet) note(db, slot int) {
	p.mu.Lock()
	if p.set == nil {
		p.set = map[dbSlot]bool{}
	}
	p.set[dbSlot{db, slot}] = true
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *pullSet) take() []dbSlot {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]dbSlot, 0, len(p.set))
	for s := range p.set {
		out = append(out, s)
	}
	clear(p.set)
	return out
}

// runPulls pulls the keys recorded in pull hashes until ctx is done: at once when APPLY
// records one, again every few seconds while some are left (the origin may be unreachable).
// It first looks for pull hashes left by a previous run of the node.
func (r *Replicator) runPulls(ctx context.Context) {
	r.findPulls(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.pulls.wake:
		}
		for _, s := range r.pulls.take() {
			if err := r.pullSlot(ctx, s.db, s.slot); err != nil {
				r.log.Warn("pulling keys' state from their origin DC failed; retrying", "slot", s.slot, "db", s.db, "err", err)
				time.AfterFunc(2*time.Second, func() { r.pulls.note(s.db, s.slot) })
			}
		}
	}
}

// findPulls scans this DC's masters once for pull hashes (SCAN MATCH on the pull prefix).
func (r *Replicator) findPulls(ctx context.Context) {
	st := r.cfg.Cluster.State()
	own := st.DCs[r.cfg.Cluster.DC()]
	if own == nil {
		return
	}
	for _, g := range own.Groups {
		for _, db := range r.databases(g.Master) {
			it := r.client(serverOf(g), db).Scan(ctx, 0, PullPrefix+"*", 1000).Iterator()
			for it.Next(ctx) {
				if s, ok := pullSlotOf(it.Val()); ok {
					r.pulls.note(db, s)
				}
			}
		}
	}
}

// pullSlotOf returns the slot of a pull hash's key (its hash tag hashes to it).
func pullSlotOf(key string) (int, bool) {
	s := migrate.SlotString(key)
	return s, pullKeys[s] == key
}

// pullSlot pulls every key recorded in the slot's pull hash from its origin DC's owner of the
// slot and installs the states. A key whose state cannot be installed, or an origin that does
// not answer, holds back only its own keys: the others are installed, and the first error is
// returned (the puller tries the slot again).
func (r *Replicator) pullSlot(ctx context.Context, db, slot int) error {
	ph := PullKey(slot)
	v, err := r.internal(ctx, db, slot, []string{ph}, []string{"HGETALL", ph})
	if err != nil {
		return err
	}
	if v.IsError() {
		return fmt.Errorf("HGETALL %s: %s", ph, v.Str)
	}
	byDC := map[string][]string{}
	rec := map[string]string{}
	for i := 0; i+1 < len(v.Elems); i += 2 {
		k, p := string(v.Elems[i].Str), string(v.Elems[i+1].Str)
		_, dc, ok := strings.Cut(p, ":")
		if !ok {
			continue
		}
		byDC[dc] = append(byDC[dc], k)
		rec[k] = p
	}
	st := r.cfg.Cluster.State()
	var first error
	fail := func(err error) {
		if first == nil {
			first = err
		}
	}
	over := flushesOver(st) // the same for every key of the call
	for dc, keys := range byDC {
		var resp KeyStateResponse
		req := KeyStateRequest{Source: r.cfg.Cluster.DC(), DB: db, Slot: slot, Keys: keys}
		if err := r.callDC(ctx, st, dc, fsm.OwnerIn(st.Ring(dc), slot), RPCKeyState, req, &resp); err != nil {
			fail(err)
			continue
		}
		for _, s := range resp.States {
			keys := []string{s.Key, MetaKey(slot), ph, ElemKey(slot, s.Key), CopyLockKey(slot)}
			argv := []any{s.Stamp, s.Kind, s.V, s.PXAT, string(s.Dump), rec[s.Key], over}
			out, err := r.runScript(ctx, db, slot, pulledScript.Hash(), pulledLua, keys, argv)
			if err == nil && out.IsError() {
				err = fmt.Errorf("%s", out.Str)
			}
			if err != nil {
				fail(fmt.Errorf("install %q: %w", s.Key, err))
				continue
			}
			r.pulled.Add(1)
			if newer(rec[s.Key], s.Stamp) {
				r.log.Warn("the origin DC no longer holds the state a write saw (replaced by a full copy?): keeping its newest state",
					"slot", slot, "origin", dc, "wanted", rec[s.Key], "got", s.Stamp)
			}
		}
	}
	return first
}

// flushesOver is the id of the last flush st knows is over (pulledLua's ARGV[7]).
func flushesOver(st *fsm.State) string {
	f := st.Flush
	switch {
	case f == nil:
		return "0"
	case f.Active():
		return strconv.FormatUint(f.ID-1, 10)
	}
	return strconv.FormatUint(f.ID, 10)
}

// HandleKeyState answers the whole state of the requested keys, read on the slot's master in
// this DC through the router.
func (r *Replicator) HandleKeyState(ctx context.Context, req KeyStateRequest) (KeyStateResponse, error) {
	if err := r.checkSource(req.Source); err != nil {
		return KeyStateResponse{}, err
	}
	if req.Slot < 0 || req.Slot >= len(tags) {
		return KeyStateResponse{}, fmt.Errorf("xdc: slot %d out of range", req.Slot)
	}
	out := KeyStateResponse{States: make([]KeyState, 0, len(req.Keys))}
	for _, k := range req.Keys {
		v, err := r.runScript(ctx, req.DB, req.Slot, keyStateScript.Hash(), keyStateLua, []string{k, MetaKey(req.Slot), ElemKey(req.Slot, k), CopyLockKey(req.Slot)}, nil)
		if err == nil && v.IsError() {
			err = fmt.Errorf("%s", v.Str)
		}
		if err != nil {
			return out, err
		}
		if len(v.Elems) != 5 {
			return out, fmt.Errorf("xdc: unexpected key state reply")
		}
		out.States = append(out.States, KeyState{Key: k, Stamp: string(v.Elems[0].Str), Kind: string(v.Elems[1].Str),
			V: string(v.Elems[2].Str), PXAT: string(v.Elems[3].Str), Dump: append([]byte(nil), v.Elems[4].Str...)})
	}
	return out, nil
}

// newer is the scripts' stamp order in Go: whether stamp a orders after b ("" is first).
func newer(a, b string) bool {
	if b == "" || a == "" {
		return a != "" && b == ""
	}
	at, ad, _ := strings.Cut(a, ":")
	bt, bd, _ := strings.Cut(b, ":")
	if len(at) != len(bt) {
		return len(at) > len(bt)
	}
	if at != bt {
		return at > bt
	}
	return ad > bd
}
