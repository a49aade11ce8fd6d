package xdc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
)

// RPCHandler serves one replication call: the JSON request in, the answer out.
type RPCHandler func(ctx context.Context, body json.RawMessage) (any, error)

// RPC returns the replication calls this node serves on its peer port, by name.
func (r *Replicator) RPC() map[string]RPCHandler {
	return map[string]RPCHandler{
		RPCApply: func(ctx context.Context, body json.RawMessage) (any, error) {
			bin, binAnswer := isBinaryApply(body)
			if !bin {
				return handler(r.HandleApply)(ctx, body) // a node before the binary form
			}
			req, err := DecodeApply(body)
			if err != nil {
				return nil, fmt.Errorf("xdc: bad request: %w", err)
			}
			resp, err := r.HandleApply(ctx, req)
			if err != nil || !binAnswer {
				return resp, err // JSON for a node before binary answers
			}
			return EncodeResults(resp), nil
		},
		RPCLog: func(ctx context.Context, body json.RawMessage) (any, error) {
			if !bytes.HasPrefix(body, []byte(logMagic)) {
				return handler(r.HandleLog)(ctx, body)
			}
			req, err := DecodeLog(body)
			if err != nil {
				return nil, fmt.Errorf("xdc: bad request: %w", err)
			}
			return r.HandleLog(ctx, req)
		},
		RPCLast:     handler(r.HandleLast),
		RPCAwait:    handler(r.HandleAwait),
		RPCCopy:     handler(r.HandleCopy),
		RPCReset:    handler(r.HandleReset),
		RPCLogCopy:  handler(r.HandleLogCopy),
		RPCLogStart: handler(r.HandleLogStart),
		RPCHint:     handler(r.HandleHint),
		RPCKeyState: handler(r.HandleKeyState),
		// A node that does not act ships nothing (its loops stop with the empty state it
		// reads), so it is not live for its DC's ring: answered, it kept its share of the
		// groups' logs, which no other node took, for as long as it lacked its lease.
		RPCPing: handler(func(context.Context, struct{}) (struct{}, error) {
			if !r.acting(r.cfg.Cluster.State()) {
				return struct{}{}, errNotActing
			}
			return struct{}{}, nil
		}),
		RPCReport: handler(func(context.Context, struct{}) (Report, error) {
			return r.Report(), nil
		}),
	}
}

// handler adapts a typed handler to an RPCHandler.
func handler[Req, Resp any](f func(context.Context, Req) (Resp, error)) RPCHandler {
	return func(ctx context.Context, body json.RawMessage) (any, error) {
		var req Req
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, fmt.Errorf("xdc: bad request: %w", err)
		}
		return f(ctx, req)
	}
}
