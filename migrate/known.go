package migrate

import "sync"

// Keys known to be off the source. During a migration run nobody writes its source in the
// run's slots (the barrier), so a key that left the source, or was found missing there, cannot
// come back until the run ends. Every mover of one run in this process (the slot owner's
// MoveSlots and the router's migrate-on-access) records such keys in one shared set, and
// MoveKeys answers for them without asking the source: on the node that runs the mover, a
// client command on a key the mover already moved costs no round trip to the source.
//
// The set belongs to (source address, run's fence field, db), lives while a Mover of that run
// is open, and holds at most Config.KnownKeys keys (then it stops growing: the cost falls back
// to a round trip per key). Movers without a fence field (the library's own tests) share
// nothing.

// knownKey names one set.
type knownKey struct {
	src, fence string
	db         int
}

// knownSet is one run's keys known off the source.
type knownSet struct {
	mu   sync.RWMutex
	keys map[string]struct{}
	max  int
}

// knownRuns holds the sets of the runs with an open Mover, and how many Movers use each run.
var knownRuns = struct {
	mu   sync.Mutex
	sets map[knownKey]*knownSet
	refs map[string]int // by source and fence
}{sets: map[knownKey]*knownSet{}, refs: map[string]int{}}

func (m *Mover) runName() string { return m.cfg.Source.Addr + "\x00" + m.cfg.Fence }

// openKnown registers the Mover as a user of its run's sets.
func (m *Mover) openKnown() {
	if m.cfg.Fence == "" || m.cfg.KnownKeys < 0 {
		return
	}
	knownRuns.mu.Lock()
	knownRuns.refs[m.runName()]++
	knownRuns.mu.Unlock()
}

// closeKnown drops the run's sets when its last Mover closes.
func (m *Mover) closeKnown() {
	if m.cfg.Fence == "" || m.cfg.KnownKeys < 0 {
		return
	}
	knownRuns.mu.Lock()
	defer knownRuns.mu.Unlock()
	name := m.runName()
	if knownRuns.refs[name]--; knownRuns.refs[name] > 0 {
		return
	}
	delete(knownRuns.refs, name)
	for k := range knownRuns.sets {
		if k.src == m.cfg.Source.Addr && k.fence == m.cfg.Fence {
			delete(knownRuns.sets, k)
		}
	}
}

// known returns the set of db for this Mover's run, nil when it keeps none. Every client
// command on a migrating slot asks, so the Mover remembers its sets (m.knownDB) and takes the
// process-wide lock only the first time per db.
func (m *Mover) known(db int) *knownSet {
	if m.cfg.Fence == "" || m.cfg.KnownKeys < 0 {
		return nil
	}
	if s, ok := m.knownDB.Load(db); ok {
		return s.(*knownSet)
	}
	k := knownKey{src: m.cfg.Source.Addr, fence: m.cfg.Fence, db: db}
	knownRuns.mu.Lock()
	defer knownRuns.mu.Unlock()
	s := knownRuns.sets[k]
	if s == nil {
		s = &knownSet{keys: map[string]struct{}{}, max: m.cfg.KnownKeys}
		knownRuns.sets[k] = s
	}
	m.knownDB.Store(db, s)
	return s
}

// has reports whether key is known off the source.
func (s *knownSet) has(key string) bool {
	if s == nil {
		return false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.keys[key]
	return ok
}

// add records keys as off the source, up to the set's bound.
func (s *knownSet) add(keys ...string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		if len(s.keys) >= s.max {
			return
		}
		s.keys[k] = struct{}{}
	}
}

// KnownOff reports whether key of db is known off the source in this Mover's run: moved, or
// found missing, by a mover of this process. It never asks the source, and creates no set
// (the router may ask a Mover that is being closed: a set made then would outlive its run).
func (m *Mover) KnownOff(db int, key string) bool {
	if s, ok := m.knownDB.Load(db); ok {
		return s.(*knownSet).has(key)
	}
	if m.cfg.Fence == "" || m.cfg.KnownKeys < 0 {
		return false
	}
	knownRuns.mu.Lock()
	s := knownRuns.sets[knownKey{src: m.cfg.Source.Addr, fence: m.cfg.Fence, db: db}]
	knownRuns.mu.Unlock()
	if s != nil {
		m.knownDB.Store(db, s) // the next ask takes no lock
	}
	return s.has(key)
}
