package router

import (
	"strconv"
	"strings"
	"testing"

	"github.com/redraft/redraft/internal/testredis"
)

// readReply reads one whole RESP2 reply from r, as its lines joined by spaces.
func readReply(r *rawConn) string {
	r.t.Helper()
	l := r.line()
	switch l[0] {
	case '*':
		n, _ := strconv.Atoi(l[1:])
		parts := []string{l}
		for i := 0; i < n; i++ {
			parts = append(parts, readReply(r))
		}
		return strings.Join(parts, " ")
	case '$':
		if n, _ := strconv.Atoi(l[1:]); n >= 0 {
			return l + " " + r.line()
		}
	}
	return l
}

// TestXDCRepliesExact: through the multi-DC write path (every write in the WRITE script), the
// replies Lua cannot carry as they are come back as Redis sends them: 64-bit integers exact
// (beyond 2^53, at the int64 limits, no sign flip) and null arrays as null arrays, also inside
// MULTI/EXEC.
func TestXDCRepliesExact(t *testing.T) {
	tc := startXDC(t, 1, Config{})
	via := dialRaw(t, tc.addrs[0])
	direct := dialRaw(t, testredis.Start(t).Addr)
	cmds := [][]string{
		{"SET", "{n}a", "9223372036854775806"}, {"INCR", "{n}a"}, {"INCR", "{n}a"},
		{"SET", "{n}b", "-9223372036854775807"}, {"DECR", "{n}b"}, {"DECRBY", "{n}b", "1"},
		{"INCRBY", "{n}c", "9007199254740993"}, {"INCRBY", "{n}c", "-18014398509481987"},
		{"HSET", "{n}h", "f", "9223372036854775000"}, {"HINCRBY", "{n}h", "f", "807"},
		{"HINCRBY", "{n}h", "g", "-9223372036854775808"},
		{"BITFIELD", "{n}bf", "SET", "i64", "0", "9223372036854775807"}, {"BITFIELD", "{n}bf", "GET", "i64", "0", "GET", "u8", "0"},
		{"LPOP", "{n}none", "2"}, {"RPOP", "{n}none", "2"}, {"LPOP", "{n}none"},
		{"LMPOP", "1", "{n}none", "LEFT"}, {"ZMPOP", "1", "{n}none", "MIN"},
		{"RPUSH", "{n}l", "x"}, {"LPOP", "{n}l", "5"},
		{"MULTI"}, {"INCRBY", "{n}d", "9007199254740993"}, {"LPOP", "{n}none", "3"}, {"GET", "{n}d"}, {"EXEC"},
		// Blocking commands inside MULTI do not block, in Redis and through redraft.
		{"RPUSH", "{n}bl", "a", "b", "c"}, {"ZADD", "{n}bz", "1", "m", "2", "n"},
		{"MULTI"}, {"BLPOP", "{n}none", "{n}bl", "0"}, {"BRPOP", "{n}none", "0"}, {"BLMOVE", "{n}bl", "{n}to", "LEFT", "RIGHT", "0"},
		{"BLMOVE", "{n}none", "{n}to", "LEFT", "RIGHT", "0"}, {"BRPOPLPUSH", "{n}bl", "{n}to", "0"}, {"BRPOPLPUSH", "{n}none", "{n}to", "0"},
		{"BZPOPMIN", "{n}bz", "0"}, {"BZPOPMAX", "{n}none", "0"}, {"BLMPOP", "0", "1", "{n}to", "LEFT", "COUNT", "2"},
		{"BZMPOP", "0", "1", "{n}bz", "MAX"}, {"INCRBY", "{n}e", "9007199254740993"}, {"EXEC"},
		{"WATCH", "{n}w"}, {"MULTI"}, {"BLPOP", "{n}to", "0"}, {"INCRBY", "{n}w", "9007199254740993"}, {"BLPOP", "{n}none", "1"}, {"EXEC"},
	}
	for _, c := range cmds {
		raw := appendCommand(nil, c)
		via.send(string(raw))
		direct.send(string(raw))
		got, want := readReply(via), readReply(direct)
		if got != want {
			t.Errorf("%s: through redraft %q, Redis %q", strings.Join(c, " "), got, want)
		}
	}
}
