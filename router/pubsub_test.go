package router

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testredis"
)

// TestPubSubAcrossNodes subscribes through one node and publishes through another.
func TestPubSubAcrossNodes(t *testing.T) {
	tc := startCluster(t, 2, 2, Config{})
	ctx := ctxT(t)
	sub := tc.client(0).Subscribe(ctx, "news", "weather")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // first subscription confirmation
		t.Fatal(err)
	}
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sub.PSubscribe(ctx, "sport.*"); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	pub := tc.client(1)
	if n := pub.Publish(ctx, "news", "hello").Val(); n != 1 {
		t.Fatalf("PUBLISH reached %d subscribers, want 1", n)
	}
	pub.Publish(ctx, "sport.tennis", "ace")
	ch := sub.Channel()
	for _, want := range []string{"news:hello", "sport.tennis:ace"} {
		select {
		case m := <-ch:
			if m.Channel+":"+m.Payload != want {
				t.Fatalf("got %s:%s, want %s", m.Channel, m.Payload, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no message %s", want)
		}
	}
	if n := pub.PubSubNumSub(ctx, "news").Val()["news"]; n != 1 {
		t.Fatalf("PUBSUB NUMSUB news = %d", n)
	}
	// A subscribed connection refuses other commands but answers PING.
	r := dialRaw(t, tc.addrs[0])
	r.send("SUBSCRIBE c1\r\n")
	for _, want := range []string{"*3", "$9", "subscribe", "$2", "c1", ":1"} {
		if l := r.line(); l != want {
			t.Fatalf("SUBSCRIBE reply %q, want %q", l, want)
		}
	}
	r.send("GET k\r\nPING\r\n")
	if l := r.line(); l[0] != '-' {
		t.Fatalf("GET in subscribed mode: %q", l)
	}
	if l := r.line() + r.line() + r.line(); l != "*2$4pong" {
		t.Fatalf("PING in subscribed mode: %q", l)
	}
}

func TestShardedPubSub(t *testing.T) {
	tc := startCluster(t, 2, 2, Config{})
	ctx := ctxT(t)
	chn := keyIn("sch", 1, 2) // a channel whose slot is on group 2
	sub := tc.client(0).SSubscribe(ctx, chn)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if n := tc.client(1).SPublish(ctx, chn, "m1").Val(); n != 1 {
		t.Fatalf("SPUBLISH reached %d", n)
	}
	if n := tc.direct(1).PubSubShardNumSub(ctx, chn).Val()[chn]; n != 1 {
		t.Fatalf("shard subscription not on the channel's group: %d", n)
	}
	select {
	case m := <-sub.Channel():
		if m.Payload != "m1" {
			t.Fatalf("got %q", m.Payload)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no sharded message")
	}
	if n := tc.client(1).PubSubShardNumSub(ctx, chn).Val()[chn]; n != 1 {
		t.Fatalf("PUBSUB SHARDNUMSUB = %d", n)
	}
}

// TestPubSubGroupMoves reassigns slot 0 (the pub/sub group) and checks a subscriber that
// reconnects, as go-redis does, receives messages published afterwards.
func TestPubSubGroupMoves(t *testing.T) {
	tc := startCluster(t, 2, 2, Config{})
	ctx := ctxT(t)
	sub := tc.client(0).Subscribe(ctx, "moving")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := fsm.ApplyCommand(tc.st, 90, &fsm.AssignSlots{DC: "dc1", Group: "g2", Ranges: []fsm.SlotRange{{From: 0, To: 0}}, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range tc.servers {
		s.SetState(st)
	}
	ch := sub.Channel()
	publishUntilHeard(t, tc.client(1), ch, "moving", func() string { return "subscriber never resubscribed on the new pub/sub group" })
	if n := tc.direct(1).PubSubNumSub(ctx, "moving").Val()["moving"]; n != 1 {
		t.Fatalf("subscription not on the new group g2: %d", n)
	}
}

// TestUnsubscribeReturnsToNormal checks a session can run ordinary commands again after
// dropping every subscription, and that UNSUBSCRIBE without subscriptions answers like Redis.
func TestUnsubscribeReturnsToNormal(t *testing.T) {
	tc := startCluster(t, 2, 1, Config{})
	r := dialRaw(t, tc.addrs[0])
	r.send("UNSUBSCRIBE\r\n")
	for _, want := range []string{"*3", "$11", "unsubscribe", "$-1", ":0"} {
		if l := r.line(); l != want {
			t.Fatalf("idle UNSUBSCRIBE: %q, want %q", l, want)
		}
	}
	r.send("SUBSCRIBE a\r\n")
	for i := 0; i < 6; i++ {
		r.line()
	}
	r.send("UNSUBSCRIBE a\r\n")
	for _, want := range []string{"*3", "$11", "unsubscribe", "$1", "a", ":0"} {
		if l := r.line(); l != want {
			t.Fatalf("UNSUBSCRIBE a: %q, want %q", l, want)
		}
	}
	r.send("SET x 1\r\nWAIT 0 0\r\n")
	if l := r.line(); l != "+OK" {
		t.Fatalf("SET after unsubscribing: %q", l)
	}
	if l := r.line(); l != ":0" {
		t.Fatalf("WAIT 0 0: %q", l)
	}
}

// TestShardedSubscriberOfTwoSlots: a session subscribed to shard channels of two slots of one
// group is disconnected when either slot moves (SPUBLISH of its channels goes to the new
// group), not only when the first one does: it reconnects and subscribes again, instead of
// missing the messages for good.
func TestShardedSubscriberOfTwoSlots(t *testing.T) {
	tc := startCluster(t, 2, 2, Config{})
	a, b := keyIn("sa", 0, 2), keyIn("sb", 0, 2)
	for slotOf(b) == slotOf(a) {
		b += "x"
	}
	r := dialRaw(t, tc.addrs[0])
	r.send("SSUBSCRIBE " + a + "\r\nSSUBSCRIBE " + b + "\r\n")
	for range 2 {
		if l := r.line(); l != "*3" {
			t.Fatalf("SSUBSCRIBE: %q", l)
		}
		r.line()
		r.line()
		r.line()
		r.line()
		r.line()
	}
	st, err := fsm.ApplyCommand(tc.st, 90, &fsm.AssignSlots{DC: "dc1", Group: "g2", Ranges: []fsm.SlotRange{{From: slotOf(b), To: slotOf(b)}}, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range tc.servers {
		s.SetState(st)
	}
	_ = r.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := r.br.ReadString('\n')
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the subscriber of %s stayed connected after its slot moved (read %q, %v)", b, l, err)
	}
}

// gatedProxy forwards connections to backend; while the gate is shut a new connection waits
// before any byte passes (a slow dial). It stops with the test.
type gatedProxy struct {
	addr    string
	mu      sync.Mutex
	gate    chan struct{} // closed: open
	waiting atomic.Int32
}

func startGatedProxy(t *testing.T, backend string) *gatedProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &gatedProxy{addr: ln.Addr().String(), gate: make(chan struct{})}
	close(p.gate)
	var conns sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); p.open(); conns.Wait() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			gate := p.gate
			p.mu.Unlock()
			conns.Add(1)
			go func() {
				defer conns.Done()
				defer c.Close()
				p.waiting.Add(1)
				<-gate
				p.waiting.Add(-1)
				b, err := net.Dial("tcp", backend)
				if err != nil {
					return
				}
				defer b.Close()
				go func() { _, _ = io.Copy(b, c); _ = b.Close() }()
				_, _ = io.Copy(c, b)
			}()
		}
	}()
	return p
}

func (p *gatedProxy) shut() { p.mu.Lock(); p.gate = make(chan struct{}); p.mu.Unlock() }

func (p *gatedProxy) open() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
	default:
		close(p.gate)
	}
}

// TestSubscribeRacingAPubSubMove: the pub/sub group moves while a SUBSCRIBE is dialing the
// old one. The session must not stay subscribed on the old group (missing every message
// published after the move): its connection closes, as for a move after the subscription.
func TestSubscribeRacingAPubSubMove(t *testing.T) {
	r1, r2 := testredis.Start(t), testredis.Start(t)
	px := startGatedProxy(t, r1.Addr)
	tc := &testCluster{t: t, redis: []*testredis.Server{r1, r2}, st: newState(t, []string{px.addr, r2.Addr}, nil)}
	s := tc.addNode(Config{})
	ctx := ctxT(t)
	px.shut()
	c := tc.client(0)
	sub := c.Subscribe(ctx) // no channel yet: go-redis dials on the first SUBSCRIBE
	defer sub.Close()
	subErr := make(chan error, 1)
	go func() { subErr <- sub.Subscribe(ctx, "racing") }()
	waitFor(t, "the SUBSCRIBE's dial of g1 waiting", func() bool { return px.waiting.Load() > 0 })
	st, err := fsm.ApplyCommand(tc.st, tc.st.Index+1, &fsm.AssignSlots{DC: "dc1", Group: "g2", Ranges: []fsm.SlotRange{{From: 0, To: 0}}, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	s.SetState(st)
	px.open()
	if err := <-subErr; err != nil {
		t.Fatal(err)
	}
	// Either the connection was closed (go-redis subscribes again, on g2) or the session is on
	// g2 already: a message published now must arrive.
	publishUntilHeard(t, tc.client(0), sub.Channel(), "racing", func() string {
		n := redis.NewClient(&redis.Options{Addr: r1.Addr}).PubSubNumSub(ctx, "racing").Val()["racing"]
		return fmt.Sprintf("no subscriber of the channel on g2 after the move (%d on the old group g1)", n)
	})
}

// publishUntilHeard publishes "after" on channel through pub until one subscriber hears it (a
// client that resubscribes in the background), then expects it on ch; why says why not.
func publishUntilHeard(t *testing.T, pub *redis.Client, ch <-chan *redis.Message, channel string, why func() string) {
	t.Helper()
	ctx := ctxT(t)
	deadline := time.Now().Add(10 * time.Second)
	for pub.Publish(ctx, channel, "after").Val() != 1 {
		if time.Now().After(deadline) {
			t.Fatal(why())
		}
		time.Sleep(20 * time.Millisecond) // pacing the publisher while go-redis reconnects
	}
	select {
	case m := <-ch:
		if m.Payload != "after" {
			t.Fatalf("got %q", m.Payload)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no message after the move")
	}
}
