package xdc

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/redraft/redraft/fsm"
)

// The names of the replication calls between nodes (the node mounts them on the peer port's
// RPC service, under /rpc/x/<name>).
const (
	// RPCApply applies batches of one source DC on the receiving node (ApplyRequest).
	RPCApply = "xdc-apply"
	// RPCLast answers the last applied ids of a source DC for some slots (LastRequest).
	RPCLast = "xdc-last"
	// RPCAwait waits until every other DC applied an entry (AwaitRequest), on the node that
	// ships it: the slot's owner, or at data format 3 the owner of the log's shipping slot.
	RPCAwait = "xdc-await"
	// RPCCopy replaces a slot with a full copy from a source DC (CopyRequest).
	RPCCopy = "xdc-copy"
	// RPCReset tells a DC's nodes that a destination's last applied ids changed (ResetRequest).
	RPCReset = "xdc-reset"
	// RPCHint tells a slot's owner its outbox has new entries (HintRequest).
	RPCHint = "xdc-hint"
	// RPCPing answers at once: liveness of the DC's nodes for slot ownership.
	RPCPing = "xdc-ping"
	// RPCReport answers this node's shipping report (Report).
	RPCReport = "xdc-report"
)

// Cluster is what the replicator needs of its node.
type Cluster interface {
	// State returns the current cluster state.
	State() *fsm.State
	// ID returns this node's id.
	ID() string
	// DC returns this node's DC.
	DC() string
}

// Peers calls the replication RPC of other nodes over their peer ports.
type Peers interface {
	// CallPeer posts in to the RPC name on the node at peer address addr and decodes the
	// answer into out.
	CallPeer(ctx context.Context, addr, name string, in, out any) error
}

// Local runs commands through this node's router, so a migration in this DC is respected.
type Local interface {
	// InternalBatch runs cmds, in one round trip, on the group serving slot in this node's
	// DC, database db, routed as a client request would be (keys moved off a migrating
	// source first), never recorded in an outbox; it returns the raw RESP replies.
	InternalBatch(ctx context.Context, db, slot int, keys []string, cmds [][]string) ([][]byte, error)
	// InternalOwned runs, for the slots no migration or failover concerns, the commands build
	// returns for each group's share of them (positions in slots; rest, the same in every
	// call, are the positions left out), in one round trip per group under one admission; it
	// returns each group's positions and replies (or its error: a group that failed does not
	// void the others' replies), and the positions left for InternalBatch. Its own error is
	// for a call that reached no group.
	InternalOwned(ctx context.Context, db int, slots []int, build func(pos, rest []int) [][]string) ([]OwnedReplies, []int, error)
}

// OwnedReplies are one group's share of an InternalOwned call: the positions (in the call's
// slots) it served, and the replies of the commands built for them, in order, or Err.
type OwnedReplies struct {
	Pos     []int
	Replies [][]byte
	// Err is why the group's replies are missing (its connection failed): its commands may
	// or may not have run.
	Err error
}

// ownedErr is the first group's error of parts, nil when every group answered.
func ownedErr(parts []OwnedReplies) error {
	for _, p := range parts {
		if p.Err != nil {
			return p.Err
		}
	}
	return nil
}

// WireEntry is one outbox entry on the wire.
type WireEntry struct {
	ID   string   `json:"id"`
	TS   string   `json:"ts,omitempty"`
	Cmds WireCmds `json:"cmds,omitempty"`
}

// WireCmds are an entry's effects on the wire. JSON strings hold only UTF-8, and effects
// carry binary values (DUMP payloads, binary-safe strings): an argument that is not valid
// UTF-8, or that begins with the marker, goes as the marker and its base64.
type WireCmds [][]string

// binMarker starts a base64-encoded argument of WireCmds.
const binMarker = "\x00b64:"

// MarshalJSON implements json.Marshaler.
func (w WireCmds) MarshalJSON() ([]byte, error) {
	out := make([][]string, len(w))
	for i, c := range w {
		out[i] = c
		copied := false
		for j, a := range c {
			if !utf8.ValidString(a) || strings.HasPrefix(a, binMarker) {
				if !copied {
					out[i], copied = append([]string(nil), c...), true
				}
				out[i][j] = binMarker + base64.StdEncoding.EncodeToString([]byte(a))
			}
		}
	}
	return json.Marshal(out)
}

// UnmarshalJSON implements json.Unmarshaler.
func (w *WireCmds) UnmarshalJSON(b []byte) error {
	var in [][]string
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	for _, c := range in {
		for j, a := range c {
			if rest, ok := strings.CutPrefix(a, binMarker); ok {
				d, err := base64.StdEncoding.DecodeString(rest)
				if err != nil {
					return fmt.Errorf("xdc: bad binary argument: %w", err)
				}
				c[j] = string(d)
			}
		}
	}
	*w = in
	return nil
}

// WireBatch is one slot's run of consecutive entries.
type WireBatch struct {
	Slot    int         `json:"slot"`
	Prev    string      `json:"prev"`
	Entries []WireEntry `json:"entries"`
}

// ApplyRequest carries batches of one source DC and database to a receiving node. It goes in
// its binary form (EncodeApply) or, to a node of a version before that form, as JSON.
type ApplyRequest struct {
	Source  string      `json:"source"`
	DB      int         `json:"db"`
	Batches []WireBatch `json:"batches"`
}

// ApplyResult is the outcome of one batch: the last applied id afterwards, or an error (Gap
// when the batch does not follow the last applied entry).
type ApplyResult struct {
	Slot  int    `json:"slot"`
	Last  string `json:"last"`
	Error string `json:"error,omitempty"`
	Gap   bool   `json:"gap,omitempty"`
}

// ApplyResponse answers an ApplyRequest, one result per batch in order.
type ApplyResponse struct {
	Results []ApplyResult `json:"results"`
}

// LastRequest asks for the last applied ids from Source on Slots.
type LastRequest struct {
	Source string `json:"source"`
	DB     int    `json:"db"`
	Slots  []int  `json:"slots"`
}

// LastResponse answers the ids, in the order of the request's slots ("" when none).
type LastResponse struct {
	IDs []string `json:"ids"`
}

// AwaitRequest waits until every other DC applied entry ID of slot's outbox, at most
// TimeoutMS milliseconds.
type AwaitRequest struct {
	DB   int `json:"db"`
	Slot int `json:"slot"`
	// Group, when set, says ID is an entry of that group's log (data format 3), not of the
	// slot's outbox.
	Group     string `json:"group,omitempty"`
	ID        string `json:"id"`
	TimeoutMS int64  `json:"timeout_ms"`
}

// CopyKey is one key of a full copy: its DUMP payload and absolute expiry (ms, 0 for none).
type CopyKey struct {
	Key    string `json:"key"`
	Dump   []byte `json:"dump"`
	Expire int64  `json:"expire_at_ms,omitempty"`
}

// CopyRequest replaces slot's contents in the receiving DC with a copy of the source DC's:
// its keys and inbox, taken at outbox id Last while the source's slot was locked.
type CopyRequest struct {
	Source string            `json:"source"`
	DB     int               `json:"db"`
	Slot   int               `json:"slot"`
	Last   string            `json:"last"`
	Inbox  map[string]string `json:"inbox"`
	Keys   []CopyKey         `json:"keys"`
	// Flushes is how many flushes the source's state counted done before it read the keys:
	// a receiver that has seen more refuses the copy (flush.go).
	Flushes uint64 `json:"flushes,omitempty"`
	// Stamps are the source's stamps of the slot's keys (docs/convergence.md): a key whose
	// stamp in the receiving DC is newer keeps the receiver's state.
	Stamps map[string]string `json:"stamps,omitempty"`
	// Pulls are the source's pull records of the slot (key to the stamp of the newer state
	// and its DC, pull.go): the receiver pulls those states too.
	Pulls map[string]string `json:"pulls,omitempty"`
}

// ResetRequest tells the nodes of DC Source that DC Dest's last applied ids from Source
// changed on Slot (a full copy from a third DC replaced them): the loop shipping the slot
// reads them again.
type ResetRequest struct {
	Source string `json:"source"`
	Dest   string `json:"dest"`
	DB     int    `json:"db"`
	Slot   int    `json:"slot"`
}

// PairReport is the replication from one DC to another as one node ships it.
type PairReport struct {
	From string `json:"from"`
	To   string `json:"to"`
	// LagMS is how far behind the destination is, from the heartbeat entries (ms).
	LagMS float64 `json:"lag_ms"`
	// LagP50MS and LagP99MS are the median and 99th percentile of the recent entries' lag:
	// from the write on the source master to the destination's acknowledgement (ms).
	LagP50MS float64 `json:"lag_p50_ms"`
	LagP99MS float64 `json:"lag_p99_ms"`
	// Pending estimates the entries not yet applied by the destination.
	Pending int64 `json:"pending"`
	// Outbox is the number of entries kept in the shipped outboxes.
	Outbox int64 `json:"outbox"`
	// Copying is the number of slots being copied in full to the destination.
	Copying int `json:"copying"`
	// Copied counts the full slot copies done since the node started.
	Copied int64 `json:"copied"`
	// Shipped counts the entries applied by the destination since the node started.
	Shipped int64 `json:"shipped"`
	// LostOnFailover counts the entries the destination applied that the source's outbox lost
	// with a failed-over master (DC_ONE writes its replica never got), since the node started.
	LostOnFailover int64 `json:"lost_on_failover,omitempty"`
	// State is ok, lagging, copying or down.
	State string `json:"state"`
	// Error is the last shipping error of a pair that is down, or why a lagging pair's last
	// round applied nothing (a range held, a failed read of the log), when its shipper knows.
	Error string `json:"error,omitempty"`
}

// Report is one node's shipping, per DC pair.
type Report struct {
	Node  string       `json:"node"`
	Pairs []PairReport `json:"pairs"`
}

// The binary form of an apply request, the body of an RPCApply call (EncodeApply): the same
// fields as its JSON, without JSON's per-string scanning and escaping (a third of a receiving
// node's CPU went to decoding the JSON form). Integers are uvarints, strings a uvarint length
// and the bytes (binary-safe, so effects need no base64 marker):
//
//	"XA2" <source> <db> then the batches: "XB1" <batches> then per batch: <slot> <prev>
//	      <entries> then per entry: <id> <ts> <commands> then per command: <argc> <args...>
//
// "XA2" asks for the answer in binary too (EncodeResults: "XR1" <results> then per result:
// <slot> <last> <error> <gap 0|1>; decoding the JSON answer was 4 % of a shipping node's
// CPU flat out, session 16); "XA1", the same request from a node before that, gets JSON.
const (
	applyMagic   = "XA2"
	applyMagicV1 = "XA1"
	binMagic     = "XB1"
	resultsMagic = "XR1"
)

// BinaryApply is an apply request in its binary form: the node posts it as it is
// (node.RawRequest).
type BinaryApply []byte

// PeerBody returns the request's bytes.
func (b BinaryApply) PeerBody() []byte { return b }

// EncodeApply returns the binary form of req.
func EncodeApply(req ApplyRequest) BinaryApply {
	out := make([]byte, 0, len(applyMagic)+len(req.Source)+8)
	out = append(out, applyMagic...)
	out = binary.AppendUvarint(out, uint64(len(req.Source)))
	out = append(out, req.Source...)
	out = binary.AppendUvarint(out, uint64(req.DB))
	return append(out, EncodeBatches(req.Batches)...)
}

// V1 returns the request as a node before binary answers reads it ("XA1": answered in JSON).
func (b BinaryApply) V1() BinaryApply {
	return append(BinaryApply(applyMagicV1), b[len(applyMagic):]...)
}

// isBinaryApply reports whether body is an apply request's binary form, and whether it asks
// for the binary answer.
func isBinaryApply(body []byte) (binary, binaryAnswer bool) {
	switch {
	case bytes.HasPrefix(body, []byte(applyMagic)):
		return true, true
	case bytes.HasPrefix(body, []byte(applyMagicV1)):
		return true, false
	}
	return false, false
}

// DecodeApply parses the binary form of an apply request (either magic).
func DecodeApply(data []byte) (ApplyRequest, error) {
	bad := errors.New("xdc: bad binary apply request")
	rest, ok := bytes.CutPrefix(data, []byte(applyMagic))
	if !ok {
		if rest, ok = bytes.CutPrefix(data, []byte(applyMagicV1)); !ok {
			return ApplyRequest{}, bad
		}
	}
	l, n := binary.Uvarint(rest)
	if n <= 0 || l > uint64(len(rest)-n) {
		return ApplyRequest{}, bad
	}
	req := ApplyRequest{Source: string(rest[n : n+int(l)])}
	rest = rest[n+int(l):]
	db, n := binary.Uvarint(rest)
	if n <= 0 || db > 1<<20 {
		return ApplyRequest{}, bad
	}
	req.DB = int(db)
	var err error
	req.Batches, err = DecodeBatches(rest[n:])
	return req, err
}

// EncodeBatches returns the binary form of batches.
func EncodeBatches(batches []WireBatch) []byte {
	n := len(binMagic) + 8
	for _, b := range batches {
		n += 16 + len(b.Prev)
		for _, e := range b.Entries {
			n += 12 + len(e.ID) + len(e.TS)
			for _, c := range e.Cmds {
				n += 4
				for _, a := range c {
					n += 4 + len(a)
				}
			}
		}
	}
	out := make([]byte, 0, n)
	out = append(out, binMagic...)
	out = binary.AppendUvarint(out, uint64(len(batches)))
	str := func(s string) {
		out = binary.AppendUvarint(out, uint64(len(s)))
		out = append(out, s...)
	}
	for _, b := range batches {
		out = binary.AppendUvarint(out, uint64(b.Slot))
		str(b.Prev)
		out = binary.AppendUvarint(out, uint64(len(b.Entries)))
		for _, e := range b.Entries {
			str(e.ID)
			str(e.TS)
			out = binary.AppendUvarint(out, uint64(len(e.Cmds)))
			for _, c := range e.Cmds {
				out = binary.AppendUvarint(out, uint64(len(c)))
				for _, a := range c {
					str(a)
				}
			}
		}
	}
	return out
}

// DecodeBatches parses the binary form of batches; anything malformed or truncated is an
// error, never a panic (a count is never trusted beyond the bytes that remain).
func DecodeBatches(data []byte) ([]WireBatch, error) {
	rest, ok := bytes.CutPrefix(data, []byte(binMagic))
	if !ok {
		return nil, errors.New("xdc: bad binary batches: no magic")
	}
	bad := errors.New("xdc: bad binary batches: truncated or malformed")
	// The strings are substrings of one copy of the batches: one allocation, not one per
	// argument (the receiving node applies them and lets them go; nothing keeps one).
	r := wireReader{rest: rest, all: string(rest)}
	nb, ok := r.num()
	if !ok {
		return nil, bad
	}
	out := make([]WireBatch, nb)
	for i := range out {
		b := &out[i]
		if b.Slot, ok = r.slot(); !ok {
			return nil, bad
		}
		if b.Prev, ok = r.str(); !ok {
			return nil, bad
		}
		ne, ok := r.num()
		if !ok {
			return nil, bad
		}
		b.Entries = make([]WireEntry, ne)
		for j := range b.Entries {
			e := &b.Entries[j]
			if e.ID, ok = r.str(); !ok {
				return nil, bad
			}
			if e.TS, ok = r.str(); !ok {
				return nil, bad
			}
			nc, ok := r.num()
			if !ok {
				return nil, bad
			}
			if nc > 0 {
				e.Cmds = make(WireCmds, nc)
			}
			for k := range e.Cmds {
				na, ok := r.num()
				if !ok {
					return nil, bad
				}
				e.Cmds[k] = make([]string, na)
				for a := range e.Cmds[k] {
					if e.Cmds[k][a], ok = r.str(); !ok {
						return nil, bad
					}
				}
			}
		}
	}
	if len(r.rest) != 0 {
		return nil, bad
	}
	return out, nil
}

// wireReader reads the binary forms' uvarints and length-prefixed strings from rest; a count
// is never trusted beyond the bytes that remain, since every counted item takes at least one.
//
// all, when set, is rest as a string: str then answers substrings of it rather than copies
// (for data no one keeps after the call: a substring kept would keep all of it).
type wireReader struct {
	rest []byte
	all  string
}

// num reads a count or length.
func (r *wireReader) num() (int, bool) {
	v, n := binary.Uvarint(r.rest)
	if n <= 0 || v > uint64(len(r.rest)) {
		return 0, false
	}
	r.rest = r.rest[n:]
	return int(v), true
}

// str reads a length-prefixed string.
func (r *wireReader) str() (string, bool) {
	l, ok := r.num()
	if !ok || l > len(r.rest) {
		return "", false
	}
	var s string
	if r.all != "" {
		off := len(r.all) - len(r.rest)
		s = r.all[off : off+l]
	} else {
		s = string(r.rest[:l])
	}
	r.rest = r.rest[l:]
	return s, true
}

// slot reads a slot number.
func (r *wireReader) slot() (int, bool) {
	v, n := binary.Uvarint(r.rest)
	if n <= 0 || v >= fsm.NumSlots {
		return 0, false
	}
	r.rest = r.rest[n:]
	return int(v), true
}

// BinaryResults is an apply answer in its binary form: the node writes it as it is
// (node.RawRequest), and the caller's ApplyResponse reads it (SetPeerAnswer).
type BinaryResults []byte

// PeerBody returns the answer's bytes.
func (b BinaryResults) PeerBody() []byte { return b }

// EncodeResults returns the binary form of an apply answer.
func EncodeResults(resp ApplyResponse) BinaryResults {
	n := len(resultsMagic) + 4
	for _, r := range resp.Results {
		n += 8 + len(r.Last) + len(r.Error)
	}
	out := make([]byte, 0, n)
	out = append(out, resultsMagic...)
	out = binary.AppendUvarint(out, uint64(len(resp.Results)))
	for _, r := range resp.Results {
		out = binary.AppendUvarint(out, uint64(r.Slot))
		out = binary.AppendUvarint(out, uint64(len(r.Last)))
		out = append(out, r.Last...)
		out = binary.AppendUvarint(out, uint64(len(r.Error)))
		out = append(out, r.Error...)
		gap := byte(0)
		if r.Gap {
			gap = 1
		}
		out = append(out, gap)
	}
	return out
}

// SetPeerAnswer reads the binary form of an apply answer into resp (node.RawAnswer):
// anything malformed or truncated is an error, never a panic.
func (resp *ApplyResponse) SetPeerAnswer(data []byte) error {
	bad := errors.New("xdc: bad binary apply answer")
	rest, ok := bytes.CutPrefix(data, []byte(resultsMagic))
	if !ok {
		return bad
	}
	r := wireReader{rest: rest} // copies: the ids answered are kept (loop.acked)
	nr, ok := r.num()
	if !ok {
		return bad
	}
	results := make([]ApplyResult, nr)
	for i := range results {
		res := &results[i]
		if res.Slot, ok = r.slot(); !ok {
			return bad
		}
		if res.Last, ok = r.str(); !ok {
			return bad
		}
		if res.Error, ok = r.str(); !ok {
			return bad
		}
		if len(r.rest) == 0 || r.rest[0] > 1 {
			return bad
		}
		res.Gap, r.rest = r.rest[0] == 1, r.rest[1:]
	}
	if len(r.rest) != 0 {
		return bad
	}
	resp.Results = results
	return nil
}

// The forms of an apply request a destination node of an older version reads (oldWire).
const (
	wireV1   = 1 // binary request, JSON answer ("XA1")
	wireJSON = 2 // JSON both ways
)
