package router

import (
	"context"
	"encoding/binary"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/internal/testredis"
	"github.com/redraft/redraft/router/xdc"
)

const testLib = `#!lua name=rdlib
redis.register_function('rd_set', function(keys, args) return redis.call('SET', keys[1], args[1]) end)
redis.register_function{function_name='rd_get', callback=function(keys) return redis.call('GET', keys[1]) end, flags={'no-writes'}}`

// resp2 returns a RESP2 go-redis client of addr, so replies compare with what a node sends.
func resp2(t *testing.T, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// doer is a go-redis client or connection.
type doer interface {
	Do(ctx context.Context, args ...any) *redis.Cmd
}

// do runs a raw command and returns its value or its error's text.
func do(t *testing.T, c doer, args ...any) any {
	t.Helper()
	v, err := c.Do(ctxT(t), args...).Result()
	if err != nil {
		return "error: " + err.Error()
	}
	return v
}

// sameAs returns a function that sends a command to the node and to redis-server, fails the
// test unless both answer alike (equalReplies), and returns the node's answer.
func sameAs(t *testing.T, node, ref doer) func(args ...any) any {
	return func(args ...any) any {
		t.Helper()
		got, want := do(t, node, args...), do(t, ref, args...)
		if !equalReplies(got, want) {
			t.Fatalf("%v: node answered %#v, redis-server %#v", args, got, want)
		}
		return got
	}
}

// equalReplies compares replies of redis-server and a node where Redis's order is its hash
// tables' (which differs between servers): FUNCTION LIST's libraries and functions, and
// CONFIG GET's pairs.
func equalReplies(got, want any) bool {
	return reflect.DeepEqual(normReply(got), normReply(want))
}

func normReply(v any) any {
	a, ok := v.([]any)
	if !ok || len(a) == 0 {
		return v
	}
	if _, ok := a[0].([]any); ok {
		return sortedLibs(v)
	}
	if len(a)%2 != 0 {
		return v
	}
	m := map[any]any{}
	for i := 0; i < len(a); i += 2 {
		m[a[i]] = a[i+1]
	}
	return m
}

// sortedLibs sorts the functions of each library and the libraries of a FUNCTION LIST reply
// (Redis lists them in its hash tables' order, which differs between servers).
func sortedLibs(v any) any {
	libs, ok := v.([]any)
	if !ok {
		return v
	}
	out := make([]string, len(libs))
	for i, l := range libs {
		kv, ok := l.([]any)
		if !ok {
			return v
		}
		parts := make([]string, 0, len(kv))
		for j := 0; j+1 < len(kv); j += 2 {
			val := fmt.Sprint(kv[j+1])
			if fs, ok := kv[j+1].([]any); ok && kv[j] == "functions" {
				names := make([]string, len(fs))
				for k, f := range fs {
					names[k] = fmt.Sprint(f)
				}
				sort.Strings(names)
				val = strings.Join(names, ",")
			}
			parts = append(parts, fmt.Sprint(kv[j])+"="+val)
		}
		out[i] = strings.Join(parts, ";")
	}
	sort.Strings(out)
	return out
}

// TestFunctions: FUNCTION LOAD/DELETE/FLUSH/RESTORE reach every group, LIST/DUMP/STATS answer
// what a single redis-server answers for the same calls, FCALL routes by its keys, and groups
// that differ are named in the error.
func TestFunctions(t *testing.T) {
	tc := startCluster(t, 3, 1, Config{})
	ctx := ctxT(t)
	node := resp2(t, tc.addrs[0])
	ref := resp2(t, testredis.Start(t).Addr)
	both := sameAs(t, node, ref)
	both("FUNCTION", "FLUSH")
	if got := both("FUNCTION", "LOAD", testLib); got != "rdlib" {
		t.Fatalf("FUNCTION LOAD = %v", got)
	}
	both("FUNCTION", "LOAD", testLib) // already exists: Redis's error, from every group alike
	for i := range tc.redis {
		libs := tc.direct(i).FunctionList(ctx, redis.FunctionListQuery{LibraryNamePattern: "rd*"}).Val()
		if len(libs) != 1 {
			t.Fatalf("group %d holds %d libraries named rd* after FUNCTION LOAD, want 1", i, len(libs))
		}
		if own := tc.direct(i).FunctionList(ctx, redis.FunctionListQuery{LibraryNamePattern: xdc.LibraryPrefix + "*"}).Val(); len(own) != 1 {
			t.Fatalf("group %d holds %d redraft libraries after a client's FUNCTION FLUSH, want 1", i, len(own))
		}
	}
	both("FUNCTION", "LIST")
	both("FUNCTION", "LIST", "WITHCODE", "LIBRARYNAME", "rd*")
	both("FUNCTION", "STATS")
	both("FUNCTION", "LOAD", "REPLACE", testLib)

	// FCALL runs on the group of its key's slot.
	for gi := range tc.redis {
		k := keyIn("fn:", gi, 3)
		if got := both("FCALL", "rd_set", 1, k, "v"+k); got != "OK" {
			t.Fatalf("FCALL rd_set = %v", got)
		}
		if got := tc.direct(gi).Get(ctx, k).Val(); got != "v"+k {
			t.Fatalf("key %s on group %d = %q, want it set there by FCALL", k, gi, got)
		}
		both("FCALL_RO", "rd_get", 1, k)
	}
	if got := do(t, node, "FCALL", "rd_set", 2, "{a}1", "{b}2", "x"); !strings.Contains(got.(string), "CROSSSLOT") {
		t.Fatalf("FCALL over two slots = %v, want CROSSSLOT", got)
	}

	// DUMP, FLUSH, RESTORE round trip.
	dump := both("FUNCTION", "DUMP")
	both("FUNCTION", "FLUSH", "SYNC")
	both("FUNCTION", "LIST")
	both("FUNCTION", "RESTORE", dump)
	both("FUNCTION", "RESTORE", dump) // library exists: Redis's error
	both("FUNCTION", "LIST", "WITHCODE")
	both("FUNCTION", "DELETE", "rdlib")
	both("FUNCTION", "DELETE", "rdlib")
	both("FUNCTION", "KILL")

	// A group that differs is named.
	other := strings.Replace(testLib, "rdlib", "onlyg2", 1)
	other = strings.ReplaceAll(other, "rd_", "g2_")
	if err := tc.direct(1).FunctionLoad(ctx, other).Err(); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]any{{"FUNCTION", "LIST"}, {"FUNCTION", "DUMP"}, {"FUNCTION", "STATS"}, {"FUNCTION", "LOAD", other}} {
		got, _ := do(t, node, args...).(string)
		if !strings.Contains(got, "g2: ") || !strings.Contains(got, "differently") {
			t.Fatalf("%v with group g2 holding another library = %q, want an error naming g2", args, got)
		}
	}
	// FUNCTION LOAD ... REPLACE after a FLUSH makes them equal again.
	both("FUNCTION", "FLUSH")
	both("FUNCTION", "LOAD", other)
	both("FUNCTION", "LIST")
}

// TestFunctionsPrefixedUser: function libraries are shared by every user, so a user confined
// to a key prefix may not change them.
func TestFunctionsPrefixedUser(t *testing.T) {
	tc := startCluster(t, 1, 1, Config{Users: []User{{Name: "app", PasswordSHA256: HashPassword("pw"), KeyPrefix: "app:", Scripts: true}}})
	c := tc.client(0, func(o *redis.Options) { o.Username, o.Password, o.Protocol = "app", "pw", 2 })
	for _, args := range [][]any{{"FUNCTION", "LOAD", testLib}, {"FUNCTION", "FLUSH"}, {"FUNCTION", "DELETE", "x"}, {"CONFIG", "SET", "maxmemory-policy", "allkeys-lru"}} {
		if got, _ := do(t, c, args...).(string); !strings.Contains(got, "NOPERM") {
			t.Fatalf("%v by a prefixed user = %q, want NOPERM", args, got)
		}
	}
}

// TestFunctionsOwnLibrary: redraft's library (xdc.Library) is on every backend but not the
// client's: loading, deleting, restoring or calling it is refused, and DUMP leaves it out.
func TestFunctionsOwnLibrary(t *testing.T) {
	tc := startCluster(t, 2, 1, Config{})
	ctx := ctxT(t)
	node := resp2(t, tc.addrs[0])
	ownLibs := func(gi int) []redis.Library {
		libs, err := tc.direct(gi).FunctionList(ctx, redis.FunctionListQuery{LibraryNamePattern: xdc.LibraryPrefix + "*", WithCode: true}).Result()
		if err != nil {
			t.Fatal(err)
		}
		return libs
	}
	do(t, node, "FUNCTION", "STATS") // loads redraft's library where a connection has not yet
	own := ownLibs(0)
	if len(own) != 1 || own[0].Code != xdc.Library() {
		t.Fatalf("group 0 holds %d redraft libraries, want 1 with xdc.Library's code", len(own))
	}
	payload, err := tc.direct(0).FunctionDump(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	// A payload whose library names itself so that only Redis's reading finds the name.
	ref0 := resp2(t, testredis.Start(t).Addr)
	if err := ref0.Do(ctx, "FUNCTION", "LOAD", "#!lua NAME="+xdc.LibraryPrefix+"y\nredis.register_function('g', function() return 1 end)").Err(); err != nil {
		t.Fatal(err)
	}
	sneaky, err := ref0.FunctionDump(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	// A payload with a right checksum that the node cannot read (an opcode it does not know)
	// is refused: it might hold a library of redraft's name.
	odd := []byte("\xf4\x03abc")
	odd = append(odd, sneaky[len(sneaky)-10:len(sneaky)-8]...)
	odd = binary.LittleEndian.AppendUint64(odd, redisCRC64(odd))
	if got, _ := do(t, node, "FUNCTION", "RESTORE", string(odd)).(string); !strings.Contains(got, "could not be read") {
		t.Fatalf("FUNCTION RESTORE of an unreadable payload = %q, want the unreadable-payload error", got)
	}
	refused := [][]any{
		{"FUNCTION", "RESTORE", sneaky, "REPLACE"},
		{"FUNCTION", "LOAD", "#!lua name=" + xdc.LibraryPrefix + "x\nredis.register_function('f', function() return 1 end)"},
		{"FUNCTION", "LOAD", "REPLACE", "#!lua name=REDRAFT_x\nredis.register_function('f', function() return 1 end)"},
		// Redis reads the name case-insensitively and with quotes and escapes taken off.
		{"FUNCTION", "LOAD", "REPLACE", "#!lua NAME=" + own[0].Name + "\nredis.register_function('f', function() return 1 end)"},
		{"FUNCTION", "LOAD", "REPLACE", "#!lua \"name=" + own[0].Name + "\"\nredis.register_function('f', function() return 1 end)"},
		{"FUNCTION", "LOAD", "REPLACE", "#!lua \"name=\\x72edraft_x\"\nredis.register_function('f', function() return 1 end)"},
		{"FUNCTION", "DELETE", own[0].Name},
		{"FUNCTION", "RESTORE", payload, "REPLACE"},
		{"FCALL", xdc.WriteFunc, 0},
		{"FCALL_RO", xdc.ApplyFunc, 1, "k"},
	}
	for _, args := range refused {
		if got, _ := do(t, node, args...).(string); !strings.Contains(got, "reserved") {
			t.Fatalf("%.40v = %q, want the reserved-name error", args, got)
		}
	}
	for gi := range tc.redis {
		if libs := ownLibs(gi); len(libs) != 1 || libs[0].Code != xdc.Library() {
			t.Fatalf("group %d after refused calls holds %d redraft libraries, want xdc.Library", gi, len(libs))
		}
	}
	// Inside MULTI too: the call is refused when queued and EXEC aborts.
	cmds, err := node.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Do(ctx, "FCALL", xdc.WriteFunc, 0)
		return nil
	})
	if err == nil || len(cmds) != 1 || !strings.Contains(fmt.Sprint(cmds[0].Err()), "reserved") {
		t.Fatalf("FCALL of WRITE in MULTI: %v (%v), want the reserved-name error and EXECABORT", err, cmds)
	}

	// A client library that registers a function under a reserved name is deleted again and
	// the call refused: after a FUNCTION FLUSH on the backends themselves it could otherwise
	// take the name of redraft's WRITE and run in its place as redraft's internal user.
	for gi := range tc.redis {
		if err := tc.direct(gi).FunctionFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, fn := range []string{xdc.WriteFunc, "REDRAFT_zzz"} {
		squat := "#!lua name=squat\nredis.register_function('" + fn + "', function() return 'evil' end)"
		if got, _ := do(t, node, "FUNCTION", "LOAD", squat).(string); !strings.Contains(got, "reserved") {
			t.Fatalf("FUNCTION LOAD of a library registering %s = %q, want the reserved-name error", fn, got)
		}
		for gi := range tc.redis {
			if libs := tc.direct(gi).FunctionList(ctx, redis.FunctionListQuery{LibraryNamePattern: "squat"}).Val(); len(libs) != 0 {
				t.Fatalf("group %d still holds the squatting library after the refusal", gi)
			}
			if libs := ownLibs(gi); len(libs) != 1 || libs[0].Code != xdc.Library() {
				t.Fatalf("group %d after a squatting library: %d redraft libraries, want xdc.Library", gi, len(libs))
			}
		}
	}

	// A library that holds redraft's name with other code (loaded on a backend itself) is
	// replaced the next time the node loads its own.
	evil := "#!lua name=" + own[0].Name + "\nredis.register_function('" + xdc.WriteFunc + "', function() return 'evil' end)"
	if err := tc.direct(0).Do(ctx, "FUNCTION", "LOAD", "REPLACE", evil).Err(); err != nil {
		t.Fatal(err)
	}
	do(t, node, "FUNCTION", "STATS")
	if libs := ownLibs(0); len(libs) != 1 || libs[0].Code != xdc.Library() {
		t.Fatalf("group 0 after FUNCTION STATS still holds another code under redraft's library name")
	}

	// The node's DUMP holds the client's library only, and restores on a plain server.
	if err := node.FunctionLoad(ctx, testLib).Err(); err != nil {
		t.Fatal(err)
	}
	dump, err := node.FunctionDump(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	libs, _, err := parseFunctionDump([]byte(dump))
	if err != nil || len(libs) != 1 || string(libs[0].code) != testLib {
		t.Fatalf("the node's FUNCTION DUMP = %d libraries (%v), want the client's one", len(libs), err)
	}
	ref := resp2(t, testredis.Start(t).Addr)
	if err := ref.FunctionRestore(ctx, dump).Err(); err != nil {
		t.Fatalf("FUNCTION RESTORE of the node's dump on redis-server: %v", err)
	}
}

// TestLibraryNameAsRedisReadsIt: libraryNameOf reads every first line Redis accepts to the
// name Redis gives the library (a redis-server is the reference).
func TestLibraryNameAsRedisReadsIt(t *testing.T) {
	ctx := ctxT(t)
	c := resp2(t, testredis.Start(t).Addr)
	lines := []string{
		"#!lua name=a1", "#!lua NAME=a2", "#!lua nAmE=a3", "#!lua \"name=a4\"", "#!lua 'name=a5'",
		"#!lua name=\"a6\"", "#!lua \"name=\\x61\\x37\"", "#!lua   name=a8  ", "#!lua\tname=a9\r",
		"#!lua na'me=a10'", "#!lua \"name=a\\\"11\"", "#!lua 'name=a\\'12'", "#!lua \"name=a13\"x",
		"#!lua \"name=a14", "#!lua name=a15 name=b15", "#!lua description=x name=a16", "#!lua name=",
		"#!lua \"name=\\n17\"", "#!lua name=a18\x00 name=b18", "#!lua \"name=a19\\\"",
	}
	loaded := 0
	for _, line := range lines {
		code := line + "\nredis.register_function('f_" + fmt.Sprint(len(line)) + "', function() return 1 end)"
		got := libraryNameOf([]byte(code))
		if err := c.Do(ctx, "FUNCTION", "LOAD", "REPLACE", code).Err(); err != nil {
			t.Logf("%q refused: %v", line, err)
			continue // Redis refuses the library: whatever libraryNameOf says, nothing loads
		}
		libs, err := c.FunctionList(ctx, redis.FunctionListQuery{}).Result()
		if err != nil || len(libs) != 1 {
			t.Fatalf("%q: FUNCTION LIST = %v, %v", line, libs, err)
		}
		loaded++
		if libs[0].Name != string(got) {
			t.Errorf("first line %q: Redis names the library %q, libraryNameOf %q", line, libs[0].Name, got)
		}
		if err := c.FunctionFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if loaded < 10 {
		t.Fatalf("Redis loaded %d of the %d libraries: the cases no longer test quotes and case", loaded, len(lines))
	}
}

// TestFunctionDumpFormat: a payload Redis wrote (its library LZF-compressed) reads back to
// the code loaded and writes back to the same bytes; damaged payloads are errors.
func TestFunctionDumpFormat(t *testing.T) {
	ctx := ctxT(t)
	c := resp2(t, testredis.Start(t).Addr)
	small := "#!lua name=s\nredis.register_function('s', function() return 1 end)"
	for _, code := range []string{xdc.Library(), small} {
		if err := c.FunctionLoad(ctx, code).Err(); err != nil {
			t.Fatal(err)
		}
	}
	payload, err := c.FunctionDump(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	libs, version, err := parseFunctionDump([]byte(payload))
	if err != nil || len(libs) != 2 {
		t.Fatalf("parse: %d libraries, %v", len(libs), err)
	}
	codes := map[string]bool{string(libs[0].code): true, string(libs[1].code): true}
	if !codes[xdc.Library()] || !codes[small] {
		t.Fatal("the parsed codes are not the libraries loaded")
	}
	if got := buildFunctionDump(libs, version); string(got) != payload {
		t.Fatal("rebuilding the payload from its libraries changed it")
	}
	if len(payload) >= len(xdc.Library()) {
		t.Fatalf("payload of %d bytes for a %d-byte library: not compressed, LZF untested", len(payload), len(xdc.Library()))
	}
	for _, bad := range []string{"", payload[:len(payload)-1], payload[:20] + "x" + payload[21:], "\xf5\x05ab" + payload[len(payload)-10:]} {
		if _, _, err := parseFunctionDump([]byte(bad)); err == nil {
			t.Fatalf("damaged payload %q parsed", bad)
		}
	}
}

// FuzzParseFunctionDump: no payload makes the reader panic.
func FuzzParseFunctionDump(f *testing.F) {
	f.Add([]byte("\xf5\x03abc\x0a\x00\x00\x00\x00\x00\x00\x00\x00\x00"))
	f.Add([]byte("\xf5\xc3\x02\x05\x01ab\xe0\x00\x0a\x00"))
	f.Fuzz(func(t *testing.T, p []byte) {
		libs, _, _ := parseFunctionDump(p)
		for _, l := range libs {
			_ = libraryNameOf(l.code)
		}
		_, _ = lzfDecompress(p, len(p)*3)
	})
}

// TestFunctionFlushKeepsOwnLibraryThroughout: a FUNCTION FLUSH, and a FUNCTION RESTORE with
// the FLUSH policy, reach the groups as one FUNCTION RESTORE ... FLUSH that carries redraft's
// library too, so no moment passes on a group without it. Until session 47 they went as they
// came: redraft's library was gone until the node loaded it again, and a library restored by
// that very call (or loaded meanwhile) that registered the WRITE function's name ran in its
// place, as redraft's internal user, for every replicated write of the window. The groups'
// MONITOR shows what they were sent.
func TestFunctionFlushKeepsOwnLibraryThroughout(t *testing.T) {
	tc := startCluster(t, 2, 1, Config{})
	ctx := ctxT(t)
	node := resp2(t, tc.addrs[0])
	do(t, node, "FUNCTION", "STATS") // loads redraft's library
	own := strings.TrimSuffix(xdc.WriteFunc, "_write")
	ref := resp2(t, testredis.Start(t).Addr)
	squat := "#!lua name=squat\nredis.register_function('" + xdc.WriteFunc + "', function() return 'evil' end)"
	if err := ref.Do(ctx, "FUNCTION", "LOAD", squat).Err(); err != nil {
		t.Fatal(err)
	}
	squatDump, err := ref.FunctionDump(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	mon, conn := testredis.Monitor(t, tc.direct(0).Options().Addr)

	if got := fmt.Sprint(do(t, node, "FUNCTION", "RESTORE", squatDump, "FLUSH")); !strings.HasPrefix(got, "error") {
		t.Fatalf("FUNCTION RESTORE of a library taking WRITE's name, FLUSH: %v", got)
	}
	if got := do(t, node, "FUNCTION", "FLUSH", "ASYNC"); got != "OK" {
		t.Fatalf("FUNCTION FLUSH ASYNC = %v", got)
	}
	if got := do(t, node, "FUNCTION", "LOAD", testLib); got != "rdlib" {
		t.Fatalf("FUNCTION LOAD = %v", got)
	}
	dump := do(t, node, "FUNCTION", "DUMP")
	if got := do(t, node, "FUNCTION", "RESTORE", dump, "FLUSH"); got != "OK" {
		t.Fatalf("FUNCTION RESTORE of the client's own dump, FLUSH = %v", got)
	}
	if got := do(t, node, "FCALL", "rd_set", 1, "k", "v"); got != "OK" {
		t.Fatalf("FCALL of the restored library = %v", got)
	}
	for gi := range tc.redis {
		libs, err := tc.direct(gi).FunctionList(ctx, redis.FunctionListQuery{}).Result()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, l := range libs {
			names = append(names, l.Name)
		}
		sort.Strings(names)
		if !reflect.DeepEqual(names, []string{"rdlib", own}) {
			t.Fatalf("group %d holds %v", gi, names)
		}
	}
	if err := tc.direct(0).Echo(ctx, "end-of-test").Err(); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	flushes := 0
	for {
		l, err := mon.ReadString('\n')
		if err != nil {
			t.Fatalf("MONITOR: %v", err)
		}
		switch u := strings.ToUpper(l); {
		case strings.Contains(l, "end-of-test"):
			if flushes != 3 {
				t.Fatalf("%d flushing calls seen, want 3", flushes)
			}
			return
		case strings.Contains(u, `"FUNCTION" "FLUSH"`):
			t.Fatalf("the group was sent a bare flush: %.200s", l)
		case strings.Contains(u, `"FUNCTION" "RESTORE"`) && strings.Contains(u, `"FLUSH"`):
			flushes++
			if !strings.Contains(l, "name="+own) {
				t.Fatalf("a flushing restore without redraft's library: %.300s", l)
			}
		}
	}
}

// TestOwnDumpLibraryReadsBack: the RDB string redraft writes its library as reads back as
// Redis writes and reads them, at every length encoding.
func TestOwnDumpLibraryReadsBack(t *testing.T) {
	for _, n := range []int{0, 63, 64, 16383, 16384, 70000} {
		s := []byte(strings.Repeat("x", n))
		b := appendRDBString(nil, s)
		got, used, err := readRDBString(b)
		if err != nil || used != len(b) || string(got) != string(s) {
			t.Fatalf("length %d: %d bytes of %d read, %v", n, used, len(b), err)
		}
	}
	libs, version, err := parseFunctionDump(buildFunctionDump([]dumpLibrary{ownDumpLibrary()}, ownDumpVersion))
	if err != nil || len(libs) != 1 || string(libs[0].code) != xdc.Library() || string(version) != string(ownDumpVersion) {
		t.Fatalf("own payload: %d libraries, version %v, %v", len(libs), version, err)
	}
}
