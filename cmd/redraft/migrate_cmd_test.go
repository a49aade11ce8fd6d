package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/urfave/cli/v2"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testredis"
	"github.com/redraft/redraft/migrate"
	"github.com/redraft/redraft/node"
)

// openGate is a data plane with nothing in flight: freezes are acked at once.
type openGate struct{}

func (openGate) WaitIdle(context.Context, *migrate.SlotSet) error { return nil }

// cliMu serialises runCLI: it swaps os.Stdout and os.Stderr.
var cliMu sync.Mutex

// runCLI runs the migration commands as the redraft binary would, against admin, and returns
// what they printed.
func runCLI(t *testing.T, admin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cliMu.Lock()
	defer cliMu.Unlock()
	app := &cli.App{
		Name: "redraft",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "admin"},
			&cli.BoolFlag{Name: "json"},
		},
		Commands:       []*cli.Command{migrateCommand(), migrationsCommand(), rebalanceCommand()},
		ExitErrHandler: func(*cli.Context, error) {},
	}
	capture := func(f **os.File) (func() string, error) {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		old := *f
		*f = w
		var buf bytes.Buffer
		done := make(chan struct{})
		go func() { _, _ = io.Copy(&buf, r); close(done) }()
		return func() string { w.Close(); <-done; *f = old; return buf.String() }, nil
	}
	outDone, err := capture(&os.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	errDone, err := capture(&os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	err = app.Run(append([]string{"redraft", "--admin", admin}, args...))
	stdout, stderr = outDone(), errDone()
	t.Logf("redraft %s\n%s%s-> %v", strings.Join(args, " "), stdout, stderr, err)
	return stdout, stderr, err
}

// keysIn counts the keys of r whose slot is in [from, to].
func keysIn(t *testing.T, r *redis.Client, from, to int) int {
	t.Helper()
	keys, err := r.Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, k := range keys {
		if k == migrate.FenceKey {
			continue // redraft's record of finished migration runs, not data
		}
		if s := migrate.SlotString(k); s >= from && s <= to {
			n++
		}
	}
	return n
}

func TestMigrateCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node and redis-server")
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	cfg := node.DefaultConfig()
	cfg.ID, cfg.DC, cfg.DataDir = "n1", "dc1", filepath.Join(t.TempDir(), "n1")
	cfg.Listen, cfg.PeerListen, cfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	n, err := node.Start(cfg, node.Options{Logger: quiet, LogOutput: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := n.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	coord := migrate.NewCoordinator(n, openGate{}, migrate.MoveJob, quiet)
	n.OnState(coord.Notify)
	go coord.Run(ctx)

	admin := n.AdminAddr()
	cl := node.NewClient(admin)
	s1, s2, s3 := testredis.Start(t), testredis.Start(t, testredis.WithPassword("pw")), testredis.Start(t)
	for _, g := range []fsm.Group{{ID: "g1", Master: s1.Addr}, {ID: "g2", Master: s2.Addr, Password: "pw"}} {
		if err := cl.AddGroup(ctx, "dc1", g); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.AssignSlots(ctx, node.AssignRequest{DC: "dc1", Group: "g1", Slots: []string{"0-16383"}}); err != nil {
		t.Fatal(err)
	}
	r1 := redis.NewClient(&redis.Options{Addr: s1.Addr})
	r2 := redis.NewClient(&redis.Options{Addr: s2.Addr, Password: "pw"})
	r3 := redis.NewClient(&redis.Options{Addr: s3.Addr})
	defer r1.Close()
	defer r2.Close()
	defer r3.Close()
	for i := 0; i < 3000; i++ {
		if err := r1.Set(ctx, "key:"+strconv.Itoa(i), strings.Repeat("x", 1024), 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	low := keysIn(t, r1, 0, 8191)

	// Bad input says what to do.
	if _, _, err := runCLI(t, admin, "migrate", "--dc", "dc1", "--to", "g2"); err == nil || !strings.Contains(err.Error(), "give --dc, --slots and --to") {
		t.Fatalf("missing slots: %v", err)
	}
	if _, _, err := runCLI(t, admin, "migrate", "pause", "x"); err == nil || !strings.Contains(err.Error(), "give the migration id") {
		t.Fatalf("bad id: %v", err)
	}
	if _, _, err := runCLI(t, admin, "migrate", "pause", "77"); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("unknown id: %v", err)
	}

	// A migration with --wait runs to the end and says so.
	out, _, err := runCLI(t, admin, "migrate", "--dc", "dc1", "--slots", "0-8191", "--to", "g2", "--wait")
	if err != nil || !strings.Contains(out, "migration 1 started") || !strings.Contains(out, "migration 1 done") {
		t.Fatalf("migrate --wait: %v\n%s", err, out)
	}
	if got := keysIn(t, r2, 0, 8191); got != low || keysIn(t, r1, 0, 8191) != 0 {
		t.Fatalf("g2 holds %d of %d keys", got, low)
	}
	out, _, err = runCLI(t, admin, "migrations")
	if err != nil || !strings.Contains(out, "WAITING-FOR") || !strings.Contains(out, "migrated") {
		t.Fatalf("migrations: %v\n%s", err, out)
	}

	// Balanced now; with a new empty group the dry run plans moves into it and changes nothing.
	out, _, err = runCLI(t, admin, "rebalance", "--dc", "dc1", "--dry-run")
	if err != nil || !strings.Contains(out, "balanced: nothing to move") {
		t.Fatalf("rebalance balanced: %v\n%s", err, out)
	}
	if err := cl.AddGroup(ctx, "dc1", fsm.Group{ID: "g3", Master: s3.Addr}); err != nil {
		t.Fatal(err)
	}
	out, _, err = runCLI(t, admin, "rebalance", "--dc", "dc1", "--dry-run")
	if err != nil || !strings.Contains(out, "EST-KEYS") || !strings.Contains(out, "dry run: nothing changed") {
		t.Fatalf("rebalance dry run: %v\n%s", err, out)
	}
	if ms, _ := cl.Migrations(ctx, "", false); len(ms) != 1 {
		t.Fatalf("dry run started migrations: %+v", ms)
	}
	out, _, err = runCLI(t, admin, "rebalance", "--dc", "dc1", "--wait", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var final []node.MigrationInfo
	if err := json.Unmarshal([]byte(out), &final); err != nil || len(final) != 2 {
		t.Fatalf("rebalance --wait --json: %v\n%s", err, out)
	}
	for _, m := range final {
		if m.State != fsm.MigrationDone || m.To != "g3" {
			t.Fatalf("rebalance migration %+v", m)
		}
	}
	st, err := cl.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range st.DCs[0].Groups {
		if g.Slots < 5200 || g.Slots > 5700 {
			t.Errorf("group %s serves %d slots after rebalance", g.ID, g.Slots)
		}
	}

	// Cancel while migrating: the keys moved so far go back, the slots stay.
	out, _, err = runCLI(t, admin, "migrate", "--dc", "dc1", "--slots", "0-1000", "--to", "g1", "--rate", "20", "--json")
	var rep node.StartReply
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil || rep.ID == 0 {
		t.Fatalf("start: %v\n%s", err, out)
	}
	id := strconv.FormatUint(rep.ID, 10)
	deadline := time.Now().Add(20 * time.Second)
	for {
		m, err := cl.Migration(ctx, rep.ID)
		if err != nil {
			t.Fatal(err)
		}
		if m.State == fsm.MigrationMigrating && keysIn(t, r1, 0, 1000) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no key moved: %+v", m)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out, _, err = runCLI(t, admin, "migrate", "pause", id); err != nil || !strings.Contains(out, "(paused)") {
		t.Fatalf("pause: %v %s", err, out)
	}
	if out, _, err = runCLI(t, admin, "migrate", "cancel", id); err != nil || !strings.Contains(out, "moving back") {
		t.Fatalf("cancel: %v %s", err, out)
	}
	if _, _, err = runCLI(t, admin, "migrate", "rate", id, "0"); err != nil {
		t.Fatal(err)
	}
	_, _, err = runCLI(t, admin, "migrate", "watch", id)
	if err == nil || !strings.Contains(err.Error(), "ended cancelled") {
		t.Fatalf("watch cancelled: %v", err)
	}
	if got := keysIn(t, r1, 0, 1000); got != 0 {
		t.Fatalf("%d keys left on g1 after the cancel", got)
	}
	for s := 0; s <= 1000; s++ {
		if o := n.State().DCs["dc1"].Slots[s]; o == "g1" {
			t.Fatalf("slot %d went to g1", s)
		}
	}
}

func TestWatcherRender(t *testing.T) {
	w := &watcher{}
	t0 := time.Unix(1000, 0)
	m := node.MigrationInfo{Migration: fsm.Migration{ID: 7, State: fsm.MigrationFrozen}, WaitingFor: []string{"n2"}}
	line, _, done := w.render([]node.MigrationInfo{m}, t0)
	if done || !strings.Contains(line, "migration 7 [>") || !strings.Contains(line, "waiting for freeze acks from n2") {
		t.Fatalf("frozen: %q", line)
	}
	m.State, m.WaitingFor, m.KeysTotal = fsm.MigrationMigrating, nil, 1000
	m.KeysMoved = 100
	w.render([]node.MigrationInfo{m}, t0.Add(time.Second))
	m.KeysMoved = 300
	line, _, _ = w.render([]node.MigrationInfo{m}, t0.Add(3*time.Second))
	// No speed from the node: the watcher's own, 200 keys in 2 s; 700 left at 100/s.
	if !strings.Contains(line, " 30%  300/1000 keys  100 keys/s  ETA 7s  migrating") || !strings.Contains(line, "[=========>") {
		t.Fatalf("migrating: %q", line)
	}
	m.KeysPerSec = 350
	line, _, _ = w.render([]node.MigrationInfo{m}, t0.Add(4*time.Second))
	if !strings.Contains(line, "350 keys/s  ETA 2s") {
		t.Fatalf("node speed: %q", line)
	}
	m2 := m
	m2.ID, m2.State, m2.KeysMoved = 8, fsm.MigrationDone, 500
	line, state, done := w.render([]node.MigrationInfo{m, m2}, t0.Add(5*time.Second))
	if done || !strings.Contains(line, "2 migrations") || !strings.Contains(line, "800/1500 keys") || !strings.Contains(state, "1/2 ended") {
		t.Fatalf("two: %q %q", line, state)
	}
	m.State = fsm.MigrationDone
	if line, _, done = w.render([]node.MigrationInfo{m, m2}, t0.Add(6*time.Second)); !done || !strings.Contains(line, "100%") {
		t.Fatalf("done: %q", line)
	}
	if b := bar(0.5, 10); b != "[=====>    ]" {
		t.Fatalf("bar %q", b)
	}
}
