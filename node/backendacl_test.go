package node

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/backendacl"
	"github.com/redraft/redraft/internal/testredis"
)

// Adding a group creates redraft's ACL users on every server of the group with the group's
// admin credentials; credentials a server refuses fail the request with a clear error, and
// the group is not added.
func TestAddGroupCreatesBackendUsers(t *testing.T) {
	c := newTestCluster(t)
	n := c.start("n1", "dc1")
	cl := NewClient(n.AdminAddr())
	ctx := context.Background()
	master := testredis.Start(t, testredis.WithPassword("adminpw"))
	replica := testredis.Start(t, testredis.WithPassword("adminpw"))

	err := cl.AddGroup(ctx, "dc1", fsm.Group{ID: "g1", Master: master.Addr, Replicas: []string{replica.Addr}, Password: "wrong"})
	apiErr(t, err, http.StatusBadRequest, "admin credentials")
	if err != nil && strings.Contains(err.Error(), "wrong") && strings.Contains(err.Error(), `"wrong"`) {
		t.Errorf("the error shows the password: %v", err)
	}
	if dc := n.State().DCs["dc1"]; dc != nil && dc.Groups["g1"] != nil {
		t.Fatal("the group was added with refused credentials")
	}

	g := fsm.Group{ID: "g1", Master: master.Addr, Replicas: []string{replica.Addr}, Password: "adminpw"}
	if err := cl.AddGroup(ctx, "dc1", g); err != nil {
		t.Fatal(err)
	}
	acc := backendacl.ForGroup(&g)
	for _, addr := range []string{master.Addr, replica.Addr} {
		for _, cr := range []backendacl.Creds{acc.Client(), acc.Internal()} {
			rc := redis.NewClient(&redis.Options{Addr: addr, Username: cr.User, Password: cr.Password, MaxRetries: -1})
			if err := rc.Ping(ctx).Err(); err != nil {
				t.Errorf("%s on %s: %v", cr.User, addr, err)
			}
			_ = rc.Close()
		}
	}
}

// connections is the number of connections redis-server at addr has accepted so far, read on
// the one connection of c (so reading it adds none).
func connections(t *testing.T, c *redis.Client) int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "stats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "total_connections_received:"); ok {
			var n int64
			if _, err := fmt.Sscan(v, &n); err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no total_connections_received in INFO stats: %s", info)
	return 0
}

// hasRedraftUsers reports whether redraft's ACL users exist on the server of c.
func hasRedraftUsers(t *testing.T, c *redis.Client) bool {
	t.Helper()
	users, err := c.Do(context.Background(), "ACL", "USERS").StringSlice()
	if err != nil {
		t.Fatal(err)
	}
	return slices.Contains(users, backendacl.ClientUser) || slices.Contains(users, backendacl.InternalUser)
}

// TestGroupUpdateChecksBeforeTouchingServers: PUT /groups/{dc}/{id} is tried on the cluster
// state before it connects anywhere, so an update the state refuses (busy during a failover)
// creates no ACL users on the servers it names; and the group's stored password goes only to
// the group's current servers: an update naming a new server without the password is refused
// with an error that says how to pass it, and no connection reaches that server. With the
// password, or naming only current servers, the update works as before.
func TestGroupUpdateChecksBeforeTouchingServers(t *testing.T) {
	c := newTestCluster(t)
	n := c.start("n1", "dc1")
	cl := NewClient(n.AdminAddr())
	ctx := context.Background()
	master := testredis.Start(t, testredis.WithPassword(testGroupPW))
	replica := testredis.Start(t, testredis.WithPassword(testGroupPW))
	if err := cl.AddGroup(ctx, "dc1", fsm.Group{ID: "g1", Master: master.Addr, Replicas: []string{replica.Addr}, Password: testGroupPW}); err != nil {
		t.Fatal(err)
	}
	newcomer := testredis.Start(t, testredis.WithPassword(testGroupPW))
	onNew := redis.NewClient(&redis.Options{Addr: newcomer.Addr, Password: testGroupPW, PoolSize: 1, MaxRetries: -1})
	t.Cleanup(func() { _ = onNew.Close() })
	pw := testGroupPW

	// A failover in progress: the update is refused as busy, and the newcomer never saw it.
	// (No failover executor runs in this package's nodes: the failover stays until cancelled.)
	if err := n.Propose(ctx, &fsm.StartFailover{DC: "dc1", Group: "g1", To: replica.Addr, Executor: "n1"}); err != nil {
		t.Fatal(err)
	}
	before := connections(t, onNew)
	err := cl.UpdateGroup(ctx, "dc1", "g1", GroupUpdate{Master: master.Addr, Replicas: []string{replica.Addr, newcomer.Addr}, Password: &pw})
	apiErr(t, err, http.StatusConflict, "failing over")
	if got := connections(t, onNew); got != before || hasRedraftUsers(t, onNew) {
		t.Fatalf("a busy update reached the new server: %d connections (before %d), users created: %v", got, before, hasRedraftUsers(t, onNew))
	}
	epoch := n.State().DCs["dc1"].Groups["g1"].Failover.Epoch
	if err := n.Propose(ctx, &fsm.FinishFailover{DC: "dc1", Group: "g1", Epoch: epoch, NewMaster: master.Addr}); err != nil {
		t.Fatal(err)
	}

	// A new server without the password: refused, and nothing reached it.
	before = connections(t, onNew)
	err = cl.UpdateGroup(ctx, "dc1", "g1", GroupUpdate{Master: master.Addr, Replicas: []string{replica.Addr, newcomer.Addr}})
	apiErr(t, err, http.StatusBadRequest, newcomer.Addr+" is not a server of the group yet")
	for _, want := range []string{`"password"`, "--password", "REDRAFT_GROUP_PASSWORD"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal %q does not say %s", err, want)
		}
	}
	assertNoSecrets(t, "the refusal", err.Error())
	if got := connections(t, onNew); got != before || hasRedraftUsers(t, onNew) {
		t.Fatalf("the stored password was sent to a new server: %d connections (before %d)", got, before)
	}
	// The same for a new master, and for a user change without the password.
	user := "default"
	err = cl.UpdateGroup(ctx, "dc1", "g1", GroupUpdate{Master: newcomer.Addr, Replicas: []string{replica.Addr, master.Addr}, User: &user})
	apiErr(t, err, http.StatusBadRequest, "pass the group's admin password")
	if got := connections(t, onNew); got != before {
		t.Fatalf("the stored password was sent to a new master: %d connections (before %d)", got, before)
	}
	if g := n.State().DCs["dc1"].Groups["g1"]; g.Master != master.Addr || len(g.Replicas) != 1 {
		t.Fatalf("a refused update changed the group: %s", g)
	}

	// Only current servers: no password needed (a failover's swap, a replica dropped).
	if err := cl.UpdateGroup(ctx, "dc1", "g1", GroupUpdate{Master: replica.Addr, Replicas: []string{master.Addr}}); err != nil {
		t.Fatal(err)
	}
	// With the password, the new server is provisioned and joins the group.
	if err := cl.UpdateGroup(ctx, "dc1", "g1", GroupUpdate{Master: replica.Addr, Replicas: []string{master.Addr, newcomer.Addr}, Password: &pw}); err != nil {
		t.Fatal(err)
	}
	if !hasRedraftUsers(t, onNew) {
		t.Fatal("the new server has no redraft users after an update with the password")
	}
	if g := n.State().DCs["dc1"].Groups["g1"]; g.Password != testGroupPW || len(g.Replicas) != 2 {
		t.Fatalf("after the update: %s", g)
	}
}
