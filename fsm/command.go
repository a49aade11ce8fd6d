package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// CmdType identifies a command in the Raft log. Types with IgnoreUnknownFlag set may be skipped
// by a node that does not know them (consul's rule), so rolling upgrades can add optional ones.
type CmdType uint8

// IgnoreUnknownFlag marks a command type that an older node may skip.
const IgnoreUnknownFlag CmdType = 0x80

// The command types. Never renumber: they are in every Raft log on disk.
const (
	TypeAddNode         CmdType = 1
	TypeRemoveNode      CmdType = 2
	TypeAddGroup        CmdType = 3
	TypeUpdateGroup     CmdType = 4
	TypeRemoveGroup     CmdType = 5
	TypeAssignSlots     CmdType = 6
	TypeSetSetting      CmdType = 7
	TypeStartMigration  CmdType = 10
	TypeAckFreeze       CmdType = 11
	TypeMigrationStep   CmdType = 12
	TypeMigrationReport CmdType = 13
	TypeMigrationCtl    CmdType = 14
)

// codecVersion is the encoding version written in each entry's second byte.
const codecVersion = 1

// Command is one typed change to the cluster state.
type Command interface {
	// Type is the command's log type.
	Type() CmdType
	// Name is the command's name, for metrics and errors.
	Name() string
	// apply validates the command against s and changes s; on error s must be left unchanged
	// or discarded by the caller.
	apply(s *State, index uint64) error
}

var registry = map[CmdType]func() Command{}

func register(t CmdType, f func() Command) { registry[t] = f }

// Encode serialises c as a log entry: type byte, version byte, JSON body.
func Encode(c Command) ([]byte, error) {
	body, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	return append([]byte{byte(c.Type()), codecVersion}, body...), nil
}

// ErrSkipped is returned by Decode for an unknown command type marked ignorable.
var ErrSkipped = errors.New("fsm: unknown ignorable command skipped")

// ErrUnreadable is wrapped by every Decode error but ErrSkipped: the entry is not one this build
// can read (a type, codec version or field it does not know, or bytes that are no command). A
// node must not apply the entries after such a one as if it were not there: a newer build's
// command skipped, or a field it did not see (an UpdateGroup's KeepUser, a FinishFailover's
// Executor), leaves this node's state different from the others' for good. So the node stops
// applying (node/raft.go), and an entry is checked before it is proposed (node/propose.go).
var ErrUnreadable = errors.New("this build cannot read it: upgrade this node")

// Decode parses a log entry written by Encode. A field the command does not have is an error
// (ErrUnreadable), not ignored: a field a newer build added carries a meaning this build would
// drop. So a field added to a command must be omitempty, its zero value the old behaviour: a
// newer build's entry that does not use it still reads on an older one.
func Decode(b []byte) (Command, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("fsm: entry too short (%d bytes): %w", len(b), ErrUnreadable)
	}
	t := CmdType(b[0])
	f, ok := registry[t]
	if !ok {
		if t&IgnoreUnknownFlag != 0 {
			return nil, ErrSkipped
		}
		return nil, fmt.Errorf("fsm: unknown command type %d (is this node older than the leader?): %w", t, ErrUnreadable)
	}
	if b[1] > codecVersion {
		return nil, fmt.Errorf("fsm: command type %d has version %d, this node knows up to %d: %w", t, b[1], codecVersion, ErrUnreadable)
	}
	c := f()
	if err := decodeStrict(b[2:], c); err != nil {
		return nil, fmt.Errorf("fsm: decode %s: %v: %w", c.Name(), err, ErrUnreadable)
	}
	return c, nil
}

// decodeStrict is json.Unmarshal that refuses fields v does not have.
func decodeStrict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("data after the command")
	}
	return nil
}

// Apply applies the log entry at index to s and returns the new state; s is not changed. A
// command that fails validation returns its error and a state that differs from s only in Index.
func Apply(s *State, index uint64, data []byte) (*State, error) {
	c, err := Decode(data)
	if err != nil {
		return s.withIndex(index), err
	}
	return ApplyCommand(s, index, c)
}

// ApplyCommand is Apply for a decoded command.
func ApplyCommand(s *State, index uint64, c Command) (*State, error) {
	next := s.cow()
	next.Index = index
	if err := c.apply(next, index); err != nil {
		return s.withIndex(index), err
	}
	next.Applied[c.Name()]++
	return next, nil
}

func (s *State) withIndex(index uint64) *State {
	c := *s
	c.Index = index
	return &c
}

// Error is a validation error from apply: the request contradicts the state or is malformed.
type Error struct {
	// Code is a short machine-readable reason (e.g. "exists", "not_found", "busy", "invalid").
	Code string
	Msg  string
}

// Error implements error.
func (e *Error) Error() string { return e.Msg }

func errf(code, format string, a ...any) error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, a...)}
}

// RefusedAsUnknownField reports whether err is a leader's refusal of an entry with a field its
// build does not know (an older build, during a rolling upgrade): nothing was committed, and
// the proposer may send the entry again without the fields that build lacks, when their zero
// value is the old behaviour (node/DESIGN.md, "Upgrades").
func RefusedAsUnknownField(err error) bool {
	return err != nil && strings.Contains(err.Error(), "refused the entry") && strings.Contains(err.Error(), "unknown field")
}
