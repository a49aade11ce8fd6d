package router

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/redraft/redraft/fsm"
)

func TestScanKeysDBSize(t *testing.T) {
	tc := startCluster(t, 3, 1, Config{})
	ctx := ctxT(t)
	c := tc.client(0)
	const n = 2000
	for i := 0; i < n; i++ {
		if err := c.Set(ctx, fmt.Sprintf("sc:%d", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Internal keys written behind redraft's back must stay hidden.
	for gi := 0; gi < 3; gi++ {
		tc.direct(gi).Set(ctx, fmt.Sprintf("__redraft:outbox:%d", gi), "x", 0)
	}
	seen := map[string]int{}
	var cursor uint64
	calls := 0
	for {
		keys, next, err := c.Scan(ctx, cursor, "sc:*", 100).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			seen[k]++
		}
		calls++
		cursor = next
		if cursor == 0 {
			break
		}
		if calls > 10000 {
			t.Fatal("SCAN does not terminate")
		}
	}
	if len(seen) != n {
		t.Fatalf("SCAN found %d distinct keys, want %d", len(seen), n)
	}
	for k, times := range seen {
		if times != 1 {
			t.Fatalf("SCAN returned %s %d times", k, times)
		}
	}
	all, _, _ := c.Scan(ctx, 0, "", 100000).Result()
	for _, k := range all {
		if strings.HasPrefix(k, "__redraft:") {
			t.Fatalf("SCAN shows internal key %s", k)
		}
	}
	keys := c.Keys(ctx, "*").Val()
	if len(keys) != n {
		t.Fatalf("KEYS * = %d keys, want %d (internal ones hidden)", len(keys), n)
	}
	sort.Strings(keys)
	if n := c.DBSize(ctx).Val(); n != 2000 {
		t.Fatalf("DBSIZE = %d, want 2000 (internal keys not counted)", n)
	}
	for i := 0; i < 20; i++ {
		k := c.RandomKey(ctx).Val()
		if !strings.HasPrefix(k, "sc:") {
			t.Fatalf("RANDOMKEY = %q", k)
		}
	}
	if err := c.Do(ctx, "SCAN", "abc").Err(); err == nil {
		t.Fatal("SCAN with a bad cursor succeeded")
	}
}

func TestFlushSwitch(t *testing.T) {
	allow := false
	tc := startCluster(t, 2, 1, Config{FlushEnabled: func() bool { return allow }})
	ctx := ctxT(t)
	c := tc.client(0)
	c.Set(ctx, "a", 1, 0)
	if err := c.FlushDB(ctx).Err(); err == nil || !strings.Contains(err.Error(), "disabled") {
		t.Fatalf("FLUSHDB when disabled: %v", err)
	}
	allow = true
	// The cluster setting can also switch it off.
	st, err := fsm.ApplyCommand(tc.st, 100, &fsm.SetSetting{Key: "flush_enabled", Value: "false"})
	if err != nil {
		t.Fatal(err)
	}
	tc.servers[0].SetState(st)
	if err := c.FlushAll(ctx).Err(); err == nil {
		t.Fatal("FLUSHALL allowed with flush_enabled=false")
	}
	tc.servers[0].SetState(tc.st)
	if err := c.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if n := c.DBSize(ctx).Val(); n != 0 {
		t.Fatalf("DBSIZE after FLUSHALL = %d", n)
	}
}

func TestScripts(t *testing.T) {
	tc := startCluster(t, 2, 1, Config{})
	ctx := ctxT(t)
	c := tc.client(0)
	sha, err := c.ScriptLoad(ctx, "return redis.call('incr', KEYS[1])").Result()
	if err != nil {
		t.Fatal(err)
	}
	for gi := 0; gi < 2; gi++ {
		if ok := tc.direct(gi).ScriptExists(ctx, sha).Val(); len(ok) != 1 || !ok[0] {
			t.Fatalf("script not loaded on group %d", gi+1)
		}
	}
	for _, k := range []string{keyIn("e", 0, 2), keyIn("e", 1, 2)} {
		if v := c.EvalSha(ctx, sha, []string{k}).Val(); v != int64(1) {
			t.Fatalf("EVALSHA on %s = %v", k, v)
		}
	}
	if v := c.Eval(ctx, "return 7", nil).Val(); v != int64(7) {
		t.Fatalf("EVAL without keys = %v", v)
	}
	tc.direct(1).ScriptFlush(ctx)
	if ok := c.ScriptExists(ctx, sha).Val(); len(ok) != 1 || ok[0] {
		t.Fatal("SCRIPT EXISTS true while one group lacks the script")
	}
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if ok := tc.direct(0).ScriptExists(ctx, sha).Val(); ok[0] {
		t.Fatal("SCRIPT FLUSH did not reach group 1")
	}
}

// TestScanAcrossAGroupRemoval: a group removed while a client scans (its slots given to the
// last group) must not make the iteration skip keys of the groups that stayed. A cursor read
// by the group's position ended the iteration at once here (the last group's position was
// past the end), and the rest of its keys were never listed.
func TestScanAcrossAGroupRemoval(t *testing.T) {
	tc := startCluster(t, 3, 1, Config{})
	s := tc.servers[0]
	ctx := ctxT(t)
	c := tc.client(0)
	const n = 3000
	for i := 0; i < n; i++ {
		if err := c.Set(ctx, fmt.Sprintf("sr:%d", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// The keys that stay reachable: those of g1 and g3 (g2's are not moved by this test).
	stay := map[string]bool{}
	for _, gi := range []int{0, 2} {
		for _, k := range tc.direct(gi).Keys(ctx, "sr:*").Val() {
			stay[k] = true
		}
	}
	seen := map[string]bool{}
	var cursor uint64
	scan := func() {
		keys, next, err := c.Scan(ctx, cursor, "sr:*", 50).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			seen[k] = true
		}
		cursor = next
	}
	// Into the last group, part way.
	for calls := 0; cursor>>cursorBits&indexMask != 2 || cursor&cursorMask == 0; calls++ {
		scan()
		if cursor == 0 || calls > 10000 {
			t.Fatal("the iteration ended before it was part way through the last group")
		}
	}
	st := tc.st
	var err error
	for _, cmd := range []fsm.Command{
		&fsm.AssignSlots{DC: "dc1", Group: "g3", Ranges: []fsm.SlotRange{{From: 0, To: fsm.NumSlots - 1}}, Force: true},
		&fsm.RemoveGroup{DC: "dc1", ID: "g2"},
	} {
		if st, err = fsm.ApplyCommand(st, st.Index+1, cmd); err != nil {
			t.Fatalf("%s: %v", cmd.Name(), err)
		}
	}
	s.SetState(st)
	for calls := 0; cursor != 0; calls++ {
		scan()
		if calls > 10000 {
			t.Fatal("SCAN does not terminate")
		}
	}
	missed := 0
	for k := range stay {
		if !seen[k] {
			missed++
		}
	}
	if missed > 0 {
		t.Fatalf("SCAN missed %d of the %d keys of the groups that stayed", missed, len(stay))
	}
}
