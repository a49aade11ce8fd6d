package resp

import "github.com/tidwall/redcon"

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
