package xdc

import "github.com/redraft/redraft/migrate"

// One log per group (docs/replication.md, "One log per group"): a group's master appends
// every write of its slots to one stream, the group's log, instead of one outbox per slot,
// and each receiving group keeps one position per source log instead of one per slot. Built
// so far: the WRITE function's log mode (WriteLogArgs), the receiving side (applylog.go,
// receivelog.go) and the shipping loops (shiplog.go).
// The router writes and Run ships group logs at data format 3 (LogDataFormat) only, the
// format a new cluster raises itself to (fsm.LatestDataFormat). A destination the log no longer holds the position of gets the group copied in full
// (groupcopy.go).
// Migrations hand slots over between logs as migration.go says.

// LogKey is the group's log in each database of a master: a stream of the entries of every
// write to the group's slots, in the order the master ran them. It belongs to the server, not
// to a slot (its name has no hash tag): a migration does not move it.
const LogKey = migrate.LogKey

// LogID names one source log: the DC and group whose master writes it. A failover does not
// change it: the promoted replica's log is the old master's through whatever the replica had
// received, and goes on after it (the shipper goes on from the destination's position when
// the new master's log holds it: shiplog.go).
type LogID struct {
	DC, Group string
}

// String is the log's name as inbox keys and messages carry it, "dc:group".
func (l LogID) String() string { return l.DC + ":" + l.Group }

// LogInboxKey is the key of a receiving master's inbox for source log l, a hash in each
// database the log's writes reach: field "f" is the position through which this group applied
// l, and a field "s<slot>" per slot moved into this group whose position in l differs (what
// its previous group had applied, copied by the receiving DC's migration). It belongs to the
// server, not to a slot: a migration does not move it.
func LogInboxKey(l LogID) string { return logInboxPrefix + l.String() }

// logInboxPrefix starts every LogInboxKey.
const logInboxPrefix = migrate.LogInboxPrefix

// LogEntry is an entry of a group log: the entry and the slot it writes (0 for a heartbeat,
// which has no effect).
type LogEntry struct {
	Slot int `json:"slot"`
	WireEntry
}

// WriteLogArgs is WriteArgs for a group that writes its log: the last key is LogKey instead
// of the slot's outbox.
func WriteLogArgs(slot int, dc string, maxLen int64, unit bool, calls []Call) (keys []string, argv []any) {
	keys, argv = WriteArgs(slot, dc, maxLen, unit, calls)
	keys[len(keys)-1] = LogKey
	return keys, argv
}

// EntrySlot is the slot an entry of a group log writes: its first effect's key's (every key of
// one WRITE is in one slot), or 0 for an entry without effects (a heartbeat) and a handoff.
func EntrySlot(e Entry) int {
	if _, _, ok := IsHandoff(e.Cmds); ok {
		return 0
	}
	for _, c := range e.Cmds {
		if len(c) > 1 && len(c[0]) > 0 && c[0][0] == '~' { // a stamped effect: ~kind key ...
			return migrate.SlotString(c[1])
		}
		if ks := EffectKeys(c); len(ks) > 0 {
			return migrate.SlotString(ks[0])
		}
	}
	return 0
}
