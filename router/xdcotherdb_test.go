package router

import (
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
)

// TestXDCOtherDBRefused: with several DCs and convergence on, MOVE and COPY ... DB to another
// database are refused and change nothing (WRITE would record only the session's database, so
// the key written in the other would reach no other DC); COPY within the session's database is
// served; inside MULTI, EXEC refuses the block. With convergence off they are served and
// recorded as the commands they are.
func TestXDCOtherDBRefused(t *testing.T) {
	tc := startXDC(t, 1, Config{})
	ctx := ctxT(t)
	c := tc.client(0)
	d0, d1, d2 := tc.directDB(0, 0), tc.directDB(0, 1), tc.directDB(0, 2)
	h, s := "{o}h", "{o}s"
	if err := c.HSet(ctx, h, "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, s, "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	slot := slotOf(h)
	n0 := len(tc.outbox(t, slot))
	refused := func(what string, err error) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), "another database are refused") {
			t.Errorf("%s: %v, want the refusal", what, err)
		}
	}
	refused("MOVE of a hash", c.Move(ctx, h, 1).Err())
	refused("MOVE of a string", c.Move(ctx, s, 1).Err())
	refused("COPY ... DB 2", c.Do(ctx, "COPY", s, "{o}s2", "DB", "2").Err())
	// Redis reads every DB option and copies to the last.
	refused("COPY ... DB 0 DB 2", c.Do(ctx, "COPY", s, "{o}s2", "DB", "0", "REPLACE", "DB", "2").Err())
	_, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "{o}x", "1", 0)
		p.Move(ctx, h, 1)
		return nil
	})
	refused("MOVE in MULTI", err)
	if v := d0.HGet(ctx, h, "f").Val(); v != "v" {
		t.Errorf("db 0 %s.f = %q after the refusals", h, v)
	}
	if n := d1.Exists(ctx, h, s).Val() + d2.Exists(ctx, "{o}s2").Val() + d0.Exists(ctx, "{o}x").Val(); n != 0 {
		t.Errorf("%d keys written by refused commands", n)
	}
	if n := len(tc.outbox(t, slot)); n != n0 {
		t.Errorf("outbox %d entries after the refusals, was %d", n, n0)
	}

	// A DB option Redis refuses: Redis's error, nothing written.
	if err := c.Do(ctx, "COPY", s, "{o}s2", "DB", "2", "DB", "x").Err(); err == nil || strings.Contains(err.Error(), "refused") {
		t.Errorf("COPY with a bad DB: %v, want Redis's error", err)
	}

	// Within the session's database, or naming it, COPY is served and recorded.
	if ok, err := c.Copy(ctx, s, "{o}s3", 0, false).Result(); err != nil || ok != 1 {
		t.Fatalf("COPY in the same database = %d, %v", ok, err)
	}
	if eff := tc.lastEffects(t, slot); len(eff) != 1 || !strings.HasPrefix(eff[0], "restore {o}s3 0 ") {
		t.Errorf("COPY: effects %q, want the state of {o}s3", eff)
	}

	// Convergence off: served, recorded as the command.
	st, err := fsm.ApplyCommand(tc.st, tc.st.Index+1, &fsm.SetSetting{Key: "convergence", Value: "false"})
	if err != nil {
		t.Fatal(err)
	}
	tc.st = st
	tc.servers[0].SetState(st)
	if ok, err := c.Move(ctx, h, 1).Result(); err != nil || !ok {
		t.Fatalf("MOVE without convergence = %v, %v", ok, err)
	}
	wantEffects(t, "MOVE without convergence", tc.lastEffects(t, slot), "move "+h+" 1")
	if v := d1.HGet(ctx, h, "f").Val(); v != "v" {
		t.Errorf("db 1 %s.f = %q after MOVE", h, v)
	}
}
