// Package command is redraft's command table: key positions and flags of every Redis 7.0
// command, generated from redis-server, and how redraft serves each one.
package command

// KeySpec is one Redis 7 key specification (COMMAND INFO's key_specs): where the search for
// keys begins and how keys are found from there.
type KeySpec struct {
	// Flags are the spec's flags, space separated (RO, RW, OW, RM, access, update, ...).
	Flags string
	// BeginIndex is the argument index where keys start (begin_search type "index").
	BeginIndex int
	// Keyword and StartFrom describe begin_search type "keyword".
	Keyword   string
	StartFrom int
	// LastKey, KeyStep and Limit describe find_keys type "range".
	LastKey, KeyStep, Limit int
	// KeyNum, KeyNumIdx and FirstKey describe find_keys type "keynum".
	KeyNum    bool
	KeyNumIdx int
	FirstKey  int
	// Unknown marks a spec Redis cannot describe (SORT's STORE, MIGRATE's KEYS).
	Unknown bool
}

// Spec is one command or subcommand ("object|encoding") as COMMAND INFO reports it, plus
// redraft's handling.
type Spec struct {
	// Name is the lower-case command name; subcommands are "container|sub".
	Name string
	// Arity is Redis's arity: n means exactly n arguments, -n at least n.
	Arity int
	// Flags and ACL are COMMAND INFO's flags and ACL categories (without '@').
	Flags []string
	ACL   []string
	// KeySpecs locate the command's keys.
	KeySpecs []KeySpec

	// Kind is how redraft serves the command.
	Kind Kind
	// Note explains the handling, or why the command is not supported.
	Note string
	// Write reports whether the command may change data.
	Write bool
	// Blocking reports whether the command may block the connection.
	Blocking bool
	// Subs are a container command's subcommands, by lower-case name.
	Subs map[string]*Spec
	// ID is the spec's index in the table, for per-command counters.
	ID int

	// oneKey is the index of the command's only key when its key specs name exactly one
	// argument at a fixed index (GET, SET, INCR...), else 0; oneKeyWrites is whether that key
	// may be changed. Set by the table (setOneKey); Keys and WrittenKeys answer from them.
	oneKey       int
	oneKeyWrites bool
}

// HasFlag reports whether COMMAND INFO lists flag f for the command.
func (s *Spec) HasFlag(f string) bool {
	for _, x := range s.Flags {
		if x == f {
			return true
		}
	}
	return false
}

// InCategory reports whether the command is in ACL category c (without '@').
func (s *Spec) InCategory(c string) bool {
	for _, x := range s.ACL {
		if x == c {
			return true
		}
	}
	return false
}

// CheckArity reports whether argc arguments (the name included) satisfy the arity.
func (s *Spec) CheckArity(argc int) bool {
	if s.Arity > 0 {
		return argc == s.Arity
	}
	return argc >= -s.Arity
}
