package integration

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The chaos clients record every operation they send, with when it was invoked and completed
// and how it ended, so the checker (checker_test.go) can judge the histories afterwards.

// opKind is what a recorded operation did.
type opKind uint8

const (
	opIncr    opKind = iota // INCR counter -> new value
	opReadCtr               // GET counter -> value (nil reads as 0)
	opPush                  // RPUSH list element
	opSet                   // SET register value (values increase over the whole run)
	opGet                   // GET register -> value or nil
)

func (k opKind) String() string {
	return [...]string{"INCR", "GET(counter)", "RPUSH", "SET", "GET"}[k]
}

// outcome is how an operation ended, as its client saw it.
type outcome uint8

const (
	outOK      outcome = iota // acknowledged, with its answer
	outFailed                 // definitely not executed: TRYAGAIN, CLUSTERDOWN, connection refused
	outUnknown                // may or may not have happened: timeout, dropped connection, other errors
)

func (o outcome) String() string { return [...]string{"ok", "failed", "unknown"}[o] }

// op is one recorded operation. Times are offsets from the run's start.
type op struct {
	client   int
	node     string
	kind     opKind
	key      string
	arg      int64 // SET's value, RPUSH's element
	ret      int64 // INCR's and GET's answer
	nilReply bool  // GET answered nil
	// bad is an acknowledged answer the command cannot give (a GET of a counter or register
	// that is not a number, SET not answering OK, RPUSH a length below 1): a corrupted value,
	// or the reply to another request. The checker reports it (checkReplies).
	bad string
	// strange marks an error reply that no fault explains and no documented refusal is
	// (WRONGTYPE, MOVED, ERR ...; see unexplained), or a reply of the wrong shape: its outcome
	// stays unknown, and the checker reports it.
	strange  bool
	inv, cmp time.Duration
	out      outcome
	err      string
}

func (o *op) String() string {
	var what string
	switch o.kind {
	case opIncr:
		what = fmt.Sprintf("INCR %s", o.key)
	case opReadCtr, opGet:
		what = fmt.Sprintf("GET %s", o.key)
	case opPush:
		what = fmt.Sprintf("RPUSH %s %d", o.key, o.arg)
	case opSet:
		what = fmt.Sprintf("SET %s %d", o.key, o.arg)
	}
	res := o.out.String()
	switch {
	case o.out != outOK:
		res += " (" + clip(o.err) + ")"
	case o.bad != "":
		res = "-> bad value " + strconv.Quote(clip(o.bad))
	case o.kind == opIncr, (o.kind == opGet || o.kind == opReadCtr) && !o.nilReply:
		res = fmt.Sprintf("-> %d", o.ret)
	case o.nilReply:
		res = "-> nil"
	}
	return fmt.Sprintf("c%d via %s: %s %s [%.3fs..%.3fs]", o.client, o.node, what, res, o.inv.Seconds(), o.cmp.Seconds())
}

// notRun reports whether an error reply says the command did not run: TRYAGAIN, and the
// CLUSTERDOWN answers of a node that holds requests (catching up, no lease, no group) but not
// CLUSTERDOWN "group ... is unavailable", whose write may have reached Redis before its
// connection broke, unless the router could not connect at all ("connection refused": the
// request waited for a connection that never came up, so it was never sent).
func notRun(msg string) bool {
	return strings.HasPrefix(msg, "TRYAGAIN") ||
		strings.HasPrefix(msg, "CLUSTERDOWN") && (!strings.Contains(msg, "is unavailable") || strings.HasSuffix(msg, "connect: connection refused"))
}

// classify maps a client error to an outcome: the cluster's TRYAGAIN and CLUSTERDOWN answers
// and refused connections mean the command did not run; anything else (timeouts, dropped
// connections, other error replies) leaves it unknown.
func classify(err error) outcome {
	if err == nil || err == redis.Nil {
		return outOK
	}
	msg := err.Error()
	if notRun(msg) {
		return outFailed
	}
	var ne *net.OpError
	if errors.As(err, &ne) && ne.Op == "dial" {
		return outFailed
	}
	return outUnknown
}

// explainedReplies are the error replies a node may give the history tests' INCR, GET, RPUSH
// and SET while faults are injected (prefixes): TRYAGAIN and CLUSTERDOWN (docs/commands.md;
// notRun tells which of them did not run), the backend loading its data after a restart, a
// write meeting a master paused for a switchover (docs/failover.md), a node shutting down
// (SIGTERM: rolling-restart), and a migrating slot whose keys could not be moved (the mover's
// backend connection or the node's context broke: kill-mover, rolling-restart; router/
// migration.go).
var explainedReplies = []string{
	"TRYAGAIN", "CLUSTERDOWN", "LOADING", "READONLY",
	"ERR redraft node is shutting down",
	"ERR slot ", // ... is being migrated and moving the request's keys failed: ...
}

// unexplained reports whether err, which ended an operation of a history test, is an error no
// fault explains: an error reply that is not in explainedReplies, such as WRONGTYPE, MOVED or
// "ERR value is not an integer" (a corrupted value, or the reply to another request), or a
// reply go-redis cannot read as the command's (a reply of another shape). Timeouts, dropped and
// refused connections are explained: they stay unknown or failed outcomes.
func unexplained(err error) bool {
	if err == nil || err == redis.Nil {
		return false
	}
	msg := err.Error()
	var re redis.Error
	if !errors.As(err, &re) {
		var ne *strconv.NumError // a bulk string where INCR's integer belongs
		return errors.As(err, &ne) || strings.HasPrefix(msg, "redis: can't parse") ||
			strings.HasPrefix(msg, "redis: invalid reply") || strings.HasPrefix(msg, "redis: got ")
	}
	for _, p := range explainedReplies {
		if strings.HasPrefix(msg, p) && (p != "ERR slot " || strings.Contains(msg, "is being migrated and moving the request's keys failed")) {
			return false
		}
	}
	return true
}

// chaosKeys names the keys of a workload; with a prefix (a DC's name in a multi-DC run) each
// DC's clients write keys of their own.
type chaosKeys struct {
	counters, lists, registers []string
}

func newChaosKeys(prefix string, n int) chaosKeys {
	var k chaosKeys
	for i := 0; i < n; i++ {
		k.counters = append(k.counters, fmt.Sprintf("%sctr:%d", prefix, i))
		k.lists = append(k.lists, fmt.Sprintf("%slst:%d", prefix, i))
		k.registers = append(k.registers, fmt.Sprintf("%sreg:%d", prefix, i))
	}
	return k
}

// all returns every key of k.
func (k chaosKeys) all() []string {
	return append(append(append([]string(nil), k.counters...), k.lists...), k.registers...)
}

// targets is the set of nodes clients may send to; the nemesis changes it as nodes are removed
// and replaced.
type targets struct {
	mu    sync.Mutex
	nodes map[string][]*proc // by DC
}

func (ts *targets) pick(dc string, rnd *rand.Rand) *proc {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	l := ts.nodes[dc]
	if len(l) == 0 {
		return nil
	}
	return l[rnd.Intn(len(l))]
}

func (ts *targets) set(dc string, nodes []*proc) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.nodes[dc] = nodes
}

// chaosClient sends a random mix of operations on its DC's keys, one at a time, each through a
// node picked at random, and records them.
type chaosClient struct {
	id    int
	dc    string
	keys  chaosKeys
	rnd   *rand.Rand
	conns map[string]*redis.Client // by node id
	ops   []op
}

// history is the clients of a run and what they recorded.
type history struct {
	start   time.Time
	clients []*chaosClient
	targets *targets
	values  atomic.Int64 // SET values and RPUSH elements: unique over the run
	stop    chan struct{}
	wg      sync.WaitGroup
	opTime  time.Duration // per-operation timeout
}

// since is the offset of now from the run's start.
func (h *history) since() time.Duration { return time.Since(h.start) }

// startClients starts perDC clients per DC of keys (keys maps DC -> its keys), seeded from seed.
func (h *history) startClients(seed int64, perDC int, keys map[string]chaosKeys, dcs []string) {
	for _, dc := range dcs {
		for i := 0; i < perDC; i++ {
			c := &chaosClient{id: len(h.clients), dc: dc, keys: keys[dc], conns: map[string]*redis.Client{},
				rnd: rand.New(rand.NewSource(seed*1000 + int64(len(h.clients))))}
			h.clients = append(h.clients, c)
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				h.run(c)
			}()
		}
	}
}

// stopClients ends the clients and closes their connections.
func (h *history) stopClients() {
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	h.wg.Wait()
	for _, c := range h.clients {
		for _, rdb := range c.conns {
			rdb.Close()
		}
	}
}

func (h *history) conn(c *chaosClient, p *proc) *redis.Client {
	rdb := c.conns[p.ID]
	if rdb == nil {
		rdb = redis.NewClient(&redis.Options{Addr: p.Listen, MaxRetries: -1, PoolSize: 1,
			DialTimeout: time.Second, ReadTimeout: h.opTime, WriteTimeout: h.opTime})
		c.conns[p.ID] = rdb
	}
	return rdb
}

func (h *history) run(c *chaosClient) {
	for {
		select {
		case <-h.stop:
			return
		default:
		}
		p := h.targets.pick(c.dc, c.rnd)
		if p == nil {
			time.Sleep(10 * time.Millisecond) // no node to send to yet
			continue
		}
		rdb := h.conn(c, p)
		o := op{client: c.id, node: p.ID}
		n := len(c.keys.counters)
		switch r := c.rnd.Intn(100); {
		case r < 35:
			o.kind, o.key = opIncr, c.keys.counters[c.rnd.Intn(n)]
		case r < 45:
			o.kind, o.key = opReadCtr, c.keys.counters[c.rnd.Intn(n)]
		case r < 70:
			o.kind, o.key, o.arg = opPush, c.keys.lists[c.rnd.Intn(n)], h.values.Add(1)
		case r < 85:
			o.kind, o.key, o.arg = opSet, c.keys.registers[c.rnd.Intn(n)], h.values.Add(1)
		default:
			o.kind, o.key = opGet, c.keys.registers[c.rnd.Intn(n)]
		}
		h.record(rdb, &o)
		c.ops = append(c.ops, o)
		if o.out == outFailed {
			time.Sleep(5 * time.Millisecond) // back off a little from a node that refuses
		}
	}
}

// record sends o (its kind, key and argument set) through rdb and records its times, its
// answer and how it ended.
func (h *history) record(rdb *redis.Client, o *op) {
	ctx, cancel := context.WithTimeout(context.Background(), h.opTime)
	defer cancel()
	o.inv = h.since()
	err := h.send(ctx, rdb, o)
	o.cmp = h.since()
	if o.out = classify(err); o.out != outOK {
		o.err = err.Error()
		o.strange = unexplained(err)
	}
}

// send runs o's command and puts its answer in o.
func (h *history) send(ctx context.Context, rdb *redis.Client, o *op) (err error) {
	switch o.kind {
	case opIncr:
		o.ret, err = rdb.Incr(ctx, o.key).Result()
	case opReadCtr, opGet:
		err = h.get(ctx, rdb, o)
	case opPush:
		var n int64
		if n, err = rdb.RPush(ctx, o.key, o.arg).Result(); err == nil && n < 1 {
			o.bad = fmt.Sprintf("length %d", n)
		}
	case opSet:
		var s string
		if s, err = rdb.Set(ctx, o.key, o.arg, 0).Result(); err == nil && s != "OK" {
			o.bad = s
		}
	}
	return err
}

// get reads o.key into o (nil reads set nilReply, a value that is not a number sets bad: an
// acknowledged read, of a value no client wrote).
func (h *history) get(ctx context.Context, rdb *redis.Client, o *op) error {
	s, err := rdb.Get(ctx, o.key).Result()
	if err == redis.Nil {
		o.nilReply = true
		return nil
	}
	if err != nil {
		return err
	}
	if o.ret, err = strconv.ParseInt(s, 10, 64); err != nil {
		o.ret, o.bad = 0, s
	}
	return nil
}

// all returns every recorded operation.
func (h *history) all() []op {
	var out []op
	for _, c := range h.clients {
		out = append(out, c.ops...)
	}
	return out
}
