package backend

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redraft/redraft/internal/testredis"
)

// A function and its grouped form, laid out as Merge describes; incrOnlyLib lacks the
// grouped form.
const (
	incrFuncs = `
local function incr(KEYS, ARGV)
  if ARGV[1] == 'bad' then return redis.error_reply('ERR bad increment') end
  return redis.call('INCRBY', KEYS[1], ARGV[1])
end
redis.register_function('incr', incr)
`
	incrLib = "#!lua name=mergetest\n" + incrFuncs + `
redis.register_function('incr_group', function(KEYS, ARGV)
  local out, ki, ai = {}, 1, 2
  for w = 1, tonumber(ARGV[1]) do
    local nk, na = tonumber(ARGV[ai]), tonumber(ARGV[ai + 1])
    local k, a = KEYS[ki], ARGV[ai + 2]
    ki, ai = ki + nk, ai + 2 + na
    if a == 'bad' then out[w] = {err = 'ERR bad increment'} else out[w] = redis.call('INCRBY', k, a) end
  end
  return out
end)
`
	incrOnlyLib = "#!lua name=mergetestonly\n" + incrFuncs
)

// TestConnMergesScriptCalls has many goroutines share one connection with calls of a script
// that the pool groups, mixed with plain commands: every reply must reach its own request, in
// each goroutine's order, with an error reply only for the call that earned it; the server
// must have seen fewer calls than were made.
func TestConnMergesScriptCalls(t *testing.T) {
	r := testredis.Start(t)
	var stats Stats
	p := NewPool(Options{Group: "g1", Addr: r.Addr, Timeout: 5 * time.Second, Stats: &stats,
		Libraries: []string{incrLib}, Merge: &Merge{Into: "incr_group", Max: 8}})
	defer p.Close()
	const goroutines, rounds = 16, 200
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := NewWaiter()
			c := p.Conn(0, 0)
			key := fmt.Sprintf("{k%d}", g)
			for i := range rounds {
				reqs := []*Request{NewRequest(w), NewRequest(w), NewRequest(w), NewRequest(w)}
				for _, q := range reqs {
					q.Reset(1)
				}
				c.SubmitMerge(reqs[0], cmd("FCALL", "incr", "1", key, "1"))
				c.SubmitMerge(reqs[1], cmd("FCALL", "incr", "1", key, "bad"))
				c.Submit(reqs[2], cmd("GET", key))
				c.SubmitMerge(reqs[3], cmd("FCALL", "incr", "1", key, "2"))
				c.Flush()
				for _, q := range reqs {
					w.Wait(q)
				}
				v := 3 * i
				want := []string{
					":" + strconv.Itoa(v+1) + "\r\n",
					"-ERR bad increment\r\n",
					fmt.Sprintf("$%d\r\n%d\r\n", len(strconv.Itoa(v+1)), v+1),
					":" + strconv.Itoa(v+3) + "\r\n",
				}
				for j, q := range reqs {
					if q.Err != nil || string(q.Reply) != want[j] {
						errs <- fmt.Errorf("goroutine %d round %d request %d: %q %v, want %q", g, i, j, q.Reply, q.Err, want[j])
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	calls := goroutines * rounds * 3
	if stats.Groups.Load() == 0 || stats.Grouped.Load() < 2*stats.Groups.Load() {
		t.Fatalf("%d grouped calls carried %d of %d calls", stats.Groups.Load(), stats.Grouped.Load(), calls)
	}
	t.Logf("%d grouped calls carried %d of %d calls", stats.Groups.Load(), stats.Grouped.Load(), calls)
	q := NewRequest(NewWaiter())
	q.Reset(1)
	c := p.Conn(0, 0)
	c.Submit(q, cmd("INFO", "commandstats"))
	c.Flush()
	q.waiter.Wait(q)
	fcalls := int(testredis.CommandStat(string(q.Reply), "fcall", "calls"))
	if fcalls == 0 || fcalls >= calls || int64(fcalls) != int64(calls)-stats.Grouped.Load()+stats.Groups.Load() {
		t.Fatalf("server ran FCALL %d times for %d calls (%d groups carrying %d)", fcalls, calls, stats.Groups.Load(), stats.Grouped.Load())
	}
}

// TestConnMergedCallsFailTogether: a grouped call the server refuses as a whole (no such function)
// answers every part with the refusal, and a connection that breaks fails every waiting part.
func TestConnMergedCallsFailTogether(t *testing.T) {
	r := testredis.Start(t)
	var stats Stats
	p := NewPool(Options{Group: "g1", Addr: r.Addr, Timeout: 5 * time.Second, Stats: &stats,
		Libraries: []string{incrOnlyLib}, Merge: &Merge{Into: "incr_group"}})
	defer p.Close()
	w := NewWaiter()
	c := p.Conn(0, 0)
	// Hold the connection with a blocking command, so the calls queue behind it and group.
	block := NewRequest(w)
	block.Reset(1)
	c.Submit(block, cmd("BLPOP", "nothing", "0.2"))
	c.Flush()
	parts := submitIncrs(c, w, 5)
	for _, q := range parts {
		w.Wait(q)
		if q.Err != nil || !strings.HasPrefix(string(q.Reply), "-ERR Function not found") {
			t.Fatalf("part of a call the server does not know: %q %v", q.Reply, q.Err)
		}
	}
	if stats.Groups.Load() != 1 {
		t.Fatalf("%d grouped calls, want 1", stats.Groups.Load())
	}
	// Broken connection: the grouped call waits behind a long BLPOP when the pool closes.
	block.Reset(1)
	c.Submit(block, cmd("BLPOP", "nothing", "10"))
	c.Flush()
	parts = submitIncrs(c, w, 3)
	p.Close()
	for _, q := range append(parts, block) {
		w.Wait(q)
		if q.Err == nil {
			t.Fatalf("request on a closed pool answered %q", q.Reply)
		}
	}
}

// submitIncrs submits n mergeable calls of incr on c, flushes, and returns their requests.
func submitIncrs(c *Conn, w *Waiter, n int) []*Request {
	var parts []*Request
	for i := range n {
		q := NewRequest(w)
		q.Reset(1)
		c.SubmitMerge(q, cmd("FCALL", "incr", "1", "k", strconv.Itoa(i+1)))
		parts = append(parts, q)
	}
	c.Flush()
	return parts
}
