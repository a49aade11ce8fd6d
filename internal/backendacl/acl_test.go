package backendacl

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/internal/testredis"
)

const adminPW = "s3cret-admin"

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func as(t *testing.T, addr string, cr Creds) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, Username: cr.User, Password: cr.Password,
		Protocol: 2, DisableIdentity: true, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func admin(t *testing.T, addr string) *redis.Client {
	return as(t, addr, Creds{Password: adminPW})
}

// started returns a redis-server with requirepass and an Access whose users exist on it.
func started(t *testing.T) (*testredis.Server, Access) {
	t.Helper()
	srv := testredis.Start(t, testredis.WithPassword(adminPW))
	acc := Access{Group: "g1", Admin: Creds{Password: adminPW}}
	if err := acc.Provision(ctxT(t), srv.Addr); err != nil {
		t.Fatal(err)
	}
	return srv, acc
}

// wantNoPerm checks that Redis refused err's command for the user's ACL: NOPERM, or (Redis
// 7.0, inside a script) "The user executing the script can't ...".
func wantNoPerm(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil || !strings.HasPrefix(err.Error(), "NOPERM") && !strings.Contains(err.Error(), "The user executing the script can't") {
		t.Errorf("%s: %v, want an ACL refusal", what, err)
	}
}

// The escapes of issue 12: a script that pushes a key to another server, a script that
// flushes, scripts that read internal keys. Redis refuses each for the client user, and
// nothing changes.
func TestClientUserCannotReachPastTheProxy(t *testing.T) {
	srv, acc := started(t)
	other := testredis.Start(t)
	ctx := ctxT(t)
	a := admin(t, srv.Addr)
	a.Set(ctx, "k", "v", 0)
	a.Set(ctx, "__redraft:in:{k}", "secret-state", 0)
	c := as(t, srv.Addr, acc.Client())

	host, port, _ := strings.Cut(other.Addr, ":")
	err := c.Eval(ctx, "return redis.call('MIGRATE', ARGV[1], ARGV[2], KEYS[1], '0', '2000', 'COPY')", []string{"k"}, host, port).Err()
	wantNoPerm(t, "EVAL MIGRATE", err)
	if n := as(t, other.Addr, Creds{}).Exists(ctx, "k").Val(); n != 0 {
		t.Errorf("the key reached the other server")
	}
	wantNoPerm(t, "EVAL FLUSHALL", c.Eval(ctx, "return redis.call('FLUSHALL')", []string{"k"}).Err())
	wantNoPerm(t, "EVAL FLUSHDB", c.Eval(ctx, "return redis.call('FLUSHDB')", []string{"k"}).Err())
	wantNoPerm(t, "EVAL SWAPDB", c.Eval(ctx, "return redis.call('SWAPDB', '0', '1')", []string{"k"}).Err())
	if n := a.DBSize(ctx).Val(); n != 2 {
		t.Errorf("DBSIZE after the attempts = %d, want 2", n)
	}
	wantNoPerm(t, "a script reading an undeclared internal key",
		c.Eval(ctx, "return redis.call('GET', ARGV[1])", []string{"k"}, "__redraft:in:{k}").Err())
	wantNoPerm(t, "a script declaring an internal key",
		c.Eval(ctx, "return redis.call('GET', KEYS[1])", []string{"__redraft:in:{k}"}).Err())
	wantNoPerm(t, "a script writing an internal key",
		c.Eval(ctx, "return redis.call('SET', ARGV[1], 'x')", []string{"k"}, "__redraft:out:{k}").Err())
	for _, args := range [][]any{
		{"CONFIG", "SET", "dir", "/tmp"}, {"SHUTDOWN", "NOSAVE"},
		{"REPLICAOF", "127.0.0.1", "1"}, {"MODULE", "LIST"}, {"ACL", "SETUSER", "x", "on"},
		{"FAILOVER"}, {"SAVE"}, {"BGSAVE"}, {"CLIENT", "KILL", "ID", "1"}, {"SCRIPT", "KILL"},
		{"FUNCTION", "KILL"}, {"FUNCTION", "FLUSH"}, {"MONITOR"}, {"FLUSHALL"}, {"MIGRATE", host, port, "k", "0", "100"},
	} {
		wantNoPerm(t, toString(args), c.Do(ctx, args...).Err())
	}
	if v := a.Get(ctx, "__redraft:in:{k}").Val(); v != "secret-state" {
		t.Errorf("internal key = %q", v)
	}

	// Ordinary commands and scripts work.
	if err := c.Eval(ctx, "return redis.call('SET', KEYS[1], ARGV[1])", []string{"k2"}, "v2").Err(); err != nil {
		t.Fatalf("a script writing its own key: %v", err)
	}
	if v := c.Get(ctx, "k2").Val(); v != "v2" {
		t.Errorf("GET k2 = %q", v)
	}
	for _, args := range [][]any{{"KEYS", "*"}, {"SCAN", "0"}, {"DBSIZE"}, {"INFO", "keyspace"},
		{"SCRIPT", "LOAD", "return 1"}, {"PUBLISH", "ch", "m"}, {"WAIT", "0", "10"}, {"CLIENT", "ID"}} {
		if err := c.Do(ctx, args...).Err(); err != nil {
			t.Errorf("%v as the client user: %v", args, err)
		}
	}

	// The internal user reaches internal keys and may flush, migrate and get and set
	// parameters (the router sets only its allow-list), but not administer otherwise.
	in := as(t, srv.Addr, acc.Internal())
	if v := in.Get(ctx, "__redraft:in:{k}").Val(); v != "secret-state" {
		t.Errorf("internal user GET internal key = %q", v)
	}
	if err := in.Do(ctx, "MIGRATE", host, port, "k", "0", "2000", "COPY").Err(); err != nil {
		t.Errorf("internal user MIGRATE: %v", err)
	}
	if err := in.ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err(); err != nil {
		t.Errorf("internal user CONFIG SET: %v", err)
	}
	for _, args := range [][]any{{"CONFIG", "REWRITE"}, {"SHUTDOWN", "NOSAVE"}, {"ACL", "SETUSER", "x"}} {
		wantNoPerm(t, toString(args)+" (internal user)", in.Do(ctx, args...).Err())
	}
	if err := in.FlushAll(ctx).Err(); err != nil {
		t.Errorf("internal user FLUSHALL: %v", err)
	}
}

func toString(args []any) string {
	s := make([]string, len(args))
	for i, a := range args {
		s[i] = a.(string)
	}
	return strings.Join(s, " ")
}

// The key patterns admit exactly the keys that do not start with InternalPrefix.
func TestClientKeyPatternsAreExact(t *testing.T) {
	srv, acc := started(t)
	ctx := ctxT(t)
	c := as(t, srv.Addr, acc.Client())
	keys := []string{"", "a", "_", "__", "__r", "__redraft", "__redraft_", "__redraft;", "__Redraft:x",
		"__REDRAFT:x", "_redraft:x", "x__redraft:", "__redraf:t", "\x00", "\xff__redraft:", "[", "*", "?",
		"__redraft:", "__redraft:x", "__redraft:out:{t}", "__redraft::"}
	for i := 0; i < len(InternalPrefix); i++ {
		keys = append(keys, InternalPrefix[:i], InternalPrefix[:i]+"\x01", InternalPrefix[:i]+"zz")
	}
	for _, k := range keys {
		err := c.Set(ctx, k, "v", 0).Err()
		internal := strings.HasPrefix(k, InternalPrefix)
		switch {
		case internal && (err == nil || !strings.HasPrefix(err.Error(), "NOPERM")):
			t.Errorf("SET %q: %v, want NOPERM", k, err)
		case !internal && err != nil:
			t.Errorf("SET %q: %v, want OK", k, err)
		}
	}
}

func TestProvisionErrorsSayWhatToFix(t *testing.T) {
	srv := testredis.Start(t, testredis.WithPassword(adminPW))
	ctx := ctxT(t)
	wrong := Access{Group: "g1", Admin: Creds{Password: "not-the-password"}}
	err := wrong.Provision(ctx, srv.Addr)
	if err == nil || !strings.Contains(err.Error(), "admin credentials") || !strings.Contains(err.Error(), srv.Addr) {
		t.Errorf("wrong admin password: %v", err)
	}
	if err != nil && (strings.Contains(err.Error(), "not-the-password") || strings.Contains(err.Error(), adminPW)) {
		t.Errorf("the error shows a password: %v", err)
	}
	if _, err := wrong.Prepare(ctx, []string{srv.Addr}); err == nil {
		t.Error("Prepare with a wrong admin password succeeded")
	}

	a := admin(t, srv.Addr)
	if err := a.Do(ctx, "ACL", "SETUSER", "ops", "on", ">opspw", "~*", "&*", "+@all", "-@admin").Err(); err != nil {
		t.Fatal(err)
	}
	weak := Access{Group: "g1", Admin: Creds{User: "ops", Password: "opspw"}}
	if err := weak.Provision(ctx, srv.Addr); err == nil || !strings.Contains(err.Error(), `user "ops" may not create`) {
		t.Errorf("admin user without ACL rights: %v", err)
	}
	if n := a.Do(ctx, "ACL", "USERS").Val(); strings.Contains(toStrings(n), ClientUser) {
		t.Errorf("users created although provisioning failed: %v", n)
	}

	// A named admin user that may: works, and the users it creates authenticate.
	if err := a.Do(ctx, "ACL", "SETUSER", "root", "on", ">rootpw", "~*", "&*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	good := Access{Group: "g1", Admin: Creds{User: "root", Password: "rootpw"}}
	unreachable, err := good.Prepare(ctx, []string{srv.Addr, "127.0.0.1:1"})
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if len(unreachable) != 1 || unreachable[0] != "127.0.0.1:1" {
		t.Errorf("unreachable = %v", unreachable)
	}
	if err := as(t, srv.Addr, good.Client()).Ping(ctx).Err(); err != nil {
		t.Errorf("client user after Prepare: %v", err)
	}
}

func toStrings(v any) string {
	var b strings.Builder
	if l, ok := v.([]any); ok {
		for _, e := range l {
			b.WriteString(e.(string) + " ")
		}
	}
	return b.String()
}

// A server restarted without its ACL users gets them back on the next connection, through
// Ensure or the go-redis dialer.
func TestUsersComeBackAfterRestart(t *testing.T) {
	srv, acc := started(t)
	ctx := ctxT(t)
	c := redis.NewClient(acc.InternalOptions(&redis.Options{Addr: srv.Addr, MaxRetries: -1, Protocol: 2, DisableIdentity: true}))
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Set(ctx, "__redraft:x", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := probe(ctx, srv.Addr, acc.Internal(), time.Second); !errors.Is(err, ErrWrongPass) {
		t.Fatalf("AUTH after a restart: %v, want WRONGPASS", err)
	}
	// The pooled connection died with the server; the next one is dialed and the users made.
	var err error
	for i := 0; i < 3; i++ {
		if err = c.Set(ctx, "__redraft:x", "2", 0).Err(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("SET after the restart: %v", err)
	}
	if err := acc.Ensure(ctx, srv.Addr, acc.Client(), time.Second); err != nil {
		t.Fatal(err)
	}
	if err := as(t, srv.Addr, acc.Client()).Ping(ctx).Err(); err != nil {
		t.Errorf("client user after Ensure: %v", err)
	}
}

// Passwords are derived: the same on every node, different per group and per admin
// password, and SetUserLines never show them.
func TestDerivedPasswords(t *testing.T) {
	a := Access{Group: "g1", Admin: Creds{Password: "p"}}
	if a.Client() != (Access{Group: "g1", Admin: Creds{User: "root", Password: "p"}}).Client() {
		t.Error("the admin user name changes the derived password")
	}
	seen := map[string]bool{}
	for _, x := range []Access{a, {Group: "g2", Admin: Creds{Password: "p"}}, {Group: "g1", Admin: Creds{Password: "q"}}} {
		for _, cr := range []Creds{x.Client(), x.Internal()} {
			if seen[cr.Password] || len(cr.Password) != 64 {
				t.Errorf("password %q repeated or short", cr.Password)
			}
			seen[cr.Password] = true
		}
	}
	for _, l := range a.SetUserLines() {
		if strings.Contains(l, a.Client().Password) || strings.Contains(l, a.Internal().Password) {
			t.Errorf("SetUserLines shows a password: %s", l)
		}
	}
	if n := len(ClientKeyPatterns()); n != 2*len(InternalPrefix) {
		t.Errorf("%d patterns", n)
	}
}

func TestCredsNeverPrintTheirPassword(t *testing.T) {
	a := Access{Group: "g1", Admin: Creds{User: "root", Password: "hunter2"}}
	for _, s := range []string{fmt.Sprint(a), fmt.Sprintf("%+v", a), fmt.Sprintf("%#v", a), fmt.Sprint(a.Client())} {
		if strings.Contains(s, "hunter2") || strings.Contains(s, a.Client().Password) {
			t.Errorf("printed a password: %s", s)
		}
	}
}
