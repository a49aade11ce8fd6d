package router

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/redraft/redraft/router/backend"
	"github.com/redraft/redraft/router/resp"
)

// groupReply is one group's answer to a command sent to every group of the DC.
type groupReply struct {
	g   *group
	raw []byte     // the reply's bytes (a copy), nil when err is set
	v   resp.Value // raw parsed
	err error      // the group could not be asked, or its reply did not parse
}

// askGroups sends raw to every group of the DC (as redraft's internal backend user when
// internal is set) and returns each group's reply, in group order. Unlike fanout it keeps
// every group's answer, so a caller can say which group disagrees. The error is only for
// a DC without routing.
func (c *client) askGroups(raw []byte, internal bool) ([]groupReply, error) {
	c.drain()
	snap := c.snap
	if err := snap.down(); err != nil {
		return nil, err
	}
	reqs := make([]*backend.Request, len(snap.groups))
	for i, g := range snap.groups {
		reqs[i] = c.sendAs(g, raw, internal)
	}
	c.flushBackends()
	out := make([]groupReply, len(reqs))
	for i, r := range reqs {
		c.waiter.Wait(r)
		gr := groupReply{g: snap.groups[i], err: r.Err}
		if r.Err == nil {
			gr.raw = append([]byte(nil), r.Reply...)
			v, _, ok := resp.Parse(gr.raw)
			if !ok {
				gr.err = errorf("ERR unexpected reply from group %s", gr.g.id)
			}
			gr.v = v
		}
		out[i] = gr
	}
	c.release(reqs)
	return out, nil
}

// askEvery is askGroups that needs an answer from every group: otherwise it answers the
// client the error (naming the first group that failed) and reports false.
func (c *client) askEvery(raw []byte, internal bool) ([]groupReply, bool) {
	reps, err := c.askGroups(raw, internal)
	if err == nil {
		err = firstFailure(reps)
	}
	if err != nil {
		c.replyErr(err)
		return nil, false
	}
	return reps, true
}

// sendAs is send on g's pool for client traffic, or for redraft's own work when internal is
// set.
func (c *client) sendAs(g *group, raw []byte, internal bool) *backend.Request {
	return c.sendN(g, raw, 1, internal)
}

// sendN sends raw, n commands, as sendAs does: on g's pool (the restricted client user) or
// g.ipool (redraft's internal user).
func (c *client) sendN(g *group, raw []byte, n int, internal bool) *backend.Request {
	if internal {
		return c.sendOn(g.ipool, raw, n)
	}
	return c.sendOn(g.pool, raw, n)
}

// roundTripAs sends raw to g as sendAs does and returns a copy of the reply.
func (c *client) roundTripAs(g *group, raw []byte, internal bool) ([]byte, error) {
	r := c.sendAs(g, raw, internal)
	c.wait(r)
	reply, err := append([]byte(nil), r.Reply...), r.Err
	c.release([]*backend.Request{r})
	return reply, err
}

// firstFailure returns the first group that could not be asked, as an error naming it.
func firstFailure(reps []groupReply) error {
	for _, r := range reps {
		if r.err != nil {
			return r.err
		}
	}
	return nil
}

// sameReplies reports whether every group answered the same bytes.
func sameReplies(reps []groupReply) bool {
	for _, r := range reps[1:] {
		if !bytes.Equal(r.raw, reps[0].raw) {
			return false
		}
	}
	return true
}

// errDisagree says that the groups answered what differs, naming each group's answer, and
// what to do about it.
func errDisagree(what, fix string, reps []groupReply) error {
	var b strings.Builder
	for i, r := range reps {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s: %s", r.g.id, summarize(r))
	}
	return errorf("ERR redraft: the groups answered %s differently (%s); %s", what, b.String(), fix)
}

// summarize renders a group's reply in a few words for an error message.
func summarize(r groupReply) string {
	if r.err != nil {
		return printable([]byte(r.err.Error()))
	}
	var s string
	switch r.v.Type {
	case '-':
		s = string(r.v.Str)
	case '+', '$':
		s = fmt.Sprintf("%q", r.v.Str)
	case ':':
		s = fmt.Sprint(r.v.Int)
	default:
		s = "a different reply"
	}
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return printable([]byte(s))
}
