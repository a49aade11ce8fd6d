package resp

import (
	"bufio"
	"strings"
	"testing"
)

// resp3Replies are RESP3 replies as Redis 7 sends them, each followed by a byte that must be
// left unread.
var resp3Replies = []string{
	"_\r\n", ",3.5\r\n", ",inf\r\n", "#t\r\n", "#f\r\n", "(12345678901234567890\r\n",
	"=8\r\ntxt:a\r\nb\r\n", "!9\r\nERR wrong\r\n",
	"%2\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n_\r\n",
	"~2\r\n$1\r\nx\r\n$1\r\ny\r\n",
	">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
	"*2\r\n%1\r\n+k\r\n~0\r\n*-1\r\n",
	"|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n",
}

func TestRESP3Replies(t *testing.T) {
	for _, r := range resp3Replies {
		br := bufio.NewReader(strings.NewReader(r + "X"))
		got, err := ReadReply(br, nil)
		if err != nil || string(got) != r {
			t.Errorf("ReadReply(%q) = %q, %v", r, got, err)
		}
		if n := Skip([]byte(r + "X")); n != len(r) {
			t.Errorf("Skip(%q) = %d, want %d", r, n, len(r))
		}
		v, rest, ok := Parse([]byte(r + "X"))
		if !ok || string(rest) != "X" || string(v.Raw) != r {
			t.Errorf("Parse(%q) = %+v, rest %q, ok %v", r, v, rest, ok)
		}
	}
	v, _, _ := Parse([]byte("%2\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n_\r\n"))
	if v.Int != 2 || len(v.Elems) != 4 || !v.Elems[3].IsNull() {
		t.Errorf("map parsed as %+v", v)
	}
	if v, _, _ := Parse([]byte("|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n")); v.Type != '$' || string(v.Str) != "v" {
		t.Errorf("attribute: the value is %+v", v)
	}
	for _, bad := range []string{"_x\r\n", "#x\r\n", "%-1\r\n", "=-1\r\n", "~-1\r\n"} {
		if _, _, ok := Parse([]byte(bad)); ok {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestRESP3Writers(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{string(AppendNullBulk(nil, true)), "_\r\n"}, {string(AppendNullBulk(nil, false)), "$-1\r\n"},
		{string(AppendNullArray(nil, false)), "*-1\r\n"}, {string(AppendMap(nil, 2, true)), "%2\r\n"},
		{string(AppendMap(nil, 2, false)), "*4\r\n"}, {string(AppendSet(nil, 1, true)), "~1\r\n"},
		{string(AppendPush(nil, 3, true)), ">3\r\n"}, {string(AppendVerbatim(nil, "a", true)), "=5\r\ntxt:a\r\n"},
		{string(AppendVerbatim(nil, "a", false)), "$1\r\na\r\n"}, {string(AppendBool(nil, true, true)), "#t\r\n"},
		{string(AppendBool(nil, false, false)), ":0\r\n"}, {string(AppendDouble(nil, []byte("1.5"), true)), ",1.5\r\n"},
		{string(AppendDouble(nil, []byte("1.5"), false)), "$3\r\n1.5\r\n"},
	} {
		if c.got != c.want {
			t.Errorf("wrote %q, want %q", c.got, c.want)
		}
	}
}
