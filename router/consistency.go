package router

import (
	"bytes"
	"context"
	"errors"
	"strconv"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/router/backend"
	"github.com/redraft/redraft/router/command"
	"github.com/redraft/redraft/router/resp"
	"github.com/redraft/redraft/router/xdc"
)

// level is a write consistency level (router/DESIGN.md, "Cross-DC write path").
type level uint8

const (
	lvlDefault level = iota // a session without an override: the cluster's setting
	lvlOne                  // acknowledged after the local master
	lvlQuorum               // also a majority of the group's replicas (WAIT)
	lvlEach                 // also every other DC applied it (Config.AwaitDCs)
)

var levelNames = [...]string{"", fsm.DCOne, fsm.DCQuorum, fsm.DCEachSafeQuorum}

func (l level) String() string { return levelNames[l] }

// parseLevel reads a level in redraft's or Dynomite's spelling, any case.
func parseLevel(b []byte) (level, error) {
	v, err := fsm.NormalizeConsistency(string(b))
	if err != nil {
		return 0, errorf("ERR redraft: unknown consistency level '%s' (accepted: DC_ONE, DC_QUORUM, DC_SAFE_QUORUM, DC_EACH_SAFE_QUORUM)", printable(b))
	}
	return levelFromSetting(v), nil
}

// levelFromSetting maps the setting write_consistency (already normalised) to a level.
func levelFromSetting(v string) level {
	switch v {
	case fsm.DCQuorum:
		return lvlQuorum
	case fsm.DCEachSafeQuorum:
		return lvlEach
	}
	return lvlOne
}

// quorumOf is the number of replicas a DC_QUORUM write waits for: a majority of n.
func quorumOf(n int) int {
	if n == 0 {
		return 0
	}
	return n/2 + 1
}

// writeLevel is the session's effective level on snap: its override, else the cluster's;
// DC_EACH_SAFE_QUORUM with one DC is DC_ONE.
func (c *client) writeLevel(snap *snapshot) level {
	l := snap.level
	if c.level != lvlDefault {
		l = c.level
	}
	if l == lvlEach && !snap.multiDC {
		l = lvlOne
	}
	return l
}

// setSnap makes snap the batch's snapshot and decides whether the batch's writes take the
// write path of xdcwrite.go (several DCs, or a level above DC_ONE) or are forwarded raw.
func (c *client) setSnap(snap *snapshot) {
	c.snap = snap
	c.xw = snap != nil && (snap.multiDC || c.writeLevel(snap) != lvlOne)
}

func registerConsistency() {
	handle("redraft|consistency", func(c *client, _ *command.Spec, cmd resp.Command) {
		if len(cmd.Args) > 3 {
			c.replyErr(errWrongArgs("redraft|consistency"))
			return
		}
		if len(cmd.Args) == 2 {
			l := lvlOne
			if c.snap != nil {
				l = c.writeLevel(c.snap)
			} else if c.level != lvlDefault {
				l = c.level
			}
			c.replyFunc(func(b []byte) []byte { return resp.AppendBulkString(b, l.String()) })
			return
		}
		if bytes.EqualFold(cmd.Args[2], []byte("default")) {
			c.setLevel(lvlDefault)
			return
		}
		c.setLevelArg(cmd.Args[2])
	})
	// Dynomite answers its configuration command with +OK and forwards nothing.
	handle("dyno_config:conn_consistency", func(c *client, _ *command.Spec, cmd resp.Command) {
		c.setLevelArg(cmd.Args[1])
	})
}

func (c *client) setLevelArg(arg []byte) {
	l, err := parseLevel(arg)
	if err != nil {
		c.replyErr(err)
		return
	}
	c.setLevel(l)
}

func (c *client) setLevel(l level) {
	c.level = l
	c.setSnap(c.snap)
	c.reply([]byte("+OK\r\n"))
}

// reachLevel makes sure a write that just succeeded on g reached lvl: for DC_QUORUM it sends
// WAIT on d, the dedicated connection the write ran on; for DC_EACH_SAFE_QUORUM it reads the
// newest id of slot's outbox (on d, or on the session's shared connection to g, after the
// write) and waits for every other DC to apply it. The error says the level was not reached.
func (c *client) reachLevel(g *group, d *backend.Dedicated, slot int, lvl level) error {
	switch lvl {
	case lvlQuorum:
		if g.quorum == 0 || d == nil {
			return nil
		}
		return c.waitReplicas(g, d)
	case lvlEach:
		if slot < 0 || c.s.cfg.AwaitDCs == nil {
			return nil
		}
		return c.awaitDCs(g, d, slot)
	}
	return nil
}

// waitReplicas sends WAIT on d and checks the count against the group's quorum.
func (c *client) waitReplicas(g *group, d *backend.Dedicated) error {
	ms := c.s.cfg.QuorumTimeout.Milliseconds()
	raw := resp.AppendArray(nil, 3)
	raw = resp.AppendBulkString(raw, "WAIT")
	raw = resp.AppendBulkString(raw, strconv.Itoa(g.quorum))
	raw = resp.AppendBulkString(raw, strconv.FormatInt(ms, 10))
	reply, err := d.Do(raw, 1, c.s.cfg.QuorumTimeout+c.s.cfg.BackendTimeout, nil)
	if err != nil {
		c.dropDedicated(g, d)
		return errorf("ERR redraft: write consistency DC_QUORUM not reached (WAIT failed: %v); the write was applied on the master and may still replicate", err)
	}
	v, _, ok := resp.Parse(reply)
	if !ok || v.Type != ':' {
		return errorf("ERR redraft: write consistency DC_QUORUM not reached (WAIT answered %q); the write was applied on the master and may still replicate", printable(reply))
	}
	if int(v.Int) < g.quorum {
		return errorf("ERR redraft: write consistency DC_QUORUM not reached (%d of %d replicas acknowledged in %dms); the write was applied on the master and may still replicate",
			v.Int, g.quorum, ms)
	}
	return nil
}

// awaitDCs reads slot's newest outbox id after the write (on the same connection), or at
// data format 3 the newest id of g's log (the write's entry or a later one: positions only
// move up), and waits, at most Config.EachDCTimeout, for Config.AwaitDCs to report every
// other DC applied it.
func (c *client) awaitDCs(g *group, d *backend.Dedicated, slot int) error {
	key, logOf := xdc.OutboxKey(slot), ""
	if c.snap.outboxMax.log {
		key, logOf = xdc.LogKey, g.id
	}
	raw := resp.AppendArray(nil, 6)
	raw = resp.AppendBulkString(raw, "XREVRANGE")
	raw = resp.AppendBulkString(raw, key)
	raw = resp.AppendBulkString(raw, "+")
	raw = resp.AppendBulkString(raw, "-")
	raw = resp.AppendBulkString(raw, "COUNT")
	raw = resp.AppendBulkString(raw, "1")
	var reply []byte
	var err error
	if d != nil {
		if reply, err = d.Do(raw, 1, c.s.cfg.BackendTimeout, nil); err != nil {
			c.dropDedicated(g, d)
		}
	} else {
		reply, err = c.roundTripOn(g.ipool, raw, 1)
	}
	notReached := func(why string) error {
		return errorf("ERR redraft: write consistency DC_EACH_SAFE_QUORUM not reached (%s); the write was applied in this DC and may still reach the others", why)
	}
	if err != nil {
		return notReached("reading the outbox failed: " + err.Error())
	}
	v, _, ok := resp.Parse(reply)
	if !ok || v.Type != '*' {
		return notReached("reading the outbox answered " + printable(reply))
	}
	if len(v.Elems) == 0 || len(v.Elems[0].Elems) == 0 {
		return nil // an empty outbox: nothing to wait for
	}
	id := string(v.Elems[0].Elems[0].Str)
	timeout := c.s.cfg.EachDCTimeout
	ctx, cancel := context.WithTimeout(c.s.ctx, timeout)
	defer cancel()
	if err := c.s.cfg.AwaitDCs(ctx, c.db, slot, logOf, id); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return notReached("entry " + id + " not applied by every DC within " + strconv.FormatInt(timeout.Milliseconds(), 10) + "ms")
		}
		return notReached("waiting for entry " + id + ": " + err.Error())
	}
	return nil
}

// roundTrip sends raw (n replies) on the session's shared connection to g and returns a copy
// of the last reply.
func (c *client) roundTrip(g *group, raw []byte, n int) ([]byte, error) {
	return c.roundTripOn(g.pool, raw, n)
}

// roundTripOn is roundTrip on pool p (one of a group's two, backendusers.go).
func (c *client) roundTripOn(p *backend.Pool, raw []byte, n int) ([]byte, error) {
	r := c.sendOn(p, raw, n)
	c.wait(r)
	reply, err := append([]byte(nil), r.Reply...), r.Err
	c.free = append(c.free, r)
	return reply, err
}

// handsOver are the writes whose reply is the only copy of what they removed: the pops, GETDEL
// and GETSET (the old value). LMOVE and the like are not: their element stays in a list.
var handsOver = map[string]bool{
	"lpop": true, "rpop": true, "lmpop": true, "blpop": true, "brpop": true, "blmpop": true,
	"zpopmin": true, "zpopmax": true, "zmpop": true, "bzpopmin": true, "bzpopmax": true, "bzmpop": true,
	"spop": true, "getdel": true, "getset": true,
}

// handOver answers the reply of a write that hands over what it removed (handsOver: the
// client's current command) when err only says that its consistency level was not reached
// (a levelError): the write was applied, and the error alone would have lost the popped
// element for good. The miss is counted (redraft_level_missed_handed_over_total) and logged.
// It reports whether it answered.
func (c *client) handOver(reply []byte, err error) bool {
	var le *levelError
	if err == nil || !errors.As(err, &le) || len(reply) == 0 || reply[0] == '-' || isNull(reply) || !handsOver[c.lastCmd] {
		return false
	}
	c.s.handedOver.Add(1)
	if log := c.s.cfg.Logger; log != nil {
		log.Warn("a pop's consistency level was not reached; answered with what it removed, which an error would have lost",
			"command", c.lastCmd, "client_id", c.id, "err", le.Error())
	}
	c.reply(reply)
	return true
}
