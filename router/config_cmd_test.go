package router

import (
	"strings"
	"testing"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testredis"
)

// TestConfigSetGet: CONFIG SET of a data-path parameter reaches every group and changes how
// data is stored as on a single redis-server; parameters redraft relies on are refused and
// change nothing; CONFIG GET answers as Redis does, without secrets; the setting config_set
// turns CONFIG SET off.
func TestConfigSetGet(t *testing.T) {
	tc := startCluster(t, 2, 1, Config{})
	ctx := ctxT(t)
	node := resp2(t, tc.addrs[0])
	ref := resp2(t, testredis.Start(t).Addr)
	both := sameAs(t, node, ref)
	both("CONFIG", "SET", "hash-max-listpack-entries", "4", "maxmemory-policy", "allkeys-lru")
	for i := range tc.redis {
		got := tc.direct(i).ConfigGet(ctx, "hash-max-listpack-entries").Val()["hash-max-listpack-entries"]
		if got != "4" {
			t.Fatalf("group %d: hash-max-listpack-entries = %q after CONFIG SET through the node, want 4", i, got)
		}
	}
	both("CONFIG", "GET", "hash-max-listpack-entries")
	both("CONFIG", "GET", "maxmemory-*")
	both("CONFIG", "GET", "hash-max-ziplist-entries", "lazyfree-lazy-user-del")
	for gi := range tc.redis {
		k := keyIn("enc:", gi, 2)
		both("HSET", k, "a", 1, "b", 2, "c", 3, "d", 4, "e", 5)
		if got := both("OBJECT", "ENCODING", k); got != "hashtable" {
			t.Fatalf("encoding of a 5-field hash with hash-max-listpack-entries 4 = %v", got)
		}
	}
	both("CONFIG", "SET", "maxmemory-policy", "no-such-policy") // Redis's error, from every group
	both("CONFIG", "SET", "hash-max-listpack-entries")          // wrong number of arguments
	both("CONFIG", "SET", "lazyfree-lazy-user-del", "yes", "lazyfree-lazy-user-del", "no")
	both("CONFIG", "SET", "no-such-parameter", "1")
	both("CONFIG", "SET", "maxmemory-policy", "allkeys-lru", "odd")

	// Parameters that would break redraft are refused before any group changes.
	for _, p := range [][]string{{"requirepass", "x"}, {"masterauth", "x"}, {"replicaof", "127.0.0.1 1"},
		{"dir", "/"}, {"dbfilename", "x.rdb"}, {"port", "1"}, {"bind", "1.2.3.4"}, {"databases", "1"},
		{"maxmemory-policy", "noeviction", "timeout", "1"},
		{"busy-reply-threshold", "3600000"}, {"lua-time-limit", "3600000"}} {
		args := []any{"CONFIG", "SET"}
		for _, a := range p {
			args = append(args, a)
		}
		got, _ := do(t, node, args...).(string)
		if !strings.Contains(got, "redraft: CONFIG SET '") || !strings.Contains(got, "refused") {
			t.Fatalf("%v = %q, want redraft's refusal", args, got)
		}
	}
	for i := range tc.redis {
		cfg := tc.direct(i).ConfigGet(ctx, "*").Val()
		if cfg["maxmemory-policy"] != "allkeys-lru" || cfg["timeout"] != "0" || cfg["requirepass"] != "" {
			t.Fatalf("group %d changed by a refused CONFIG SET: policy %q timeout %q", i, cfg["maxmemory-policy"], cfg["timeout"])
		}
	}

	// CONFIG GET never shows a secret.
	all, _ := do(t, node, "CONFIG", "GET", "*").([]any)
	if len(all) < 100 {
		t.Fatalf("CONFIG GET * answered %d elements", len(all))
	}
	for i := 0; i < len(all); i += 2 {
		if n := all[i].(string); n == "requirepass" || n == "masterauth" {
			t.Fatalf("CONFIG GET * shows %s", n)
		}
	}

	// The cluster setting turns CONFIG SET off.
	st, err := fsm.ApplyCommand(tc.st, 100, &fsm.SetSetting{Key: "config_set", Value: "false"})
	if err != nil {
		t.Fatal(err)
	}
	tc.servers[0].SetState(st)
	if got, _ := do(t, node, "CONFIG", "SET", "maxmemory-policy", "noeviction").(string); !strings.Contains(got, "setting config_set") {
		t.Fatalf("CONFIG SET with config_set false = %q", got)
	}
	both("CONFIG", "GET", "maxmemory-policy")
}

// With several DCs, CONFIG SET of an evicting maxmemory-policy is refused and changes nothing:
// Redis evicts without WRITE, so an evicted key would go in this DC only, and replication's own
// keys could go with it. noeviction is served. Fails without the refusal.
func TestConfigEvictionRefusedWithSeveralDCs(t *testing.T) {
	tc := startXDC(t, 1, Config{})
	ctx := ctxT(t)
	node := resp2(t, tc.addrs[0])
	for _, p := range []string{"allkeys-lru", "volatile-ttl", "ALLKEYS-RANDOM"} {
		got, _ := do(t, node, "CONFIG", "SET", "maxmemory-policy", p).(string)
		if !strings.Contains(got, "maxmemory-policy is refused with several DCs") {
			t.Fatalf("CONFIG SET maxmemory-policy %s = %q, want the refusal", p, got)
		}
		got, _ = do(t, node, "CONFIG", "SET", "maxmemory", "1gb", "maxmemory-policy", p).(string)
		if !strings.Contains(got, "refused") {
			t.Fatalf("CONFIG SET maxmemory 1gb maxmemory-policy %s = %q, want the refusal", p, got)
		}
	}
	if cfg := tc.direct(0).ConfigGet(ctx, "maxmemory*").Val(); cfg["maxmemory-policy"] != "noeviction" || cfg["maxmemory"] != "0" {
		t.Fatalf("a refused CONFIG SET changed the group: %v", cfg)
	}
	if got := do(t, node, "CONFIG", "SET", "maxmemory-policy", "NoEviction"); got != "OK" {
		t.Fatalf("CONFIG SET maxmemory-policy noeviction = %v", got)
	}
}
