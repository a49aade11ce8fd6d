package router

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/internal/testredis"
)

// conn returns one connection of c (CLIENT commands are per connection).
func conn(t *testing.T, c *redis.Client) *redis.Conn {
	cn := c.Conn()
	t.Cleanup(func() { _ = cn.Close() })
	return cn
}

// TestClientCommands: CLIENT LIST/INFO/KILL/UNBLOCK/NO-EVICT act on the node's own clients
// and answer what redis-server answers for the same calls.
func TestClientCommands(t *testing.T) {
	tc := startCluster(t, 2, 1, Config{})
	ctx := ctxT(t)
	node := conn(t, resp2(t, tc.addrs[0]))
	ref := conn(t, resp2(t, testredis.Start(t).Addr))
	both := sameAs(t, node, ref)
	both("CLIENT", "SETNAME", "alpha")
	both("CLIENT", "GETNAME")
	both("CLIENT", "NO-EVICT", "on")
	both("CLIENT", "NO-EVICT", "maybe")
	both("CLIENT", "LIST", "TYPE", "bogus")
	both("CLIENT", "LIST", "ID", "x")
	both("CLIENT", "KILL", "1.2.3.4:5")
	both("CLIENT", "KILL", "ID", "999999")
	both("CLIENT", "KILL", "ID", "0")
	both("CLIENT", "KILL", "USER", "nobody")
	both("CLIENT", "KILL", "SKIPME", "perhaps")
	both("CLIENT", "UNBLOCK", "999999")
	both("CLIENT", "UNBLOCK", "1", "LATER")

	id := node.ClientID(ctx).Val()
	other := conn(t, resp2(t, tc.addrs[0]))
	otherID := other.ClientID(ctx).Val()
	list := node.ClientList(ctx).Val()
	for _, want := range []string{fmt.Sprintf("id=%d ", id), "name=alpha", fmt.Sprintf("id=%d ", otherID), "cmd=client|list"} {
		if !strings.Contains(list, want) {
			t.Fatalf("CLIENT LIST lacks %q:\n%s", want, list)
		}
	}
	one := node.Do(ctx, "CLIENT", "LIST", "ID", otherID).Val().(string)
	if strings.Count(one, "\n") != 1 || !strings.HasPrefix(one, fmt.Sprintf("id=%d ", otherID)) {
		t.Fatalf("CLIENT LIST ID %d = %q", otherID, one)
	}
	if info := node.ClientInfo(ctx).Val(); info == nil || info.Name != "alpha" || info.ID != id {
		t.Fatalf("CLIENT INFO = %+v", info)
	}

	// CLIENT UNBLOCK ends a BLPOP as redis-server does: TIMEOUT gives the null reply, ERROR
	// the UNBLOCKED error.
	for _, mode := range []string{"TIMEOUT", "ERROR"} {
		waiter := conn(t, resp2(t, tc.addrs[0]))
		wid := waiter.ClientID(ctx).Val()
		done := make(chan error, 1)
		go func() { done <- waiter.BLPop(context.Background(), 0, "unblock:"+mode).Err() }()
		waitFor(t, "INFO blocked_clients:1", func() bool {
			return strings.Contains(node.Info(ctx, "clients").Val(), "blocked_clients:1\r\n")
		})
		if n := node.Do(ctx, "CLIENT", "UNBLOCK", wid, mode).Val(); n != int64(1) {
			t.Fatalf("CLIENT UNBLOCK %d %s = %v, want 1", wid, mode, n)
		}
		select {
		case err := <-done:
			if mode == "TIMEOUT" && !errors.Is(err, redis.Nil) {
				t.Fatalf("BLPOP unblocked with TIMEOUT answered %v, want nil", err)
			}
			if mode == "ERROR" && (err == nil || !strings.HasPrefix(err.Error(), "UNBLOCKED")) {
				t.Fatalf("BLPOP unblocked with ERROR answered %v, want -UNBLOCKED", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("BLPOP still blocked after CLIENT UNBLOCK %s", mode)
		}
	}

	// CLIENT KILL closes another client's connection and counts it.
	if n := node.Do(ctx, "CLIENT", "KILL", "ID", otherID).Val(); n != int64(1) {
		t.Fatalf("CLIENT KILL ID = %v, want 1", n)
	}
	if err := other.Ping(ctx).Err(); err == nil {
		t.Fatal("a killed client's connection still answers")
	}
	if strings.Contains(node.ClientList(ctx).Val(), fmt.Sprintf("id=%d ", otherID)) {
		t.Fatal("CLIENT LIST still shows a killed client")
	}
}

// TestInfoAndInternalKeys: INFO carries the sections and fields clients read, summed from
// the groups; DBSIZE and INFO keyspace never count redraft's internal keys; MEMORY USAGE
// answers from the key's group.
func TestInfoAndInternalKeys(t *testing.T) {
	tc := startCluster(t, 2, 1, Config{})
	ctx := ctxT(t)
	node := resp2(t, tc.addrs[0])
	ref := resp2(t, testredis.Start(t).Addr)
	refInfo := ref.Info(ctx, "everything").Val()
	info := node.Info(ctx).Val()
	for _, f := range []string{"redis_version", "redis_mode", "os", "arch_bits", "process_id", "run_id", "tcp_port",
		"uptime_in_seconds", "connected_clients", "blocked_clients", "maxclients", "used_memory", "used_memory_human",
		"used_memory_peak", "maxmemory", "maxmemory_policy", "mem_allocator", "mem_fragmentation_ratio",
		"total_connections_received", "total_commands_processed", "keyspace_hits", "keyspace_misses",
		"expired_keys", "evicted_keys", "role", "connected_slaves", "master_repl_offset"} {
		if !strings.Contains(refInfo, "\r\n"+f+":") {
			t.Fatalf("test bug: redis-server's INFO has no %s", f)
		}
		if !strings.Contains(info, "\r\n"+f+":") {
			t.Fatalf("INFO lacks %s:\n%s", f, info)
		}
	}
	for _, sec := range []string{"# Server", "# Clients", "# Memory", "# Stats", "# Replication", "# Keyspace"} {
		if !strings.Contains(info, sec+"\r\n") {
			t.Fatalf("INFO lacks section %s", sec)
		}
	}

	// used_memory is the groups' sum.
	var sum int64
	for i := range tc.redis {
		sum += infoInt(tc.direct(i).Info(ctx, "memory").Val(), "used_memory")
	}
	if got := infoInt(node.Info(ctx, "memory").Val(), "used_memory"); got < sum/2 || got > 2*sum {
		t.Fatalf("INFO used_memory = %d, the groups' sum is about %d", got, sum)
	}

	// Internal keys, in every group and in two databases, are never counted.
	for gi := range tc.redis {
		k := keyIn("ik:", gi, 2)
		if err := node.Set(ctx, k, "v", time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
		if err := node.Set(ctx, k+"p", "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		d := tc.direct(gi)
		d.Set(ctx, fmt.Sprintf("__redraft:ob:{%d}", gi), "x", 0)
		d.Set(ctx, fmt.Sprintf("__redraft:lock:cp:{%d}", gi), "x", time.Hour)
		d.Do(ctx, "SELECT", 1)
	}
	direct1 := redis.NewClient(&redis.Options{Addr: tc.redis[0].Addr, DB: 1, Protocol: 2})
	t.Cleanup(func() { _ = direct1.Close() })
	direct1.Set(ctx, "__redraft:fence", "x", 0)
	if n := node.DBSize(ctx).Val(); n != 4 {
		t.Fatalf("DBSIZE = %d with 4 keys and 4 internal ones, want 4", n)
	}
	ks := node.Info(ctx, "keyspace").Val()
	if !strings.Contains(ks, "db0:keys=4,expires=2,") || strings.Contains(ks, "db1:") {
		t.Fatalf("INFO keyspace counts internal keys:\n%s", ks)
	}

	// MEMORY USAGE answers from the key's group.
	for gi := range tc.redis {
		k := keyIn("ik:", gi, 2)
		got, err := node.MemoryUsage(ctx, k).Result()
		want := tc.direct(gi).MemoryUsage(ctx, k).Val()
		if err != nil || got != want {
			t.Fatalf("MEMORY USAGE %s = %d, %v; the group answers %d", k, got, err, want)
		}
	}
}

// infoInt reads an integer field of an INFO text.
func infoInt(text, field string) int64 {
	for _, line := range strings.Split(text, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			var n int64
			fmt.Sscan(v, &n)
			return n
		}
	}
	return -1
}

// TestInfoOfABusyGroup: a group that answers INFO with an error (-BUSY while a script runs)
// makes INFO keyspace and INFO stats answer that error, not a sum without the group.
func TestInfoOfABusyGroup(t *testing.T) {
	tc := startCluster(t, 2, 1, Config{})
	ctx := ctxT(t)
	node := tc.client(0)
	for i := 0; i < 20; i++ {
		if err := node.Set(ctx, fmt.Sprintf("ib:%d", i), "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	busy := tc.direct(0)
	if err := busy.ConfigSet(ctx, "busy-reply-threshold", "10").Err(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- busy.Eval(ctx, "while true do end", nil).Err() }()
	defer func() {
		waitFor(t, "the script killed", func() bool { return tc.direct(0).ScriptKill(ctx).Err() == nil })
		<-done
	}()
	waitFor(t, "the group busy", func() bool {
		return strings.HasPrefix(fmt.Sprint(tc.direct(0).Ping(ctx).Err()), "BUSY")
	})
	for _, section := range []string{"keyspace", "stats"} {
		if info, err := node.Info(ctx, section).Result(); err == nil || !strings.HasPrefix(err.Error(), "BUSY") {
			t.Fatalf("INFO %s with a busy group = %v\n%s\nwant the BUSY error", section, err, info)
		}
	}
}

// TestClientKillStopsThePipeline: a client killed while its batch waits (here for a flush of
// its database) runs nothing more of what it sent: Redis frees a killed client at once. Until
// session 44 the rest of the batch ran once the hold ended, after CLIENT KILL had answered 1.
func TestClientKillStopsThePipeline(t *testing.T) {
	tc := startCluster(t, 2, 1, Config{FreezeWait: 10 * time.Second})
	s := tc.servers[0]
	ctx := ctxT(t)
	frozen, done := flushStates(t, tc)
	victim := dialRaw(t, tc.addrs[0])
	victim.send("CLIENT ID\r\n")
	id := strings.TrimPrefix(victim.line(), ":")
	s.SetState(frozen)
	before := s.held.Load()
	victim.send("SET {s}k 1\r\n" + strings.Repeat("INCR {s}n\r\n", 50))
	waitFor(t, "the victim's batch held", func() bool { return s.held.Load() > before })
	if n, err := tc.client(0).Do(ctx, "CLIENT", "KILL", "ID", id).Int(); err != nil || n != 1 {
		t.Fatalf("CLIENT KILL ID %s = %d, %v", id, n, err)
	}
	s.SetState(done)
	// The held SET may still go through (it was running); nothing after it may.
	waitFor(t, "the victim's connection closed", func() bool {
		_, err := victim.br.ReadString('\n')
		return err != nil
	})
	if n, err := tc.client(0).Exists(ctx, "{s}n").Result(); err != nil || n != 0 {
		t.Fatalf("{s}n exists (%d, %v): the killed client's pipeline ran after CLIENT KILL answered", n, err)
	}
}

// TestIdleConnectionDropsLargeReplies: a connection that served a pipeline of large replies
// and then idles does not keep their buffers (each request's reply buffer stayed full until
// its next use, which at pipeline 1 came only for the last one: 50 MB here).
func TestIdleConnectionDropsLargeReplies(t *testing.T) {
	tc := startCluster(t, 1, 1, Config{})
	ctx := ctxT(t)
	if err := tc.client(0).Set(ctx, "big", strings.Repeat("x", 1<<20), 0).Err(); err != nil {
		t.Fatal(err)
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	r := dialRaw(t, tc.addrs[0])
	r.send("PING\r\n")
	r.line()
	before := heap()
	const n = 50
	r.send(strings.Repeat("GET big\r\n", n))
	for i := 0; i < n; i++ {
		if l := r.line(); l != "$1048576" {
			t.Fatalf("reply %d: %q", i, l)
		}
		if _, err := r.br.Discard(1<<20 + 2); err != nil {
			t.Fatal(err)
		}
	}
	r.send("PING\r\n") // the session is idle once this is answered
	if l := r.line(); l != "+PONG" {
		t.Fatalf("PING: %q", l)
	}
	if grew := int64(heap()) - int64(before); grew > 16<<20 {
		t.Fatalf("the idle connection holds %d MiB after %d replies of 1 MiB", grew>>20, n)
	}
	// Replies under the kept size, many of them: only a few recycled requests keep theirs
	// (until session 46 all 1,024 did: 60 MiB).
	if err := tc.client(0).Set(ctx, "mid", strings.Repeat("x", 60<<10), 0).Err(); err != nil {
		t.Fatal(err)
	}
	before = heap()
	r.send(strings.Repeat("GET mid\r\n", 1024))
	for i := 0; i < 1024; i++ {
		if l := r.line(); l != "$61440" {
			t.Fatalf("reply %d: %q", i, l)
		}
		if _, err := r.br.Discard(60<<10 + 2); err != nil {
			t.Fatal(err)
		}
	}
	r.send("PING\r\n")
	if l := r.line(); l != "+PONG" {
		t.Fatalf("PING: %q", l)
	}
	if grew := int64(heap()) - int64(before); grew > 8<<20 {
		t.Fatalf("the idle connection holds %d MiB after 1,024 replies of 60 KiB", grew>>20)
	}
	// A big request's read buffer is not kept either (its arguments pointed into it).
	before = heap()
	val := strings.Repeat("y", 20<<20)
	r.send("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$" + strconv.Itoa(len(val)) + "\r\n" + val + "\r\n")
	if l := r.line(); l != "+OK" {
		t.Fatalf("SET: %q", l)
	}
	r.send("PING\r\n")
	if l := r.line(); l != "+PONG" {
		t.Fatalf("PING: %q", l)
	}
	val = ""
	if grew := int64(heap()) - int64(before); grew > 8<<20 {
		t.Fatalf("the idle connection holds %d MiB after a SET of 20 MiB", grew>>20)
	}
}

// TestClientListCountsPatterns: CLIENT LIST shows a subscriber's channels under sub= and its
// patterns under psub=, as redis-server does (until session 45 both went under sub=).
func TestClientListCountsPatterns(t *testing.T) {
	tc := startCluster(t, 1, 1, Config{})
	ctx := ctxT(t)
	node := resp2(t, tc.addrs[0])
	ps := node.Subscribe(ctx, "ch1", "ch2")
	defer ps.Close()
	if err := ps.PSubscribe(ctx, "p*"); err != nil {
		t.Fatal(err)
	}
	counts := func(want string) {
		t.Helper()
		waitFor(t, "CLIENT LIST TYPE pubsub with "+want, func() bool {
			return strings.Contains(node.Do(ctx, "CLIENT", "LIST", "TYPE", "pubsub").String(), want)
		})
	}
	counts(" sub=2 psub=1 ")
	if err := ps.Unsubscribe(ctx, "ch1"); err != nil {
		t.Fatal(err)
	}
	counts(" sub=1 psub=1 ")
	if err := ps.PUnsubscribe(ctx, "p*"); err != nil {
		t.Fatal(err)
	}
	counts(" sub=1 psub=0 ")
}
