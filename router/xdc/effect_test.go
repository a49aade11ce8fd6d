package xdc

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/redraft/redraft/router/command"
)

func TestRulesCoverTheCommandTable(t *testing.T) {
	for _, s := range command.All() {
		if _, ok := Rules[s.Name]; ok != s.Write {
			t.Errorf("%s: in Rules %v, write flag %v", s.Name, ok, s.Write)
		}
	}
	for n := range overrides {
		if command.ByName(n) == nil || !command.ByName(n).Write {
			t.Errorf("override %q is not a write command of the table", n)
		}
	}
	for _, n := range unlessZero {
		if command.ByName(n) == nil || !command.ByName(n).Write {
			t.Errorf("unlessZero %q is not a write command of the table", n)
		}
	}
	for n := range unlessNil {
		if command.ByName(n) == nil || !command.ByName(n).Write {
			t.Errorf("unlessNil %q is not a write command of the table", n)
		}
	}
	for n, e := range Rules {
		if e.Rule == Blocking && command.ByName(e.NonBlocking) == nil {
			t.Errorf("%s: non-blocking form %q unknown", n, e.NonBlocking)
		}
	}
}

func TestPrepare(t *testing.T) {
	for _, tc := range []struct {
		argv     string
		plan     string
		args     string // "" means unchanged
		keys     string
		wantErr  string
		wantRule Rule
	}{
		// Verbatim.
		{argv: "SET k v", plan: "vz", keys: "k"},
		{argv: "set k v NX GET", plan: "v", keys: "k"}, // null: it was absent and is set now
		{argv: "SET k v XX GET", plan: "vz", keys: "k"},
		{argv: "INCR k", plan: "v", keys: "k"},
		{argv: "HSET h f v", plan: "v", keys: "h"},
		{argv: "LPUSH l a b", plan: "v", keys: "l"},
		{argv: "RPUSH l a", plan: "v", keys: "l"},
		{argv: "LPOP l 2", plan: "vz", keys: "l"},
		{argv: "ZPOPMIN z", plan: "vz", keys: "z"},
		{argv: "EXPIREAT k 100", plan: "vz", keys: "k"},
		{argv: "XGROUP CREATE s g $", plan: "v", keys: "s"},
		// UnlessZero.
		{argv: "DEL a b", plan: "vz", keys: "a b"},
		{argv: "SADD s m", plan: "v", keys: "s"},
		// RelativeTTL.
		{argv: "SET k v EX 10", plan: "t5z", args: "SET k v PXAT 10000", keys: "k"},
		{argv: "SET k v px 1500 XX", plan: "t5z", args: "SET k v PXAT 1500 XX", keys: "k"},
		{argv: "SET k v NX EX 2", plan: "t6z", args: "SET k v NX PXAT 2000", keys: "k"},
		{argv: "SET k v EX 0", plan: "vz"},      // invalid: the server says so
		{argv: "SET k v EX +5", plan: "vz"},     // Redis does not accept '+'
		{argv: "SET k v EX 1 PX 2", plan: "vz"}, // syntax error, left to the server
		{argv: "SET k v EXAT 99", plan: "vz"},   // already absolute
		{argv: "SET k v KEEPTTL", plan: "vz"},   // no TTL given
		{argv: "SETEX k 10 v", plan: "t5", args: "SET k v PXAT 10000"},
		{argv: "PSETEX k 10 v", plan: "t5", args: "SET k v PXAT 10"},
		{argv: "SETEX k -1 v", plan: "v"},
		{argv: "EXPIRE k 10", plan: "t3z", args: "PEXPIREAT k 10000"},
		{argv: "EXPIRE k 10 NX", plan: "t3z", args: "PEXPIREAT k 10000 NX"},
		{argv: "EXPIRE k -5", plan: "t3z", args: "PEXPIREAT k -5000"},
		{argv: "PEXPIRE k 250 GT", plan: "t3z", args: "PEXPIREAT k 250 GT"},
		{argv: "EXPIRE k 99999999999999999", plan: "v"}, // beyond maxRelMS: left as is
		{argv: "GETEX k EX 3", plan: "t4z", args: "GETEX k PXAT 3000"},
		{argv: "GETEX k PX 3", plan: "t4z", args: "GETEX k PXAT 3"},
		{argv: "GETEX k PERSIST", plan: "vz"},
		{argv: "GETEX k", plan: "nz"},
		{argv: "RESTORE k 500 blob", plan: "t3", args: "RESTORE k 500 blob ABSTTL"},
		{argv: "RESTORE k 0 blob REPLACE", plan: "v"},
		{argv: "RESTORE k 99 blob ABSTTL", plan: "v"},
		// Results.
		{argv: "SPOP s", plan: "sz", keys: "s"},
		{argv: "SPOP s 3", plan: "sz"},
		{argv: "INCRBYFLOAT k 1.5", plan: "f"},
		{argv: "HINCRBYFLOAT h f 1.5", plan: "h"},
		{argv: "XADD s * f v", plan: "x3"},
		{argv: "XADD s NOMKSTREAM MAXLEN ~ 10 LIMIT 5 * f v", plan: "x9"},
		{argv: "XADD s MINID 5 12-* f v", plan: "x5"},
		{argv: "XADD s 12-3 f v", plan: "v"},
		// StoreOnly.
		{argv: "SORT l", wantErr: ErrNotWrite.Error()},
		{argv: "SORT l LIMIT 0 5 STORE d", plan: "v", keys: "l d"},
		{argv: "GEORADIUS g 0 0 5 km STOREDIST d", plan: "v"},
		{argv: "GEORADIUS g 0 0 5 km", wantErr: ErrNotWrite.Error()},
		// Claim.
		{argv: "XCLAIM s g c 10 0-1", plan: "k"},
		{argv: "XAUTOCLAIM s g c 10 0", plan: "k"},
		// Errors.
		{argv: "GET k", wantErr: ErrNotWrite.Error()},
		{argv: "NOSUCH k", wantErr: ErrUnknown.Error()},
		{argv: "BLPOP l 0", wantErr: "serve it as LPOP"},
		{argv: "FLUSHDB", wantErr: "not replicated"},
	} {
		c, err := Prepare(strings.Fields(tc.argv))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: error %v, want %q", tc.argv, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.argv, err)
			continue
		}
		want := tc.args
		if want == "" {
			want = tc.argv
		}
		if plan, _, _ := strings.Cut(c.Plan, "/"); plan != tc.plan || strings.Join(c.Args, " ") != want {
			t.Errorf("%s: plan %q args %q, want %q %q", tc.argv, c.Plan, c.Args, tc.plan, want)
		}
		if tc.keys != "" && !reflect.DeepEqual(c.Keys, strings.Fields(tc.keys)) {
			t.Errorf("%s: keys %q, want %q", tc.argv, c.Keys, tc.keys)
		}
	}
	if !errors.Is(func() error { _, err := Prepare(nil); return err }(), ErrUnknown) {
		t.Error("Prepare(nil) is not ErrUnknown")
	}
}

func TestPrepareDoesNotModifyArgv(t *testing.T) {
	argv := []string{"SET", "k", "v", "EX", "10"}
	if _, err := Prepare(argv); err != nil || argv[3] != "EX" || argv[4] != "10" {
		t.Fatalf("argv changed: %q (%v)", argv, err)
	}
}

// TestPrepareSetFast: the fast path of a plain SET makes the Call the general path makes, and
// a Call of its own (changing it changes neither argv nor the next Call).
func TestPrepareSetFast(t *testing.T) {
	for _, argv := range [][]string{{"SET", "k", "v"}, {"set", "{t}key", ""}, {"SET", "", "x y"}} {
		fast, err := Prepare(argv)
		if err != nil {
			t.Fatal(err)
		}
		slow, err := prepareAny(argv)
		if err != nil || !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q: fast %+v, general %+v (%v)", argv, fast, slow, err)
		}
		fast.Args[1], fast.Keys[0] = "changed", "changed"
		if again, _ := Prepare(argv); argv[1] == "changed" || again.Args[1] == "changed" || again.Keys[0] == "changed" {
			t.Fatalf("%q: a Call shares its slices", argv)
		}
	}
	// SET with options, or another case, takes the general path.
	if c, err := Prepare([]string{"SET", "k", "v", "EX", "10"}); err != nil || c.Plan == setPlan() {
		t.Fatalf("SET with EX: %+v %v", c, err)
	}
}

func TestEffectKeys(t *testing.T) {
	if got := EffectKeys([]string{"SREM", "s", "a", "b"}); !reflect.DeepEqual(got, []string{"s"}) {
		t.Fatalf("EffectKeys = %q", got)
	}
	if got := EffectKeys([]string{"RPOPLPUSH", "a", "b"}); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("EffectKeys = %q", got)
	}
}

func TestRuleString(t *testing.T) {
	if len(ruleNames) != int(NotReplicated)+1 || Rules["spop"].Rule.String() != "SREM of the popped members" {
		t.Fatal("rule names out of step")
	}
}

// TestPrepareXReadGroupIsStamped: XREADGROUP changes its streams' groups although Redis 7.0's
// key specs call its keys read-only: its plan names every stream, at its index in the command
// as it runs (BLOCK taken out; 1-based, as the script reads ARGV), with the command class, so its effects are recorded as `~o`
// and stamp the stream (docs/convergence.md). Until session 44 the plan had no class and the
// effects were recorded unstamped.
func TestPrepareXReadGroupIsStamped(t *testing.T) {
	for argv, want := range map[string]string{
		"XREADGROUP GROUP g c STREAMS s >":                      "g/o6",
		"XREADGROUP GROUP g c COUNT 2 BLOCK 10 STREAMS a b > >": "g/o8,9",
		"XREADGROUP GROUP g c NOACK STREAMS s 0":                "g/o7",
	} {
		c, err := Prepare(strings.Fields(argv))
		if err != nil || c.Plan != want {
			t.Errorf("%s: plan %q (%v), want %q; args %q", argv, c.Plan, err, want, c.Args)
		}
	}
}
