package router

import (
	"errors"
	"fmt"

	"github.com/redraft/redraft/router/backend"
	"github.com/redraft/redraft/router/resp"
)

// replyError is an error reply whose text starts with its Redis error code.
type replyError struct{ msg string }

// Error returns the reply text, code included.
func (e *replyError) Error() string { return e.msg }

func errorf(format string, a ...any) error { return &replyError{fmt.Sprintf(format, a...)} }

// The fixed error replies.
var (
	errCrossSlot     = &replyError{"CROSSSLOT Keys in request don't hash to the same slot"}
	errBadClientName = &replyError{"ERR Client names cannot contain spaces, newlines or special characters."}
	errNoAuth        = &replyError{"NOAUTH Authentication required."}
	errBadPass       = &replyError{"WRONGPASS invalid username-password pair or user is disabled."}
	errNoPassSet     = &replyError{"ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"}
	errReserved      = &replyError{"ERR keys starting with __redraft: are reserved for redraft"}
	errNoGroups      = &replyError{"CLUSTERDOWN no group serves this datacenter yet"}
	errStarting      = &replyError{"CLUSTERDOWN this node is starting: it has not caught up with the cluster yet"}
	errSlotDown      = &replyError{"CLUSTERDOWN Hash slot not served"}
	errDBIndex       = &replyError{"ERR DB index is out of range"}
	errNotInteger    = &replyError{"ERR value is not an integer or out of range"}
	errSyntax        = &replyError{"ERR syntax error"}
	errFlushOff      = &replyError{"ERR FLUSHDB and FLUSHALL are disabled on this cluster (setting flush_enabled)"}
	errNestedMulti   = &replyError{"ERR MULTI calls can not be nested"}
	errExecNoMulti   = &replyError{"ERR EXEC without MULTI"}
	errDiscardNo     = &replyError{"ERR DISCARD without MULTI"}
	errWatchInTx     = &replyError{"ERR WATCH inside MULTI is not allowed"}
	errExecAbort     = &replyError{"EXECABORT Transaction discarded because of previous errors."}
	errClosing       = &replyError{"ERR redraft node is shutting down"}
)

// appendError is the one place that turns an error into a RESP error reply.
func appendError(b []byte, err error) []byte {
	var re *replyError
	var ue *backend.UnavailableError
	var pe *resp.ProtocolError
	switch {
	case errors.As(err, &re):
		return resp.AppendError(b, re.msg)
	case errors.As(err, &ue):
		// CLUSTERDOWN: the request may be retried (the group may be failing over); a write
		// whose connection broke may still have been applied, as with any lost reply.
		return resp.AppendError(b, "CLUSTERDOWN "+ue.Error())
	case errors.As(err, &pe):
		return resp.AppendError(b, "ERR "+pe.Error())
	default:
		return resp.AppendError(b, "ERR "+err.Error())
	}
}

func errWrongArgs(name string) error {
	return errorf("ERR wrong number of arguments for '%s' command", name)
}

func errUnknown(name []byte, args [][]byte) error {
	s := "ERR unknown command '" + printable(name) + "', with args beginning with: "
	for i, a := range args {
		if i >= 8 {
			break
		}
		s += "'" + printable(a) + "' "
	}
	return &replyError{s}
}

func printable(b []byte) string {
	if len(b) > 128 {
		b = b[:128]
	}
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c < 32 || c > 126 {
			c = '?'
		}
		out = append(out, c)
	}
	return string(out)
}
