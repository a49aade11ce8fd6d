package router

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
)

// flushStates returns tc's state with a node, and the states of a FLUSHDB of database 0 frozen
// and done.
func flushStates(t *testing.T, tc *testCluster) (frozen, done *fsm.State) {
	t.Helper()
	st := tc.st
	var err error
	for _, c := range []fsm.Command{
		&fsm.AddNode{Node: fsm.Node{ID: "n1", DC: "dc1", Peer: "127.0.0.1:1", Listen: "127.0.0.1:2", Admin: "127.0.0.1:3"}},
		&fsm.StartFlush{Token: "t", DB: 0, Node: "n1"},
	} {
		if st, err = fsm.ApplyCommand(st, st.Index+1, c); err != nil {
			t.Fatalf("%s: %v", c.Name(), err)
		}
	}
	frozen = st
	id := st.Flush.ID
	for _, c := range []fsm.Command{&fsm.AckFlush{ID: id, Node: "n1"}, &fsm.FinishFlush{ID: id, Node: "n1"}} {
		if st, err = fsm.ApplyCommand(st, st.Index+1, c); err != nil {
			t.Fatalf("%s: %v", c.Name(), err)
		}
	}
	if st.Flush.Phase != fsm.FlushDone {
		t.Fatalf("flush after ack and finish: %+v", st.Flush)
	}
	return frozen, st
}

// While a flush of database 0 is active, the router holds keyed requests for database 0 (and
// only those), WaitFlushIdle returns, and the held requests go on once the flush is done.
func TestFlushHoldsItsDatabase(t *testing.T) {
	tc := startCluster(t, 2, 1, Config{FreezeWait: 10 * time.Second})
	s := tc.servers[0]
	ctx := ctxT(t)
	frozen, done := flushStates(t, tc)
	c0 := tc.client(0, func(o *redis.Options) { o.ReadTimeout = 15 * time.Second })
	c1 := tc.client(0, func(o *redis.Options) { o.DB = 1 })
	before := s.held.Load()
	s.SetState(frozen)
	idle, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.WaitFlushIdle(idle, frozen.Flush.ID); err != nil {
		t.Fatalf("WaitFlushIdle: %v", err)
	}
	var wg sync.WaitGroup
	var heldErr error
	var answered time.Time
	wg.Add(1)
	go func() {
		defer wg.Done()
		heldErr = c0.Set(ctx, "k0", "v", 0).Err()
		answered = time.Now()
	}()
	waitFor(t, "the db 0 write held", func() bool { return s.held.Load() > before })
	if err := c1.Set(ctx, "k1", "v", 0).Err(); err != nil {
		t.Fatalf("a write to database 1 during a FLUSHDB of database 0: %v", err)
	}
	released := time.Now()
	s.SetState(done)
	wg.Wait()
	if heldErr != nil || answered.Before(released) {
		t.Fatalf("held write: %v, answered %v before the flush was done", heldErr, released.Sub(answered))
	}
	if err := s.WaitFlushIdle(idle, frozen.Flush.ID); err == nil {
		t.Fatal("WaitFlushIdle of a flush that is over returned nil")
	}
}

// FLUSHDB and FLUSHALL hand the flush to Config.Flush with the session's database, ASYNC
// read, and its error as the reply; bad options are a syntax error.
func TestFlushCallsTheCluster(t *testing.T) {
	type call struct {
		db    int
		async bool
	}
	var mu sync.Mutex
	var calls []call
	fail := false
	tc := startCluster(t, 1, 1, Config{Flush: func(_ context.Context, db int, async bool) error {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, call{db, async})
		if fail {
			return &replyError{"flush failed, nothing was deleted: node n2 did not ack"}
		}
		return nil
	}})
	ctx := ctxT(t)
	c3 := tc.client(0, func(o *redis.Options) { o.DB = 3 })
	if err := c3.Do(ctx, "FLUSHDB", "async").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c3.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c3.Do(ctx, "FLUSHALL", "SYNC").Err(); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]any{{"FLUSHALL", "NOW"}, {"FLUSHDB", "ASYNC", "x"}} {
		if err := c3.Do(ctx, args...).Err(); err == nil || !strings.Contains(err.Error(), "syntax") {
			t.Errorf("%v: %v", args, err)
		}
	}
	mu.Lock()
	fail = true
	mu.Unlock()
	if err := c3.FlushAll(ctx).Err(); err == nil || !strings.Contains(err.Error(), "nothing was deleted") {
		t.Errorf("failed flush answered %v", err)
	}
	want := []call{{3, true}, {fsm.FlushAllDBs, false}, {fsm.FlushAllDBs, false}, {fsm.FlushAllDBs, false}}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != len(want) {
		t.Fatalf("calls %v, want %v", calls, want)
	}
	for i := range want {
		if calls[i] != want[i] {
			t.Errorf("call %d = %+v, want %+v", i, calls[i], want[i])
		}
	}
}

// A blocking command sent while a flush is active waits, not counted in flight, until the flush
// is over, whatever its database, and then blocks: a flush's drain waits for every slot's
// requests in flight, and SetState releases blocked commands only when a flush starts, so one
// that blocked during the flush held it up until the client's timeout (for good with BLPOP 0).
// Past FreezeWait it answers -TRYAGAIN, as a held request does.
func TestBlockingDuringFlushDoesNotHoldIt(t *testing.T) {
	tc := startCluster(t, 2, 1, Config{FreezeWait: 10 * time.Second})
	s := tc.servers[0]
	ctx := ctxT(t)
	frozen, done := flushStates(t, tc)
	c1 := tc.client(0, func(o *redis.Options) { o.DB = 1; o.ReadTimeout = -1 })
	s.SetState(frozen)
	before := s.held.Load()
	got := make(chan []string, 1)
	errc := make(chan error, 1)
	go func() {
		v, err := c1.BLPop(ctx, 0, "list").Result()
		got <- v
		errc <- err
	}()
	waitFor(t, "the BLPOP held", func() bool { return s.held.Load() > before })
	idle, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.WaitFlushIdle(idle, frozen.Flush.ID); err != nil {
		s.SetState(done)
		t.Fatalf("WaitFlushIdle with a BLPOP sent during the flush: %v", err)
	}
	s.SetState(done)
	push := tc.client(0, func(o *redis.Options) { o.DB = 1 })
	waitFor(t, "the BLPOP blocked after the flush", func() bool {
		n, _ := push.LPush(ctx, "list", "a").Result()
		if n == 1 {
			return true
		}
		push.Del(ctx, "list")
		return false
	})
	if v, err := <-got, <-errc; err != nil || len(v) != 2 || v[1] != "a" {
		t.Fatalf("BLPOP after the flush = %v, %v", v, err)
	}
}

// TestBlockingDuringFlushGivesUp: held past FreezeWait, the blocking command answers -TRYAGAIN.
func TestBlockingDuringFlushGivesUp(t *testing.T) {
	tc := startCluster(t, 2, 1, Config{FreezeWait: 300 * time.Millisecond})
	s := tc.servers[0]
	ctx := ctxT(t)
	frozen, done := flushStates(t, tc)
	c1 := tc.client(0, func(o *redis.Options) { o.DB = 1; o.ReadTimeout = -1 })
	s.SetState(frozen)
	defer s.SetState(done)
	if err := c1.BLPop(ctx, 0, "list").Err(); err == nil || !strings.HasPrefix(err.Error(), "TRYAGAIN") {
		t.Fatalf("BLPOP held past FreezeWait: %v, want TRYAGAIN", err)
	}
}

// A MOVE or COPY ... DB from another database into the flushed one is held as a request of the
// flushed database is (until session 45 it went through, and its key could survive the flush
// in one DC only); one out of the flushed database is held too, as any of its requests.
func TestFlushHoldsWritesIntoItsDatabase(t *testing.T) {
	tc := startCluster(t, 2, 1, Config{FreezeWait: 300 * time.Millisecond})
	s := tc.servers[0]
	ctx := ctxT(t)
	frozen, _ := flushStates(t, tc)
	c1 := tc.client(0, func(o *redis.Options) { o.DB = 1 })
	for _, k := range []string{"m", "c", "{x}a"} {
		if err := c1.Set(ctx, k, "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	s.SetState(frozen) // a FLUSHDB of database 0
	for _, cmd := range [][]any{{"MOVE", "m", "0"}, {"COPY", "c", "c", "DB", "0"}} {
		if err := c1.Do(ctx, cmd...).Err(); err == nil || !strings.HasPrefix(err.Error(), "TRYAGAIN") {
			t.Fatalf("%v during a flush of database 0 answered %v, want TRYAGAIN once held past FreezeWait", cmd, err)
		}
	}
	if err := c1.Do(ctx, "COPY", "{x}a", "{x}b").Err(); err != nil {
		t.Fatalf("a COPY within database 1 during a flush of database 0: %v", err)
	}
}
