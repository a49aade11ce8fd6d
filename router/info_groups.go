package router

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redraft/redraft/router/backend"
	"github.com/redraft/redraft/router/command"
	"github.com/redraft/redraft/router/resp"
)

// INFO sections that describe the data come from the DC's groups: memory and the data
// counters of stats are summed, strings (mem_allocator, maxmemory_policy) are the first
// group's, and keyspace counts leave out redraft's internal keys (`__redraft:`), which
// DBSIZE leaves out too. Counting those costs a SCAN MATCH __redraft:* over each group's
// database that holds keys: every key is visited once on the server (COUNT 10000 per call),
// a round trip per 10,000 keys of the database (docs/commands.md gives figures).

// infoSection is one section of a group's INFO: its fields in order.
type infoSection struct {
	names []string
	vals  map[string]string
}

// parseInfo reads the fields of an INFO reply.
func parseInfo(text []byte) infoSection {
	sec := infoSection{vals: map[string]string{}}
	for _, line := range bytes.Split(text, []byte("\r\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(line) == 0 || line[0] == '#' {
			continue
		}
		sec.names = append(sec.names, string(k))
		sec.vals[string(k)] = string(v)
	}
	return sec
}

// summedMemory are the memory fields that add up over groups.
var summedMemory = map[string]bool{"used_memory": true, "used_memory_rss": true,
	"used_memory_peak": true, "used_memory_overhead": true, "used_memory_startup": true,
	"used_memory_dataset": true, "used_memory_lua": true, "used_memory_vm_eval": true,
	"used_memory_scripts_eval": true, "used_memory_vm_functions": true,
	"used_memory_functions": true, "used_memory_vm_total": true, "used_memory_scripts": true,
	"number_of_cached_scripts": true, "number_of_functions": true, "number_of_libraries": true,
	"maxmemory": true, "allocator_allocated": true, "allocator_active": true,
	"allocator_resident": true, "mem_clients_normal": true, "mem_clients_slaves": true,
	"mem_aof_buffer": true, "mem_replication_backlog": true, "mem_not_counted_for_evict": true,
	"lazyfree_pending_objects": true, "lazyfreed_objects": true}

// summedStats are the stats fields about data that add up over groups (the node's own
// counters of connections and commands come first).
var summedStats = []string{"expired_keys", "expired_stale_perc", "expired_time_cap_reached_count",
	"evicted_keys", "evicted_clients", "keyspace_hits", "keyspace_misses", "pubsub_channels",
	"pubsub_patterns", "total_active_defrag_time", "unexpected_error_replies"}

// groupsInfo asks every group for INFO section and returns each group's fields.
func (c *client) groupsInfo(section string) ([]infoSection, error) {
	reps, err := c.askGroups(appendCommand(nil, []string{"INFO", section}), false)
	if err != nil {
		return nil, err
	}
	if err := firstFailure(reps); err != nil {
		return nil, err
	}
	out := make([]infoSection, len(reps))
	for i, r := range reps {
		text, err := infoText(r)
		if err != nil {
			return nil, err
		}
		out[i] = parseInfo(text)
	}
	return out, nil
}

// infoText is the text of a group's INFO reply; a group's error reply (-BUSY while a script
// runs, -LOADING) is the error, so that no merged figure leaves a group out unsaid.
func infoText(r groupReply) ([]byte, error) {
	switch {
	case r.v.Type == '$':
		return r.v.Str, nil
	case r.v.Type == '=' && bytes.HasPrefix(r.v.Str, []byte("txt:")): // RESP3
		return r.v.Str[4:], nil
	case r.v.IsError():
		return nil, &replyError{string(r.v.Str)}
	}
	return nil, errorf("ERR unexpected INFO reply from group %s", r.g.id)
}

// memorySection renders INFO memory over the groups.
func (c *client) memorySection(b *strings.Builder) error {
	secs, err := c.groupsInfo("memory")
	if err != nil || len(secs) == 0 {
		return err
	}
	sums := map[string]int64{}
	for _, s := range secs {
		for k := range summedMemory {
			n, _ := strconv.ParseInt(s.vals[k], 10, 64)
			sums[k] += n
		}
	}
	b.WriteString("# Memory\r\n")
	for _, k := range secs[0].names {
		v := secs[0].vals[k]
		if n, ok := sums[k]; ok && summedMemory[k] {
			v = strconv.FormatInt(n, 10)
		} else if base, ok := strings.CutSuffix(k, "_human"); ok && summedMemory[base] {
			v = bytesToHuman(sums[base])
		}
		fmt.Fprintf(b, "%s:%s\r\n", k, v)
	}
	b.WriteString("\r\n")
	return nil
}

// statsFromGroups appends the summed data counters of INFO stats.
func (c *client) statsFromGroups(b *strings.Builder) error {
	secs, err := c.groupsInfo("stats")
	if err != nil {
		return err
	}
	for _, k := range summedStats {
		var sum int64
		for _, s := range secs {
			n, _ := strconv.ParseInt(s.vals[k], 10, 64)
			sum += n
		}
		fmt.Fprintf(b, "%s:%d\r\n", k, sum)
	}
	return nil
}

// blockedClients is INFO's blocked_clients: the groups' (sessions whose blocking command
// waits on Redis, through any node of the DC, and DC_QUORUM writes in WAIT) plus this
// node's sessions polling a blocking write with several DCs. A session whose command is on
// its way to Redis is not counted yet, so a client that waits for the count to reach n
// before pushing knows all n wait in Redis, in their order.
func (c *client) blockedClients() (int64, error) {
	secs, err := c.groupsInfo("clients")
	if err != nil {
		return 0, err
	}
	n := c.s.pollers.Load()
	for _, s := range secs {
		v, _ := strconv.ParseInt(s.vals["blocked_clients"], 10, 64)
		n += v
	}
	return n, nil
}

// bytesToHuman renders a byte count as Redis's INFO does.
func bytesToHuman(n int64) string {
	d := float64(n)
	switch {
	case n < 1024:
		return fmt.Sprintf("%dB", n)
	case n < 1<<20:
		return fmt.Sprintf("%.2fK", d/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.2fM", d/(1<<20))
	case n < 1<<40:
		return fmt.Sprintf("%.2fG", d/(1<<30))
	case n < 1<<50:
		return fmt.Sprintf("%.2fT", d/(1<<40))
	default:
		return fmt.Sprintf("%.2fP", d/(1<<50))
	}
}

// internalKeys counts redraft's own keys in database db of group g, and those with a TTL
// (withTTL only when ttl is set), by SCAN MATCH __redraft:* (as the internal user).
func (c *client) internalKeys(g *group, db int, ttl bool) (n, withTTL int64, err error) {
	cursor := "0"
	var found []string
	for {
		raw := appendCommand(nil, []string{"SCAN", cursor, "MATCH", "__redraft:*", "COUNT", "10000"})
		reply, err := c.roundTripDB(g, db, raw)
		if err != nil {
			return 0, 0, err
		}
		v, _, ok := resp.Parse(reply)
		if !ok || v.Type != '*' || len(v.Elems) != 2 {
			return 0, 0, errorf("ERR unexpected SCAN reply from group %s: %s", g.id, printable(reply))
		}
		for _, k := range v.Elems[1].Elems {
			found = append(found, string(k.Str))
		}
		cursor = string(v.Elems[0].Str)
		if cursor == "0" {
			break
		}
	}
	// SCAN may return a key twice (a rehash during the loop): each counts once.
	slices.Sort(found)
	found = slices.Compact(found)
	if !ttl || len(found) == 0 {
		return int64(len(found)), 0, nil
	}
	saved := c.db
	c.db = db
	reqs := make([]*backend.Request, len(found))
	for i, k := range found {
		reqs[i] = c.sendN(g, appendCommand(nil, []string{"PTTL", k}), 1, true)
	}
	c.db = saved
	c.flushBackends()
	for _, r := range reqs {
		c.waiter.Wait(r)
		if err == nil && r.Err != nil {
			err = r.Err
		}
		if v, _, ok := resp.Parse(r.Reply); ok && v.Type == ':' && v.Int >= 0 {
			withTTL++
		}
	}
	c.release(reqs)
	if err != nil {
		return 0, 0, err
	}
	return int64(len(found)), withTTL, nil
}

// roundTripDB runs raw on g's shared connection of database db (as the internal user) and
// returns a copy of its reply.
func (c *client) roundTripDB(g *group, db int, raw []byte) ([]byte, error) {
	saved := c.db
	c.db = db
	r := c.sendN(g, raw, 1, true)
	c.db = saved
	c.wait(r)
	reply, err := append([]byte(nil), r.Reply...), r.Err
	c.release([]*backend.Request{r})
	return reply, err
}

// cmdDBSize sums DBSIZE over the groups, less redraft's internal keys.
func cmdDBSize(c *client, _ *command.Spec, cmd resp.Command) {
	reps, ok := c.askEvery(cmd.Raw, false)
	if !ok {
		return
	}
	var sum int64
	for _, r := range reps {
		if r.v.Type != ':' {
			c.reply(r.raw)
			return
		}
		if r.v.Int == 0 {
			continue
		}
		n, _, err := c.internalKeys(r.g, c.db, false)
		if err != nil {
			c.replyErr(err)
			return
		}
		sum += max(r.v.Int-n, 0) // internal keys made between DBSIZE and the SCAN
	}
	c.replyFunc(func(b []byte) []byte { return resp.AppendInt(b, sum) })
}

// runID is INFO server's run_id: 40 hex digits that change when the node restarts.
func (s *Server) runID() string {
	sum := sha1.Sum([]byte(s.cfg.NodeID + "\x00" + s.start.String()))
	return hex.EncodeToString(sum[:])
}
