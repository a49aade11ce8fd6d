package router

import (
	"bytes"
	"errors"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/migrate"
	"github.com/redraft/redraft/router/command"
)

// migEntry is one active migration of the node's DC as one snapshot sees it.
type migEntry struct {
	id       uint64
	back     bool // cancelling: keys move back, To -> From
	state    migState
	src, dst *group
	ref      *moverRef // migrating only
	// keep is set when the source failed over since the migration started: a key on both
	// sides keeps the target's copy, so the source's copy is not the latest (no source reads).
	keep bool
	// failover, when set, makes this a hold of the slots of a group failing over (failover.go):
	// no migration, always frozen.
	failover string
}

// moverKey identifies a mover that can be reused across snapshots: same migration, same
// direction, same servers, same rule for a key on both (keep: the source failed over).
type moverKey struct {
	id                 uint64
	back               bool
	src, srcPw         string
	dst, dstPw         string
	srcGroup, dstGroup string
	keep               bool
}

// moverRef is a migration's mover and its cache of keys known to be off the source. It is
// shared by the snapshots that reference it and closed once none does and no request uses it.
type moverRef struct {
	mv    *migrate.Mover
	moved *keyCache

	mu      sync.Mutex
	users   int
	retired bool
}

// acquire marks the mover in use; it fails once the mover was retired (the caller's snapshot
// is stale: it must look again).
func (r *moverRef) acquire() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.retired {
		return false
	}
	r.users++
	return true
}

func (r *moverRef) release() {
	r.mu.Lock()
	r.users--
	last := r.retired && r.users == 0
	r.mu.Unlock()
	if last {
		_ = r.mv.Close()
	}
}

// retire closes the mover as soon as no request uses it.
func (r *moverRef) retire() {
	r.mu.Lock()
	if r.retired {
		r.mu.Unlock()
		return
	}
	r.retired = true
	last := r.users == 0
	r.mu.Unlock()
	if last {
		_ = r.mv.Close()
	}
}

// markMigrations records the DC's active migrations in snap's slot entries, building (or
// reusing from s.movers) a mover for each migrating one. A migration whose groups are gone
// or whose mover cannot be built keeps its slots frozen: requests get -TRYAGAIN, never a
// wrong group.
func (s *Server) markMigrations(st *fsm.State, dc *fsm.DC, byID map[string]*group, snap *snapshot, movers map[moverKey]*moverRef) {
	for _, m := range st.Migrations {
		if !m.Active() || m.DC != s.cfg.DC {
			continue
		}
		me := &migEntry{id: m.ID, back: m.Cancelling, state: migFrozen, src: byID[m.Source()], dst: byID[m.Target()]}
		if m.State == fsm.MigrationMigrating && me.src != nil && me.dst != nil {
			src, dst := dc.Groups[m.Source()], dc.Groups[m.Target()]
			k := moverKey{id: m.ID, back: m.Cancelling, src: src.Master, srcPw: src.Password,
				dst: dst.Master, dstPw: dst.Password, srcGroup: src.ID, dstGroup: dst.ID, keep: st.SourceFailedOver(m)}
			r := s.movers[k]
			if r == nil {
				r = s.newMover(src, dst, migrate.RunFence(m, m.Cancelling), k.keep)
			}
			if r != nil {
				movers[k] = r
				me.ref, me.state, me.keep = r, migMigrating, k.keep
			}
		}
		for _, rg := range m.Slots {
			for sl := max(rg.From, 0); sl <= rg.To && sl < fsm.NumSlots; sl++ {
				snap.slots[sl].m = me
				snap.migrating++
			}
		}
	}
}

// newMover builds the mover of one migration run (fence: migrate.RunFence) from cfg.Mover,
// keeping the target's copy of a key on both when keep is set (migrate.Config.KeepTarget);
// nil if the groups' addresses are unusable.
func (s *Server) newMover(src, dst *fsm.Group, fence string, keep bool) *moverRef {
	cfg := s.cfg.Mover
	cfg.Fence, cfg.KeepTarget = fence, keep
	cfg.Source = migrate.EndpointOf(src)
	cfg.Target = migrate.EndpointOf(dst)
	cfg.Owner = s.cfg.NodeID
	if cfg.Logger == nil {
		cfg.Logger = s.cfg.Logger
	}
	mv, err := migrate.New(cfg)
	if err != nil {
		return nil
	}
	return &moverRef{mv: mv, moved: newKeyCache(s.cfg.MovedKeysCache)}
}

// errStale means the snapshot a request was admitted on retired its mover: look again.
var errStale = errors.New("router: stale snapshot")

// moveKeys makes sure keys (of database db) are off m's source before a request touches them
// on the target: keys in the migration's cache are skipped, the others go through
// Mover.MoveKeys and join the cache.
func (c *client) moveKeys(m *migEntry, slot, db int, keys [][]byte) error {
	r := m.ref
	todo := c.moveScratch[:0]
	for _, k := range keys {
		if !r.moved.has(db, k) {
			todo = append(todo, string(k))
		}
	}
	c.moveScratch = todo[:0]
	if len(todo) == 0 {
		return nil
	}
	if !r.acquire() {
		return errStale
	}
	defer r.release()
	c.flushBackends() // earlier requests of the batch proceed meanwhile
	n, err := r.mv.MoveKeys(c.s.ctx, db, todo...)
	c.s.movedKeys.Add(uint64(n))
	if err != nil {
		if errors.Is(err, migrate.ErrKeyBusy) {
			return c.tryAgain(errorf("TRYAGAIN slot %d is being migrated and a key of the request is being copied, try again", slot))
		}
		if errors.Is(err, migrate.ErrRunOver) {
			// The servers say this migration run is over (migrate/fence.go): its mover has
			// moved every key and the switch is being committed, or the migration turned back.
			// Wait for the state that says so, then route again.
			cur := c.s.snap.Load()
			if cur.down() == nil && cur.slots[slot].m != m {
				return errStale
			}
			if c.s.awaitChange(cur, time.Now().Add(c.s.cfg.FreezeWait)) {
				return errStale
			}
			return c.tryAgain(errorf("TRYAGAIN slot %d: its migration run is over and the switch is not committed yet, try again", slot))
		}
		return errorf("ERR slot %d is being migrated and moving the request's keys failed: %v", slot, err)
	}
	for _, k := range todo {
		r.moved.add(db, k)
	}
	return nil
}

// moveCmdKeys moves a command's keys (positions keyPos of args, in the session's database)
// off m's source, and for MOVE and COPY ... DB the key in the other database too.
func (c *client) moveCmdKeys(m *migEntry, slot int, spec *command.Spec, args [][]byte, keyPos []int) error {
	if (spec.Name == "sort" || spec.Name == "sort_ro") && sortHasPatterns(args) {
		return c.tryAgain(errSortMigrating(slot))
	}
	kb := c.kb[:0]
	for _, k := range keyPos {
		kb = append(kb, args[k])
	}
	kb = c.withElemKeys(slot, kb)
	defer func() { c.kb = kb[:0] }()
	if err := c.moveKeys(m, slot, c.db, kb); err != nil {
		return err
	}
	if db, key, ok := c.otherDB(spec.Name, args); ok {
		kb = append(kb[:0], key)
		return c.moveKeys(m, slot, db, kb)
	}
	return nil
}

// dbKey is a key of a database other than the session's (MOVE, COPY ... DB).
type dbKey struct {
	db  int
	key []byte
}

// moveTxKeys moves the keys of a queued transaction off m's source.
func (c *client) moveTxKeys(m *migEntry, slot int, tx *txState) error {
	if tx.sortPatterns {
		return c.tryAgain(errSortMigrating(slot))
	}
	if err := c.moveKeys(m, slot, c.db, c.withElemKeys(slot, slices.Clip(tx.keys))); err != nil {
		return err
	}
	for _, k := range tx.other {
		if err := c.moveKeys(m, slot, k.db, [][]byte{k.key}); err != nil {
			return err
		}
	}
	return nil
}

func errSortMigrating(slot int) error {
	return errorf("TRYAGAIN slot %d is being migrated: SORT with BY or GET patterns cannot run until the migration ends", slot)
}

// otherDB returns the database and key a MOVE or COPY ... DB writes outside the session's
// database. COPY's options are read as Redis's copyCommand reads them: REPLACE, or DB and its
// value, any number of times, the last DB winning; anything else, or a DB value out of range,
// is an error and writes nothing.
func (c *client) otherDB(name string, args [][]byte) (int, []byte, bool) {
	n := c.db
	switch name {
	case "move":
		if len(args) < 3 {
			return 0, nil, false
		}
		var ok bool
		if n, ok = c.dbArg(args[2]); !ok {
			return 0, nil, false
		}
	case "copy":
		for i := 3; i < len(args); i++ {
			switch {
			case bytes.EqualFold(args[i], []byte("replace")):
			case bytes.EqualFold(args[i], []byte("db")) && i+1 < len(args):
				var ok bool
				if n, ok = c.dbArg(args[i+1]); !ok {
					return 0, nil, false
				}
				i++
			default:
				return 0, nil, false
			}
		}
	default:
		return 0, nil, false
	}
	if n == c.db {
		return 0, nil, false
	}
	if name == "move" {
		return n, args[1], true
	}
	return n, args[2], true
}

// dbArg reads a database index as MOVE and COPY do; ok is false for one Redis refuses.
func (c *client) dbArg(b []byte) (int, bool) {
	n, ok := command.ParseInt(b)
	return int(n), ok && n >= 0 && n < int64(c.s.cfg.Databases)
}

// sortHasPatterns reports whether SORT reads keys named by BY or GET patterns: they cannot be
// moved first, since only the sort's elements name them.
func sortHasPatterns(args [][]byte) bool {
	for i := 2; i+1 < len(args); i++ {
		a := args[i]
		if !bytes.EqualFold(a, []byte("by")) && !bytes.EqualFold(a, []byte("get")) {
			if bytes.EqualFold(a, []byte("limit")) {
				i += 2
			} else if bytes.EqualFold(a, []byte("store")) {
				i++
			}
			continue
		}
		i++
		if bytes.IndexByte(args[i], '*') >= 0 {
			return true
		}
	}
	return false
}

// keyCache is a bounded concurrent set of (db, key) pairs: the keys a migration has moved off
// its source. A key never returns to the source while the migration runs (writes go to the
// target), so a hit skips MoveKeys. Once full it stops growing.
type keyCache struct {
	limit  int64
	n      atomic.Int64
	seed   maphash.Seed
	shards [64]keyShard
}

type keyShard struct {
	mu  sync.RWMutex
	dbs map[int]map[string]struct{}
}

func newKeyCache(limit int) *keyCache {
	return &keyCache{limit: int64(limit), seed: maphash.MakeSeed()}
}

func (kc *keyCache) shard(h uint64) *keyShard { return &kc.shards[h%uint64(len(kc.shards))] }

// has reports whether key of db is known to be off the source.
func (kc *keyCache) has(db int, key []byte) bool {
	if kc.limit <= 0 {
		return false
	}
	sh := kc.shard(maphash.Bytes(kc.seed, key))
	sh.mu.RLock()
	_, ok := sh.dbs[db][string(key)]
	sh.mu.RUnlock()
	return ok
}

// add records key of db, unless the cache is full.
func (kc *keyCache) add(db int, key string) {
	if kc.n.Load() >= kc.limit {
		return
	}
	sh := kc.shard(maphash.String(kc.seed, key))
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.dbs == nil {
		sh.dbs = map[int]map[string]struct{}{}
	}
	m := sh.dbs[db]
	if m == nil {
		m = map[string]struct{}{}
		sh.dbs[db] = m
	}
	if _, ok := m[key]; !ok {
		m[key] = struct{}{}
		kc.n.Add(1)
	}
}
