package router

import (
	"strings"
	"testing"
	"time"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/router/xdc"
)

// TestWideBitfield: only a BITFIELD that writes and names a field of more than 53 bits, with
// arguments Redis accepts, leaves the WRITE script.
func TestWideBitfield(t *testing.T) {
	for _, tt := range []struct {
		args string
		want bool
	}{
		{"BITFIELD k SET i64 0 1", true},
		{"BITFIELD k INCRBY u63 #1 -5", true},
		{"bitfield k incrby I54 0 1", true},
		{"BITFIELD k SET u8 0 1 GET i64 8", true},
		{"BITFIELD k OVERFLOW SAT SET i64 0 1 OVERFLOW fail INCRBY i64 0 1", true},
		{"BITFIELD k SET i53 0 1 INCRBY u53 0 1 GET u8 0", false}, // exact in a double
		{"BITFIELD k GET i64 0", false},                           // a read: not through WRITE
		{"BITFIELD k", false},
		{"BITFIELD k SET i65 0 1", false},  // Redis refuses: the WRITE path answers its error
		{"BITFIELD k SET u64 0 1", false},  // idem
		{"BITFIELD k SET i64 -1 1", false}, // idem
		{"BITFIELD k SET i64 0 x", false},
		{"BITFIELD k SET i64 0", false},
		{"BITFIELD k SET i64 0 1 OVERFLOW NONE", false},
		{"BITFIELD k SET i64 0 1 BOGUS", false},
		{"BITFIELD k SET i64 #x 1", false},
		{"BITFIELD k SET i64 4294967232 1", true},  // the field ends on the last allowed byte
		{"BITFIELD k SET i64 4294967233 1", false}, // one bit past it
		{"BITFIELD k SET i64 #67108864 1", false},
	} {
		if got := xdc.WideBitfield(edgeBytes(strings.Fields(tt.args))); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.args, got, tt.want)
		}
	}
}

// TestXDCBitfieldExact: with two DCs, a BITFIELD on 64-bit fields answers Redis's exact
// integers (they used to be rounded by the WRITE script past 2^53) and is recorded as the
// key's state (convergence on) or as itself (off); a missing WRITE (FUNCTION FLUSH on the backend) is
// WRITE's clear error and heals; the copy lock holds it as any write.
func TestXDCBitfieldExact(t *testing.T) {
	tc := startXDC(t, 1, Config{FreezeWait: 100 * time.Millisecond})
	ctx := ctxT(t)
	c, d := tc.client(0), tc.direct(0)
	k := "{bf}k"
	got, err := c.BitField(ctx, k, "SET", "i64", "0", "9223372036854775807", "INCRBY", "i64", "0", "-1", "GET", "u63", "1").Result()
	want := []int64{0, 9223372036854775806, 9223372036854775806}
	if err != nil || len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("BITFIELD = %v, %v; want %v", got, err, want)
	}
	v := d.Get(ctx, k).Val()
	wantEffects(t, "BITFIELD", tc.lastEffects(t, slotOf(k)), "set "+k+" "+v)

	// WRITE flushed on the backend: the BITFIELD does not run, the error says why, and WRITE
	// is loaded again for the next one.
	d.FunctionFlush(ctx)
	if err := c.BitField(ctx, k, "SET", "i64", "0", "5").Err(); err == nil || !strings.Contains(err.Error(), "WRITE is not loaded") {
		t.Errorf("BITFIELD after a backend FUNCTION FLUSH: %v", err)
	}
	waitFor(t, "WRITE reloaded", func() bool { return c.BitField(ctx, k, "SET", "i64", "0", "6").Err() == nil })
	if got, err := c.BitField(ctx, k, "GET", "i64", "0").Result(); err != nil || got[0] != 6 {
		t.Errorf("value %v, %v", got, err)
	}

	// Without convergence the command itself is recorded, to be replayed.
	st, err := fsm.ApplyCommand(tc.st, tc.st.Index+1, &fsm.SetSetting{Key: "convergence", Value: "false"})
	if err != nil {
		t.Fatal(err)
	}
	tc.st = st
	tc.servers[0].SetState(st)
	if got, err := c.BitField(ctx, k, "INCRBY", "i64", "0", "9223372036854775801").Result(); err != nil || len(got) != 1 || got[0] != 9223372036854775807 {
		t.Fatalf("BITFIELD INCRBY = %v, %v", got, err)
	}
	wantEffects(t, "BITFIELD without convergence", tc.lastEffects(t, slotOf(k)), "bitfield "+k+" INCRBY i64 0 9223372036854775801")

	// Under a slot's copy lock the write waits, then answers -TRYAGAIN, and changes nothing.
	d.Set(ctx, xdc.CopyLockKey(slotOf(k)), "1", 0)
	if err := c.BitField(ctx, k, "SET", "i64", "0", "7").Err(); !isTryAgain(err) {
		t.Errorf("BITFIELD under a lock: %v", err)
	}
	d.Del(ctx, xdc.CopyLockKey(slotOf(k)))
	if got, err := c.BitField(ctx, k, "GET", "i64", "0").Result(); err != nil || got[0] != 9223372036854775807 {
		t.Errorf("value %v, %v after a refused write", got, err)
	}
}
