package router

import (
	"bytes"
	"strings"

	"github.com/redraft/redraft/router/command"
	"github.com/redraft/redraft/router/resp"
	"github.com/redraft/redraft/router/xdc"
)

// BITFIELDs whose replies Lua would round (router/DESIGN.md, "Cross-DC write path"). With
// several DCs a write runs inside the WRITE script, where an integer reply is a Lua number, a
// double: past 2^53 it is no longer the integer Redis computed, and a BITFIELD's replies
// cannot be read back from the key the way INCR's are. So a BITFIELD that SETs or INCRBYs and
// names a field wider than 53 bits runs as a plain command, followed in the same MULTI by the
// record of the key's state after it (WRITE's "rec" form, as a user script is recorded): the
// reply is Redis's own, in the session's protocol, and the other DCs get what WRITE would
// have recorded for it.

// maxExactBits is the widest integer field a Lua number holds exactly.
const maxExactBits = 53

// protoMaxBulkLen is Redis's default proto-max-bulk-len, which bounds a BITFIELD offset.
const protoMaxBulkLen = 512 << 20

// wideBitfield reports whether BITFIELD args sets or increments a field and names a field
// wider than maxExactBits, with arguments Redis accepts as Redis 7.0's bitfieldGeneric reads
// them. Any argument Redis would refuse leaves the command on the WRITE path, where Redis
// answers the error and nothing is recorded.
func wideBitfield(args [][]byte) bool {
	writes, wide := false, false
	for j := 2; j < len(args); j++ {
		rem := len(args) - j - 1
		sub := args[j]
		n := 0 // the op's arguments after the type and offset
		switch {
		case bytes.EqualFold(sub, []byte("get")) && rem >= 2:
		case (bytes.EqualFold(sub, []byte("set")) || bytes.EqualFold(sub, []byte("incrby"))) && rem >= 3:
			writes, n = true, 1
		case bytes.EqualFold(sub, []byte("overflow")) && rem >= 1:
			o := args[j+1]
			if !bytes.EqualFold(o, []byte("wrap")) && !bytes.EqualFold(o, []byte("sat")) && !bytes.EqualFold(o, []byte("fail")) {
				return false
			}
			j++
			continue
		default:
			return false
		}
		bits, ok := bitfieldType(args[j+1])
		if !ok || !bitfieldOffset(args[j+2], bits) {
			return false
		}
		if n == 1 {
			if _, ok := command.ParseInt(args[j+3]); !ok {
				return false
			}
		}
		wide = wide || bits > maxExactBits
		j += 2 + n
	}
	return writes && wide
}

// bitfieldType reads a field type (i1..i64, u1..u63, either case) and returns its width.
func bitfieldType(t []byte) (int64, bool) {
	if len(t) < 2 {
		return 0, false
	}
	signed := t[0] == 'i' || t[0] == 'I'
	if !signed && t[0] != 'u' && t[0] != 'U' {
		return 0, false
	}
	bits, ok := command.ParseInt(t[1:])
	if !ok || bits < 1 || (signed && bits > 64) || (!signed && bits > 63) {
		return 0, false
	}
	return bits, true
}

// bitfieldOffset reports whether o is an offset Redis accepts for a field of bits: a
// non-negative integer, or #n for n fields of bits, the field within proto-max-bulk-len bytes.
func bitfieldOffset(o []byte, bits int64) bool {
	mul := int64(1)
	if len(o) > 0 && o[0] == '#' {
		o, mul = o[1:], bits
	}
	v, ok := command.ParseInt(o)
	if !ok || v < 0 || v > (protoMaxBulkLen*8)/mul {
		return false
	}
	// The field's last byte too: Redis refuses to grow a string past the bound.
	return (v*mul+bits-1)>>3 < protoMaxBulkLen
}

// bitfieldExact serves a wideBitfield with several DCs: MULTI; BITFIELD; its record; EXEC on
// the internal user's connection, synchronously at the session's level, after the copy-lock
// pre-check user scripts make (copyLocked). call is the BITFIELD's WRITE call (xdc.Prepare).
func (c *client) bitfieldExact(spec *command.Spec, cmd resp.Command, slot int, call xdc.Call) {
	c.drain()
	// The record: a read that names the key, with the BITFIELD's class (the string's state).
	_, class, _ := strings.Cut(call.Plan, "/")
	rec := xdc.Call{Plan: "v/" + class, Args: append([]string{"EXISTS"}, call.Keys...), Keys: call.Keys}
	raw := append(append(c.xsync[:0], rawMulti...), cmd.Raw...)
	raw, n := c.appendRecord(raw, slot, argStrings(cmd.Args), rec)
	raw = append(raw, rawExec...)
	c.xsync = raw[:0]
	move := func(e *slotEntry) error {
		if err := c.moveCmdKeys(e.m, slot, spec, cmd.Args, c.keys); err != nil {
			return err
		}
		return c.moveOutbox(e.m, slot)
	}
	var served *group
	reply, err := c.syncWrite(syncReq{slot: slot, move: move, raw: raw, n: 3 + n, lvl: c.writeLevel(c.snap),
		internal: true, pre: func(g *group) ([]byte, error) { served = g; return c.copyLocked(g, slot) }})
	if err != nil {
		c.replyErr(err)
		return
	}
	v, _, ok := resp.Parse(reply)
	if !ok || v.Type != '*' || len(v.Elems) < 2 {
		c.reply(reply) // an error (EXECABORT), or -TRYAGAIN from the pre-check
		return
	}
	if failed := c.recordFailed("BITFIELD", served, v.Elems[1:]); failed != nil {
		c.reply(failed)
		return
	}
	c.reply(v.Elems[0].Raw)
}
