package backend

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redraft/redraft/internal/testredis"
	"github.com/redraft/redraft/router/resp"
)

func cmd(args ...string) []byte {
	b := resp.AppendArray(nil, len(args))
	for _, a := range args {
		b = resp.AppendBulkString(b, a)
	}
	return b
}

// TestConnMatchesRepliesUnderConcurrency has many goroutines share one pipelined connection
// and checks every reply reaches the request that asked for it.
func TestConnMatchesRepliesUnderConcurrency(t *testing.T) {
	r := testredis.Start(t)
	var stats Stats
	p := NewPool(Options{Group: "g1", Addr: r.Addr, Timeout: 2 * time.Second, Stats: &stats})
	defer p.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			w := NewWaiter()
			c := p.Conn(0, uint64(g))
			for i := 0; i < 300; i++ {
				key, val := fmt.Sprintf("k%d", g), fmt.Sprintf("v%d-%d", g, i)
				set, get := NewRequest(w), NewRequest(w)
				set.Reset(1)
				get.Reset(1)
				c.Submit(set, cmd("SET", key, val))
				c.Submit(get, cmd("GET", key))
				c.Flush()
				w.Wait(set)
				w.Wait(get)
				want := fmt.Sprintf("$%d\r\n%s\r\n", len(val), val)
				if set.Err != nil || string(set.Reply) != "+OK\r\n" || string(get.Reply) != want {
					errs <- fmt.Errorf("goroutine %d: SET %q %v, GET %q want %q", g, set.Reply, set.Err, get.Reply, want)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if w := stats.Writes.Load(); w == 0 || w >= 16*300 {
		t.Fatalf("%d writes for %d round trips: no batching", w, 16*300)
	}
}

func TestConnMultiReplyKeepsLast(t *testing.T) {
	r := testredis.Start(t)
	p := NewPool(Options{Group: "g1", Addr: r.Addr, Stats: &Stats{}})
	defer p.Close()
	w := NewWaiter()
	req := NewRequest(w)
	req.Reset(4)
	raw := append(append(append(cmd("MULTI"), cmd("SET", "a", "1")...), cmd("INCR", "a")...), cmd("EXEC")...)
	c := p.Conn(0, 0)
	c.Submit(req, raw)
	c.Flush()
	w.Wait(req)
	if string(req.Reply) != "*2\r\n+OK\r\n:2\r\n" {
		t.Fatalf("EXEC reply %q", req.Reply)
	}
}

// TestConnDownFailsFastAndRecovers checks the error names the group, that requests during
// the backoff fail without dialing, and that the connection comes back.
func TestConnDownFailsFastAndRecovers(t *testing.T) {
	r := testredis.Start(t)
	var stats Stats
	var gs GroupStats
	p := NewPool(Options{Group: "g7", Addr: r.Addr, Timeout: time.Second, Stats: &stats, Counters: &gs})
	defer p.Close()
	w := NewWaiter()
	do := func() *Request {
		req := NewRequest(w)
		req.Reset(1)
		c := p.Conn(0, 0)
		c.Submit(req, cmd("PING"))
		c.Flush()
		w.Wait(req)
		return req
	}
	if req := do(); req.Err != nil {
		t.Fatal(req.Err)
	}
	r.Stop()
	var ue *UnavailableError
	for i := 0; i < 3; i++ {
		req := do()
		if !errors.As(req.Err, &ue) || !strings.HasPrefix(req.Err.Error(), "group g7 ("+r.Addr+") is unavailable: ") {
			t.Fatalf("after stop: %v", req.Err)
		}
	}
	dials := stats.DialErrors.Load()
	for i := 0; i < 50; i++ {
		do()
	}
	if d := stats.DialErrors.Load() - dials; d > 2 {
		t.Fatalf("%d dials for 50 requests during backoff", d)
	}
	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for do().Err != nil {
		if time.Now().After(deadline) {
			t.Fatal("connection did not come back")
		}
		time.Sleep(10 * time.Millisecond) // pacing retries while the backoff passes
	}
	p.Close()
	if req := do(); !errors.Is(req.Err, ErrClosed) {
		t.Fatalf("after Close: %v", req.Err)
	}
	// The group's counters: two connections (the first, the reconnect), one dropped by the
	// stop (closing the pool is no drop), and the failed dials in between.
	if c, d, e := gs.Connects.Load(), gs.Drops.Load(), gs.DialErrors.Load(); c != 2 || d != 1 || e < 1 || e != stats.DialErrors.Load() {
		t.Fatalf("group counters: %d connects, %d drops, %d dial errors (pool stats: %d); want 2, 1, >= 1 and equal",
			c, d, e, stats.DialErrors.Load())
	}
}

// TestPoolCloseWakesDedicated checks a session blocked on a dedicated connection is woken
// when its pool closes (group removed, master changed, shutdown).
func TestPoolCloseWakesDedicated(t *testing.T) {
	r := testredis.Start(t)
	var stats Stats
	p := NewPool(Options{Group: "g1", Addr: r.Addr, Stats: &stats})
	d, err := p.Dial(0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := d.Do(cmd("BLPOP", "nothing", "0"), 1, 0, nil)
		done <- err
	}()
	p.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("blocked command succeeded after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blocked command not woken by Close")
	}
	d.Close()
	if n := stats.Dedicated.Load(); n != 0 {
		t.Fatalf("dedicated count %d after Close", n)
	}
}

// TestSlowClientIDDoesNotShiftReplies: a CLIENT ID that times out (the server busy longer than
// the pool's timeout) closes the dedicated connection: the command after it fails instead of
// reading the late id as its reply, and every later reply one behind.
func TestSlowClientIDDoesNotShiftReplies(t *testing.T) {
	r := testredis.Start(t, testredis.WithArgs("--enable-debug-command", "yes"))
	p := NewPool(Options{Group: "g1", Addr: r.Addr, Timeout: 200 * time.Millisecond, Stats: &Stats{}})
	defer p.Close()
	d, err := p.Dial(0)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	other, err := p.Dial(0)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	// The server sleeps 1 s: the dedicated connection's CLIENT ID waits behind it.
	if err := other.Write(cmd("DEBUG", "SLEEP", "1")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		// Wait until the sleep runs (another connection's PING times out), so that CLIENT ID
		// surely waits behind it.
		probe, err := p.Dial(0)
		if err != nil {
			break // the dial itself timed out: the server sleeps
		}
		_, err = probe.Do(cmd("PING"), 1, 50*time.Millisecond, nil)
		probe.Close()
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server never slept")
		}
	}
	if id := d.ClientID(); id != 0 {
		t.Fatalf("CLIENT ID during the sleep = %d, want 0 (timed out)", id)
	}
	reply, err := d.Do(cmd("ECHO", "mine"), 1, 3*time.Second, nil)
	if err == nil {
		t.Fatalf("the command after a timed-out CLIENT ID got %q; want an error (the connection closed)", reply)
	}
}
