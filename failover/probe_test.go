package failover

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testredis"
)

// TestInfoAndReplicaOf reads role, link and offsets from real servers and moves a replica
// between masters with the admin helpers.
func TestInfoAndReplicaOf(t *testing.T) {
	m := testredis.Start(t, testredis.WithPassword("pw"))
	r := testredis.Start(t, testredis.WithPassword("pw"), testredis.WithReplicaOf(m.Addr, "pw"))
	g := &fsm.Group{ID: "g1", Master: m.Addr, Replicas: []string{r.Addr}, Password: "pw"}
	a := &admins{timeout: time.Second}
	defer a.close()
	ctx := context.Background()
	if err := a.admin(g, m.Addr).Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	var mi, ri Info
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err1, err2 error
		mi, err1 = a.info(ctx, g, m.Addr)
		ri, err2 = a.info(ctx, g, r.Addr)
		// The SET may land before the replica attaches: it then arrives in the full sync's RDB
		// and the offsets stay 0 until the next write, so sync is judged by keys too.
		if err1 == nil && err2 == nil && ri.LinkUp && ri.Offset == mi.Offset && mi.Keys == 1 && ri.Keys == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica not in sync: master %+v (%v), replica %+v (%v)", mi, err1, ri, err2)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	if mi.Role != "master" || mi.RunID == "" || ri.Role != "slave" || ri.MasterAddr != m.Addr || ri.LinkDownSec != -1 || ri.Loading {
		t.Fatalf("master %+v, replica %+v", mi, ri)
	}
	// Promote the replica, then make the old master follow it.
	if err := a.replicaOf(ctx, g, r.Addr, ""); err != nil {
		t.Fatal(err)
	}
	if err := a.replicaOf(ctx, g, m.Addr, r.Addr); err != nil {
		t.Fatal(err)
	}
	for {
		mi, _ = a.info(ctx, g, m.Addr)
		ri, _ = a.info(ctx, g, r.Addr)
		if mi.Role == "slave" && mi.MasterAddr == r.Addr && mi.LinkUp && ri.Role == "master" {
			break
		}
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("after the swap: old master %+v, new master %+v", mi, ri)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	if v, err := a.admin(g, m.Addr).Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("old master lost the key: %q %v", v, err)
	}
	// A wrong password is an error, not a hang; the error names no secret.
	bad := &fsm.Group{ID: "g1", Master: m.Addr, Password: "nope"}
	if _, err := a.info(ctx, bad, m.Addr); err == nil || fmt.Sprint(err) == "" {
		t.Fatalf("INFO with a wrong password: %v", err)
	}
}

// TestParseInfoFigures reads the dashboard's figures: memory, ops/s and keys over databases.
func TestParseInfoFigures(t *testing.T) {
	in := parseInfo("# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n# Stats\r\ninstantaneous_ops_per_sec:42\r\n" +
		"# Replication\r\nrole:master\r\nmaster_repl_offset:7\r\n# Keyspace\r\ndb0:keys=5,expires=1,avg_ttl=0\r\ndb3:keys=10,expires=0,avg_ttl=0\r\n")
	if in.UsedMemory != 1048576 || in.OpsPerSec != 42 || in.Keys != 15 || in.Role != "master" || in.Offset != 7 {
		t.Fatalf("parsed %+v", in)
	}
}
