package node

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testredis"
)

// apiErr asserts that err is an admin API error with status and a message containing want.
func apiErr(t *testing.T, err error, status int, want string) {
	t.Helper()
	var ae *APIError
	if !errors.As(err, &ae) {
		t.Fatalf("want API error %d %q, got %v", status, want, err)
	}
	if ae.Status != status || !strings.Contains(ae.Msg, want) {
		t.Fatalf("want %d %q, got %d %q (code %s)", status, want, ae.Status, ae.Msg, ae.Code)
	}
}

// ackAll commits the freeze acks of every node of the migration's DC, as the coordinators
// would, so the migration passes its barrier.
func ackAll(t *testing.T, n *Node, id uint64) {
	t.Helper()
	st := n.State()
	for _, nid := range st.NodeIDs() {
		if st.Nodes[nid].DC == st.Migrations[id].DC {
			if err := n.Propose(context.Background(), &fsm.AckFreeze{ID: id, Node: nid}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestMigrationAPI(t *testing.T) {
	c := newTestCluster(t)
	c.start("n1", "dc1")
	c.start("n2", "dc1", "n1")
	var follower *Node
	for _, n := range c.nodes {
		if !n.IsLeader() {
			follower = n
		}
	}
	leader := c.leader()
	cl := NewClient(follower.AdminAddr()) // every change is forwarded to the leader
	ctx := context.Background()
	s1, s2 := testredis.Start(t), testredis.Start(t, testredis.WithPassword("pw"))
	for _, g := range []fsm.Group{{ID: "g1", Master: s1.Addr}, {ID: "g2", Master: s2.Addr, Password: "pw"}} {
		if err := cl.AddGroup(ctx, "dc1", g); err != nil {
			t.Fatal(err)
		}
	}

	// Slots nobody serves cannot migrate: they are assigned.
	_, err := cl.StartMigration(ctx, MigrateRequest{DC: "dc1", Slots: []string{"0-99"}, To: "g2"})
	apiErr(t, err, http.StatusBadRequest, "not assigned to any group: assign it")
	_, err = cl.StartMigration(ctx, MigrateRequest{DC: "dc1", Slots: []string{"0-x"}, To: "g2"})
	apiErr(t, err, http.StatusBadRequest, "not a number")
	_, err = cl.StartMigration(ctx, MigrateRequest{DC: "dc1", To: "g2"})
	apiErr(t, err, http.StatusBadRequest, "give dc, slots and to")
	if err := cl.AssignSlots(ctx, AssignRequest{DC: "dc1", Group: "g1", Slots: []string{"0-16383"}}); err != nil {
		t.Fatal(err)
	}
	_, err = cl.StartMigration(ctx, MigrateRequest{DC: "dc1", Slots: []string{"0-99"}, To: "nope"})
	apiErr(t, err, http.StatusNotFound, "group nope does not exist")

	// Ranges are normalised; the answer carries the id.
	rep, err := cl.StartMigration(ctx, MigrateRequest{DC: "dc1", Slots: []string{"50-99", "0-49", "200"}, To: "g2", Rate: 100})
	if err != nil {
		t.Fatal(err)
	}
	id := rep.ID
	want := []fsm.SlotRange{{From: 0, To: 99}, {From: 200, To: 200}}
	if id == 0 || rep.Migration.ID != id || !slices.Equal(rep.Migration.Slots, want) || rep.Migration.From != "g1" || rep.Migration.Rate != 100 {
		t.Fatalf("start reply %+v", rep)
	}
	// No coordinator runs in these nodes: the freeze waits for both.
	m, err := cl.Migration(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if m.State != fsm.MigrationFrozen || !slices.Equal(m.WaitingFor, []string{"n1", "n2"}) {
		t.Fatalf("migration %+v", m)
	}
	if st, _ := cl.Status(ctx); !slices.Equal(st.MigrationWaiting[id], []string{"n1", "n2"}) {
		t.Fatalf("status waiting %v", st.MigrationWaiting)
	}

	// A second migration over any of those slots conflicts.
	_, err = cl.StartMigration(ctx, MigrateRequest{DC: "dc1", Slots: []string{"90-150"}, To: "g2"})
	apiErr(t, err, http.StatusConflict, "already being migrated")

	// Pause, rate, resume change the state (as every node sees it once applied).
	if m, err = cl.PauseMigration(ctx, id); err != nil || !m.Paused {
		t.Fatalf("pause: %+v %v", m, err)
	}
	if m, err = cl.SetMigrationRate(ctx, id, 5000); err != nil || m.Rate != 5000 || !m.Paused {
		t.Fatalf("rate: %+v %v", m, err)
	}
	if m, err = cl.ResumeMigration(ctx, id); err != nil || m.Paused {
		t.Fatalf("resume: %+v %v", m, err)
	}
	_, err = cl.SetMigrationRate(ctx, id, -1)
	apiErr(t, err, http.StatusBadRequest, "negative")
	err = cl.do(ctx, http.MethodPost, migrationPath(id, "rate"), map[string]any{}, nil)
	apiErr(t, err, http.StatusBadRequest, "give the new rate")
	err = cl.do(ctx, http.MethodPost, migrationPath(id, "explode"), nil, nil)
	apiErr(t, err, http.StatusNotFound, "pause, resume, cancel or rate")
	_, err = cl.Migration(ctx, 999)
	apiErr(t, err, http.StatusNotFound, "migration 999 does not exist")
	_, err = cl.PauseMigration(ctx, 999)
	apiErr(t, err, http.StatusNotFound, "does not exist")
	err = cl.do(ctx, http.MethodGet, "/migrations/abc", nil, nil)
	apiErr(t, err, http.StatusBadRequest, "not a number")

	// Cancelled while frozen: nothing moved, it ends at once, the slots stay.
	if m, err = cl.CancelMigration(ctx, id); err != nil || m.State != fsm.MigrationCancelled || m.Cancelling {
		t.Fatalf("cancel frozen: %+v %v", m, err)
	}
	if leader.State().DCs["dc1"].Slots[0] != "g1" {
		t.Fatal("slot 0 left g1")
	}
	_, err = cl.PauseMigration(ctx, id)
	apiErr(t, err, http.StatusConflict, "already cancelled")

	// Cancelled while migrating: it runs back behind a new freeze.
	rep, err = cl.StartMigration(ctx, MigrateRequest{DC: "dc1", Slots: []string{"0-99"}, To: "g2"})
	if err != nil {
		t.Fatal(err)
	}
	id2 := rep.ID
	if id2 <= id {
		t.Fatalf("second id %d after %d", id2, id)
	}
	ackAll(t, leader, id2)
	poll(t, 5*time.Second, "migrating", func() error {
		if m, _ := cl.Migration(ctx, id2); m.State != fsm.MigrationMigrating || len(m.WaitingFor) != 0 {
			return fmt.Errorf("%+v", m)
		}
		return nil
	})
	if m, err = cl.CancelMigration(ctx, id2); err != nil || m.State != fsm.MigrationFrozen || !m.Cancelling || len(m.WaitingFor) != 2 {
		t.Fatalf("cancel migrating: %+v %v", m, err)
	}
	_, err = cl.CancelMigration(ctx, id2)
	apiErr(t, err, http.StatusConflict, "already being cancelled")

	all, err := cl.Migrations(ctx, "", false)
	if err != nil || len(all) != 2 || all[0].ID != id || all[1].ID != id2 {
		t.Fatalf("list: %+v %v", all, err)
	}
	if act, err := cl.Migrations(ctx, "dc1", true); err != nil || len(act) != 1 || act[0].ID != id2 {
		t.Fatalf("active: %+v %v", act, err)
	}
	if other, err := cl.Migrations(ctx, "dc9", false); err != nil || len(other) != 0 {
		t.Fatalf("dc9: %+v %v", other, err)
	}

	// Rebalance refuses to run while a migration is in flight; a dry run warns.
	_, err = cl.Rebalance(ctx, RebalanceRequest{DC: "dc1"})
	apiErr(t, err, http.StatusConflict, "migrations in flight")
	dry, err := cl.Rebalance(ctx, RebalanceRequest{DC: "dc1", DryRun: true})
	if err != nil || len(dry.Warnings) == 0 {
		t.Fatalf("dry run during migration: %+v %v", dry, err)
	}
	ackAll(t, leader, id2)
	if err := leader.Propose(ctx, &fsm.FinishMigration{ID: id2}); err != nil {
		t.Fatal(err)
	}
	poll(t, 5*time.Second, "cancelled", func() error {
		if m, _ := cl.Migration(ctx, id2); m.State != fsm.MigrationCancelled {
			return fmt.Errorf("%+v", m)
		}
		return nil
	})

	// g1 holds every slot and every key, g2 nothing: the plan moves half the slots.
	r1 := redis.NewClient(&redis.Options{Addr: s1.Addr})
	defer r1.Close()
	for i := 0; i < 300; i++ {
		if err := r1.Set(ctx, fmt.Sprint("key:", i), strings.Repeat("v", 100), 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// The data format's raise and the nodes' reports of it wait while migrations run, and may
	// be proposed as the earlier ones end: wait for them, so that the state below can only
	// change by the dry run.
	for deadline := time.Now().Add(30 * time.Second); !formatSettled(leader.State()); {
		if time.Now().After(deadline) {
			t.Fatalf("the data format is not settled after 30 s: %+v", leader.State().Nodes)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
	before := leader.State()
	dry, err = cl.Rebalance(ctx, RebalanceRequest{DC: "dc1", DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	p := dry.Plan
	if !dry.DryRun || len(dry.Started) != 0 || len(p.Moves) != 1 || p.Moves[0].From != "g1" || p.Moves[0].To != "g2" || !p.Balanced {
		t.Fatalf("plan %+v", dry)
	}
	if n := p.Moves[0].SlotCount(); math.Abs(float64(n)-8192) > 8192*0.05 {
		t.Fatalf("moves %d slots", n)
	}
	if p.Before[0].Keys != 300 || p.Before[1].Keys != 0 || p.After[1].Slots != p.Moves[0].SlotCount() {
		t.Fatalf("before %+v after %+v", p.Before, p.After)
	}
	// A barrier: an entry proposed after the dry run is applied after anything it proposed.
	if err := leader.Propose(ctx, &fsm.SetSetting{Key: "max_voters", Value: before.Setting("max_voters")}); err != nil {
		t.Fatal(err)
	}
	after := leader.State()
	if after.Index != before.Index+1 || len(after.Migrations) != 2 || !slices.Equal(after.DCs["dc1"].Slots, before.DCs["dc1"].Slots) {
		t.Fatalf("dry run changed the state: index %d -> %d (the barrier one of them)", before.Index, after.Index)
	}

	// A real run starts the planned migration, throttled as asked.
	run, err := cl.Rebalance(ctx, RebalanceRequest{DC: "dc1", Rate: 250})
	if err != nil {
		t.Fatal(err)
	}
	if run.DryRun || len(run.Started) != 1 || run.Started[0].Error != "" || run.Started[0].ID == 0 {
		t.Fatalf("run %+v", run)
	}
	m, err = cl.Migration(ctx, run.Started[0].ID)
	if err != nil || m.From != "g1" || m.To != "g2" || m.Rate != 250 || !slices.Equal(m.Slots, run.Plan.Moves[0].Slots) {
		t.Fatalf("started %+v %v", m, err)
	}

	// Errors of the request itself.
	_, err = cl.Rebalance(ctx, RebalanceRequest{DC: "dc9", DryRun: true})
	apiErr(t, err, http.StatusNotFound, "datacenter dc9 does not exist")
	_, err = cl.Rebalance(ctx, RebalanceRequest{DC: "dc1", DryRun: true, Tolerance: 2})
	apiErr(t, err, http.StatusBadRequest, "tolerance")
}

func TestRebalanceMasterDown(t *testing.T) {
	c := newTestCluster(t)
	n := c.start("n1", "dc1")
	cl := NewClient(n.AdminAddr())
	ctx := context.Background()
	if err := cl.AddGroup(ctx, "dc1", fsm.Group{ID: "g1", Master: freeAddr(t)}); err != nil {
		t.Fatal(err)
	}
	_, err := cl.Rebalance(ctx, RebalanceRequest{DC: "dc1", DryRun: true})
	apiErr(t, err, http.StatusBadGateway, "cannot read the groups' load: group g1")
}

func TestRateTracker(t *testing.T) {
	rt := newRateTracker()
	t0 := time.Unix(1000, 0)
	st := fsm.New()
	report := func(keys int64, at time.Duration, state fsm.MigrationState) {
		st = st.Clone()
		st.Migrations[1] = &fsm.Migration{ID: 1, State: state, KeysMoved: keys}
		rt.record(st, t0.Add(at))
	}
	report(0, 0, fsm.MigrationFrozen)
	report(100, time.Second, fsm.MigrationMigrating)
	if r := rt.rate(1, t0.Add(time.Second)); r != 0 {
		t.Fatalf("one sample: %v", r)
	}
	report(1100, 2*time.Second, fsm.MigrationMigrating)
	report(2100, 3*time.Second, fsm.MigrationMigrating)
	if r := rt.rate(1, t0.Add(3*time.Second)); r != 1000 {
		t.Fatalf("rate %v", r)
	}
	if r := rt.rate(1, t0.Add(20*time.Second)); r != 0 {
		t.Fatalf("stale rate %v", r)
	}
	// Counting restarts (keys moving back after a cancel): the old samples go.
	report(10, 4*time.Second, fsm.MigrationMigrating)
	if r := rt.rate(1, t0.Add(4*time.Second)); r != 0 {
		t.Fatalf("after restart %v", r)
	}
	// The window keeps about rateWindow of samples.
	for i := 0; i < 30; i++ {
		report(int64(i+1)*500, time.Duration(5+i)*time.Second, fsm.MigrationMigrating)
	}
	if r := rt.rate(1, t0.Add(34*time.Second)); r != 500 || len(rt.samples[1]) > 12 {
		t.Fatalf("rate %v, %d samples", r, len(rt.samples[1]))
	}
	report(0, 40*time.Second, fsm.MigrationDone)
	if len(rt.samples) != 0 {
		t.Fatal("finished migration still tracked")
	}
}

// formatSettled reports whether nothing is left to propose about the data format: no member
// runs a format above the cluster's (a raise to come), and every member acts on it (no report
// to come).
func formatSettled(st *fsm.State) bool {
	if to, _ := st.NextDataFormat(); to != 0 || len(st.Nodes) == 0 {
		return false
	}
	for _, n := range st.Nodes {
		if n.ActsOn() != st.Format() {
			return false
		}
	}
	return true
}
