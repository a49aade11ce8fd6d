package router

import (
	"strconv"
	"testing"

	"github.com/redraft/redraft/router/command"
)

func itoa(i int) string   { return strconv.Itoa(i) }
func slotOf(k string) int { return command.Slot([]byte(k)) }

func TestRoutesToOwningGroup(t *testing.T) {
	tc := startCluster(t, 2, 1, Config{})
	ctx := ctxT(t)
	c := tc.client(0)
	k1, k2 := keyIn("a", 0, 2), keyIn("b", 1, 2)
	if err := c.Set(ctx, k1, "v1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, k2, "v2", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := tc.direct(0).Get(ctx, k1).Result(); err != nil || v != "v1" {
		t.Fatalf("group 1 GET %s = %q, %v", k1, v, err)
	}
	if n, _ := tc.direct(0).Exists(ctx, k2).Result(); n != 0 {
		t.Fatalf("key %s of group 2 found on group 1", k2)
	}
	if v, err := tc.direct(1).Get(ctx, k2).Result(); err != nil || v != "v2" {
		t.Fatalf("group 2 GET %s = %q, %v", k2, v, err)
	}
	if v, err := c.Get(ctx, k2).Result(); err != nil || v != "v2" {
		t.Fatalf("GET via router = %q, %v", v, err)
	}
}
