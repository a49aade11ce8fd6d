package router

import (
	"bytes"

	"github.com/redraft/redraft/router/command"
)

// Requests whose keys the router would find elsewhere than where Redis writes, refused before
// they are routed (docs/commands.md, "Refused arguments").

// geoStoreIDs are the spec ids of GEORADIUS and GEORADIUSBYMEMBER, whose STORE and STOREDIST
// options argsRefused checks.
var geoStoreIDs = [2]int{command.ByName("georadius").ID, command.ByName("georadiusbymember").ID}

// errGeoStoreTwice answers a GEORADIUS or GEORADIUSBYMEMBER that gives STORE or STOREDIST more
// than once.
var errGeoStoreTwice = errorf("ERR redraft: STORE or STOREDIST given more than once: Redis writes the last destination, while its key specs (and so the slot check and the record for the other DCs) name the first; give one")

// argsRefused returns the error a request gets when its arguments make the key specs disagree
// with what Redis writes, or nil. GEORADIUS and GEORADIUSBYMEMBER with STORE or STOREDIST
// given twice write the last key given (georadiusGeneric), while the key specs find the first
// STORE and the first STOREDIST: the key written would escape the slot check (landing on a
// group that does not serve its slot) and, with several DCs, the record of the write. Redis
// itself accepts such a request; a client that means it names one destination.
func argsRefused(spec *command.Spec, args [][]byte) error {
	if spec.ID == xreadGroupID {
		return xreadGroupRefused(args)
	}
	if spec.ID != geoStoreIDs[0] && spec.ID != geoStoreIDs[1] {
		return nil
	}
	// The options as Redis's georadiusGetKeys reads them: from the sixth argument, each STORE
	// or STOREDIST followed by an argument names a destination.
	n := 0
	for i := 5; i+1 < len(args); i++ {
		if bytes.EqualFold(args[i], []byte("store")) || bytes.EqualFold(args[i], []byte("storedist")) {
			n++
			i++
		}
	}
	if n > 1 {
		return errGeoStoreTwice
	}
	return nil
}

// xreadGroupID is XREADGROUP's spec id.
var xreadGroupID = command.ByName("xreadgroup").ID

// errStreamsNamed answers an XREADGROUP whose group or consumer is named STREAMS where the key
// specs would take that name for the STREAMS keyword.
var errStreamsNamed = errorf("ERR redraft: XREADGROUP names a group or consumer STREAMS where its key specs look for the STREAMS keyword: Redis reads the streams after the next STREAMS, the key specs (and so the slot check and the record for the other DCs) after this one; put GROUP first or rename the group or consumer")

// xreadGroupRefused refuses an XREADGROUP whose key specs find other keys than Redis reads.
// Redis reads the options in order up to STREAMS (xreadOptions); the key specs search for the
// first STREAMS from the fourth argument on. They part when options before GROUP push a group
// or consumer named STREAMS to the fourth argument or later: XREADGROUP COUNT 1 GROUP g
// STREAMS STREAMS k > reads stream k, while the key specs name STREAMS and k.
func xreadGroupRefused(args [][]byte) error {
	_, redisAt := xreadOptions(args)
	if redisAt < 4 {
		return nil // none, or no GROUP before it: Redis answers an error
	}
	for i := 4; i < len(args); i++ {
		if bytes.EqualFold(args[i], []byte("streams")) {
			if i != redisAt {
				return errStreamsNamed
			}
			return nil
		}
	}
	return nil
}
