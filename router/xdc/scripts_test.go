package xdc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/internal/testredis"
	"github.com/redraft/redraft/migrate"
	"github.com/redraft/redraft/router/resp"
)

// client connects to s speaking RESP2, as the router's backend connections do.
func client(t testing.TB, s *testredis.Server) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, Protocol: 2, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func prepare(t testing.TB, cmd string) Call {
	t.Helper()
	c, err := Prepare(strings.Fields(cmd))
	if err != nil {
		t.Fatalf("Prepare(%s): %v", cmd, err)
	}
	return c
}

func toAny(ss []string) []any {
	a := make([]any, len(ss))
	for i, s := range ss {
		a[i] = s
	}
	return a
}

// sameReply compares a WRITE reply with a direct one; random parts (SPOP's members, XADD's
// ID) are compared by shape only.
func sameReply(cmd string, got any, gotErr error, want any, wantErr error) bool {
	if (gotErr == nil) != (wantErr == nil) || (gotErr != nil && gotErr.Error() != wantErr.Error()) {
		return false
	}
	name := strings.ToUpper(strings.Fields(cmd)[0])
	switch name {
	case "SPOP":
		ga, _ := got.([]any)
		wa, _ := want.([]any)
		return reflect.TypeOf(got) == reflect.TypeOf(want) && len(ga) == len(wa)
	case "XADD":
		return strings.Contains(fmt.Sprint(got), "-") && strings.Contains(fmt.Sprint(want), "-")
	}
	return reflect.DeepEqual(got, want)
}

const tag = "{t}"

var slot = migrate.SlotString(tag)

// writes are run through WRITE on A and directly on C; "|"-separated lines form one unit.
var writes = []string{
	"SET {t}s v EX 100",
	"SET {t}n 10",
	"INCR {t}n",
	"INCRBY {t}n 5",
	"INCRBYFLOAT {t}f 1.5",
	"SET {t}f2 2.5 EX 100",
	"INCRBYFLOAT {t}f2 0.25",
	"SADD {t}set 1 2 3 4 5 6 7 8 9 10",
	"SADD {t}set 1",
	"SPOP {t}set",
	"SPOP {t}set 3",
	"SPOP {t}none",
	"SET {t}e x",
	"EXPIRE {t}e 100",
	"PEXPIRE {t}e 5000 GT",
	"HSET {t}h a 1 b 2",
	"HINCRBYFLOAT {t}h a 0.5",
	"RPUSH {t}l a b c d",
	"LPOP {t}l",
	"RPOP {t}l 2",
	"DEL {t}n",
	"DEL {t}missing",
	"SETEX {t}x 100 v",
	"PSETEX {t}y 100000 v",
	"GETEX {t}s EX 200",
	"GETEX {t}s",
	"SET {t}s w NX",
	"SET {t}s w XX GET",
	"XADD {t}st * f v",
	"ZADD {t}z 1 a 2 b 3 c",
	"ZPOPMIN {t}z",
	"ZINCRBY {t}z 1.5 c",
	"LMPOP 1 {t}l LEFT COUNT 5",
	"LMPOP 1 {t}l LEFT",
	"RPUSH right a b c",
	"LMPOP 1 right LEFT", // a key named as a direction (until session 47 recorded as RPOP)
	"RPUSH max a b c",
	"LMPOP 1 max LEFT COUNT 2",
	"INCR {t}h",
	"SET {t}u1 1 EX 100|INCR {t}u1|SPOP {t}set|INCR {t}h|HSET {t}h c 3",
}

// unmark reads WRITE's marked replies as a client reads what the node turns them into.
func unmark(v any, err error) (any, error) {
	switch s, _ := v.(string); {
	case s == replyNullArrayMark:
		return nil, redis.Nil
	case strings.HasPrefix(s, replyIntMark):
		n, perr := strconv.ParseInt(s[len(replyIntMark):], 10, 64)
		if perr != nil {
			return v, perr
		}
		return n, err
	}
	return v, err
}

// runWrites runs writes through WRITE on a, whose keys and arguments args builds (WriteArgs,
// WriteLogArgs), and directly on c, and compares the replies.
func runWrites(t *testing.T, ctx context.Context, a, c *redis.Client, args func(int, string, int64, bool, []Call) ([]string, []any)) {
	write := func(unit bool, calls []Call) *redis.Cmd {
		keys, argv := args(slot, "dc1", 1000, unit, calls)
		return FCall(ctx, a, WriteFunc, keys, argv...)
	}
	for _, w := range writes {
		cmds := strings.Split(w, "|")
		if len(cmds) == 1 {
			got, gotErr := unmark(write(false, []Call{prepare(t, w)}).Result())
			want, wantErr := c.Do(ctx, toAny(strings.Fields(w))...).Result()
			if !sameReply(w, got, gotErr, want, wantErr) {
				t.Errorf("%s: WRITE %#v %v, direct %#v %v", w, got, gotErr, want, wantErr)
			}
			continue
		}
		var calls []Call
		for _, cmd := range cmds {
			calls = append(calls, prepare(t, cmd))
		}
		got, err := write(true, calls).Slice()
		if err != nil {
			t.Fatalf("unit: %v", err)
		}
		res, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for _, cmd := range cmds {
				p.Do(ctx, toAny(strings.Fields(cmd))...)
			}
			return nil
		})
		if err != nil && !strings.HasPrefix(err.Error(), "WRONGTYPE") {
			t.Fatalf("direct unit: %v", err)
		}
		for i, cmd := range cmds {
			want, wantErr := res[i].(*redis.Cmd).Result()
			var gotErr error
			if e, ok := got[i].(error); ok {
				gotErr, got[i] = e, nil
			}
			if !sameReply(cmd, got[i], gotErr, want, wantErr) {
				t.Errorf("unit %s: WRITE %#v %v, direct %#v %v", cmd, got[i], gotErr, want, wantErr)
			}
		}
	}
}

// snapshot returns DUMP and PEXPIRETIME of every non-internal key.
func snapshot(t *testing.T, ctx context.Context, c *redis.Client) map[string]string {
	t.Helper()
	m, err := snapshotNow(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// snapshotNow is snapshot for a DC that may be changing: an error when a key went between the
// listing and its read.
func snapshotNow(ctx context.Context, c *redis.Client) (map[string]string, error) {
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, k := range keys {
		if strings.HasPrefix(k, "__redraft:") {
			continue
		}
		d, err := c.Dump(ctx, k).Result()
		if err != nil {
			return nil, fmt.Errorf("DUMP %s: %w", k, err)
		}
		exp, err := c.Do(ctx, "PEXPIRETIME", k).Int64()
		if err != nil {
			return nil, fmt.Errorf("PEXPIRETIME %s: %w", k, err)
		}
		m[k] = fmt.Sprintf("%q exp=%d", d, exp)
	}
	return m, nil
}

func TestWriteThenApplyReplicatesExactlyOnce(t *testing.T) {
	ctx := context.Background()
	a, b, c := client(t, testredis.Start(t)), client(t, testredis.Start(t)), client(t, testredis.Start(t))
	runWrites(t, ctx, a, c, WriteArgs)

	entries, err := ReadOutbox(ctx, a, slot, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	var effects []string
	for _, e := range entries {
		for _, cmd := range e.Cmds {
			effects = append(effects, strings.Join(cmd, " "))
		}
		if e.DC != "dc1" {
			t.Fatalf("entry %s: dc %q", e.ID, e.DC)
		}
	}
	t.Logf("%d entries, effects:\n%s", len(entries), strings.Join(effects, "\n"))
	all := strings.Join(effects, "\n")
	for _, absent := range []string{" EX ", "SETEX", "PSETEX", "EXPIRE ", "PEXPIRE ", "SPOP", "INCRBYFLOAT", "HINCRBYFLOAT",
		"DEL {t}missing", "GETEX {t}s\n", "SADD {t}set 1\n", "{t}none", "XADD {t}st *", "INCR {t}h"} {
		if strings.Contains(all+"\n", absent) {
			t.Errorf("effects contain %q", absent)
		}
	}
	if len(entries[len(entries)-1].Cmds) != 4 { // the unit: INCR {t}h fails, the rest is recorded
		t.Errorf("unit entry has %d effects, want 4", len(entries[len(entries)-1].Cmds))
	}

	prev := ""
	for _, e := range entries {
		r, err := Apply(ctx, b, slot, e, prev)
		if err != nil || r.Skipped || r.Errors != 0 {
			t.Fatalf("apply %s %q: %+v %v", e.ID, e.Cmds, r, err)
		}
		prev = e.ID
	}
	sa, sb := snapshot(t, ctx, a), snapshot(t, ctx, b)
	if !reflect.DeepEqual(sa, sb) {
		t.Fatalf("A and B differ:\nA %v\nB %v", sa, sb)
	}
	if len(sa) < 11 {
		t.Fatalf("only %d keys: %v", len(sa), sa)
	}
	for _, k := range []string{"{t}f2", "{t}e", "{t}x", "{t}y", "{t}u1"} {
		if !strings.Contains(sa[k], "exp=") || strings.HasSuffix(sa[k], "exp=-1") {
			t.Errorf("%s has no TTL: %s", k, sa[k])
		}
	}

	// The same batch again: every entry is skipped and B does not change.
	for _, e := range entries {
		if r, err := Apply(ctx, b, slot, e, ""); err != nil || !r.Skipped {
			t.Fatalf("re-apply %s: %+v %v", e.ID, r, err)
		}
	}
	if sb2 := snapshot(t, ctx, b); !reflect.DeepEqual(sb, sb2) {
		t.Fatal("B changed on re-apply")
	}
	if last, _ := b.HGet(ctx, InboxKey(slot), "dc1").Result(); last != entries[len(entries)-1].ID {
		t.Fatalf("inbox %q, want %q", last, entries[len(entries)-1].ID)
	}
	// Applied writes are not recorded again: B has no outbox.
	if n := b.Exists(ctx, OutboxKey(slot)).Val(); n != 0 {
		t.Fatal("APPLY wrote to B's outbox")
	}
}

func TestApplyIDOrderAndGaps(t *testing.T) {
	ctx := context.Background()
	b := client(t, testredis.Start(t))
	e := func(id string) Entry { return Entry{ID: id, DC: "x", Cmds: [][]string{{"INCR", "{t}c"}}} }
	b.HSet(ctx, InboxKey(slot), "x", "10-5")
	for _, tc := range []struct {
		id   string
		skip bool
	}{
		{"9-99", true}, {"10-5", true}, {"10-4", true}, {"2-100", true},
		{"10-10", false}, {"10-9", true}, {"11-0", false}, {"100-0", false}, {"99-0", true},
		// Leading zeros compare by value, on either side.
		{"0099-7", true}, {"000100-0", true}, {"0101-0", false}, {"101-00", true}, {"102-0", false},
		{"18446744073709551615-0", false}, {"18446744073709551614-5", true},
	} {
		r, err := Apply(ctx, b, slot, e(tc.id), "")
		if err != nil || r.Skipped != tc.skip {
			t.Fatalf("%s: %+v %v, want skip %v", tc.id, r, err, tc.skip)
		}
	}
	if n, _ := b.Get(ctx, "{t}c").Int(); n != 6 {
		t.Fatalf("counter %d, want 6", n)
	}
	// An entry that does not follow the last applied one is refused.
	if _, err := Apply(ctx, b, slot, Entry{ID: "5-0", DC: "y", Cmds: e("").Cmds}, "4-0"); !errors.Is(err, ErrGap) {
		t.Fatalf("gap: %v", err)
	}
	if r, err := Apply(ctx, b, slot, Entry{ID: "5-0", DC: "y", Cmds: e("").Cmds}, ""); err != nil || r.Skipped {
		t.Fatalf("first entry: %+v %v", r, err)
	}
	if r, err := Apply(ctx, b, slot, Entry{ID: "6-0", DC: "y", Cmds: e("").Cmds}, "5-0"); err != nil || r.Skipped {
		t.Fatalf("next entry: %+v %v", r, err)
	}
	// A failing effect is counted, the id still advances.
	b.RPush(ctx, "{t}l", "a")
	r, err := Apply(ctx, b, slot, Entry{ID: "7-0", DC: "y", Cmds: [][]string{{"INCR", "{t}l"}, {"INCR", "{t}c"}}}, "6-0")
	if err != nil || r.Errors != 1 || !strings.HasPrefix(r.FirstError, "WRONGTYPE") {
		t.Fatalf("failing effect: %+v %v", r, err)
	}
	if n, _ := b.Get(ctx, "{t}c").Int(); n != 9 {
		t.Fatalf("counter %d, want 9", n)
	}
	if _, err := Apply(ctx, b, slot, Entry{ID: "bad", DC: "y", Cmds: e("").Cmds}, ""); err == nil {
		t.Fatal("bad id accepted")
	}
}

// TestApplyWaitsForCopyLock: while a full copy holds the slot's copy lock, APPLY changes
// nothing and answers TRYAGAIN, except for the lock's holder re-applying its own entries.
func TestApplyWaitsForCopyLock(t *testing.T) {
	ctx := context.Background()
	b := client(t, testredis.Start(t))
	e := Entry{ID: "1-0", DC: "x", Cmds: [][]string{{"INCR", "{t}c"}}}
	b.Set(ctx, CopyLockKey(slot), "in:dc2:abc", time.Minute)
	if _, err := Apply(ctx, b, slot, e, ""); err == nil || !strings.HasPrefix(err.Error(), "TRYAGAIN") {
		t.Fatalf("apply under another's copy lock: %v", err)
	}
	if n, _ := b.Exists(ctx, "{t}c", InboxKey(slot)).Result(); n != 0 {
		t.Fatalf("apply under a copy lock changed %d keys", n)
	}
	keys, argv := ApplyArgs(slot, e, "", "in:dc2:abc")
	if r, err := FCall(ctx, b, ApplyFunc, keys, argv...).Result(); err != nil {
		t.Fatalf("the lock's holder re-applying: %v %v", r, err)
	}
	if n, _ := b.Get(ctx, "{t}c").Int(); n != 1 {
		t.Fatalf("counter %d, want 1", n)
	}
	b.Del(ctx, CopyLockKey(slot))
	if r, err := Apply(ctx, b, slot, Entry{ID: "2-0", DC: "x", Cmds: e.Cmds}, "1-0"); err != nil || r.Skipped {
		t.Fatalf("apply after the copy: %+v %v", r, err)
	}
}

func TestCompareIDs(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1-0", "1-0", 0}, {"1-1", "1-0", 1}, {"9-9", "10-0", -1}, {"10", "10-0", 0},
		{"18446744073709551615-0", "18446744073709551614-99", 1},
	} {
		if got := CompareIDs(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareIDs(%s, %s) = %d", tc.a, tc.b, got)
		}
	}
}

// TestCompareIDsAgreesWithParsing compares CompareIDs with comparing parsed parts (a
// malformed part or one past 2^64-1 as 0) over random ids: well-formed ones of every length,
// and ones with leading zeros, 20 digits, signs, letters and empty parts.
func TestCompareIDsAgreesWithParsing(t *testing.T) {
	parsed := func(a, b string) int {
		num := func(s string) uint64 { n, _ := strconv.ParseUint(s, 10, 64); return n }
		am, as, _ := strings.Cut(a, "-")
		bm, bs, _ := strings.Cut(b, "-")
		if c := cmp.Compare(num(am), num(bm)); c != 0 {
			return c
		}
		return cmp.Compare(num(as), num(bs))
	}
	r := rand.New(rand.NewPCG(5, 6))
	odd := []string{"", "0", "00", "007", "+1", "-", "x1", "18446744073709551615", "18446744073709551616",
		"99999999999999999999", "1234567890123456789", "9223372036854775808"}
	part := func() string {
		if r.IntN(4) == 0 {
			return odd[r.IntN(len(odd))]
		}
		return strconv.FormatUint(r.Uint64()>>r.IntN(64), 10)
	}
	id := func() string {
		if r.IntN(8) == 0 {
			return part()
		}
		return part() + "-" + part()
	}
	for range 200000 {
		a, b := id(), id()
		if r.IntN(3) == 0 {
			b = a[:len(a)/2] + b[min(len(b), len(a)/2):]
		}
		if got, want := CompareIDs(a, b), parsed(a, b); got != want {
			t.Fatalf("CompareIDs(%q, %q) = %d, parsed %d", a, b, got, want)
		}
	}
}

func TestParseEntry(t *testing.T) {
	e, err := ParseEntry("1-0", []string{"dc", "a", "n", "2", "3", "SET", "k", "v", "2", "DEL", "k", ""})
	if err != nil || e.DC != "a" || len(e.Cmds) != 2 || strings.Join(e.Cmds[1], " ") != "DEL k" {
		t.Fatalf("%+v %v", e, err)
	}
	for _, bad := range [][]string{{"dc", "a"}, {"dc", "a", "n", "x"}, {"dc", "a", "n", "1", "5", "SET"},
		{"dc", "a", "n", "1", "1", "PING", "extra", "x"}, {"x", "a", "n", "0"}} {
		if _, err := ParseEntry("1-0", bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestWriteGuards(t *testing.T) {
	ctx := context.Background()
	a := client(t, testredis.Start(t))
	// An outbox of the wrong type refuses the write before it runs.
	a.Set(ctx, OutboxKey(slot), "x", 0)
	if err := Write(ctx, a, slot, "dc1", 1000, prepare(t, "SET {t}k v")).Err(); err == nil || !strings.Contains(err.Error(), "outbox") {
		t.Fatalf("wrong-type outbox: %v", err)
	}
	if a.Exists(ctx, "{t}k").Val() != 0 {
		t.Fatal("write ran without its outbox entry")
	}
	a.Del(ctx, OutboxKey(slot))
	// The outbox has a hard cap of ten times the bound (MAXLEN ~), a safety net under the
	// replicator's own trimming.
	p := a.Pipeline()
	for i := range 3000 {
		Write(ctx, p, slot, "dc1", 100, prepare(t, fmt.Sprintf("SET {t}k%d v", i)))
	}
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if n := a.XLen(ctx, OutboxKey(slot)).Val(); n < 1000 || n > 1200 {
		t.Fatalf("outbox length %d with bound 100 (hard cap 1000)", n)
	}
}

// TestLuaReplyFidelity pins the replies a script cannot return unchanged: WRITE marks them,
// and FixReply turns them into what Redis answers (docs/replication.md).
func TestLuaReplyFidelity(t *testing.T) {
	ctx := context.Background()
	a, c := client(t, testredis.Start(t)), client(t, testredis.Start(t))
	for _, r := range []*redis.Client{a, c} {
		r.Set(ctx, "{t}big", "9007199254740992", 0)
	}
	got, _ := Write(ctx, a, slot, "dc1", 1000, prepare(t, "INCR {t}big")).Text()
	want, _ := c.Incr(ctx, "{t}big").Result()
	if want != 9007199254740993 || got != "REDRAFT-INT 9007199254740993" {
		t.Fatalf("INCR beyond 2^53: direct %d, WRITE %q", want, got)
	}
	if fixed := string(FixReply([]byte("+" + got + "\r\n"))); fixed != ":9007199254740993\r\n" {
		t.Fatalf("FixReply: %q", fixed)
	}
	raw, err := a.Do(ctx, "FCALL", WriteFunc, 4, "{t}nolist", MetaKey(slot), CopyLockKey(slot), OutboxKey(slot), "1000", "dc1", "one", "1", "v", "4", "LMPOP", "1", "{t}nolist", "LEFT").Text()
	if err != nil || raw != "REDRAFT-NULLARRAY" {
		t.Fatalf("LMPOP nothing: %q %v", raw, err)
	}
	if fixed := string(FixReply([]byte("*2\r\n+REDRAFT-NULLARRAY\r\n$5\r\n+REDR\r\n"))); fixed != "*2\r\n*-1\r\n$5\r\n+REDR\r\n" {
		t.Fatalf("FixReply inside an array: %q", fixed)
	}
	if fixed := string(FixReply([]byte("$13\r\n+REDRAFT-INT 1\r\n"))); fixed != "$13\r\n+REDRAFT-INT 1\r\n" {
		t.Fatalf("FixReply changed a bulk string holding the mark: %q", fixed)
	}
}

// TestWriteWideBitfieldExact: a BITFIELD on fields wider than 53 bits answers through WRITE
// exactly what Redis answers (Lua numbers would round them), alone and in a unit, with
// OVERFLOW modes and nil replies, and leaves the same bytes.
func TestWriteWideBitfieldExact(t *testing.T) {
	ctx := context.Background()
	a := client(t, testredis.Start(t))
	direct := client(t, testredis.Start(t))
	cmds := []string{
		"BITFIELD {t}b SET i64 0 9223372036854775807 GET i64 0 INCRBY i64 0 -1",
		"BITFIELD {t}b SET i64 0 -9223372036854775808 GET i64 0",
		"BITFIELD {t}b INCRBY i64 0 -1",
		"BITFIELD {t}b OVERFLOW FAIL INCRBY i64 0 -1 OVERFLOW SAT INCRBY i64 0 -5 GET u8 3",
		"BITFIELD {t}b SET u63 #1 9223372036854775807 INCRBY u63 #1 1 GET u63 #1",
		"BITFIELD {t}b OVERFLOW WRAP INCRBY i60 7 576460752303423487 INCRBY i60 7 1 SET i62 100 -2305843009213693952",
		"BITFIELD {t}new SET i64 13 -1234567890123456789 GET i64 13",
	}
	for _, cmd := range cmds {
		want, wantErr := direct.Do(ctx, toAny(strings.Fields(cmd))...).Result()
		keys, argv := writeCallArgs(prepare(t, cmd))
		raw, err := FCall(ctx, a, WriteFunc, keys, argv...).Result()
		got, gotErr := fixedReply(t, raw, err)
		if !sameReply(cmd, got, gotErr, want, wantErr) {
			t.Errorf("%s: WRITE answers %v %v, Redis %v %v", cmd, got, gotErr, want, wantErr)
		}
	}
	for _, k := range []string{"{t}b", "{t}new"} {
		if g, w := a.Get(ctx, k).Val(), direct.Get(ctx, k).Val(); g != w {
			t.Errorf("%s: %x through WRITE, %x on Redis", k, g, w)
		}
	}
	// In a unit (MULTI), each BITFIELD's replies are exact too.
	unit := []Call{prepare(t, "BITFIELD {t}u SET i64 0 9223372036854775806"), prepare(t, "BITFIELD {t}u INCRBY i64 0 1 GET i64 0")}
	raw, err := WriteUnit(ctx, a, slot, "dc1", 1000, unit).Result()
	got, gotErr := fixedReply(t, raw, err)
	want := []any{[]any{int64(0)}, []any{int64(9223372036854775807), int64(9223372036854775807)}}
	if gotErr != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("unit: %v %v, want %v", got, gotErr, want)
	}
}

// writeCallArgs returns the KEYS and ARGV of WRITE for one call.
func writeCallArgs(c Call) ([]string, []any) {
	return WriteArgs(slot, "dc1", 1000, false, []Call{c})
}

// fixedReply re-encodes a WRITE reply, applies FixReply and decodes it again, as the router
// does on its way to the client.
func fixedReply(t *testing.T, raw any, err error) (any, error) {
	t.Helper()
	if err != nil {
		return nil, err
	}
	b := FixReply(encodeMarked(nil, raw))
	v, _, ok := resp.Parse(b)
	if !ok {
		t.Fatalf("unparsable %q", b)
	}
	return respToAny(v), nil
}

// encodeMarked is encodeReply, with WRITE's marks ("REDRAFT-...", status replies from Redis
// that go-redis hands over as strings) encoded as status replies again.
func encodeMarked(b []byte, v any) []byte {
	switch x := v.(type) {
	case string:
		if strings.HasPrefix(x, "REDRAFT-") {
			return append(append(append(b, '+'), x...), '\r', '\n')
		}
	case []any:
		b = resp.AppendArray(b, len(x))
		for _, e := range x {
			b = encodeMarked(b, e)
		}
		return b
	}
	return encodeReply(b, v)
}

// respToAny turns a parsed RESP2 value into go-redis's shapes (int64, string, nil, []any).
func respToAny(v resp.Value) any {
	switch v.Type {
	case ':':
		return v.Int
	case '$', '+':
		if v.IsNull() {
			return nil
		}
		return string(v.Str)
	case '*':
		if v.IsNull() {
			return nil
		}
		out := make([]any, len(v.Elems))
		for i, e := range v.Elems {
			out[i] = respToAny(e)
		}
		return out
	}
	return v
}

// TestWriteOfNothingRecordsNothing: a write that changed nothing (a pop of an absent list, a
// GETDEL of an absent key, a SET NX that did not set) leaves no outbox entry and no stamp, so
// that it cannot win over a concurrent write in another DC (docs/convergence.md); a write
// whose nil reply still changed the key (SET ... GET of an absent key) is recorded.
func TestWriteOfNothingRecordsNothing(t *testing.T) {
	ctx := context.Background()
	a := client(t, testredis.Start(t))
	a.Set(ctx, "{t}s", "v", 0)
	for _, cmd := range []string{"LPOP {t}l", "RPOP {t}l", "LPOP {t}l 2", "RPOPLPUSH {t}l {t}l2",
		"LMOVE {t}l {t}l2 LEFT RIGHT", "LMPOP 1 {t}l LEFT", "GETDEL {t}g", "GETEX {t}g PX 100",
		"SET {t}s w NX", "SET {t}g w XX", "SET {t}g w XX GET", "SPOP {t}set", "ZPOPMIN {t}z",
		"ZMPOP 1 {t}z MIN", "SET {t}s w NX EX 10"} {
		if err := Write(ctx, a, slot, "dc1", 1000, prepare(t, cmd)).Err(); err != nil && err != redis.Nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		if n := a.XLen(ctx, OutboxKey(slot)).Val(); n != 0 {
			t.Fatalf("%s changed nothing and recorded %d entries", cmd, n)
		}
		for _, k := range []string{"{t}l", "{t}l2", "{t}g", "{t}set", "{t}z"} {
			if s := a.HGet(ctx, MetaKey(slot), "s:"+k).Val(); s != "" {
				t.Fatalf("%s changed nothing and stamped %s: %q", cmd, k, s)
			}
		}
	}
	if v := a.Get(ctx, "{t}s").Val(); v != "v" {
		t.Fatalf("{t}s = %q", v)
	}
	if err := Write(ctx, a, slot, "dc1", 1000, prepare(t, "SET {t}g w GET")).Err(); err != redis.Nil {
		t.Fatalf("SET GET of an absent key: %v", err)
	}
	if n := a.XLen(ctx, OutboxKey(slot)).Val(); n != 1 {
		t.Fatalf("SET GET of an absent key set it and recorded %d entries", n)
	}
}

// BenchmarkCompareIDs compares two ids as the shipping loops' do:
// `go test -run '^$' -bench CompareIDs ./router/xdc/`.
func BenchmarkCompareIDs(b *testing.B) {
	a, c := "1764856123456-17", "1764856123456-9"
	for b.Loop() {
		CompareIDs(a, c)
	}
}

// TestOutboxWritesGoToTheOpenLog: once a group's log has its first write, a WRITE meant for a
// slot's outbox (a node that has not applied the raise to group logs yet) goes to the log,
// after the log's entries and in order, whatever its form (the plain SET's fast path, the
// general path, a user script's record); before that, outbox writes stay in the outbox.
func TestOutboxWritesGoToTheOpenLog(t *testing.T) {
	ctx := context.Background()
	a := client(t, testredis.Start(t))
	if err := Write(ctx, a, slot, "dc1", 1000, prepare(t, "SET {t}k 1")).Err(); err != nil {
		t.Fatal(err)
	}
	if n := a.Exists(ctx, OutboxesClosedKey).Val(); n != 0 {
		t.Fatal("an outbox write closed the outboxes")
	}
	keys, argv := WriteLogArgs(slot, "dc1", 1000, false, []Call{prepare(t, "SET {t}k 2")})
	if err := FCall(ctx, a, WriteFunc, keys, argv...).Err(); err != nil {
		t.Fatal(err)
	}
	if n := a.Exists(ctx, OutboxesClosedKey).Val(); n != 1 {
		t.Fatal("the log's first write did not close the outboxes")
	}
	if err := Write(ctx, a, slot, "dc1", 1000, prepare(t, "SET {t}k 3")).Err(); err != nil {
		t.Fatal(err)
	}
	if err := Write(ctx, a, slot, "dc1", 1000, prepare(t, "INCR {t}c")).Err(); err != nil {
		t.Fatal(err)
	}
	keys, argv = WriteArgs(slot, "dc1", 1000, true, []Call{prepare(t, "SET {t}r 4")})
	argv[2] = "rec"
	if err := FCall(ctx, a, WriteFunc, keys, argv...).Err(); err != nil {
		t.Fatal(err)
	}
	if n := a.XLen(ctx, OutboxKey(slot)).Val(); n != 1 {
		t.Fatalf("the outbox holds %d entries after the log opened, want its 1 from before", n)
	}
	entries := logEntries(t, a)
	var got []string
	for _, e := range entries {
		for _, c := range e.Cmds {
			got = append(got, strings.Join(c[:2], " "))
		}
	}
	want := []string{"~s {t}k", "~s {t}k", "~c {t}c", "~s {t}r"}
	if !slices.Equal(got, want) {
		t.Fatalf("the log's effects %q, want %q", got, want)
	}
}

// TestWriteOfNoChangeRecordsNothing (session 43): writes whose reply says they changed
// nothing record nothing and stamp nothing (SETRANGE of an empty string, LINSERT whose pivot
// is missing, SET NX GET of a key that exists); a DEL of several keys records a tombstone for
// the keys it found only; increments by zero record a delta APPLY's INCRBY takes ("0", never
// "-0", nor INCRBYFLOAT's "007").
func TestWriteOfNoChangeRecordsNothing(t *testing.T) {
	ctx := context.Background()
	a := client(t, testredis.Start(t))
	a.Set(ctx, "{t}s", "abc", 0)
	a.RPush(ctx, "{t}l", "p")
	write := func(argv ...string) any {
		t.Helper()
		v, err := Write(ctx, a, slot, "dc1", 1000, mustPrepare(t, argv...)).Result()
		if err != nil && err != redis.Nil {
			t.Fatalf("%q: %v", argv, err)
		}
		return v
	}
	stamped := func(k string) string { return a.HGet(ctx, MetaKey(slot), "s:"+k).Val() }
	for _, tc := range []struct {
		argv  []string
		reply any
	}{
		{[]string{"SETRANGE", "{t}g", "0", ""}, int64(0)},
		{[]string{"SETRANGE", "{t}s", "1", ""}, int64(3)},
		{[]string{"LINSERT", "{t}l", "BEFORE", "missing", "x"}, int64(-1)},
		{[]string{"SET", "{t}s", "w", "NX", "GET"}, "abc"},
		{[]string{"SET", "{t}s", "w", "NX", "GET", "EX", "10"}, "abc"},
	} {
		n := a.XLen(ctx, OutboxKey(slot)).Val()
		stamps := map[string]string{}
		for _, k := range []string{"{t}s", "{t}g", "{t}l"} {
			stamps[k] = stamped(k)
		}
		if v := write(tc.argv...); v != tc.reply {
			t.Fatalf("%q answered %v, want %v", tc.argv, v, tc.reply)
		}
		if m := a.XLen(ctx, OutboxKey(slot)).Val(); m != n {
			t.Errorf("%q changed nothing and recorded %d entries", tc.argv, m-n)
		}
		for k, s := range stamps {
			if now := stamped(k); now != s {
				t.Errorf("%q changed nothing and stamped %s: %q", tc.argv, k, now)
			}
		}
	}
	if v, l := a.Get(ctx, "{t}s").Val(), a.LRange(ctx, "{t}l", 0, -1).Val(); v != "abc" || len(l) != 1 {
		t.Fatalf("{t}s = %q, {t}l = %q", v, l)
	}

	last := ""
	if es, err := ReadOutbox(ctx, a, slot, "", 100); err != nil {
		t.Fatal(err)
	} else if len(es) > 0 {
		last = es[len(es)-1].ID
	}
	if v := write("DEL", "{t}s", "{t}g", "{t}s"); v != int64(1) {
		t.Fatalf("DEL answered %v", v)
	}
	write("SET", "{t}n", "5")
	write("DECRBY", "{t}n", "0")
	write("INCRBYFLOAT", "{t}n", "-0")
	write("INCRBYFLOAT", "{t}n", "007")
	es, err := ReadOutbox(ctx, a, slot, last, 100)
	if err != nil || len(es) != 5 {
		t.Fatalf("%d entries (%v), want 5", len(es), err)
	}
	if c := es[0].Cmds; len(c) != 1 || c[0][0] != "~d" || c[0][1] != "{t}s" {
		t.Errorf("DEL of {t}s (present) and {t}g (absent) recorded %q, want one ~d of {t}s", c)
	}
	for i, want := range []string{"0", "0", "7"} {
		if c := es[2+i].Cmds; len(c) != 1 || c[0][0] != "~c" || c[0][2] != want {
			t.Errorf("increment %d recorded %q, want delta %q", i, c, want)
		}
	}
	if v := a.Get(ctx, "{t}n").Val(); v != "12" {
		t.Errorf("{t}n = %q, want 12", v)
	}
}
