package node

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/migrate"
)

// MigrateRequest is the body of POST /migrations.
type MigrateRequest struct {
	DC string `json:"dc"`
	// Slots are ranges such as "0-8191" or "100"; all must belong to one source group.
	Slots []string `json:"slots"`
	// To is the target group.
	To string `json:"to"`
	// Rate throttles the mover in keys per second (0: unthrottled).
	Rate int64 `json:"rate,omitempty"`
}

// RateRequest is the body of POST /migrations/{id}/rate.
type RateRequest struct {
	// Rate is the mover's new throttle in keys per second (0: unthrottled).
	Rate *int64 `json:"rate"`
}

// MigrationInfo is a migration as the admin API shows it: the state's record plus what a
// person watching it wants.
type MigrationInfo struct {
	fsm.Migration
	// WaitingFor lists the nodes of the DC a frozen migration still waits for (their freeze
	// acks); a node that does not answer blocks the migration until it is back or removed.
	WaitingFor []string `json:"waiting_for,omitempty"`
	// Progress is keys moved over the mover's estimate of the total, 0..1 (1 once migrated).
	Progress float64 `json:"progress"`
	// KeysPerSec is the mover's recent speed, from its last reports (0 when not moving).
	KeysPerSec float64 `json:"keys_per_sec"`
}

// StartReply is the answer of POST /migrations.
type StartReply struct {
	ID        uint64        `json:"id"`
	Migration MigrationInfo `json:"migration"`
}

// RebalanceRequest is the body of POST /rebalance.
type RebalanceRequest struct {
	DC string `json:"dc"`
	// DryRun only plans; nothing changes.
	DryRun bool `json:"dry_run"`
	// Rate is each started migration's throttle in keys per second (0: unthrottled).
	Rate int64 `json:"rate,omitempty"`
	// Tolerance is the fraction of the mean load a group may be off (default 0.05).
	Tolerance float64 `json:"tolerance,omitempty"`
}

// RebalanceStart is one planned move as started (or not) by POST /rebalance.
type RebalanceStart struct {
	From  string          `json:"from"`
	To    string          `json:"to"`
	Slots []fsm.SlotRange `json:"slots"`
	// ID is the migration's id when it started.
	ID uint64 `json:"id,omitempty"`
	// Error says why it did not start.
	Error string `json:"error,omitempty"`
}

// RebalanceReply is the answer of POST /rebalance: the plan and, unless a dry run, the
// migrations started for it.
type RebalanceReply struct {
	DC       string           `json:"dc"`
	DryRun   bool             `json:"dry_run"`
	Plan     migrate.Plan     `json:"plan"`
	Started  []RebalanceStart `json:"started,omitempty"`
	Warnings []string         `json:"warnings,omitempty"`
}

// codeUnavailable is the error code (HTTP 502) of a rebalance that could not read a master.
const codeUnavailable = "unavailable"

// localWait bounds how long a handler waits for this node to apply what the leader committed.
const localWait = 5 * time.Second

// migrationRoutes adds the migration and rebalance endpoints to the admin API.
func (n *Node) migrationRoutes(mux *http.ServeMux) {
	rates := newRateTracker()
	n.OnState(rates.observe)
	info := func(st *fsm.State, m *fsm.Migration) MigrationInfo { return migrationInfo(st, m, rates) }

	mux.HandleFunc("POST /migrations", func(w http.ResponseWriter, r *http.Request) {
		var req MigrateRequest
		if err := readJSON(r, &req); err != nil {
			writeError(w, err)
			return
		}
		m, err := n.startMigration(r.Context(), req.DC, req.To, req.Slots, req.Rate)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, StartReply{ID: m.ID, Migration: info(n.State(), m)})
	})
	mux.HandleFunc("GET /migrations", func(w http.ResponseWriter, r *http.Request) {
		st := n.State()
		dc, active := r.URL.Query().Get("dc"), r.URL.Query().Get("active")
		out := []MigrationInfo{}
		for _, m := range sortedMigrations(st) {
			if (dc != "" && m.DC != dc) || ((active == "true" || active == "1") && !m.Active()) {
				continue
			}
			out = append(out, info(st, m))
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /migrations/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, err := migrationID(r)
		if err != nil {
			writeError(w, err)
			return
		}
		st := n.State()
		m, ok := st.Migrations[id]
		if !ok {
			writeError(w, &fsm.Error{Code: "not_found", Msg: fmt.Sprintf("migration %d does not exist ('redraft migrations' lists them)", id)})
			return
		}
		writeJSON(w, http.StatusOK, info(st, m))
	})
	mux.HandleFunc("POST /migrations/{id}/{action}", func(w http.ResponseWriter, r *http.Request) {
		id, err := migrationID(r)
		if err != nil {
			writeError(w, err)
			return
		}
		cmd := &fsm.ControlMigration{ID: id, Action: r.PathValue("action")}
		var done func(*fsm.Migration) bool
		switch cmd.Action {
		case fsm.MigrationPause:
			done = func(m *fsm.Migration) bool { return m.Paused || !m.Active() }
		case fsm.MigrationResume:
			done = func(m *fsm.Migration) bool { return !m.Paused || !m.Active() }
		case fsm.MigrationCancel:
			done = func(m *fsm.Migration) bool { return m.Cancelling || !m.Active() }
		case fsm.MigrationRate:
			var req RateRequest
			if err := readJSON(r, &req); err != nil {
				writeError(w, err)
				return
			}
			if req.Rate == nil {
				writeError(w, &fsm.Error{Code: "invalid", Msg: `give the new rate in keys per second: {"rate": 5000} (0: unthrottled)`})
				return
			}
			cmd.Rate = *req.Rate
			done = func(m *fsm.Migration) bool { return m.Rate == cmd.Rate || !m.Active() }
		default:
			writeError(w, &fsm.Error{Code: "not_found", Msg: fmt.Sprintf("unknown migration action %q: use pause, resume, cancel or rate", cmd.Action)})
			return
		}
		if err := n.Propose(r.Context(), cmd); err != nil {
			writeError(w, err)
			return
		}
		// Answer the migration as this node sees it once it has applied the change.
		st := n.waitLocal(r.Context(), func(st *fsm.State) bool {
			m := st.Migrations[id]
			return m != nil && done(m)
		})
		if m := st.Migrations[id]; m != nil {
			writeJSON(w, http.StatusOK, info(st, m))
			return
		}
		n.answer(w, nil)
	})
	mux.HandleFunc("POST /rebalance", func(w http.ResponseWriter, r *http.Request) {
		var req RebalanceRequest
		if err := readJSON(r, &req); err != nil {
			writeError(w, err)
			return
		}
		reply, err := n.rebalance(r.Context(), req)
		if errorCode(err) == codeUnavailable {
			writeJSON(w, http.StatusBadGateway, rpcError{Error: err.Error(), Code: codeUnavailable})
			return
		}
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, reply)
	})
}

// startMigration proposes StartMigration for slots of dc to group to and returns the
// migration once this node has applied it.
func (n *Node) startMigration(ctx context.Context, dc, to string, slots []string, rate int64) (*fsm.Migration, error) {
	if dc == "" || to == "" || len(slots) == 0 {
		return nil, &fsm.Error{Code: "invalid", Msg: `give dc, slots and to: {"dc":"dc1","slots":["0-8191"],"to":"g2"}`}
	}
	ranges, err := fsm.ParseSlotRanges(slots...)
	if err != nil {
		return nil, &fsm.Error{Code: "invalid", Msg: err.Error()}
	}
	return n.startRanges(ctx, dc, "", to, normalise(ranges), rate)
}

// startRanges proposes StartMigration and finds the migration it created: the one whose
// StartIndex is the proposal's index; when the proposal's outcome is not known (a retry
// refused as busy, or a leader of an older build that answers no index), the one of dc to to
// over exactly ranges that started after the proposal was made (the state keeps ranges as
// given, and two migrations cannot cover one slot at once). This node's state may be behind
// the leader's, so that fallback can find an earlier migration of the same ranges. from, when
// set, is the source the caller planned with: the start is refused if the slots belong to
// another group by then (fsm.StartMigration.From).
func (n *Node) startRanges(ctx context.Context, dc, from, to string, ranges []fsm.SlotRange, rate int64) (*fsm.Migration, error) {
	before := n.State().Index
	var index uint64
	ours := func(st *fsm.State) *fsm.Migration {
		var found *fsm.Migration
		for _, m := range st.Migrations {
			if index > 0 && m.StartIndex != index || m.StartIndex <= before || m.DC != dc || m.To != to || !slices.Equal(m.Slots, ranges) {
				continue
			}
			if found == nil || m.ID < found.ID {
				found = m
			}
		}
		return found
	}
	index, err := n.ProposeAt(ctx, &fsm.StartMigration{DC: dc, Slots: ranges, To: to, Rate: rate, From: from, Nonce: rand.Text()[:16]})
	if fsm.RefusedAsUnknownField(err) {
		// An older leader (a rolling upgrade): the start as its build knows it.
		index, err = n.ProposeAt(ctx, &fsm.StartMigration{DC: dc, Slots: ranges, To: to, Rate: rate})
	}
	if err != nil {
		index = 0
		// A proposal retried after its first try committed finds its own migration in the way.
		if errorCode(err) != "busy" {
			return nil, err
		}
		if m := ours(n.State()); m == nil {
			return nil, err
		}
	}
	st := n.waitLocal(ctx, func(st *fsm.State) bool { return ours(st) != nil })
	if m := ours(st); m != nil {
		return m, nil
	}
	return nil, fmt.Errorf("the migration was committed but node %s has not applied it within %v: see 'redraft migrations'", n.cfg.ID, localWait)
}

// normalise sorts and merges ranges.
func normalise(ranges []fsm.SlotRange) []fsm.SlotRange {
	set := migrate.SlotSetOf(ranges)
	var out []fsm.SlotRange
	for _, r := range set.Ranges() {
		out = append(out, fsm.SlotRange{From: r[0], To: r[1]})
	}
	return out
}

// waitLocal waits (at most localWait) until ok holds for this node's state and returns the
// state it last saw.
func (n *Node) waitLocal(ctx context.Context, ok func(*fsm.State) bool) *fsm.State {
	t := time.NewTimer(localWait)
	defer t.Stop()
	for {
		st := n.State()
		if ok(st) {
			return st
		}
		select {
		case <-ctx.Done():
			return st
		case <-t.C:
			return st
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// rebalance plans the DC's rebalance from its masters' load and, unless a dry run, starts
// one migration per move.
func (n *Node) rebalance(ctx context.Context, req RebalanceRequest) (*RebalanceReply, error) {
	if req.DC == "" {
		return nil, &fsm.Error{Code: "invalid", Msg: `give the datacenter: {"dc":"dc1"}`}
	}
	if req.Tolerance < 0 || req.Tolerance >= 1 || req.Rate < 0 {
		return nil, &fsm.Error{Code: "invalid", Msg: "tolerance must be a fraction in [0, 1) (0.05 is 5%) and rate not negative"}
	}
	// A real run plans on the leader's applied state: a follower's may lack a move that already
	// changed which group owns the slots (each start also names its planned source, refused if
	// it no longer is: fsm.StartMigration.From).
	st := n.State()
	if !req.DryRun && n.raft.State() != raft.Leader {
		if target, err := n.readIndex(ctx); err == nil {
			st = n.waitLocal(ctx, func(st *fsm.State) bool { return st.Index >= target })
		}
	}
	dc := st.DCs[req.DC]
	if dc == nil {
		return nil, &fsm.Error{Code: "not_found", Msg: fmt.Sprintf("datacenter %s does not exist", req.DC)}
	}
	reply := &RebalanceReply{DC: req.DC, DryRun: req.DryRun}
	var active []string
	for _, m := range sortedMigrations(st) {
		if m.Active() && m.DC == req.DC {
			active = append(active, strconv.FormatUint(m.ID, 10))
		}
	}
	if len(active) > 0 {
		msg := fmt.Sprintf("datacenter %s has migrations in flight (%s): the load figures move with them; wait for them (redraft migrations) or cancel them", req.DC, strings.Join(active, ", "))
		if !req.DryRun {
			return nil, &fsm.Error{Code: "busy", Msg: msg}
		}
		reply.Warnings = append(reply.Warnings, msg)
	}
	if free := len(dc.SlotRanges()[""]); free > 0 {
		reply.Warnings = append(reply.Warnings, fmt.Sprintf("datacenter %s has unassigned slots; rebalance moves only assigned ones (redraft slots assign gives out free slots)", req.DC))
	}
	loads, err := migrate.GatherLoad(ctx, dc)
	if err != nil {
		hint := "is every master up and its password right (redraft group update)?"
		if n.cfg.DC != req.DC {
			hint += fmt.Sprintf(" This node is in datacenter %s: ask a node of %s (--admin) if its masters are not reachable from here.", n.cfg.DC, req.DC)
		}
		return nil, &fsm.Error{Code: codeUnavailable, Msg: fmt.Sprintf("cannot read the groups' load: %v; %s", err, hint)}
	}
	reply.Plan = migrate.PlanRebalance(loads, migrate.PlanOptions{Tolerance: req.Tolerance})
	if req.DryRun {
		return reply, nil
	}
	for _, mv := range reply.Plan.Moves {
		s := RebalanceStart{From: mv.From, To: mv.To, Slots: mv.Slots}
		m, err := n.startRanges(ctx, req.DC, mv.From, mv.To, mv.Slots, req.Rate)
		if err != nil {
			s.Error = err.Error()
		} else {
			s.ID = m.ID
		}
		reply.Started = append(reply.Started, s)
	}
	return reply, nil
}

// migrationID parses the {id} path value.
func migrationID(r *http.Request) (uint64, error) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		return 0, &fsm.Error{Code: "invalid", Msg: fmt.Sprintf("migration id %q is not a number ('redraft migrations' lists them)", r.PathValue("id"))}
	}
	return id, nil
}

// sortedMigrations returns the state's migrations by id.
func sortedMigrations(st *fsm.State) []*fsm.Migration {
	out := make([]*fsm.Migration, 0, len(st.Migrations))
	for _, m := range st.Migrations {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func migrationInfo(st *fsm.State, m *fsm.Migration, rates *rateTracker) MigrationInfo {
	mi := MigrationInfo{Migration: *m, WaitingFor: st.FreezeWaiting(m)}
	switch {
	case m.State == fsm.MigrationDone:
		mi.Progress = 1
	case m.KeysTotal > 0:
		mi.Progress = min(float64(m.KeysMoved)/float64(m.KeysTotal), 1)
	}
	if m.State == fsm.MigrationMigrating && !m.Paused {
		mi.KeysPerSec = rates.rate(m.ID, time.Now())
	}
	return mi
}

// rateTracker remembers, per active migration, when this node applied its progress reports,
// to tell the mover's speed.
type rateTracker struct {
	mu      sync.Mutex
	samples map[uint64][]rateSample
}

type rateSample struct {
	at   time.Time
	keys int64
}

// rateWindow is how far back the speed looks; a mover that reported nothing for rateStale
// is taken to be standing still.
const (
	rateWindow = 10 * time.Second
	rateStale  = 5 * time.Second
)

func newRateTracker() *rateTracker { return &rateTracker{samples: map[uint64][]rateSample{}} }

// observe records progress changes; it runs in Raft's apply path and is quick.
func (t *rateTracker) observe(st *fsm.State) { t.record(st, time.Now()) }

// record notes the state's progress as seen at now.
func (t *rateTracker) record(st *fsm.State, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id := range t.samples {
		if m := st.Migrations[id]; m == nil || !m.Active() {
			delete(t.samples, id)
		}
	}
	for id, m := range st.Migrations {
		if m.State != fsm.MigrationMigrating {
			continue
		}
		s := t.samples[id]
		if len(s) > 0 && s[len(s)-1].keys == m.KeysMoved {
			continue
		}
		if len(s) > 0 && m.KeysMoved < s[len(s)-1].keys {
			s = nil // counting restarted (a new mover, or keys moving back after a cancel)
		}
		s = append(s, rateSample{at: now, keys: m.KeysMoved})
		for len(s) > 2 && now.Sub(s[1].at) > rateWindow {
			s = s[1:]
		}
		t.samples[id] = s
	}
}

// rate returns the keys per second between the oldest and newest samples in the window.
func (t *rateTracker) rate(id uint64, now time.Time) float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.samples[id]
	if len(s) < 2 || now.Sub(s[len(s)-1].at) > rateStale {
		return 0
	}
	first, last := s[0], s[len(s)-1]
	dt := last.at.Sub(first.at).Seconds()
	if dt < 0.5 {
		return 0 // too short to tell, or reports replayed from the log at start-up
	}
	return float64(last.keys-first.keys) / dt
}
