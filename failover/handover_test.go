package failover

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testredis"
)

// syncBuffer is a bytes.Buffer safe for a logger's writes and a test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestNoTakeOverOnTheFirstTickAfterAGap: a node that did not act on the cluster state for
// longer than master_down_after (its watcher asks no executor then) does not take a failover
// over on its first tick once it acts again, for want of a "yes" it never asked for: the
// executor must stay silent for the whole wait first. Until session 45 it took the failover
// over at once, from an executor that may well have been running it.
func TestNoTakeOverOnTheFirstTickAfterAGap(t *testing.T) {
	ctx := context.Background()
	m := testredis.Start(t)
	g := &fsm.Group{ID: "g1", Master: m.Addr, Failover: &fsm.Failover{Epoch: 1, From: m.Addr, Executor: "n2"}}
	st := &fsm.State{
		DCs:      map[string]*fsm.DC{"dc1": {Name: "dc1", Groups: map[string]*fsm.Group{"g1": g}}},
		Nodes:    map[string]*fsm.Node{"n1": {ID: "n1", DC: "dc1", Peer: "p1"}, "n2": {ID: "n2", DC: "dc1", Peer: "p2"}},
		Settings: map[string]string{"master_down_after": "600ms"},
	}
	cl := &stateCluster{st: st}
	var logs syncBuffer
	w := New(Config{Cluster: cl, Interval: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	defer w.adm.close()
	const takeOver = "taking the failover over"
	w.tick(ctx)
	cl.set(fsm.New()) // the node stops acting
	for away := time.Now(); time.Since(away) < time.Second; {
		w.tick(ctx)
		time.Sleep(50 * time.Millisecond) // the node's time away: a second of ticks
	}
	cl.set(st)
	w.tick(ctx)
	if strings.Contains(logs.String(), takeOver) {
		t.Fatal("the failover was taken over on the first tick after the gap")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), takeOver) {
		if time.Now().After(deadline) {
			t.Fatal("an executor that never confirmed was not taken over")
		}
		w.tick(ctx)
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}
