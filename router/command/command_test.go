package command

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

func TestSlot(t *testing.T) {
	cases := map[string]int{
		"foo":                  12182, // CLUSTER KEYSLOT foo on redis-server
		"{user1000}.following": 3443,
		"{user1000}.followers": 3443,
		"user1000":             3443,
		"{}foo":                Slot([]byte("{}foo")),
		"foo{}{bar}":           Slot([]byte("foo{}{bar}")),
		"foo{{bar}}zap":        Slot([]byte("{bar")),
		"foo{bar}{zap}":        Slot([]byte("bar")),
		"":                     0,
	}
	for k, want := range cases {
		if got := Slot([]byte(k)); got != want {
			t.Errorf("Slot(%q) = %d, want %d", k, got, want)
		}
	}
	// An empty tag hashes the whole key, so "{}a" and "{}b" differ while "{a}x" and "a" agree.
	if Slot([]byte("{}a")) == Slot([]byte("{}b")) && Slot([]byte("{}a")) != Slot([]byte("a")) {
		t.Error("empty hash tag must hash the whole key")
	}
	if string(HashTag([]byte("{}a"))) != "{}a" || string(HashTag([]byte("x{a}y"))) != "a" || string(HashTag([]byte("x{ay"))) != "x{ay" {
		t.Error("HashTag rules")
	}
}

func keysOf(line string) []string {
	var args [][]byte
	for _, f := range strings.Fields(line) {
		args = append(args, []byte(f))
	}
	s := Lookup(args)
	var out []string
	for _, i := range s.Keys(args, nil) {
		out = append(out, string(args[i]))
	}
	return out
}

func TestKeys(t *testing.T) {
	cases := map[string]string{
		"GET k":                                     "k",
		"MSET a 1 b 2":                              "a b",
		"ZUNIONSTORE d 2 a b WEIGHTS 1 2":           "d a b",
		"XREAD COUNT 2 STREAMS s1 s2 0 0":           "s1 s2",
		"XREADGROUP GROUP g c BLOCK 0 STREAMS s1 >": "s1",
		"EVAL script 2 k1 k2 a1":                    "k1 k2",
		"EVAL script 0":                             "",
		"SORT l BY w_* LIMIT 0 1 GET x STORE dst":   "l dst",
		"OBJECT ENCODING k":                         "k",
		"BLMOVE src dst LEFT RIGHT 0":               "src dst",
		"BZPOPMIN a b 0":                            "a b",
		"BLMPOP 0 2 a b LEFT":                       "a b",
		"GEORADIUS g 0 0 1 km STORE dst":            "g dst",
		"BITOP AND d a b":                           "d a b",
		"MIGRATE h p \"\" 0 5000 KEYS a b":          "\"\" a b",
		"XADD s * f v":                              "s",
		"ZUNIONSTORE d 99 a":                        "d",
		"PFMERGE d a b":                             "d a b",
		"COPY a b":                                  "a b",
		"LMPOP 2 a b LEFT":                          "a b",
	}
	for line, want := range cases {
		if got := strings.Join(keysOf(line), " "); got != want {
			t.Errorf("%s: keys %q, want %q", line, got, want)
		}
	}
}

func TestTable(t *testing.T) {
	for name, kind := range map[string]Kind{
		"get": Forward, "mget": Split, "blpop": Block, "hset": Forward, "xadd": Forward, "pfcount": Forward,
		"geoadd": Forward, "setbit": Forward, "bitfield": Forward, "object|encoding": Forward, "dump": Forward,
		"restore": Forward, "copy": Forward, "config|get": Fanout, "config|rewrite": Unsupported, "keys": Fanout, "eval": Script,
		"subscribe": PubSub, "multi": Tx, "swapdb": Unsupported, "sort": Forward, "smove": Forward,
	} {
		s := ByName(name)
		if s == nil || s.Kind != kind {
			t.Errorf("%s: %v, want %v", name, s, kind)
		}
	}
	if !ByName("set").Write || ByName("get").Write {
		t.Error("write flags")
	}
	if s := Lookup([][]byte{[]byte("ObJeCt"), []byte("FREQ"), []byte("k")}); s == nil || s.Name != "object|freq" {
		t.Errorf("Lookup subcommand = %v", s)
	}
	if Lookup([][]byte{[]byte(strings.Repeat("x", 100))}) != nil {
		t.Error("long unknown name found")
	}
	for _, s := range All() {
		if s.Kind == Unsupported && s.Note == "" {
			t.Errorf("%s: unsupported without a reason", s.Name)
		}
	}
}

func TestInfoAndDocs(t *testing.T) {
	if b := AppendInfo(nil, "GET", false); !strings.HasPrefix(string(b), "*10\r\n$3\r\nget\r\n") {
		t.Errorf("COMMAND INFO get = %.40q", b)
	}
	if b := AppendInfo(nil, "monitor", false); string(b) != "$-1\r\n" {
		t.Errorf("COMMAND INFO monitor = %q, want null (not served)", b)
	}
	if b := AppendInfo(nil, "monitor", true); string(b) != "_\r\n" {
		t.Errorf("COMMAND INFO monitor in RESP3 = %q, want null", b)
	}
	if _, ok := AppendDocs(nil, "hset", false); !ok {
		t.Error("no docs for hset")
	}
	if b := AppendInfo(nil, "GET", true); !strings.HasPrefix(string(b), "*10\r\n$3\r\nget\r\n:2\r\n~2\r\n") {
		t.Errorf("COMMAND INFO get in RESP3 = %.40q", b)
	}
}

func TestExtraSpecs(t *testing.T) {
	if s := Lookup([][]byte{[]byte("REDRAFT"), []byte("Consistency")}); s == nil || s.Name != "redraft|consistency" || s.Kind != Local {
		t.Errorf("Lookup REDRAFT CONSISTENCY = %v", s)
	}
	if s := Lookup([][]byte{[]byte("dyno_config:CONN_CONSISTENCY"), []byte("dc_one")}); s == nil || s.Kind != Local || !s.CheckArity(2) {
		t.Errorf("Lookup DYNO_CONFIG:CONN_CONSISTENCY = %v", s)
	}
	b := AppendInfo(nil, "redraft", false)
	if !strings.HasPrefix(string(b), "*10\r\n$7\r\nredraft\r\n:-2\r\n") || !strings.Contains(string(b), "redraft|consistency") {
		t.Errorf("COMMAND INFO redraft = %q", b)
	}
	if b := AppendInfo(nil, "dyno_config:conn_consistency", false); !strings.HasPrefix(string(b), "*10\r\n") {
		t.Errorf("COMMAND INFO dyno_config:conn_consistency = %q", b)
	}
}

// TestParseInt: integers are read as Redis's string2ll reads them.
func TestParseInt(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1": 1, "-1": -1, "42": 42,
		"9223372036854775807": math.MaxInt64, "-9223372036854775808": math.MinInt64} {
		if got, ok := ParseInt([]byte(in)); !ok || got != want {
			t.Errorf("ParseInt(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "-", "+1", "01", "-0", "00", " 1", "1 ", "1.0", "1e3", "abc",
		"9223372036854775808", "-9223372036854775809", "18446744073709551616", "99999999999999999999"} {
		if got, ok := ParseInt([]byte(in)); ok {
			t.Errorf("ParseInt(%q) = %d, want refused", in, got)
		}
	}
}

// TestOneKeyAgreesWithKeySpecs checks Keys and WrittenKeys of every command against the
// reading of its key specs, for argument counts from 1 to 6: the one-key shortcut (setOneKey)
// must find what the specs find. It also checks that GET and SET take the shortcut.
func TestOneKeyAgreesWithKeySpecs(t *testing.T) {
	for _, s := range All() {
		for argc := 1; argc <= 6; argc++ {
			args := make([][]byte, argc)
			args[0] = []byte(s.Name)
			for j := 1; j < argc; j++ {
				args[j] = []byte("3") // a number, so that key counts parse
			}
			for _, written := range []bool{false, true} {
				got := s.keys(args, nil, written)
				want := s.specKeys(args, nil, written)
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("%s with %d args (written only %v): %v, the key specs say %v", s.Name, argc, written, got, want)
				}
			}
		}
	}
	for _, name := range []string{"get", "set", "incr"} {
		if s := Lookup([][]byte{[]byte(name)}); s.oneKey != 1 {
			t.Fatalf("%s: oneKey %d, want 1", name, s.oneKey)
		}
	}
	if s := Lookup([][]byte{[]byte("get")}); s.oneKeyWrites {
		t.Fatal("GET's key is not written")
	}
}
