package integration

import (
	"context"
	"fmt"
	"math/rand"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/migrate"
)

// The convergence workload: clients in every DC write the same keys of every family through
// their DC's nodes, one operation at a time with random pauses, and record each operation
// (convOp) for the checker.

// convFamilies are the key families, each with its own rules (converge_checker_test.go).
var convFamilies = []string{"reg", "ctr", "fctr", "hash", "set", "zset", "list", "stream"}

// maxExp bounds the exponents of one counter's increments in one round: values stay well
// below 2^53 over many rounds.
const maxExp = 40

// convTags returns n hash tags whose slots alternate between the two halves of the slot space
// (the two groups of each DC), avoiding slots 0 and 8192, where heartbeats go.
func convTags(n int) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		tag := "c" + strconv.Itoa(i)
		slot := migrate.SlotString("{" + tag + "}")
		if slot == 0 || slot == 8192 || (slot < 8192) != (len(out)%2 == 0) {
			continue
		}
		out = append(out, tag)
	}
	return out
}

// convWorkload is a run's keys, its clock and what its clients share.
type convWorkload struct {
	start   time.Time // wall clock, no monotonic reading: the servers' clock
	tags    []string
	keys    []string
	toks    atomic.Int64
	elems   int // elements per hash, set and sorted set
	opTime  time.Duration
	pause   time.Duration // the longest random pause between a client's operations
	clients []*convClient

	mu   sync.Mutex
	exps map[string]int // counter -> next exponent in this round
}

// newConvWorkload names perFamily keys of each family per tag.
func newConvWorkload(tags []string, perFamily int) *convWorkload {
	w := &convWorkload{start: time.Now().Round(0), tags: tags, elems: 4, opTime: 5 * time.Second, pause: 20 * time.Millisecond}
	for _, tag := range tags {
		for _, fam := range convFamilies {
			for i := 0; i < perFamily; i++ {
				w.keys = append(w.keys, fmt.Sprintf("{%s}:%s:%d", tag, fam, i))
			}
		}
	}
	return w
}

// since is the wall-clock offset of now from the run's start.
func (w *convWorkload) since() time.Duration { return time.Now().Round(0).Sub(w.start) }

// token returns a token no other write of the run uses, tokLen bytes long.
func (w *convWorkload) token() string { return fmt.Sprintf("v%07d", w.toks.Add(1)%1e7) }

// exponent hands out the next exponent of counter key in this round (-1 when all are used).
func (w *convWorkload) exponent(key string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.exps[key]
	if e >= maxExp {
		return -1
	}
	w.exps[key] = e + 1
	return e
}

// convClient writes through the nodes of one DC, picked at random per operation.
type convClient struct {
	id    int
	dc    string
	nodes []*proc
	rnd   *rand.Rand
	conns map[string]*redis.Client
	ops   []*convOp // this round's
}

// addClients adds perDC clients per DC of x, seeded from seed.
func (w *convWorkload) addClients(x *xdcCluster, perDC int, seed int64) {
	for _, dc := range x.dcs {
		var nodes []*proc
		for _, n := range x.inDC(dc) {
			nodes = append(nodes, n.proc)
		}
		for i := 0; i < perDC; i++ {
			id := len(w.clients)
			w.clients = append(w.clients, &convClient{id: id, dc: dc, nodes: nodes,
				rnd: rand.New(rand.NewSource(seed*1000 + int64(id))), conns: map[string]*redis.Client{}})
		}
	}
}

// close closes the clients' connections.
func (w *convWorkload) close() {
	for _, c := range w.clients {
		for _, rdb := range c.conns {
			rdb.Close()
		}
	}
}

// round runs every client for d and returns the operations they recorded.
func (w *convWorkload) round(d time.Duration) []*convOp {
	w.mu.Lock()
	w.exps = map[string]int{}
	w.mu.Unlock()
	until := time.Now().Add(d)
	var wg sync.WaitGroup
	for _, c := range w.clients {
		c.ops = nil
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(until) {
				c.ops = append(c.ops, w.do(c))
				time.Sleep(time.Duration(c.rnd.Int63n(int64(w.pause)))) // the workload's pace
			}
		}()
	}
	wg.Wait()
	var out []*convOp
	for _, c := range w.clients {
		out = append(out, c.ops...)
	}
	return out
}

// conn returns c's connection to p: one connection, no retries (a retry could apply a write
// twice), the operation's timeout.
func (w *convWorkload) conn(c *convClient, p *proc) *redis.Client {
	rdb := c.conns[p.ID]
	if rdb == nil {
		rdb = redis.NewClient(&redis.Options{Addr: p.Listen, MaxRetries: -1, PoolSize: 1,
			DialTimeout: time.Second, ReadTimeout: w.opTime, WriteTimeout: w.opTime})
		c.conns[p.ID] = rdb
	}
	return rdb
}

// do sends one random operation on a random key through a random node of c's DC.
func (w *convWorkload) do(c *convClient) *convOp {
	p := c.nodes[c.rnd.Intn(len(c.nodes))]
	o := &convOp{client: c.id, dc: c.dc, node: p.ID, key: w.keys[c.rnd.Intn(len(w.keys))]}
	args := w.plan(c, o)
	o.cmd = args[0].(string)
	ctx, cancel := context.WithTimeout(context.Background(), w.opTime)
	o.inv = w.since()
	res, err := w.conn(c, p).Do(ctx, args...).Result()
	o.cmp = w.since()
	cancel()
	if o.out = classify(err); o.out != outOK {
		o.err = err.Error()
		return o
	}
	switch v := res.(type) {
	case nil:
		o.rnil = true
	case int64:
		o.reply = v
	case string:
		if o.kind == cvLPop || o.kind == cvXAdd {
			o.rstr = v
		}
		if o.kind == cvIncr { // INCRBYFLOAT
			o.reply, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	if err == redis.Nil {
		o.rnil = true
	}
	return o
}

// plan picks what o does on its key and returns the command.
func (w *convWorkload) plan(c *convClient, o *convOp) []any {
	r, k := c.rnd.Intn(100), o.key
	elem := "e" + strconv.Itoa(c.rnd.Intn(w.elems))
	switch family(k) {
	case "reg":
		o.tok = w.token()
		switch {
		case r < 25:
			o.kind = cvSet
			return []any{"SET", k, o.tok}
		case r < 40:
			o.kind = cvSetPX
			return []any{"SET", k, o.tok, "PX", 3600000}
		case r < 48:
			o.kind = cvGetSet
			return []any{"GETSET", k, o.tok}
		case r < 62:
			o.kind = cvAppend
			return []any{"APPEND", k, o.tok}
		case r < 72:
			o.kind = cvSetRange
			return []any{"SETRANGE", k, 0, o.tok}
		}
		o.tok = ""
		switch {
		case r < 78:
			o.kind = cvDel
			return []any{"DEL", k}
		case r < 84:
			o.kind = cvDel
			return []any{"UNLINK", k}
		case r < 92:
			o.kind = cvExpire
			return []any{"EXPIRE", k, 3600}
		}
		o.kind = cvExpire
		return []any{"PEXPIRE", k, 3600000}
	case "ctr":
		if r < 88 {
			if e := w.exponent(k); e >= 0 {
				o.kind, o.exp, o.n = cvIncr, e, int64(1)<<e
				neg := c.rnd.Intn(3) == 0
				switch {
				case c.rnd.Intn(4) == 0:
					// A float increment of the same exact value: the key becomes a float
					// counter (recomputed from its vectors in every DC).
					if neg {
						o.n = -o.n
					}
					return []any{"INCRBYFLOAT", k, strconv.FormatInt(o.n, 10) + ".0"}
				case e == 0 && neg:
					o.n = -1
					return []any{"DECR", k}
				case e == 0:
					return []any{"INCR", k}
				case neg:
					o.n = -o.n
					return []any{"DECRBY", k, int64(1) << e}
				}
				return []any{"INCRBY", k, o.n}
			}
		}
		switch {
		case r%10 < 6:
			// A base whose low 41 bits are clear: the increments of a round cannot reach it.
			o.kind, o.n = cvReset, (1+c.rnd.Int63n(1000))<<41
			return []any{"SET", k, o.n}
		case r%10 < 8:
			o.kind = cvDel
			return []any{"DEL", k}
		}
		o.kind = cvDel
		return []any{"UNLINK", k}
	case "fctr":
		// Counters in a hash's fields: increments of ±2^exp (HINCRBY, or HINCRBYFLOAT of the
		// same exact value), HSET of a base as a reset, HDEL as a remove.
		o.elem = elem
		if r < 70 {
			if e := w.exponent(k + "/" + elem); e >= 0 {
				o.kind, o.exp, o.n = cvIncr, e, int64(1)<<e
				if c.rnd.Intn(3) == 0 {
					o.n = -o.n
				}
				if c.rnd.Intn(4) == 0 {
					return []any{"HINCRBYFLOAT", k, elem, strconv.FormatInt(o.n, 10) + ".0"}
				}
				return []any{"HINCRBY", k, elem, o.n}
			}
		}
		if r < 88 {
			o.kind, o.n = cvReset, (1+c.rnd.Int63n(1000))<<41
			return []any{"HSET", k, elem, o.n}
		}
		o.kind = cvRem
		return []any{"HDEL", k, elem}
	case "hash", "set", "zset":
		o.elem = elem
		fam := family(k)
		if r < 60 {
			o.kind = cvAdd
			switch fam {
			case "hash":
				o.tok = w.token()
				return []any{"HSET", k, elem, o.tok}
			case "set":
				return []any{"SADD", k, elem}
			}
			o.n = w.toks.Add(1)
			return []any{"ZADD", k, o.n, elem}
		}
		o.kind = cvRem
		return []any{map[string]string{"hash": "HDEL", "set": "SREM", "zset": "ZREM"}[fam], k, elem}
	case "list":
		switch {
		case r < 35:
			o.kind, o.tok = cvRPush, w.token()
			return []any{"RPUSH", k, o.tok}
		case r < 60:
			o.kind, o.tok = cvLPush, w.token()
			return []any{"LPUSH", k, o.tok}
		}
		o.kind = cvLPop
		return []any{"LPOP", k}
	}
	o.kind, o.tok = cvXAdd, w.token()
	return []any{"XADD", k, "*", "t", o.tok}
}

// readConvStates reads keys from a DC's group masters directly. A key on two masters of the
// DC is an error.
func readConvStates(ctx context.Context, masters []string, keys []string) (map[string]keyState, error) {
	out := map[string]keyState{}
	for _, k := range keys {
		out[k] = keyState{typ: "none"}
	}
	for _, m := range masters {
		rdb := redis.NewClient(&redis.Options{Addr: m, ReadTimeout: 10 * time.Second})
		got, err := readMasterStates(ctx, rdb, keys)
		rdb.Close()
		if err != nil {
			return nil, fmt.Errorf("master %s: %w", m, err)
		}
		for k, s := range got {
			if out[k].exists() {
				return nil, fmt.Errorf("%s is on two masters of the DC: %s | %s", k, out[k], s)
			}
			out[k] = s
		}
	}
	return out, nil
}

// readMasterStates reads the keys of keys that rdb holds: types and expiries in one pipeline,
// values in a second (run again if a key changed type in between).
func readMasterStates(ctx context.Context, rdb *redis.Client, keys []string) (map[string]keyState, error) {
	for attempt := 0; ; attempt++ {
		pipe := rdb.Pipeline()
		types := make([]*redis.StatusCmd, len(keys))
		ttls := make([]*redis.DurationCmd, len(keys))
		for i, k := range keys {
			types[i], ttls[i] = pipe.Type(ctx, k), pipe.PTTL(ctx, k)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, err
		}
		pipe = rdb.Pipeline()
		fill := map[string]func(*keyState){}
		for i, k := range keys {
			if t := types[i].Val(); t != "none" {
				fill[k] = queueValue(ctx, pipe, k, t)
			}
		}
		if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
			if attempt < 3 {
				continue // a key changed type between the pipelines
			}
			return nil, err
		}
		out := map[string]keyState{}
		for i, k := range keys {
			if f := fill[k]; f != nil {
				s := keyState{typ: types[i].Val(), ttl: ttls[i].Val() > 0}
				f(&s)
				out[k] = s
			}
		}
		return out, nil
	}
}

// queueValue queues the read of key's value by its type and returns how to store it.
func queueValue(ctx context.Context, pipe redis.Pipeliner, key, typ string) func(*keyState) {
	switch typ {
	case "string":
		c := pipe.Get(ctx, key)
		return func(s *keyState) { s.str = c.Val() }
	case "hash":
		c := pipe.HGetAll(ctx, key)
		return func(s *keyState) { s.elems = c.Val() }
	case "set":
		c := pipe.SMembers(ctx, key)
		return func(s *keyState) {
			s.elems = map[string]string{}
			for _, m := range c.Val() {
				s.elems[m] = ""
			}
		}
	case "zset":
		c := pipe.ZRangeWithScores(ctx, key, 0, -1)
		return func(s *keyState) {
			s.elems = map[string]string{}
			for _, z := range c.Val() {
				s.elems[fmt.Sprint(z.Member)] = strconv.FormatFloat(z.Score, 'f', -1, 64)
			}
		}
	case "list":
		c := pipe.LRange(ctx, key, 0, -1)
		return func(s *keyState) { s.list = c.Val() }
	case "stream":
		c := pipe.XRange(ctx, key, "-", "+")
		return func(s *keyState) {
			for _, m := range c.Val() {
				s.ids, s.list = append(s.ids, m.ID), append(s.list, fmt.Sprint(m.Values["t"]))
			}
		}
	}
	return func(s *keyState) { s.str = "unexpected type " + typ }
}
