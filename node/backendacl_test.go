package node

import (
	"context"
	"net/http"
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
