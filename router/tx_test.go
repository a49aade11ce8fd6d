package router

import (
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/router/resp"
)

func TestMulti(t *testing.T) {
	tc := startCluster(t, 2, 1, Config{})
	ctx := ctxT(t)
	c := tc.client(0)
	cmds, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "{u1}a", 1, 0)
		p.Incr(ctx, "{u1}a")
		p.Get(ctx, "{u1}a")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if v := cmds[2].(*redis.StringCmd).Val(); v != "2" {
		t.Fatalf("GET in MULTI = %q", v)
	}
	// Keys in two slots abort the transaction.
	cmds, err = c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "{u1}a", 1, 0)
		p.Set(ctx, "{u2}a", 1, 0)
		return nil
	})
	if err == nil || !strings.HasPrefix(err.Error(), "EXECABORT") || !strings.HasPrefix(cmds[1].Err().Error(), "CROSSSLOT") {
		t.Fatalf("cross-slot MULTI: %v, %v", err, cmds[1].Err())
	}
	if v := c.Get(ctx, "{u1}a").Val(); v != "2" {
		t.Fatalf("aborted transaction wrote: %q", v)
	}
	r := dialRaw(t, tc.addrs[0])
	r.send("EXEC\r\nDISCARD\r\nMULTI\r\nMULTI\r\nSET {x}k v\r\nDISCARD\r\nGET {x}k\r\n")
	for _, want := range []string{"-ERR EXEC without MULTI", "-ERR DISCARD without MULTI", "+OK", "-ERR MULTI calls can not be nested", "+QUEUED", "+OK", "$-1"} {
		if l := r.line(); l != want {
			t.Fatalf("got %q, want %q", l, want)
		}
	}
}

func TestWatch(t *testing.T) {
	tc := startCluster(t, 2, 1, Config{})
	ctx := ctxT(t)
	c := tc.client(0)
	other := tc.client(0)
	c.Set(ctx, "{w}n", 1, 0)
	// A concurrent write between WATCH and EXEC aborts the transaction.
	err := c.Watch(ctx, func(tx *redis.Tx) error {
		if err := other.Set(ctx, "{w}n", 5, 0).Err(); err != nil {
			return err
		}
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "{w}n", 100, 0)
			return nil
		})
		return err
	}, "{w}n")
	if err != redis.TxFailedErr {
		t.Fatalf("WATCH conflict: %v, want TxFailedErr", err)
	}
	if v := c.Get(ctx, "{w}n").Val(); v != "5" {
		t.Fatalf("value = %q, want 5", v)
	}
	// Without a conflict it commits.
	err = c.Watch(ctx, func(tx *redis.Tx) error {
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Incr(ctx, "{w}n")
			return nil
		})
		return err
	}, "{w}n")
	if err != nil {
		t.Fatal(err)
	}
	if v := c.Get(ctx, "{w}n").Val(); v != "6" {
		t.Fatalf("value = %q, want 6", v)
	}
}

// TestWatchSurvivesSelect: a key watched in one database stays watched after SELECT, as in
// Redis: a change of it aborts an EXEC run in another database, and without a change the
// block commits in the database selected last.
func TestWatchSurvivesSelect(t *testing.T) {
	for _, dcs := range []int{1, 2} {
		t.Run(strconv.Itoa(dcs)+"DC", func(t *testing.T) {
			var tc *testCluster
			if dcs == 1 {
				tc = startCluster(t, 1, 1, Config{})
			} else {
				tc = startXDC(t, 1, Config{})
			}
			ctx := ctxT(t)
			other := tc.client(0)
			r := dialRaw(t, tc.addrs[0])
			other.Set(ctx, "{s}k", "1", 0)
			r.send("WATCH {s}k\r\nSELECT 1\r\n")
			if l := r.line() + r.line(); l != "+OK+OK" {
				t.Fatalf("WATCH, SELECT: %q", l)
			}
			if err := other.Set(ctx, "{s}k", "2", 0).Err(); err != nil {
				t.Fatal(err)
			}
			r.send("MULTI\r\nSET {s}x y\r\nEXEC\r\n")
			if l := r.line() + r.line(); l != "+OK+QUEUED" {
				t.Fatalf("MULTI: %q", l)
			}
			if l := r.line(); l != "*-1" && l != "_" {
				t.Fatalf("EXEC after the watched key changed in database 0: %q, want a failed WATCH", l)
			}
			if n := tc.directDB(0, 1).Exists(ctx, "{s}x").Val(); n != 0 {
				t.Fatal("the aborted block wrote database 1")
			}
			// No change: committed, in database 1.
			r.send("SELECT 0\r\nWATCH {s}k\r\nSELECT 1\r\nMULTI\r\nSET {s}x y\r\nEXEC\r\n")
			for _, want := range []string{"+OK", "+OK", "+OK", "+OK", "+QUEUED", "*1", "+OK"} {
				if l := r.line(); l != want {
					t.Fatalf("got %q, want %q", l, want)
				}
			}
			if v := tc.directDB(0, 1).Get(ctx, "{s}x").Val(); v != "y" {
				t.Fatalf("database 1 {s}x = %q", v)
			}
		})
	}
}

// TestSortPatternsCheckedInMulti: SORT's BY and GET patterns are checked when queued in MULTI as
// outside it: one that could name redraft's internal keys aborts the block (with several DCs
// the block runs as the internal user, which may read them).
func TestSortPatternsCheckedInMulti(t *testing.T) {
	tc := startXDC(t, 1, Config{})
	r := dialRaw(t, tc.addrs[0])
	r.send("RPUSH {t}l a\r\nMULTI\r\nSORT {t}l BY nosort GET __redraft:*->f\r\nEXEC\r\n")
	if l := r.line() + r.line(); l != ":1+OK" {
		t.Fatalf("RPUSH, MULTI: %q", l)
	}
	if l := r.line(); !strings.HasPrefix(l, "-ERR GET pattern of SORT must start") && !strings.HasPrefix(l, "-ERR GET option of SORT denied") {
		t.Fatalf("SORT with an internal pattern in MULTI: %q", l)
	}
	if l := r.line(); !strings.HasPrefix(l, "-EXECABORT") {
		t.Fatalf("EXEC: %q, want EXECABORT", l)
	}
}

// TestWatchFailureKeepsEXECFromCommitting: a WATCH that fails on the watch connection (here
// killed on the backend) closes it, and with it the keys watched before; EXEC must then answer
// as a failed WATCH, as Redis would abort after the watched key changed, not commit.
func TestWatchFailureKeepsEXECFromCommitting(t *testing.T) {
	tc := startCluster(t, 2, 1, Config{})
	ctx := ctxT(t)
	r := dialRaw(t, tc.addrs[0])
	r.send("WATCH {t}a\r\n")
	if l := r.line(); l != "+OK" {
		t.Fatalf("WATCH: %q", l)
	}
	for gi := range tc.redis {
		tc.direct(gi).Do(ctx, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
	}
	r.send("WATCH {t}b\r\n")
	if l := r.line(); !strings.HasPrefix(l, "-") {
		t.Fatalf("WATCH on a killed watch connection: %q, want an error", l)
	}
	if err := tc.client(0).Set(ctx, "{t}a", "z", 0).Err(); err != nil {
		t.Fatal(err)
	}
	r.send("MULTI\r\nSET {t}a 1\r\nEXEC\r\n")
	for _, want := range []string{"+OK", "+QUEUED", "*-1"} {
		if l := r.line(); l != want {
			t.Fatalf("MULTI/SET/EXEC after the failed WATCH: %q, want %q", l, want)
		}
	}
	if v := tc.client(0).Get(ctx, "{t}a").Val(); v != "z" {
		t.Fatalf("{t}a = %q: the block committed", v)
	}
}

// TestWatchedExecAfterResetIsRESP2: with several DCs, a RESP3 session's watched EXEC that
// ended early (its slot's route changed) must leave nothing that reshapes a later RESP2
// EXEC's reply into RESP3.
func TestWatchedExecAfterResetIsRESP2(t *testing.T) {
	tc := startXDC(t, 2, Config{})
	s := tc.servers[0]
	r := dialRaw(t, tc.addrs[0])
	r.send("HELLO 3\r\n")
	if _, err := resp.ReadReply(r.br, nil); err != nil {
		t.Fatal(err)
	}
	r.send("WATCH {t}k\r\n")
	if l := r.line(); l != "+OK" {
		t.Fatalf("WATCH: %q", l)
	}
	st := tc.st
	sl := slotOf("{t}k")
	other := "g1"
	if g := st.DCs["dc1"].Slots[sl]; g == "g1" {
		other = "g2"
	}
	st, err := fsm.ApplyCommand(st, st.Index+1, &fsm.AssignSlots{DC: "dc1", Group: other, Ranges: []fsm.SlotRange{{From: sl, To: sl}}, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	s.SetState(st)
	r.send("MULTI\r\nGET {t}k\r\nEXEC\r\n")
	for _, want := range []string{"+OK", "+QUEUED", "_"} {
		if l := r.line(); l != want {
			t.Fatalf("EXEC after the route changed: %q, want %q", l, want)
		}
	}
	r.send("RESET\r\nWATCH {t}k\r\nMULTI\r\nGET {t}x\r\nEXEC\r\n")
	for _, want := range []string{"+RESET", "+OK", "+OK", "+QUEUED", "*1", "$-1"} {
		if l := r.line(); l != want {
			t.Fatalf("RESP2 watched EXEC after RESET: %q, want %q", l, want)
		}
	}
}

// TestMultiQueueBounded: a MULTI block is bounded (Config.MaxTxBytes): the command that would
// pass the bound is refused, the block is dropped and EXEC answers EXECABORT, nothing written;
// the session works on afterwards. Unbounded, one client could queue until the node ran out of
// memory.
func TestMultiQueueBounded(t *testing.T) {
	tc := startCluster(t, 1, 1, Config{MaxTxBytes: 4096})
	ctx := ctxT(t)
	r := dialRaw(t, tc.addrs[0])
	r.send("MULTI\r\n")
	if l := r.line(); l != "+OK" {
		t.Fatalf("MULTI: %q", l)
	}
	val := strings.Repeat("v", 1000)
	for i := range 3 {
		r.send("SET {m}k" + strconv.Itoa(i) + " " + val + "\r\n")
		if l := r.line(); l != "+QUEUED" {
			t.Fatalf("SET %d: %q", i, l)
		}
	}
	r.send("SET {m}k3 " + val + "\r\nSET {m}k4 " + val + "\r\nEXEC\r\n")
	if l := r.line(); !strings.HasPrefix(l, "-ERR redraft: the MULTI block exceeds 4096 bytes") {
		t.Fatalf("the command past the bound: %q", l)
	}
	if l := r.line(); l != "+QUEUED" {
		t.Fatalf("a command after the block was dropped: %q", l)
	}
	if l := r.line(); !strings.HasPrefix(l, "-EXECABORT") {
		t.Fatalf("EXEC: %q", l)
	}
	if n := tc.client(0).Exists(ctx, "{m}k0", "{m}k1", "{m}k2", "{m}k3", "{m}k4").Val(); n != 0 {
		t.Fatalf("%d keys of the dropped block written", n)
	}
	r.send("SET {m}k0 1\r\n")
	if l := r.line(); l != "+OK" {
		t.Fatalf("after the dropped block: %q", l)
	}
}
