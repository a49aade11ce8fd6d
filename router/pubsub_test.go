package router

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/redraft/redraft/fsm"
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
	pub := tc.client(1)
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Publish until the resubscribed client hears it: it reconnects in the background.
		if n := pub.Publish(ctx, "moving", "after").Val(); n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("subscriber never resubscribed on the new pub/sub group")
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
