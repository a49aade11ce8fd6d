package router

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testredis"
)

// testCluster is a DC with real redis-server groups and one or more router nodes.
type testCluster struct {
	t       testing.TB
	st      *fsm.State
	redis   []*testredis.Server
	servers []*Server
	addrs   []string
}

// groupIDs names the test groups; slots are split evenly among them in this order.
var groupIDs = []string{"g1", "g2", "g3"}

func newState(t testing.TB, addrs []string, passwords []string) *fsm.State {
	t.Helper()
	st := fsm.New()
	var err error
	per := fsm.NumSlots / len(addrs)
	for i, a := range addrs {
		pw := ""
		if passwords != nil {
			pw = passwords[i]
		}
		st, err = fsm.ApplyCommand(st, uint64(2*i+1), &fsm.AddGroup{DC: "dc1", Group: fsm.Group{ID: groupIDs[i], Master: a, Password: pw}})
		if err != nil {
			t.Fatal(err)
		}
		to := (i+1)*per - 1
		if i == len(addrs)-1 {
			to = fsm.NumSlots - 1
		}
		st, err = fsm.ApplyCommand(st, uint64(2*i+2), &fsm.AssignSlots{DC: "dc1", Group: groupIDs[i], Ranges: []fsm.SlotRange{{From: i * per, To: to}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// startCluster starts ngroups redis-servers and nodes routers sharing one state.
func startCluster(t testing.TB, ngroups, nodes int, cfg Config) *testCluster {
	t.Helper()
	tc := &testCluster{t: t}
	var addrs []string
	for i := 0; i < ngroups; i++ {
		r := testredis.Start(t)
		tc.redis = append(tc.redis, r)
		addrs = append(addrs, r.Addr)
	}
	tc.st = newState(t, addrs, nil)
	for i := 0; i < nodes; i++ {
		tc.addNode(cfg)
	}
	return tc
}

func (tc *testCluster) addNode(cfg Config) *Server {
	tc.t.Helper()
	if cfg.DC == "" {
		cfg.DC = "dc1"
	}
	s := New(cfg)
	s.SetState(tc.st)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tc.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	tc.t.Cleanup(func() {
		_ = s.Close()
		if err := <-done; err != nil {
			tc.t.Errorf("Serve: %v", err)
		}
	})
	tc.servers = append(tc.servers, s)
	tc.addrs = append(tc.addrs, ln.Addr().String())
	return s
}

// client returns a go-redis client of node i.
func (tc *testCluster) client(i int, opts ...func(*redis.Options)) *redis.Client {
	o := &redis.Options{Addr: tc.addrs[i], DialTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second,
		MaxRetries: -1, PoolSize: 4}
	for _, f := range opts {
		f(o)
	}
	c := redis.NewClient(o)
	tc.t.Cleanup(func() { _ = c.Close() })
	return c
}

// direct returns a go-redis client of group i's redis-server.
func (tc *testCluster) direct(i int) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: tc.redis[i].Addr, MaxRetries: -1})
	tc.t.Cleanup(func() { _ = c.Close() })
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// keyIn returns a key with the given prefix whose slot belongs to group gi of n groups.
func keyIn(prefix string, gi, n int) string {
	per := fsm.NumSlots / n
	for i := 0; ; i++ {
		k := prefix + itoa(i)
		sl := slotOf(k)
		if sl >= gi*per && (sl < (gi+1)*per || gi == n-1) {
			return k
		}
	}
}

// startRedis starts a redis-server with a password and returns its address.
func startRedis(t testing.TB, password string) string {
	return testredis.Start(t, testredis.WithPassword(password)).Addr
}
