package backend

import (
	"errors"
	"fmt"
	"net"
	"os"
)

// UnavailableError says a group's backend cannot be reached; clients see its text.
type UnavailableError struct {
	Group, Addr string
	Err         error
}

// Error names the group, its address and the cause.
func (e *UnavailableError) Error() string {
	return fmt.Sprintf("group %s (%s) is unavailable: %s", e.Group, e.Addr, shortCause(e.Err))
}

// Unwrap returns the cause.
func (e *UnavailableError) Unwrap() error { return e.Err }

// ErrClosed is the cause when a pool was closed (its group removed or changed, or shutdown).
var ErrClosed = errors.New("backend connection closed")

// shortCause strips Go's "dial tcp a->b:" prefixes down to the system error, such as
// "connection refused", keeping timeouts readable.
func shortCause(err error) string {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err.Error()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return err.Error()
}
