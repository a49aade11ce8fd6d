package migrate

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redraft/redraft/internal/testredis"
)

// env is a source and a target redis-server, with clients to inspect them.
type env struct {
	srcSrv, dstSrv *testredis.Server
	dstPass        string
}

// newEnv starts two redis-servers; the target requires a password (which must never reach the
// source: TestSourceNeverSeesTheTargetsPassword).
func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{dstPass: "target-secret"}
	e.srcSrv = testredis.Start(t)
	e.dstSrv = testredis.Start(t, testredis.WithPassword(e.dstPass))
	return e
}

// src and dst return clients for db, closed at the end of the test.
func (e *env) src(t testing.TB, db int) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: e.srcSrv.Addr, DB: db, Protocol: 2, DisableIdentity: true,
		ReadTimeout: 10 * time.Second})
	t.Cleanup(func() { c.Close() })
	return c
}

func (e *env) dst(t testing.TB, db int) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: e.dstSrv.Addr, DB: db, Password: e.dstPass, Protocol: 2,
		DisableIdentity: true, ReadTimeout: 10 * time.Second})
	t.Cleanup(func() { c.Close() })
	return c
}

// mover returns a Mover from source to target, edited by mut, closed at the end of the test.
func (e *env) mover(t testing.TB, mut func(*Config)) *Mover {
	t.Helper()
	cfg := Config{
		Source: Endpoint{Addr: e.srcSrv.Addr},
		Target: Endpoint{Addr: e.dstSrv.Addr, Password: e.dstPass},
		Owner:  t.Name(),
	}
	if mut != nil {
		mut(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// value renders a key's value canonically by type (collections sorted where order does not
// matter), so a copy can be compared with the original whatever the encoding.
func value(ctx context.Context, t testing.TB, c *redis.Client, key string) string {
	t.Helper()
	typ, err := c.Type(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString(typ + ":")
	switch typ {
	case "none":
	case "string":
		v, err := c.Get(ctx, key).Result()
		must(t, err)
		b.WriteString(v)
	case "hash":
		m, err := c.HGetAll(ctx, key).Result()
		must(t, err)
		ks := make([]string, 0, len(m))
		for k := range m {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		for _, k := range ks {
			fmt.Fprintf(&b, "%q=%q,", k, m[k])
		}
	case "set":
		v, err := c.SMembers(ctx, key).Result()
		must(t, err)
		sort.Strings(v)
		fmt.Fprintf(&b, "%q", v)
	case "zset":
		v, err := c.Do(ctx, "ZRANGE", key, 0, -1, "WITHSCORES").Result()
		must(t, err)
		fmt.Fprintf(&b, "%q", v)
	case "list":
		v, err := c.LRange(ctx, key, 0, -1).Result()
		must(t, err)
		fmt.Fprintf(&b, "%q", v)
	case "stream":
		b.WriteString(streamValue(ctx, t, c, key))
	default:
		v, err := c.Dump(ctx, key).Result()
		must(t, err)
		b.WriteString(v)
	}
	return b.String()
}

// streamValue renders entries, metadata, groups, consumers and pending entries (without idle
// times, which only approximately survive a chunked copy).
func streamValue(ctx context.Context, t testing.TB, c *redis.Client, key string) string {
	var b strings.Builder
	entries, err := c.Do(ctx, "XRANGE", key, "-", "+").Result()
	must(t, err)
	fmt.Fprintf(&b, "entries=%v\n", entries)
	info, err := c.Do(ctx, "XINFO", "STREAM", key).Result()
	must(t, err)
	im, _ := pairs(info)
	for _, f := range []string{"length", "last-generated-id", "max-deleted-entry-id", "entries-added", "recorded-first-entry-id", "groups"} {
		fmt.Fprintf(&b, "%s=%v\n", f, im[f])
	}
	groups, err := c.Do(ctx, "XINFO", "GROUPS", key).Result()
	must(t, err)
	gl, _ := groups.([]any)
	for _, g := range gl {
		gm, _ := pairs(g)
		name := str(gm["name"])
		fmt.Fprintf(&b, "group %s consumers=%v pending=%v last=%v read=%v lag=%v\n", name,
			gm["consumers"], gm["pending"], gm["last-delivered-id"], gm["entries-read"], gm["lag"])
		cons, err := c.Do(ctx, "XINFO", "CONSUMERS", key, name).Result()
		must(t, err)
		cl, _ := cons.([]any)
		for _, x := range cl {
			cm, _ := pairs(x)
			fmt.Fprintf(&b, "  consumer %v pending=%v\n", cm["name"], cm["pending"])
		}
		pend, err := c.Do(ctx, "XPENDING", key, name, "-", "+", 1000000).Result()
		must(t, err)
		pl, _ := pend.([]any)
		for _, p := range pl {
			f, _ := p.([]any)
			fmt.Fprintf(&b, "  pending %v %v deliveries=%v\n", f[0], f[1], f[3])
		}
	}
	return b.String()
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil && err != redis.Nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// fillHash builds a hash of n fields with pipelined HSETs of 1000 fields each.
func fillHash(ctx context.Context, t testing.TB, c *redis.Client, key string, n int, valueSize int) {
	t.Helper()
	pad := strings.Repeat("v", valueSize)
	p := c.Pipeline()
	for i := 0; i < n; i += 1000 {
		args := make([]any, 0, 2000)
		for j := i; j < min(i+1000, n); j++ {
			args = append(args, fmt.Sprintf("f%d", j), fmt.Sprintf("%s%d", pad, j))
		}
		p.HSet(ctx, key, args...)
		if p.Len() == 50 {
			_, err := p.Exec(ctx)
			must(t, err)
		}
	}
	_, err := p.Exec(ctx)
	must(t, err)
}

// setLock makes token hold key's lock on c for ttl, as another mover would.
func setLock(ctx context.Context, t testing.TB, c *redis.Client, key, token string, ttl time.Duration) {
	t.Helper()
	must(t, c.HSet(ctx, LocksKey, key, LockValue(token, time.Now().Add(ttl))).Err())
	must(t, c.PExpire(ctx, LocksKey, ttl+time.Second).Err())
}

// lockHolder returns the token of key's lock on c, live or lapsed ("" when there is none).
func lockHolder(ctx context.Context, t testing.TB, c *redis.Client, key string) string {
	t.Helper()
	v, err := c.HGet(ctx, LocksKey, key).Result()
	must(t, err)
	_, token, _ := strings.Cut(v, ":")
	return token
}

// internalKeys lists the lock, temp and fence keys left on a server.
func internalKeys(ctx context.Context, t testing.TB, c *redis.Client) []string {
	t.Helper()
	var out []string
	for _, pat := range []string{lockPrefix + "*", tmpPrefix + "*"} {
		ks, err := c.Keys(ctx, pat).Result()
		must(t, err)
		out = append(out, ks...)
	}
	return out
}
