package router

import (
	"errors"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	noPermCmd = "NOPERM this user has no permissions to run the '%s' command"
	noPermKey = "NOPERM this user has no permissions to access one of the keys used as arguments"
	noPermCh  = "NOPERM this user has no permissions to access one of the channels used as arguments"
)

// testUsers: the default user from the password, a read-write user confined to "app:", the
// same with scripts, a read-only user, and a read-only user confined to "rep:".
func testUsers() Config {
	return Config{Password: "defpw", Users: []User{
		{Name: "app", PasswordSHA256: HashPassword("apppw"), KeyPrefix: "app:"},
		{Name: "appscript", PasswordSHA256: HashPassword("scriptpw"), KeyPrefix: "app:", Scripts: true},
		{Name: "ro", PasswordSHA256: HashPassword("ropw"), ReadOnly: true},
		{Name: "rep", PasswordSHA256: HashPassword("reppw"), ReadOnly: true, KeyPrefix: "rep:"},
	}}
}

func asUser(user, pass string) func(*redis.Options) {
	return func(o *redis.Options) { o.Username, o.Password = user, pass }
}

// wantErr fails unless err's text is want (want ending in "*": starts with it; "": no error).
func wantErr(t *testing.T, what string, err error, want string) {
	t.Helper()
	got := ""
	if err != nil && !errors.Is(err, redis.Nil) {
		got = err.Error()
	}
	if p, ok := strings.CutSuffix(want, "*"); ok && strings.HasPrefix(got, p) || got == want {
		return
	}
	t.Fatalf("%s: got %q, want %q", what, got, want)
}

func noPerm(cmd string) string { return strings.Replace(noPermCmd, "%s", cmd, 1) }

func TestUsersAuthenticate(t *testing.T) {
	tc := startCluster(t, 2, 1, testUsers())
	ctx := ctxT(t)
	for _, c := range []struct{ user, pass, whoami string }{
		{"", "defpw", "default"}, {"default", "defpw", "default"}, {"app", "apppw", "app"}, {"ro", "ropw", "ro"},
	} {
		cl := tc.client(0, asUser(c.user, c.pass))
		if got, err := cl.Do(ctx, "ACL", "WHOAMI").Text(); err != nil || got != c.whoami {
			t.Fatalf("AUTH %q: ACL WHOAMI = %q, %v", c.user, got, err)
		}
	}
	for _, c := range []struct{ user, pass string }{{"app", "defpw"}, {"nobody", "apppw"}, {"", "apppw"}, {"default", "ropw"}} {
		err := tc.client(0, asUser(c.user, c.pass)).Ping(ctx).Err()
		wantErr(t, "AUTH "+c.user, err, errBadPass.msg)
	}

	r := dialRaw(t, tc.addrs[0])
	r.send("ACL WHOAMI\r\nAUTH app wrong\r\nHELLO 2 AUTH app apppw SETNAME n1\r\n")
	if l := r.line(); !strings.HasPrefix(l, "-NOAUTH") {
		t.Fatalf("ACL WHOAMI before AUTH: %q", l)
	}
	if l := r.line(); l != "-"+errBadPass.msg {
		t.Fatalf("wrong password: %q", l)
	}
	if l := r.line(); l != "*14" {
		t.Fatalf("HELLO 2 AUTH: %q", l)
	}
	for i := 0; i < 25; i++ { // the rest of HELLO's map
		r.line()
	}
	r.send("ACL WHOAMI\r\nCLIENT INFO\r\nAUTH ro wrong\r\nACL WHOAMI\r\nRESET\r\nGET k\r\n")
	if l := r.line() + r.line(); l != "$3app" {
		t.Fatalf("ACL WHOAMI after HELLO AUTH: %q", l)
	}
	r.line()
	if l := r.line(); !strings.Contains(l, " user=app ") || !strings.Contains(l, " name=n1 ") {
		t.Fatalf("CLIENT INFO: %q", l)
	}
	r.line() // the bulk string's own CRLF after the line's newline
	if l := r.line(); l != "-"+errBadPass.msg {
		t.Fatalf("wrong password: %q", l)
	}
	if l := r.line() + r.line(); l != "$3app" {
		t.Fatalf("a failed AUTH changed the user: %q", l)
	}
	if l := r.line(); l != "+RESET" {
		t.Fatalf("RESET: %q", l)
	}
	if l := r.line(); !strings.HasPrefix(l, "-NOAUTH") {
		t.Fatalf("RESET kept the user: %q", l)
	}
}

// TestUsersWithoutPassword: with users and no password the default user is disabled, so a
// session must name a user; without users and password AUTH default is anything.
func TestUsersWithoutPassword(t *testing.T) {
	cfg := testUsers()
	cfg.Password = ""
	cfg.Users = append(cfg.Users, User{Name: "admin", PasswordSHA256: HashPassword("adminpw")})
	tc := startCluster(t, 1, 1, cfg)
	tc.addNode(Config{})
	ctx := ctxT(t)
	wantErr(t, "no AUTH", tc.client(0).Get(ctx, "k").Err(), "NOAUTH*")
	wantErr(t, "AUTH pass", tc.client(0, asUser("", "defpw")).Ping(ctx).Err(), errBadPass.msg)
	wantErr(t, "AUTH default", tc.client(0, asUser("default", "x")).Ping(ctx).Err(), errBadPass.msg)
	wantErr(t, "AUTH app", tc.client(0, asUser("app", "apppw")).Set(ctx, "app:k", "v", 0).Err(), "")
	wantErr(t, "open node", tc.client(1).Get(ctx, "app:k").Err(), "")
	if got := tc.client(1, asUser("default", "anything")).Do(ctx, "ACL", "WHOAMI").Val(); got != "default" {
		t.Fatalf("ACL WHOAMI on a node without password: %v", got)
	}
	// The default user exists while disabled, as in redis-server: its sessions are those not
	// yet authenticated (until session 45: "No such user").
	if n, err := tc.client(0, asUser("admin", "adminpw")).Do(ctx, "CLIENT", "KILL", "USER", "default").Result(); err != nil {
		t.Fatalf("CLIENT KILL USER default with the default user disabled: %v, %v", n, err)
	}
}

func TestReadOnlyUser(t *testing.T) {
	tc := startCluster(t, 2, 1, testUsers())
	ctx := ctxT(t)
	admin := tc.client(0, asUser("", "defpw"))
	k0, k1 := keyIn("ro", 0, 2), keyIn("ro", 1, 2)
	if err := admin.MSet(ctx, k0, "a", k1, "b").Err(); err != nil {
		t.Fatal(err)
	}
	admin.RPush(ctx, "list{x}", 3, 1, 2)
	ro := tc.client(0, asUser("ro", "ropw"))
	if got := ro.MGet(ctx, k0, k1).Val(); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Fatalf("MGET over two groups: %v", got)
	}
	if got, err := ro.SortRO(ctx, "list{x}", &redis.Sort{}).Result(); err != nil || strings.Join(got, "") != "123" {
		t.Fatalf("SORT_RO: %v %v", got, err)
	}
	if got, err := ro.EvalRO(ctx, "return redis.call('GET', KEYS[1])", []string{k0}).Result(); err != nil || got != "a" {
		t.Fatalf("EVAL_RO: %v %v", got, err)
	}
	wantErr(t, "SET", ro.Set(ctx, k0, "x", 0).Err(), noPerm("set"))
	wantErr(t, "MSET", ro.MSet(ctx, k0, "x", k1, "y").Err(), noPerm("mset"))
	wantErr(t, "DEL", ro.Del(ctx, k0, k1).Err(), noPerm("del"))
	wantErr(t, "SORT", ro.Sort(ctx, "list{x}", &redis.Sort{}).Err(), noPerm("sort"))
	wantErr(t, "EVAL", ro.Eval(ctx, "return 1", []string{k0}).Err(), noPerm("eval"))
	wantErr(t, "EVAL_RO writing", ro.EvalRO(ctx, "return redis.call('SET', KEYS[1], 'x')", []string{k0}).Err(), "ERR Write commands are not allowed from read-only scripts*")
	wantErr(t, "SCRIPT LOAD", ro.ScriptLoad(ctx, "return 1").Err(), noPerm("script|load"))
	wantErr(t, "PUBLISH", ro.Publish(ctx, "c", "m").Err(), noPerm("publish"))
	wantErr(t, "FLUSHALL", ro.FlushAll(ctx).Err(), noPerm("flushall"))
	wantErr(t, "BLPOP", ro.BLPop(ctx, 10*time.Millisecond, "list{x}").Err(), noPerm("blpop"))
	wantErr(t, "XREADGROUP", ro.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{"s", ">"}}).Err(), noPerm("xreadgroup"))
	// A refused command inside MULTI aborts the transaction, as in redis-server.
	_, err := ro.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Get(ctx, k0)
		p.Set(ctx, k0, "tx", 0)
		return nil
	})
	wantErr(t, "MULTI with SET", err, "EXECABORT*")
	if got := admin.Get(ctx, k0).Val(); got != "a" {
		t.Fatalf("%s = %q after refused writes", k0, got)
	}
	// Subscribing is reading.
	sub := ro.Subscribe(ctx, "news")
	defer sub.Close()
	if _, err := sub.ReceiveTimeout(ctx, 5*time.Second); err != nil {
		t.Fatalf("SUBSCRIBE: %v", err)
	}
	admin.Publish(ctx, "news", "hi")
	if m, err := sub.ReceiveMessage(ctx); err != nil || m.Payload != "hi" {
		t.Fatalf("message: %v %v", m, err)
	}
}

func TestPrefixedUser(t *testing.T) {
	tc := startCluster(t, 2, 1, testUsers())
	ctx := ctxT(t)
	admin := tc.client(0, asUser("", "defpw"))
	a0, a1 := keyIn("app:", 0, 2), keyIn("app:", 1, 2)
	o0, o1 := keyIn("other:", 0, 2), keyIn("other:", 1, 2)
	if err := admin.MSet(ctx, o0, "secret", o1, "secret").Err(); err != nil {
		t.Fatal(err)
	}
	app := tc.client(0, asUser("app", "apppw"))
	if err := app.MSet(ctx, a0, "1", a1, "2").Err(); err != nil {
		t.Fatalf("MSET over two groups: %v", err)
	}
	if got := app.MGet(ctx, a0, a1).Val(); len(got) != 2 || got[0] != "1" || got[1] != "2" {
		t.Fatalf("MGET: %v", got)
	}
	wantErr(t, "GET outside", app.Get(ctx, o0).Err(), noPermKey)
	wantErr(t, "SET outside", app.Set(ctx, "x", "1", 0).Err(), noPermKey)
	wantErr(t, "MGET one outside", app.MGet(ctx, a0, a1, o1).Err(), noPermKey)
	wantErr(t, "MSET one outside", app.MSet(ctx, a0, "x", o1, "x").Err(), noPermKey)
	wantErr(t, "DEL one outside", app.Del(ctx, a1, o0).Err(), noPermKey)
	wantErr(t, "RENAME out", app.Rename(ctx, "app:{t}a", "{t}b").Err(), noPermKey)
	wantErr(t, "BLPOP outside", app.BLPop(ctx, 10*time.Millisecond, "app:l{t}", "l{t}").Err(), noPermKey)
	wantErr(t, "XREAD outside", app.XRead(ctx, &redis.XReadArgs{Streams: []string{"s", "0"}, Count: 1}).Err(), noPermKey)
	wantErr(t, "SORT BY", app.Sort(ctx, "app:l{t}", &redis.Sort{By: "w_*{t}"}).Err(), errSortACL.msg)
	wantErr(t, "WATCH outside", app.Watch(ctx, func(*redis.Tx) error { return nil }, o0), noPermKey)
	for _, cmd := range []string{"dbsize", "randomkey", "flushdb", "flushall"} {
		wantErr(t, cmd, app.Do(ctx, cmd).Err(), noPerm(cmd))
	}
	// INFO without the keyspace's size, which DBSIZE's refusal keeps from the user.
	for _, section := range []string{"keyspace", "everything", ""} {
		info, err := app.Info(ctx, section).Result()
		if err != nil || strings.Contains(info, "# Keyspace") || strings.Contains(info, "db0:") {
			t.Fatalf("INFO %s of a prefixed user: %v\n%s\nwant no Keyspace section", section, err, info)
		}
	}
	if info := tc.client(0, asUser("", "defpw")).Info(ctx, "keyspace").Val(); !strings.Contains(info, "db0:") {
		t.Fatalf("INFO keyspace of the default user:\n%s", info)
	}
	wantErr(t, "SCRIPT FLUSH", app.ScriptFlush(ctx).Err(), noPerm("script|flush"))
	wantErr(t, "EVAL without scripts", app.Eval(ctx, "return 1", []string{a0}).Err(), noPerm("eval"))
	wantErr(t, "SCRIPT LOAD without scripts", app.ScriptLoad(ctx, "return 1").Err(), noPerm("script|load"))

	// MULTI with a key outside the prefix: aborted, nothing written.
	_, err := app.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "app:{t}1", "tx", 0)
		p.Set(ctx, "{t}1", "tx", 0)
		return nil
	})
	wantErr(t, "MULTI", err, "EXECABORT*")
	if n := admin.Exists(ctx, "app:{t}1", "{t}1").Val(); n != 0 {
		t.Fatalf("an aborted transaction wrote %d keys", n)
	}
	if _, err := app.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "app:{t}1", "tx", 0)
		p.Incr(ctx, "app:{t}2")
		return nil
	}); err != nil {
		t.Fatalf("MULTI inside the prefix: %v", err)
	}

	// KEYS and SCAN show only the prefix.
	want := []string{a0, a1, "app:{t}1", "app:{t}2"}
	sort.Strings(want)
	keys := app.Keys(ctx, "*").Val()
	sort.Strings(keys)
	if strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Fatalf("KEYS * = %v, want %v", keys, want)
	}
	var scanned []string
	it := app.Scan(ctx, 0, "", 2).Iterator()
	for it.Next(ctx) {
		scanned = append(scanned, it.Val())
	}
	sort.Strings(scanned)
	if it.Err() != nil || strings.Join(scanned, " ") != strings.Join(want, " ") {
		t.Fatalf("SCAN = %v (%v), want %v", scanned, it.Err(), want)
	}

	// Scripts, for a user allowed them: declared keys are checked; no keys is refused.
	sc := tc.client(0, asUser("appscript", "scriptpw"))
	if got, err := sc.Eval(ctx, "return redis.call('INCR', KEYS[1])", []string{"app:n"}).Int(); err != nil || got != 1 {
		t.Fatalf("EVAL in prefix: %v %v", got, err)
	}
	wantErr(t, "EVAL outside", sc.Eval(ctx, "return 1", []string{"app:{t}1", "{t}1"}).Err(), noPermKey)
	wantErr(t, "EVAL no keys", sc.Eval(ctx, "return 1", nil).Err(), noPermKey)
	sha, err := sc.ScriptLoad(ctx, "return redis.call('GET', KEYS[1])").Result()
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, "EVALSHA outside", sc.EvalSha(ctx, sha, []string{o0}).Err(), noPermKey)
	if got := sc.EvalSha(ctx, sha, []string{"app:n"}).Val(); got != "1" {
		t.Fatalf("EVALSHA in prefix: %v", got)
	}

	// Pub/sub channels follow the prefix.
	r := dialRaw(t, tc.addrs[0])
	r.send("AUTH app apppw\r\nSUBSCRIBE news\r\nPSUBSCRIBE *\r\nSSUBSCRIBE app:a x\r\n")
	for _, want := range []string{"+OK", "-" + noPermCh, "-" + noPermCh, "-" + noPermCh} {
		if l := r.line(); l != want {
			t.Fatalf("raw subscribe: %q, want %q", l, want)
		}
	}
	wantErr(t, "PUBLISH outside", app.Publish(ctx, "news", "x").Err(), noPermCh)
	wantErr(t, "PUBSUB CHANNELS", app.PubSubChannels(ctx, "*").Err(), noPermCh)
	sub := app.PSubscribe(ctx, "app:*")
	defer sub.Close()
	if _, err := sub.ReceiveTimeout(ctx, 5*time.Second); err != nil {
		t.Fatalf("PSUBSCRIBE app:*: %v", err)
	}
	if n := app.Publish(ctx, "app:news", "hi").Val(); n != 1 {
		t.Fatalf("PUBLISH app:news reached %d", n)
	}
	if m, err := sub.ReceiveMessage(ctx); err != nil || m.Payload != "hi" {
		t.Fatalf("message: %v %v", m, err)
	}

	// The read-only prefixed user: both checks.
	rep := tc.client(0, asUser("rep", "reppw"))
	admin.Set(ctx, "rep:x", "r", 0)
	if got := rep.Get(ctx, "rep:x").Val(); got != "r" {
		t.Fatalf("rep GET: %q", got)
	}
	wantErr(t, "rep SET", rep.Set(ctx, "rep:x", "w", 0).Err(), noPerm("set"))
	wantErr(t, "rep GET outside", rep.Get(ctx, a0).Err(), noPermKey)
}

// TestRestrictedUsersSeeNoOtherSessions: read-only and prefixed users may not list, kill or
// unblock the node's sessions (Redis's @admin CLIENT subcommands); the default user may, and
// a restricted user's own CLIENT ID and SETNAME are served.
func TestRestrictedUsersSeeNoOtherSessions(t *testing.T) {
	tc := startCluster(t, 1, 1, testUsers())
	ctx := ctxT(t)
	admin := tc.client(0, asUser("default", "defpw"))
	victim := tc.client(0, asUser("app", "apppw"))
	vid, err := victim.ClientID(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range [][2]string{{"ro", "ropw"}, {"app", "apppw"}, {"rep", "reppw"}} {
		c := tc.client(0, asUser(u[0], u[1]))
		wantErr(t, u[0]+" CLIENT LIST", c.ClientList(ctx).Err(), noPerm("client|list"))
		wantErr(t, u[0]+" CLIENT KILL", c.ClientKillByFilter(ctx, "ID", strconv.FormatInt(vid, 10)).Err(), noPerm("client|kill"))
		wantErr(t, u[0]+" CLIENT UNBLOCK", c.ClientUnblock(ctx, vid).Err(), noPerm("client|unblock"))
		// The backends' settings (paths, the replication source, the bind address): @admin in
		// Redis, and served to any user until session 47.
		wantErr(t, u[0]+" CONFIG GET", c.ConfigGet(ctx, "*").Err(), noPerm("config|get"))
		wantErr(t, u[0]+" CLIENT SETNAME", c.Do(ctx, "CLIENT", "SETNAME", "n").Err(), "")
		wantErr(t, u[0]+" CLIENT ID", c.ClientID(ctx).Err(), "")
	}
	if err := victim.Ping(ctx).Err(); err != nil {
		t.Fatalf("the victim's session after the refusals: %v", err)
	}
	if l, err := admin.ClientList(ctx).Result(); err != nil || !strings.Contains(l, "user=app") {
		t.Fatalf("default user's CLIENT LIST: %v, %q", err, l)
	}
	if m, err := admin.ConfigGet(ctx, "maxmemory").Result(); err != nil || len(m) != 1 {
		t.Fatalf("default user's CONFIG GET: %v, %v", err, m)
	}
}
