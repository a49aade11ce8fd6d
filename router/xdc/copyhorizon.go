package xdc

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
)

// A full copy's horizon (docs/convergence.md, "Full copies and flushes"). The source of a full
// copy collects a tombstone once it stands, in every log of the other DCs, past the
// tombstone's stamp plus TombstoneMargin (gc.go): from then on the copy carries neither the
// key nor its stamp. A key the receiving DC holds with a stamp the copy lacks is kept as a
// write the source had not seen; but when that stamp (and every element state of the key) is
// below the horizon less the margin, the source had applied it, and holds no stamp of the
// key only because it deleted the key later and collected the tombstone. Keeping it would
// keep in one DC a key every other DC deleted, for good. So such keys go with the copy.
//
// The horizon is computed as the collector computes it, from the positions the source sent:
// the lowest, in ms of its id, over every log of the DCs other than the source, one without a
// position counting 0.

// logCopyHorizon is the horizon of cs, a slot of a group's full copy from DC source, in ms (0:
// none), over the logs cs names and those of st (this DC's state; a group the source does not
// know yet holds it at 0).
func logCopyHorizon(st *fsm.State, source string, cs LogCopySlot) int64 {
	var h int64 = -1
	lower := func(id string) {
		if ms := idMs(id); h < 0 || ms < h {
			h = ms
		}
	}
	for name, p := range cs.Positions {
		if dc, _, _ := strings.Cut(name, ":"); dc != source {
			lower(p)
		}
	}
	for _, dc := range st.DCNames() {
		if dc == source {
			continue
		}
		for _, gid := range st.DCs[dc].GroupIDs() {
			lower(cs.Positions[LogID{DC: dc, Group: gid}.String()])
		}
	}
	return max(h, 0)
}

// slotCopyHorizon is the horizon of a slot's full copy from DC source at data format 1 (per
// slot outboxes), in ms: the lowest of the source's last applied ids (inbox) from every other
// DC of st.
func slotCopyHorizon(st *fsm.State, source string, inbox map[string]string) int64 {
	var h int64 = -1
	for _, dc := range st.DCNames() {
		if dc == source {
			continue
		}
		if ms := idMs(inbox[dc]); h < 0 || ms < h {
			h = ms
		}
	}
	return max(h, 0)
}

// idMs is the ms part of stream id id (0 for "" or anything else).
func idMs(id string) int64 {
	ms, _, _ := strings.Cut(id, "-")
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// stampMs is the ms part of stamp st ("<ms*4096+logical>:<dc>"), or -1 when it has none.
func stampMs(st string) int64 {
	ts, _, _ := strings.Cut(st, ":")
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n / 4096
}

// staleLua answers which of the keys ARGV[3...] of the slot whose metadata hash is KEYS[1]
// have a stamp and element states all below horizon ARGV[1] less margin ARGV[2] (ms): writes
// the copy's source had applied (copyhorizon.go). A key with more than 128 element states is
// never stale (its states are not read).
const staleLua = `
local meta = KEYS[1]
` + stampLua + elemLua + `
` + elemStatesLua + `
local limit = tonumber(ARGV[1]) - tonumber(ARGV[2])
local out = {}
for i = 3, #ARGV do
  local k = ARGV[i]
  local st = redis.call('HGET', meta, 's:' .. k)
  if st and tsOf(st) / 4096 < limit then
    local newest = elemStates(k)
    if newest and newest < limit then out[#out + 1] = k end
  end
end
return out
`

var staleScript = redis.NewScript(staleLua)

// staleHere returns the keys of candidates (keys of the slot whose stamp here, the value, the
// copy lacks) that the copy's source had applied, by horizon (ms): they go with the copy.
func (r *Replicator) staleHere(ctx context.Context, db, slot int, horizon int64, candidates map[string]string) (map[string]bool, error) {
	margin := r.cfg.TombstoneMargin.Milliseconds()
	var maybe []string
	for k, st := range candidates {
		if ms := stampMs(st); ms >= 0 && ms < horizon-margin {
			maybe = append(maybe, k)
		}
	}
	if len(maybe) == 0 {
		return nil, nil
	}
	out := map[string]bool{}
	// 256 keys a call, as the copy's deletes: each key's element states are read and decoded.
	for lo := 0; lo < len(maybe); lo += 256 {
		part := maybe[lo:min(lo+256, len(maybe))]
		keys := []string{MetaKey(slot)}
		argv := []any{strconv.FormatInt(horizon, 10), strconv.FormatInt(margin, 10)}
		for _, k := range part {
			keys = append(keys, ElemKey(slot, k))
			argv = append(argv, k)
		}
		v, err := r.runScript(ctx, db, slot, staleScript.Hash(), staleLua, keys, argv)
		if err != nil || v.IsError() {
			return nil, fmt.Errorf("stamps below the copy's horizon: %v%s", err, v.Str)
		}
		for _, e := range v.Elems {
			out[string(e.Str)] = true
		}
	}
	if len(out) > 0 {
		r.log.Info("a full copy drops keys its source deleted and forgot (their stamps are below what it had applied)",
			"slot", slot, "db", db, "keys", len(out))
	}
	return out, nil
}

// pullArgs is the HSET of a full copy's pull records into the slot's pull hash here (only
// the command's name and key when there are none): every record but those of this DC's own
// states (own), which the copy's rules keep here already (newerHere, the own entries applied
// again). A record whose value is not a stamp is dropped.
func pullArgs(slot int, pulls map[string]string, own string) []string {
	out := []string{"HSET", PullKey(slot)}
	for k, p := range pulls {
		if _, dc, ok := strings.Cut(p, ":"); ok && dc != own && stampMs(p) >= 0 {
			out = append(out, k, p)
		}
	}
	return out
}
