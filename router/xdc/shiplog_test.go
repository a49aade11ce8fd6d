package xdc

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testredis"
)

// TestLogCutWhileShipping: the log is cut past the destination's position while its shipper
// streams to it (a call in flight, as when a destination is slow or holds ranges while the
// writers pass the log's MAXLEN bound). The shipper must not read on from what the log still
// holds as if nothing lay between: it finds its position gone and copies the group in full,
// and dc2 ends with every write dc1 made.
func TestLogCutWhileShipping(t *testing.T) {
	ctx := context.Background()
	n, dcs := startDCs(t, "dc1", "dc2")
	dc1, dc2 := dcs[0], dcs[1]
	raiseFormat(t, n, LogDataFormat)
	incr := func(from, to int) {
		for i := from; i < to; i++ {
			dc1.write(t, "INCR", "{k"+strconv.Itoa(i%13)+"}c")
			dc1.write(t, "RPUSH", "{l"+strconv.Itoa(i%7)+"}l", strconv.Itoa(i))
		}
	}
	equal := func(what string) {
		t.Helper()
		if a, b, ok := sameDataWithin(dc1.rc, dc2.rc, 30*time.Second); !ok {
			t.Fatalf("%s: the DCs still differ:\ndc1 %v\ndc2 %v", what, a, b)
		}
	}
	incr(0, 50)
	equal("before the cut")

	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	dc2.answered.Store(func(name string) {
		if name == RPCLog {
			once.Do(func() {
				close(held)
				<-release
			})
		}
	})
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	incr(50, 51)
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("dc1's shipper made no call to dc2")
	}
	// While the range is in flight: more writes, then the log cut to its last few entries,
	// as WRITE's MAXLEN does to a log that outgrew its bound.
	incr(51, 151)
	if err := dc1.rc.XTrimMaxLen(ctx, LogKey, 5).Err(); err != nil {
		t.Fatal(err)
	}
	copied := dc1.repl.counter("dc2").copied.Load()
	released = true
	close(release)
	incr(151, 160)
	// The copy is counted once dc2 answered its last chunk: without it dc2 lacks the cut
	// entries for good (the DCs never agree, below).
	for deadline := time.Now().Add(30 * time.Second); dc1.repl.counter("dc2").copied.Load() == copied; {
		if time.Now().After(deadline) {
			t.Fatalf("no copy of the group to dc2 within 30 s of the cut; dc2 holds {k0}c = %s, dc1 %s",
				dc2.rc.Get(ctx, "{k0}c").Val(), dc1.rc.Get(ctx, "{k0}c").Val())
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
	equal("after the log was cut under the shipper")
}

// TestReadFromStartOfCutLog: a read from the log's start ("0-0", a destination that applied
// nothing of it) of a log that was cut (its first entries trimmed, as by WRITE's MAXLEN) fails
// with errBehind, however it was checked before: the read would begin after the cut, and the
// destination would stand past entries it never got. A log never cut is read.
func TestReadFromStartOfCutLog(t *testing.T) {
	ctx := context.Background()
	c := client(t, testredis.Start(t))
	g := newLogGroup(nil, c, LogID{DC: "dc1", Group: "g"}, 0, []string{"dc2"}, 20*time.Millisecond)
	s := g.shippers[0]
	defer func() {
		if s.conn != nil {
			s.conn.close()
		}
	}()
	for i := range 10 {
		args := []any{"XADD", LogKey, "*"}
		for _, f := range EntryFields("dc1", [][]string{{"INCR", "k" + strconv.Itoa(i)}}) {
			args = append(args, f)
		}
		if err := c.Do(ctx, args...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if es, err := s.read(ctx, "", true); err != nil || len(es) != 10 {
		t.Fatalf("a whole log from its start: %d entries, %v", len(es), err)
	}
	if err := c.XTrimMaxLen(ctx, LogKey, 5).Err(); err != nil {
		t.Fatal(err)
	}
	if es, err := s.read(ctx, "", true); !errors.Is(err, errBehind) {
		t.Fatalf("a cut log from its start: %d entries, %v; want errBehind", len(es), err)
	}
	if es, err := s.read(ctx, "", false); err != nil || len(es) != 5 {
		t.Fatalf("unchecked: %d entries, %v", len(es), err)
	}
}

// TestPlanLogsChainsAcrossMasters: a log started again on a failover's new master (another
// server and epoch in its key) waits for the old master's stopped group to end, as one started
// again on the same master does: the old group may still have a range in flight to a
// destination, and the new group, asking that destination its position meanwhile, would take
// a position the range then moves past (writes only the destination holds, uncounted).
func TestPlanLogsChainsAcrossMasters(t *testing.T) {
	r := New(Config{Logger: testLogger})
	t.Cleanup(func() {
		for _, c := range r.clients {
			_ = c.Close()
		}
	})
	ctx := context.Background()
	log := LogID{DC: "dc1", Group: "g1"}
	old := logKey{server: server{group: "g1", master: "127.0.0.1:1"}, db: 0, epoch: 1}
	inFlight := make(chan struct{}) // the old group's end: its range still in flight
	r.mu.Lock()
	r.logs = map[logKey]*runningLog{}
	r.retired = map[logKey]retiredLog{
		old: {log: log, done: inFlight},
		// Another database's log and another log are not this one's predecessors.
		{server: old.server, db: 1, epoch: 1}:                          {log: log, done: make(chan struct{})},
		{server: server{group: "g2", master: "127.0.0.1:2"}, epoch: 1}: {log: LogID{DC: "dc1", Group: "g2"}, done: make(chan struct{})},
	}
	promoted := logKey{server: server{group: "g1", master: "127.0.0.1:3"}, db: 0, epoch: 2}
	r.planLogs(ctx, map[logKey]LogID{promoted: log}, []string{"dc2"})
	if _, ok := r.retired[old]; ok || len(r.retired) != 2 {
		t.Fatalf("the new master's group did not take the old one's end as its predecessor: retired %v", slices.Collect(maps.Keys(r.retired)))
	}
	started := r.logs[promoted]
	r.planLogs(ctx, nil, nil) // stopped before it ran: it ends once its predecessor has
	r.mu.Unlock()
	select {
	case <-started.done:
		t.Fatal("the new master's group ended before the old one did: it did not wait for it")
	default:
	}
	close(inFlight)
	<-started.done
}

// TestAfterGrace: a stopped group's range call runs on for the grace, not forever (a failover's
// new group waits for it) and not not at all (the range may still be applied at the destination).
func TestAfterGrace(t *testing.T) {
	base, stopBase := context.WithCancel(context.Background())
	defer stopBase()
	group, stopGroup := context.WithCancel(context.Background())
	c, stop := afterGrace(group, base, 200*time.Millisecond)
	defer stop()
	stopGroup()
	at := time.Now()
	<-c.Done()
	if d := time.Since(at); d < 150*time.Millisecond {
		t.Errorf("the call ended %v after its group, before the grace", d)
	}
	// The replicator's end ends it at once.
	group2, stopGroup2 := context.WithCancel(context.Background())
	defer stopGroup2()
	c2, stop2 := afterGrace(group2, base, time.Hour)
	defer stop2()
	stopBase()
	<-c2.Done()
	// Without a base the call ends with its group.
	group3, stopGroup3 := context.WithCancel(context.Background())
	c3, stop3 := afterGrace(group3, nil, time.Hour)
	defer stop3()
	stopGroup3()
	<-c3.Done()
}

// TestCapRange: a range is cut once its effects pass rangeBytes, keeping one entry at least.
func TestCapRange(t *testing.T) {
	entry := func(n int) Entry { return Entry{Cmds: [][]string{{"~s", "k", "", "", strings.Repeat("v", n), "-1"}}} }
	big := rangeBytes / 3
	if got := len(capRange([]Entry{entry(big), entry(big), entry(big), entry(big), entry(big)})); got != 2 && got != 3 {
		t.Fatalf("five entries of a third of the bound each: %d kept, want 2 or 3", got)
	}
	if got := len(capRange([]Entry{entry(2 * rangeBytes), entry(1)})); got != 1 {
		t.Fatalf("an entry over the bound: %d kept, want it alone", got)
	}
	if got := len(capRange([]Entry{entry(10), entry(10)})); got != 2 {
		t.Fatalf("small entries: %d kept, want all", got)
	}
}

// TestShipperChecksAReadFromTheStartOfACutLog: the destination has applied nothing of the log
// (position ""), and while the shipper waits for the outboxes to drain (a migration of the DC
// holds them) the log's head is cut. The shipper's first read then begins after the cut: it
// must find the destination behind and copy the group in full, not ship what is left as if
// the log began there. Until session 45 the loop read from the start unchecked (its
// lost-heartbeat position, "", equalled the destination's), and the cut writes never reached
// dc2.
func TestShipperChecksAReadFromTheStartOfACutLog(t *testing.T) {
	ctx := context.Background()
	n, dcs := startDCsWith(t, func(c *Config) { c.noLogShipping = true }, "dc1", "dc2")
	dc1, dc2 := dcs[0], dcs[1]
	raiseFormat(t, n, LogDataFormat)
	n.apply(t, &fsm.AddGroup{DC: "dc1", Group: fsm.Group{ID: "g-dc1b", Master: testredis.Start(t).Addr}})
	n.apply(t, &fsm.StartMigration{DC: "dc1", Slots: []fsm.SlotRange{{From: 16000, To: 16000}}, To: "g-dc1b"})
	g, stop := shipGroupLog(dc1, dc2)
	defer stop()
	s := g.shippers[0]
	deadline := time.Now().Add(10 * time.Second)
	stalled := func() string {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.stats.stalled
	}
	for !strings.Contains(stalled(), "waiting for the outboxes") {
		if time.Now().After(deadline) {
			t.Fatalf("the shipper does not wait for the outboxes (stalled: %q)", stalled())
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
	for i := range 10 {
		dc1.write(t, "SET", "{c}"+strconv.Itoa(i), "v")
	}
	if err := dc1.rc.XTrimMaxLen(ctx, LogKey, 3).Err(); err != nil {
		t.Fatal(err)
	}
	for id := range n.State().Migrations {
		n.apply(t, &fsm.ControlMigration{ID: id, Action: fsm.MigrationCancel})
	}
	if a, b, ok := sameDataWithin(dc1.rc, dc2.rc, 30*time.Second); !ok {
		t.Fatalf("the DCs still differ:\ndc1 %v\ndc2 %v", a, b)
	}
}
