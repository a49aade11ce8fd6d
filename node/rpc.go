package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/redraft/redraft/fsm"
)

// The nodes' own RPC runs HTTP/1.1 on the multiplexed peer port (protocol byte muxRPC): one port
// between sites, request/response framing, keep-alive and timeouts from net/http.
const (
	rpcPropose   = "/rpc/propose"
	rpcJoin      = "/rpc/join"
	rpcRemove    = "/rpc/remove"
	rpcStatus    = "/rpc/status"
	rpcReadIndex = "/rpc/readindex"
	rpcExtra     = "/rpc/x/"
)

// CallPeer calls the extra RPC name (Options.RPC) on the node at peer address addr, posting in
// as JSON (or, for an in that is a RawRequest, its own bytes) and decoding the answer into out
// (nil: ignore it).
func (n *Node) CallPeer(ctx context.Context, addr, name string, in, out any) error {
	return n.peers.call(ctx, addr, rpcExtra+name, in, out)
}

// RawRequest is a request (or an extra RPC's answer) that is its own wire form: CallPeer
// posts PeerBody's bytes as they are instead of JSON, and the extra RPC's handler gets them as
// its body (replication's binary batches, which JSON would cost more to carry than to apply);
// a handler's RawRequest answer is written as it is, for the caller's RawAnswer.
type RawRequest interface {
	PeerBody() []byte
}

// RawAnswer is an answer that reads its own wire form: when the called node answers raw bytes
// (its handler returned a RawRequest), CallPeer hands them to SetPeerAnswer instead of
// decoding JSON (replication's binary apply answers).
type RawAnswer interface {
	SetPeerAnswer(data []byte) error
}

// rpcError is the wire form of an error answered by a node.
type rpcError struct {
	Error string `json:"error"`
	Code  string `json:"code,omitempty"`
}

// RemoteError is an error answered by another node (usually the leader), kept with its code.
type RemoteError struct {
	Code string
	Msg  string
}

// Error implements error.
func (e *RemoteError) Error() string { return e.Msg }

// errorCode returns the machine-readable code of err ("" when it has none).
func errorCode(err error) string {
	var fe *fsm.Error
	var re *RemoteError
	switch {
	case errors.As(err, &fe):
		return fe.Code
	case errors.As(err, &re):
		return re.Code
	case errors.Is(err, ErrNoLeader):
		return "no_leader"
	case errors.Is(err, errNotLeader):
		return "not_leader"
	case errors.Is(err, ErrRemoved):
		return "removed"
	}
	return "internal"
}

// peerDialTimeout bounds a dial to a peer's RPC port (its handshake included).
const peerDialTimeout = 3 * time.Second

// peerClient calls other nodes' RPC over their peer ports through a peerDialer.
type peerClient struct {
	tr *http.Transport
	hc *http.Client
}

func newPeerClient(d peerDialer) *peerClient {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			// At most peerDialTimeout, whatever the call's deadline: a peer that does not
			// answer (a blackholed leader) is given up on in time for the caller to try the
			// next one (withLeader, readIndex); until session 43 one dial could take the whole
			// deadline.
			timeout := peerDialTimeout
			if d, ok := ctx.Deadline(); ok {
				timeout = min(timeout, time.Until(d))
			}
			return d.dial(addr, muxRPC, timeout)
		},
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	}
	return &peerClient{tr: tr, hc: &http.Client{Transport: tr, Timeout: 15 * time.Second}}
}

// call posts in as JSON to path on the node at addr and decodes the answer into out.
func (c *peerClient) call(ctx context.Context, addr, path string, in, out any) error {
	var body []byte
	ctype := "application/json"
	if raw, ok := in.(RawRequest); ok {
		body, ctype = raw.PeerBody(), octetStream
	} else {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", ctype)
	resp, err := c.hc.Do(req)
	if err != nil {
		// A pooled connection may belong to a peer that restarted: the next try dials afresh.
		c.tr.CloseIdleConnections()
		return fmt.Errorf("node at %s: %w", addr, err)
	}
	defer resp.Body.Close()
	data, err := readBody(resp.Body, resp.ContentLength, rawBodyMax)
	if err != nil {
		return fmt.Errorf("node at %s: %w", addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e rpcError
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			if e.Code == "not_leader" {
				return errNotLeader
			}
			return &RemoteError{Code: e.Code, Msg: e.Error}
		}
		return fmt.Errorf("node at %s answered %s", addr, resp.Status)
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(RawAnswer); ok && resp.Header.Get("Content-Type") == octetStream {
		return raw.SetPeerAnswer(data)
	}
	return json.Unmarshal(data, out)
}

// octetStream is the content type of a request or answer in its own binary form.
const octetStream = "application/octet-stream"

// writeAnswer answers v: its own bytes for a RawRequest, else compact JSON.
func writeAnswer(w http.ResponseWriter, v any) {
	if raw, ok := v.(RawRequest); ok {
		w.Header().Set("Content-Type", octetStream)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(raw.PeerBody())
		return
	}
	writeCompactJSON(w, http.StatusOK, v)
}

// writeJSON answers v with status code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeCompactJSON is writeJSON without indentation, for the peer RPCs no human reads.
func writeCompactJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers err with the HTTP status its code implies.
func writeError(w http.ResponseWriter, err error) {
	code := errorCode(err)
	status := http.StatusInternalServerError
	switch code {
	case "invalid":
		status = http.StatusBadRequest
	case "not_found":
		status = http.StatusNotFound
	case "exists", "busy":
		status = http.StatusConflict
	case "no_leader", "not_leader", "removed":
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, rpcError{Error: err.Error(), Code: code})
}

// readBody reads a request's or an answer's body of at most limit bytes, in one buffer of its
// declared length when it has one (replication's batches: io.ReadAll grew its buffer by
// doubling, a tenth of a receiving node's CPU flat out).
//
// A body over limit is an error (until session 43 it was cut to the limit, and a replication
// range or copy chunk over it failed to decode at the receiver, was sent again, and failed
// again, for good).
func readBody(r io.Reader, length, limit int64) ([]byte, error) {
	if length > limit {
		return nil, fmt.Errorf("a body of %d bytes, over the limit of %d", length, limit)
	}
	if length < 0 {
		b, err := io.ReadAll(io.LimitReader(r, limit+1))
		if err == nil && int64(len(b)) > limit {
			err = fmt.Errorf("a body over the limit of %d bytes", limit)
		}
		return b, err
	}
	b := make([]byte, length)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

// rawBodyMax bounds an extra RPC's body (replication's ranges, copy chunks, applies): a single
// entry or key may be as large as a Redis argument (512 MB by default), and it goes in one body.
// Peers are authenticated (the cluster secret) before anything is read.
const rawBodyMax = 1 << 30

// readJSON decodes a request body into v, refusing unknown fields.
func readJSON(r *http.Request, v any) error {
	if raw, ok := v.(*json.RawMessage); ok {
		// Decoded by the handler (replication's RPCs): one pass over the body, not two.
		b, err := readBody(r.Body, r.ContentLength, rawBodyMax)
		if err != nil {
			return &fsm.Error{Code: "invalid", Msg: "bad request body: " + err.Error()}
		}
		*raw = b
		return nil
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 16<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &fsm.Error{Code: "invalid", Msg: "bad request body: " + err.Error()}
	}
	return nil
}
