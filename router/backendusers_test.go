package router

import (
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testredis"
)

// aclRefused reports whether err is Redis refusing a command for the user's ACL (NOPERM, or
// Redis 7.0's wording inside a script).
func aclRefused(err error) bool {
	return err != nil && (strings.HasPrefix(err.Error(), "NOPERM") || strings.Contains(err.Error(), "The user executing the script can't"))
}

// Scripts sent through redraft run as the restricted client user: the escapes of issue 12 are
// refused by the backend and change nothing, in one DC and with several (user scripts then run
// inside MULTI with a switch of users), while ordinary scripts and commands keep working.
func TestBackendUsersConfineScripts(t *testing.T) {
	for _, mode := range []string{"one DC", "two DCs"} {
		t.Run(mode, func(t *testing.T) {
			var tc *testCluster
			if mode == "one DC" {
				tc = startCluster(t, 1, 1, Config{})
			} else {
				tc = startXDC(t, 1, Config{})
			}
			ctx := ctxT(t)
			c, d := tc.client(0), tc.direct(0)
			other := testredis.Start(t)
			host, port, _ := strings.Cut(other.Addr, ":")
			if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
			d.Set(ctx, "__redraft:probe:{k}", "internal", 0)
			before := d.DBSize(ctx).Val()

			err := c.Eval(ctx, "return redis.call('MIGRATE', ARGV[1], ARGV[2], KEYS[1], '0', '2000', 'COPY')", []string{"k"}, host, port).Err()
			if !aclRefused(err) {
				t.Errorf("EVAL MIGRATE: %v", err)
			}
			if n := redis.NewClient(&redis.Options{Addr: other.Addr}).DBSize(ctx).Val(); n != 0 {
				t.Errorf("the other server received %d keys", n)
			}
			for _, cmd := range []string{"FLUSHALL", "FLUSHDB", "SWAPDB', '0', '1"} {
				if err := c.Eval(ctx, "return redis.call('"+cmd+"')", []string{"k"}).Err(); !aclRefused(err) {
					t.Errorf("EVAL %s: %v", cmd, err)
				}
			}
			if err := c.Eval(ctx, "return redis.call('GET', ARGV[1])", []string{"k"}, "__redraft:probe:{k}").Err(); !aclRefused(err) {
				t.Errorf("a script reading an internal key: %v", err)
			}
			if n := d.DBSize(ctx).Val(); n < before {
				t.Errorf("DBSIZE %d after the attempts, was %d", n, before)
			}
			if v := d.Get(ctx, "__redraft:probe:{k}").Val(); v != "internal" {
				t.Errorf("internal key = %q", v)
			}
			if v := d.Get(ctx, "k").Val(); v != "v" {
				t.Errorf("k = %q", v)
			}

			if err := c.Eval(ctx, "return redis.call('SET', KEYS[1], ARGV[1])", []string{"s{k}"}, "sv").Err(); err != nil {
				t.Fatalf("an ordinary script: %v", err)
			}
			if v := c.Get(ctx, "s{k}").Val(); v != "sv" {
				t.Errorf("s{k} = %q", v)
			}
			if v, err := c.EvalRO(ctx, "return redis.call('GET', KEYS[1])", []string{"s{k}"}).Result(); err != nil || v != "sv" {
				t.Errorf("EVAL_RO = %v, %v", v, err)
			}

			// SORT with GET or BY patterns needs all-keys access on Redis: it runs as the
			// internal user, and patterns that could form internal keys are refused.
			c.RPush(ctx, "{l}list", "2", "1")
			c.Set(ctx, "{l}w_1", "5", 0)
			c.Set(ctx, "{l}w_2", "0", 0)
			c.Set(ctx, "{l}n_1", "one", 0)
			if v, err := c.Do(ctx, "SORT", "{l}list", "BY", "{l}w_*", "GET", "#", "GET", "{l}n_*").Slice(); err != nil || len(v) != 4 || v[2] != "1" || v[3] != "one" {
				t.Errorf("SORT BY/GET = %v, %v", v, err)
			}
			if err := c.Do(ctx, "SORT", "{l}list", "GET", "__redraft:{l}*").Err(); err == nil || !strings.Contains(err.Error(), "reserved") {
				t.Errorf("SORT GET __redraft:{l}*: %v", err)
			}
		})
	}
}

// With several DCs a client's pipelined writes (WRITE, internal user) and reads (client user)
// to one group travel on two connections; each read still sees the writes before it.
func TestBackendUsersKeepPipelineOrder(t *testing.T) {
	tc := startXDC(t, 1, Config{})
	ctx := ctxT(t)
	c := tc.client(0)
	for round := 0; round < 50; round++ {
		p := c.Pipeline()
		var gets []*redis.StringCmd
		for i := 0; i < 10; i++ {
			p.Set(ctx, "o"+strconv.Itoa(i), round*100+i, 0)
			gets = append(gets, p.Get(ctx, "o"+strconv.Itoa(i)))
			p.Incr(ctx, "cnt")
			p.Get(ctx, "cnt")
		}
		if _, err := p.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		for i, g := range gets {
			if want := strconv.Itoa(round*100 + i); g.Val() != want {
				t.Fatalf("round %d: GET after SET = %q, want %s", round, g.Val(), want)
			}
		}
	}
}

// FLUSHALL is refused to the client user: the router flushes as the internal user, and only
// when the setting allows.
func TestFlushGoesThroughTheRouter(t *testing.T) {
	tc := startCluster(t, 2, 1, Config{})
	ctx := ctxT(t)
	c := tc.client(0)
	c.Set(ctx, "a", 1, 0)
	st, err := fsm.ApplyCommand(tc.st, 100, &fsm.SetSetting{Key: "flush_enabled", Value: "false"})
	if err != nil {
		t.Fatal(err)
	}
	tc.servers[0].SetState(st)
	if err := c.Eval(ctx, "return redis.call('FLUSHALL')", []string{"a"}).Err(); !aclRefused(err) {
		t.Errorf("EVAL FLUSHALL with flushing off: %v", err)
	}
	if n := c.DBSize(ctx).Val(); n != 1 {
		t.Errorf("DBSIZE = %d", n)
	}
	tc.servers[0].SetState(tc.st)
	if err := c.FlushAll(ctx).Err(); err != nil {
		t.Fatalf("FLUSHALL with flushing on: %v", err)
	}
	if n := c.DBSize(ctx).Val(); n != 0 {
		t.Errorf("DBSIZE after FLUSHALL = %d", n)
	}
}

// With several DCs a user script on a migrating slot runs on the target group, as that
// group's client user: its block names the target's users, not the owner's (the passwords
// differ per group), so it works and stays confined.
func TestBackendUsersScriptOnMigratingSlot(t *testing.T) {
	mt := newXDCMigTest(t)
	ctx := ctxT(t)
	c := mt.tc.client(0)
	k := keysIn("ms", 0, 99, 1)[0]
	if err := c.Set(ctx, k, "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	mt.ack(mt.start(0, 99))
	if err := c.Eval(ctx, "return redis.call('SET', KEYS[1], ARGV[1])", []string{k}, "w").Err(); err != nil {
		t.Fatalf("a script on the migrating slot: %v", err)
	}
	if v := mt.tc.direct(1).Get(ctx, k).Val(); v != "w" {
		t.Errorf("target holds %q", v)
	}
	if err := c.Eval(ctx, "return redis.call('GET', ARGV[1])", []string{k}, "__redraft:fence").Err(); !aclRefused(err) {
		t.Errorf("a script reading an internal key on the migrating slot: %v", err)
	}
}
