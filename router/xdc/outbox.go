// Package xdc is cross-DC replication: per-slot outbox and inbox keys, write effects, the Lua scripts that record and apply them, and the shipping of outboxes between DCs.
package xdc

import (
	"fmt"

	"github.com/redraft/redraft/migrate"
)

// Key prefixes of the per-slot replication keys; neither is a lock or temp key, so both move
// with their slot in a migration.
const (
	// InternalPrefix starts every key redraft keeps in the groups; clients can neither name
	// nor see them.
	InternalPrefix = "__redraft:"
	// OutboxPrefix starts the key of a slot's outbox stream.
	OutboxPrefix = "__redraft:ob:"
	// InboxPrefix starts the key of a slot's inbox hash (source DC → last applied entry id).
	InboxPrefix = "__redraft:in:"
	// CopyLockPrefix starts the key of a slot's copy lock, set on the master serving the
	// slot while the slot is copied in full out of this DC or into it; it moves with the
	// slot in a migration (migrate.CopyLockPrefix): writes check it where they run.
	CopyLockPrefix = migrate.CopyLockPrefix
)

// tags holds, per slot, the shortest alphanumeric string (first in enumeration order) whose
// CRC16 slot is that slot.
var tags = slotTags()

// outboxKeys and inboxKeys are built once, so the request path does not allocate for them.
var outboxKeys, inboxKeys, lockKeys = func() (ob, in, cl [migrate.NumSlots]string) {
	for s, t := range tags {
		ob[s] = OutboxPrefix + "{" + t + "}"
		in[s] = InboxPrefix + "{" + t + "}"
		cl[s] = CopyLockPrefix + "{" + t + "}"
	}
	return
}()

// slotTags enumerates "0", "1", ..., "Z", "00", "10", ... (base 62, little-endian) until every
// slot has a string; all slots are covered by strings of at most three characters.
func slotTags() *[migrate.NumSlots]string {
	const digits = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	var t [migrate.NumSlots]string
	left := migrate.NumSlots
	var buf [8]byte
	for n := 0; left > 0; n++ {
		b := buf[:0]
		for v := n; ; v /= len(digits) {
			b = append(b, digits[v%len(digits)])
			if v < len(digits) {
				break
			}
		}
		if s := migrate.Slot(b); t[s] == "" {
			t[s] = string(b)
			left--
		}
	}
	return &t
}

// SlotTag returns the hash tag (without braces) used for slot's replication keys.
func SlotTag(slot int) string { return tags[checkSlot(slot)] }

// OutboxKey returns the key of slot's outbox stream, "__redraft:ob:{TAG}", which hashes to slot.
func OutboxKey(slot int) string { return outboxKeys[checkSlot(slot)] }

// InboxKey returns the key of slot's inbox hash, "__redraft:in:{TAG}", which hashes to slot.
func InboxKey(slot int) string { return inboxKeys[checkSlot(slot)] }

// CopyLockKey returns the key of slot's copy lock.
func CopyLockKey(slot int) string { return lockKeys[checkSlot(slot)] }

func checkSlot(slot int) int {
	if slot < 0 || slot >= migrate.NumSlots {
		panic(fmt.Sprintf("xdc: slot %d out of range", slot))
	}
	return slot
}
