package router

import (
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestXDCBlockingEdgeArgsRecorded: blocking writes whose arguments Redis accepts although
// they look refused at a glance are recorded like any other, not sent to Redis as they are
// (where they would write unrecorded): a negative timeout that rounds up to 0 ms (Redis blocks
// forever) and an XREADGROUP whose group is named BLOCK.
func TestXDCBlockingEdgeArgsRecorded(t *testing.T) {
	tc := startXDC(t, 1, Config{})
	ctx := ctxT(t)
	c := tc.client(0)
	if err := c.RPush(ctx, "{e}l", "a", "b").Err(); err != nil {
		t.Fatal(err)
	}
	slot := slotOf("{e}l")
	if v, err := c.Do(ctx, "BLPOP", "{e}l", "-0.0001").StringSlice(); err != nil || len(v) != 2 || v[1] != "a" {
		t.Fatalf("BLPOP with timeout -0.0001 = %q, %v", v, err)
	}
	wantEffects(t, "BLPOP -0.0001", tc.lastEffects(t, slot), "LPOP {e}l 1")
	if err := c.Do(ctx, "BLPOP", "{e}l", "-0.0015").Err(); err == nil || !strings.Contains(err.Error(), "timeout is negative") {
		t.Errorf("BLPOP with timeout -0.0015: %v, want Redis's error", err)
	}

	if err := c.XAdd(ctx, &redis.XAddArgs{Stream: "{e}s", Values: []string{"f", "v"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.XGroupCreate(ctx, "{e}s", "BLOCK", "0").Err(); err != nil {
		t.Fatal(err)
	}
	n := len(tc.outbox(t, slot))
	v, err := c.Do(ctx, "XREADGROUP", "GROUP", "BLOCK", "c", "STREAMS", "{e}s", ">").Result()
	if err != nil || v == nil {
		t.Fatalf("XREADGROUP GROUP BLOCK c = %v, %v", v, err)
	}
	if len(tc.outbox(t, slot)) != n+1 {
		t.Fatalf("XREADGROUP of a group named BLOCK recorded nothing")
	}
	eff := tc.lastEffects(t, slot)
	if len(eff) == 0 || !strings.HasPrefix(strings.ToUpper(eff[0]), "XGROUP CREATECONSUMER {E}S BLOCK C") {
		t.Errorf("XREADGROUP GROUP BLOCK c: effects %q", eff)
	}
}
