package router

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/internal/testredis"
)

// Clients used unchanged against a node (issue 16): go-redis v9 with its defaults (RESP3),
// redis-py from Debian's python3-redis, redis-cli (-2 and -3) and redis-benchmark. Each runs
// against a node with one DC and with three (writes through the WRITE script).

// clientModes starts a node with one DC and one with three, and runs f on each.
func clientModes(t *testing.T, f func(t *testing.T, tc *testCluster)) {
	for _, dcs := range []int{1, 3} {
		t.Run(fmt.Sprintf("%dDC", dcs), func(t *testing.T) {
			tc := startCluster(t, 2, 0, Config{BackendTimeout: 2 * time.Second})
			if dcs == 3 {
				tc.st = addDC(t, tc.st, "dc2", "h1")
				tc.st = addDC(t, tc.st, "dc3", "i1")
			}
			tc.addNode(Config{BackendTimeout: 2 * time.Second})
			f(t, tc)
		})
	}
}

// TestGoRedisDefaultClient: a go-redis v9 client with default options speaks RESP3 (HELLO
// 3) and gets typed replies, pub/sub messages included, as from Redis.
func TestGoRedisDefaultClient(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-servers")
	}
	clientModes(t, func(t *testing.T, tc *testCluster) {
		ctx := ctxT(t)
		c := redis.NewClient(&redis.Options{Addr: tc.addrs[0]})
		defer c.Close()
		if info := c.ClientInfo(ctx).Val(); info == nil || info.Resp != 3 {
			t.Fatalf("CLIENT INFO = %+v: the default client does not speak RESP3", info)
		}
		must := func(what string, err error) {
			t.Helper()
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		}
		must("SET", c.Set(ctx, "gr:k", "v", 0).Err())
		if v, err := c.Get(ctx, "gr:k").Result(); v != "v" || err != nil {
			t.Fatalf("GET = %q, %v", v, err)
		}
		if err := c.Get(ctx, "gr:missing").Err(); err != redis.Nil {
			t.Fatalf("GET missing: %v, want redis.Nil", err)
		}
		must("HSET", c.HSet(ctx, "gr:h", "f", "1", "g", "2").Err())
		if m := c.HGetAll(ctx, "gr:h").Val(); !reflect.DeepEqual(m, map[string]string{"f": "1", "g": "2"}) {
			t.Fatalf("HGETALL = %v", m)
		}
		must("ZADD", c.ZAdd(ctx, "gr:z", redis.Z{Score: 1, Member: "a"}, redis.Z{Score: 2.5, Member: "b"}).Err())
		if s := c.ZScore(ctx, "gr:z", "b").Val(); s != 2.5 {
			t.Fatalf("ZSCORE = %v", s)
		}
		if s, err := c.ZIncrBy(ctx, "gr:z", 1.5, "a").Result(); s != 2.5 || err != nil {
			t.Fatalf("ZINCRBY = %v, %v", s, err)
		}
		if zs := c.ZRangeWithScores(ctx, "gr:z", 0, -1).Val(); len(zs) != 2 || zs[1].Score != 2.5 {
			t.Fatalf("ZRANGE WITHSCORES = %v", zs)
		}
		if zs, err := c.ZPopMin(ctx, "gr:z", 1).Result(); err != nil || len(zs) != 1 || zs[0].Member != "a" {
			t.Fatalf("ZPOPMIN = %v, %v", zs, err)
		}
		must("SADD", c.SAdd(ctx, "gr:s", "x", "y").Err())
		if m := c.SMembersMap(ctx, "gr:s").Val(); len(m) != 2 {
			t.Fatalf("SMEMBERS = %v", m)
		}
		if p, err := c.SPopN(ctx, "gr:s", 5).Result(); err != nil || len(p) != 2 {
			t.Fatalf("SPOP 5 = %v, %v", p, err)
		}
		must("XADD", c.XAdd(ctx, &redis.XAddArgs{Stream: "gr:st", ID: "1-1", Values: []string{"f", "v"}}).Err())
		must("XGROUP CREATE", c.XGroupCreate(ctx, "gr:st", "grp", "0").Err())
		if st, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "grp", Consumer: "c", Streams: []string{"gr:st", ">"}}).Result(); err != nil || len(st) != 1 || st[0].Messages[0].ID != "1-1" {
			t.Fatalf("XREADGROUP = %v, %v", st, err)
		}
		if v, err := c.BLPop(ctx, 50*time.Millisecond, "gr:empty").Result(); err != redis.Nil {
			t.Fatalf("BLPOP timeout = %v, %v", v, err)
		}
		must("RPUSH", c.RPush(ctx, "gr:l", "a").Err())
		if v, err := c.BLPop(ctx, time.Second, "gr:l").Result(); err != nil || !reflect.DeepEqual(v, []string{"gr:l", "a"}) {
			t.Fatalf("BLPOP = %v, %v", v, err)
		}
		cmds, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, "{gr}t", "a", "1")
			p.HGetAll(ctx, "{gr}t")
			p.ZAdd(ctx, "{gr}tz", redis.Z{Score: 1.5, Member: "m"})
			p.ZScore(ctx, "{gr}tz", "m")
			return nil
		})
		if err != nil || cmds[1].(*redis.MapStringStringCmd).Val()["a"] != "1" || cmds[3].(*redis.FloatCmd).Val() != 1.5 {
			t.Fatalf("MULTI/EXEC = %v, %v", cmds, err)
		}
		if cfg := c.ConfigGet(ctx, "maxmemory-policy").Val(); cfg["maxmemory-policy"] == "" {
			t.Fatalf("CONFIG GET = %v", cfg)
		}
		if s := c.Info(ctx, "server").Val(); !strings.Contains(s, "redis_version:") {
			t.Fatalf("INFO = %q", s)
		}

		sub := c.Subscribe(ctx, "gr:ch")
		defer sub.Close()
		if _, err := sub.Receive(ctx); err != nil {
			t.Fatalf("SUBSCRIBE: %v", err)
		}
		waitFor(t, "a subscriber on gr:ch", func() bool { return c.Publish(ctx, "gr:ch", "hello").Val() == 1 })
		msg, err := sub.ReceiveMessage(ctx)
		if err != nil || msg.Channel != "gr:ch" || msg.Payload != "hello" {
			t.Fatalf("message = %+v, %v", msg, err)
		}
		psub := c.PSubscribe(ctx, "gr:p*")
		defer psub.Close()
		if _, err := psub.Receive(ctx); err != nil {
			t.Fatalf("PSUBSCRIBE: %v", err)
		}
		waitFor(t, "a pattern subscriber", func() bool { return c.Publish(ctx, "gr:px", "m").Val() == 1 })
		if msg, err := psub.ReceiveMessage(ctx); err != nil || msg.Pattern != "gr:p*" || msg.Payload != "m" {
			t.Fatalf("pmessage = %+v, %v", msg, err)
		}
	})
}

// debianPython is the interpreter Debian's python3-redis installs for.
func debianPython() string {
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if path, err := exec.LookPath(p); err == nil {
			if exec.Command(path, "-c", "import redis").Run() == nil {
				return path
			}
		}
	}
	return ""
}

// TestRedisPy runs testdata/clients/redispy.py (redis-py, unchanged) against a node.
func TestRedisPy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-servers")
	}
	py := debianPython()
	if py == "" {
		t.Skip("redis-py is not installed: apt-get install python3-redis (make deps installs it)")
	}
	clientModes(t, func(t *testing.T, tc *testCluster) {
		host, port, _ := strings.Cut(tc.addrs[0], ":")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, py, "testdata/clients/redispy.py", host, port).CombinedOutput()
		if err != nil {
			t.Fatalf("redispy.py: %v\n%s", err, out)
		}
		t.Logf("%s", bytes.TrimSpace(out))
	})
}

// cliCommands are run with redis-cli against Redis and a node; outputs must be the same.
var cliCommands = [][]string{
	{"SET", "cli:k", "v"}, {"GET", "cli:k"}, {"GET", "cli:missing"}, {"HSET", "cli:h", "f", "1", "g", "2"},
	{"HGETALL", "cli:h"}, {"ZADD", "cli:z", "1", "a", "2.5", "b"}, {"ZRANGE", "cli:z", "0", "-1", "WITHSCORES"},
	{"ZSCORE", "cli:z", "b"}, {"ZINCRBY", "cli:z", "1", "a"}, {"ZPOPMIN", "cli:z"}, {"SADD", "cli:s", "1", "2"},
	{"SMEMBERS", "cli:s"}, {"LPOP", "cli:missing", "2"}, {"MGET", "cli:k", "cli:missing"}, {"INCR", "cli:n"},
	{"CONFIG", "GET", "maxmemory-policy"}, {"NOSUCH"}, {"EXISTS", "cli:k", "cli:h"},
	{"BITFIELD", "cli:b", "SET", "i64", "0", "9223372036854775807", "INCRBY", "i64", "0", "-2"},
	{"BITFIELD", "cli:b", "OVERFLOW", "FAIL", "INCRBY", "i64", "0", "5", "GET", "u63", "1"},
}

// TestRedisCLIParity runs redis-cli in RESP2 and RESP3 (-3) against Redis and against a node and
// compares what it prints.
func TestRedisCLIParity(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-servers")
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Skip("redis-cli is not installed (make deps installs redis-tools)")
	}
	direct := testredis.Start(t).Addr
	clientModes(t, func(t *testing.T, tc *testCluster) {
		for _, proto := range []string{"-2", "-3"} {
			run := func(addr string, args []string) string {
				host, port, _ := strings.Cut(addr, ":")
				out, _ := exec.Command(cli, append([]string{"-h", host, "-p", port, proto}, args...)...).CombinedOutput()
				return string(out)
			}
			run(direct, []string{"FLUSHALL"})
			for _, args := range cliCommands {
				if want, got := run(direct, args), run(tc.addrs[0], args); got != want {
					t.Errorf("redis-cli %s %q: node prints %q, Redis %q", proto, args, got, want)
				}
			}
			for _, addr := range []string{direct, tc.addrs[0]} {
				run(addr, []string{"DEL", "cli:k", "cli:h", "cli:z", "cli:s", "cli:n", "cli:b"})
			}
		}
	})
}

// TestRedisBenchmark runs redis-benchmark's default tests (in RESP2 and in RESP3) through a
// node: every request must succeed (redis-benchmark 7 stops at the first error reply, printing
// it, and exits non-zero).
func TestRedisBenchmark(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-servers")
	}
	bench, err := exec.LookPath("redis-benchmark")
	if err != nil {
		t.Skip("redis-benchmark is not installed (make deps installs redis-tools)")
	}
	clientModes(t, func(t *testing.T, tc *testCluster) {
		host, port, _ := strings.Cut(tc.addrs[0], ":")
		for _, proto := range [][]string{nil, {"-3"}} {
			args := append([]string{"-h", host, "-p", port, "-n", "500", "-c", "4", "-P", "4", "-q"}, proto...)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			out, err := exec.CommandContext(ctx, bench, args...).CombinedOutput()
			cancel()
			if err != nil || bytes.Contains(out, []byte("Error")) || !bytes.Contains(out, []byte("MSET")) {
				t.Fatalf("redis-benchmark %v: %v\n%s", proto, err, out)
			}
		}
	})
}
