package router

import (
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
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
