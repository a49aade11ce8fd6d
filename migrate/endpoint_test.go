package migrate

import (
	"strings"
	"testing"
	"time"

	"github.com/redraft/redraft/fsm"
)

// Movers work as redraft's internal ACL user: it is created on the source by the first
// connection and on the target when MIGRATE's AUTH2 is refused, and big keys (chunked copy)
// move too. The source also lacks the user at first: nothing was provisioned beforehand.
func TestMoveAsInternalUser(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	src := &fsm.Group{ID: "g1", Master: e.srcSrv.Addr}
	dst := &fsm.Group{ID: "g2", Master: e.dstSrv.Addr, Password: e.dstPass}
	m := e.mover(t, func(c *Config) {
		c.Source, c.Target = EndpointOf(src), EndpointOf(dst)
		c.BigKeyElements = 100
	})
	s, d := e.src(t, 0), e.dst(t, 0)
	keys := seedSmall(t, s, "acl")
	fillHash(ctx, t, s, "bighash", 1000, 10)
	if _, err := m.MoveKeys(ctx, 0, append(keys, "bighash")...); err != nil {
		t.Fatalf("MoveKeys as the internal user: %v", err)
	}
	for _, k := range append(keys, "bighash") {
		if s.Exists(ctx, k).Val() != 0 || d.Exists(ctx, k).Val() != 1 {
			t.Errorf("%s not moved", k)
		}
	}
	users := d.Do(ctx, "ACL", "USERS").String()
	if want := "redraft-internal"; !strings.Contains(users, want) {
		t.Errorf("target users %s lack %s", users, want)
	}
}
