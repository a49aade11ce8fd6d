package xdc

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
)

// writeUnit runs calls (each a command's argv) as one unit in d, as EXEC of a MULTI block
// with several DCs does, and returns the error.
func (d *testDC) writeUnit(t *testing.T, cmds ...[]string) {
	t.Helper()
	var calls []Call
	for _, args := range cmds {
		calls = append(calls, mustPrepare(t, args...))
	}
	slot := slotString(calls[0].Keys[0])
	if err := d.writeCalls(slot, true, calls).Err(); err != nil && err != redis.Nil {
		t.Fatalf("unit %v in %s: %v", cmds, d.name, err)
	}
	d.repl.Wrote(0, slot)
}

// TestConvergeUnitWritesAKeyTwice: the effects of one unit share its stamp, so an effect on a
// key that an earlier effect of the same unit restamped meets its own stamp there. Until
// session 43 APPLY took that for a newer write and skipped the effect: `MULTI; SET k v;
// EXPIRE k 60; EXEC` left k without expiry in the other DCs, `DEL h; HSET h f v` left h
// absent, `SET k a; SET k b` left a, `RPUSH tmp x; RENAME tmp l` left tmp. Every DC must end
// as the origin did, in both data formats (outboxes and group logs).
func TestConvergeUnitWritesAKeyTwice(t *testing.T) {
	for _, format := range []int{fsm.FirstDataFormat, LogDataFormat} {
		t.Run(fmt.Sprint("format ", format), func(t *testing.T) {
			dcs := startDCsAt(t, format, "a", "b")
			a := dcs[0]
			a.write(t, "HSET", "{u}h", "old", "1")
			a.writeUnit(t, []string{"SET", "{u}k", "v"}, []string{"EXPIRE", "{u}k", "600"})
			a.writeUnit(t, []string{"DEL", "{u}h"}, []string{"HSET", "{u}h", "f", "v"})
			a.writeUnit(t, []string{"SET", "{u}s", "a"}, []string{"SET", "{u}s", "b"}, []string{"APPEND", "{u}s", "c"})
			a.writeUnit(t, []string{"RPUSH", "{u}tmp", "x"}, []string{"RENAME", "{u}tmp", "{u}l"})
			a.writeUnit(t, []string{"SADD", "{u}set", "1"}, []string{"SREM", "{u}set", "1"}, []string{"SADD", "{u}set", "2"})
			for k, want := range map[string]string{"{u}k": "string v", "{u}h": "hash map[f:v]", "{u}s": "string bc",
				"{u}tmp": "none", "{u}l": "list [x]", "{u}set": "set [2]"} {
				waitEqual(t, dcs, 10*time.Second, k, stateOf(k), want)
			}
			ttl := func(d *testDC) (string, error) {
				ms, err := d.rc.PTTL(context.Background(), "{u}k").Result()
				return fmt.Sprint(ms > 500*time.Second), err
			}
			waitEqual(t, dcs, 10*time.Second, "k expires in 600 s", ttl, "true")
			noDivergence(t, dcs)
		})
	}
}

// groupStateOf reads a stream's entries and its groups' replicated state (consumers with
// their pending counts, each group's pending entries and last-delivered id) in one DC.
func groupStateOf(k string) func(*testDC) (string, error) {
	return func(d *testDC) (string, error) {
		ctx := context.Background()
		s, err := state(ctx, d.rc, k)
		if err != nil || !strings.HasPrefix(s, "stream") {
			return s, err
		}
		groups, err := d.rc.XInfoGroups(ctx, k).Result()
		if err != nil {
			return "", err
		}
		for _, g := range groups {
			pend, err := d.rc.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: k, Group: g.Name, Start: "-", End: "+", Count: 100}).Result()
			if err != nil {
				return "", err
			}
			s += fmt.Sprintf(" | %s last %s pending %d:", g.Name, g.LastDeliveredID, g.Pending)
			for _, p := range pend {
				s += " " + p.ID + "@" + p.Consumer
			}
		}
		return s, nil
	}
}

// TestConvergeConsumerGroups: XREADGROUP's effects (the consumer, the pending entries, the
// group's last-delivered id) reach the other DCs as stamped command effects; a read in one DC
// racing an XADD in another is a conflict, and the DCs end with one state, the newest.
func TestConvergeConsumerGroups(t *testing.T) {
	for _, format := range []int{fsm.FirstDataFormat, LogDataFormat} {
		t.Run(fmt.Sprintf("format=%d", format), func(t *testing.T) {
			dcs := startDCsAt(t, format, "a", "b")
			a, b := dcs[0], dcs[1]
			a.write(t, "XGROUP", "CREATE", "{s}s", "g", "0", "MKSTREAM")
			for _, id := range []string{"1-1", "2-1", "3-1"} {
				a.write(t, "XADD", "{s}s", id, "f", "v")
			}
			a.write(t, "XREADGROUP", "GROUP", "g", "c1", "COUNT", "2", "STREAMS", "{s}s", ">")
			want, err := groupStateOf("{s}s")(a)
			if err != nil || !strings.Contains(want, "last 2-1 pending 2: 1-1@c1 2-1@c1") {
				t.Fatalf("a's state after the read: %q (%v)", want, err)
			}
			waitEqual(t, dcs, 10*time.Second, "stream and group", groupStateOf("{s}s"), want)

			// A read in b and an XADD in a while cut: both change the stream.
			cutAll(dcs, true)
			b.write(t, "XREADGROUP", "GROUP", "g", "c2", "STREAMS", "{s}s", ">")
			later()
			a.write(t, "XADD", "{s}s", "4-1", "f", "v")
			cutAll(dcs, false)
			sameIn := func(what string) {
				t.Helper()
				deadline := time.Now().Add(10 * time.Second)
				for {
					sa, errA := groupStateOf("{s}s")(a)
					sb, errB := groupStateOf("{s}s")(b)
					if errA == nil && errB == nil && sa == sb {
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("the DCs differ after %s:\na: %q (%v)\nb: %q (%v)", what, sa, errA, sb, errB)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			sameIn("a read racing an XADD")

			// A read in a racing a reset of the group in b: unstamped, each DC ran the other's
			// change over its own (a ended with b's reset, b with a's read).
			a.write(t, "XADD", "{s}s", "5-1", "f", "v")
			sameIn("an XADD")
			cutAll(dcs, true)
			a.write(t, "XREADGROUP", "GROUP", "g", "c3", "STREAMS", "{s}s", ">")
			later()
			b.write(t, "XGROUP", "SETID", "{s}s", "g", "0")
			cutAll(dcs, false)
			sameIn("a read racing a reset")
			for _, d := range dcs {
				if n := d.repl.Diverged(); n != 0 {
					t.Errorf("%s: %d diverged effects", d.name, n)
				}
			}
		})
	}
}

// TestPeerCallsCheckSlotAndDB: peer calls with a slot or database out of range are refused
// with an error, and leave the node's replication working. An await of slot 16384 indexed
// past the acks while holding the replicator's mutex, and its deferred Lock of that mutex hung
// the unwinding: replication, the status and DC_EACH_SAFE_QUORUM writes stopped for good.
func TestPeerCallsCheckSlotAndDB(t *testing.T) {
	_, dcs := startDCs(t, "a", "b")
	a := dcs[0]
	a.write(t, "SET", "{k}x", "1")
	waitEqual(t, dcs, 10*time.Second, "x", stateOf("{k}x"), "string 1")
	ctx := context.Background()
	for _, req := range []AwaitRequest{
		{DB: 0, Slot: 16384, ID: "1-0", TimeoutMS: 100},
		{DB: 0, Slot: -1, ID: "1-0", TimeoutMS: 100},
		{DB: -1, Slot: 0, ID: "1-0", TimeoutMS: 100},
		{DB: 99, Slot: 0, ID: "1-0", TimeoutMS: 100},
	} {
		if _, err := a.repl.HandleAwait(ctx, req); err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("await %+v: %v, want an out-of-range error", req, err)
		}
	}
	if _, err := a.repl.HandleLast(ctx, LastRequest{Source: "b", DB: 1 << 20, Slots: []int{0}}); err == nil {
		t.Error("xdc-last of database 1<<20 answered")
	}
	// A copy whose ids would stop the slot's APPLY for good, or of a database out of range.
	for _, req := range []CopyRequest{{Source: "b", Slot: 0, Last: ""}, {Source: "b", Slot: 0, Last: "1-0", Inbox: map[string]string{"c": "x"}},
		{Source: "b", Slot: 0, Last: "1-0", DB: -1}} {
		if _, err := a.repl.HandleCopy(ctx, req); err == nil {
			t.Errorf("copy %+v taken", req)
		}
	}
	done := make(chan struct{})
	go func() { a.repl.Report(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the replicator's report hangs after the bad calls")
	}
	a.write(t, "SET", "{k}x", "2")
	waitEqual(t, dcs, 10*time.Second, "x", stateOf("{k}x"), "string 2")
}

// TestPingOnlyWhileActing: a node that does not act ships nothing, so it answers no liveness
// ping and the other nodes of its DC take its share of the logs; until session 47 it answered,
// and kept its share unshipped for as long as it lacked its lease.
func TestPingOnlyWhileActing(t *testing.T) {
	_, dcs := startDCs(t, "a", "b")
	a := dcs[0]
	ping := a.repl.RPC()[RPCPing]
	if _, err := ping(context.Background(), []byte("{}")); err != nil {
		t.Fatalf("an acting node's ping: %v", err)
	}
	a.held.Store(true)
	if _, err := ping(context.Background(), []byte("{}")); err == nil {
		t.Fatal("a node that does not act answered a liveness ping")
	}
	a.held.Store(false)
	if _, err := ping(context.Background(), []byte("{}")); err != nil {
		t.Fatalf("the ping after acting again: %v", err)
	}
}
