package resp

import (
	"strconv"

	"github.com/tidwall/redcon"
)

// The reply writers are tidwall/redcon's RESP encoders; these names keep the router's call
// sites in one vocabulary with the reader.

// AppendArray appends an array header of n elements.
func AppendArray(b []byte, n int) []byte { return redcon.AppendArray(b, n) }

// AppendBulk appends a bulk string.
func AppendBulk(b, v []byte) []byte { return redcon.AppendBulk(b, v) }

// AppendBulkString appends a bulk string.
func AppendBulkString(b []byte, v string) []byte { return redcon.AppendBulkString(b, v) }

// AppendInt appends an integer reply.
func AppendInt(b []byte, n int64) []byte { return redcon.AppendInt(b, n) }

// AppendSimple appends a status reply such as +OK; newlines in s are replaced by spaces.
func AppendSimple(b []byte, s string) []byte { return redcon.AppendString(b, s) }

// AppendError appends an error reply; msg should start with a code such as ERR or CROSSSLOT.
// Newlines in msg are replaced by spaces.
func AppendError(b []byte, msg string) []byte { return redcon.AppendError(b, msg) }

// AppendNull appends a null bulk string.
func AppendNull(b []byte) []byte { return redcon.AppendNull(b) }

// AppendOK appends +OK.
func AppendOK(b []byte) []byte { return redcon.AppendOK(b) }

// The writers below take the client's protocol: r3 is set for a RESP3 connection (HELLO 3),
// and they write what Redis 7 writes there; with r3 unset they write RESP2, as Redis does.

// AppendNullBulk appends a null: RESP2's null bulk string, RESP3's null.
func AppendNullBulk(b []byte, r3 bool) []byte {
	if r3 {
		return append(b, "_\r\n"...)
	}
	return append(b, "$-1\r\n"...)
}

// AppendNullArray appends a null aggregate: RESP2's null array, RESP3's null.
func AppendNullArray(b []byte, r3 bool) []byte {
	if r3 {
		return append(b, "_\r\n"...)
	}
	return append(b, "*-1\r\n"...)
}

// AppendMap appends the header of a map of n pairs: RESP3's map, or in RESP2 an array of
// 2n elements (keys and values alternating).
func AppendMap(b []byte, n int, r3 bool) []byte {
	if r3 {
		return appendHeader(b, '%', n)
	}
	return redcon.AppendArray(b, 2*n)
}

// AppendSet appends the header of a set of n elements: RESP3's set, RESP2's array.
func AppendSet(b []byte, n int, r3 bool) []byte {
	if r3 {
		return appendHeader(b, '~', n)
	}
	return redcon.AppendArray(b, n)
}

// AppendPush appends the header of an out-of-band message of n elements (pub/sub): RESP3's
// push, RESP2's array.
func AppendPush(b []byte, n int, r3 bool) []byte {
	if r3 {
		return appendHeader(b, '>', n)
	}
	return redcon.AppendArray(b, n)
}

// AppendVerbatim appends text as Redis 7 sends INFO or CLIENT LIST: RESP3's verbatim string
// of format "txt", RESP2's bulk string.
func AppendVerbatim(b []byte, text string, r3 bool) []byte {
	if !r3 {
		return redcon.AppendBulkString(b, text)
	}
	b = appendHeader(b, '=', len(text)+4)
	b = append(b, "txt:"...)
	b = append(b, text...)
	return append(b, '\r', '\n')
}

// AppendBool appends a boolean: RESP3's #t or #f, RESP2's integer 1 or 0.
func AppendBool(b []byte, v bool, r3 bool) []byte {
	switch {
	case r3 && v:
		return append(b, "#t\r\n"...)
	case r3:
		return append(b, "#f\r\n"...)
	case v:
		return append(b, ":1\r\n"...)
	}
	return append(b, ":0\r\n"...)
}

// AppendDouble appends a double given as Redis formats it (text): RESP3's double, RESP2's
// bulk string.
func AppendDouble(b []byte, text []byte, r3 bool) []byte {
	if !r3 {
		return redcon.AppendBulk(b, text)
	}
	b = append(b, ',')
	b = append(b, text...)
	return append(b, '\r', '\n')
}

func appendHeader(b []byte, t byte, n int) []byte {
	b = append(b, t)
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, '\r', '\n')
}
