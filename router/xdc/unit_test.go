package xdc

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
)

// writeUnit runs calls (each a command's argv) as one unit in d, as EXEC of a MULTI block
// with several DCs does, and returns the error.
func (d *testDC) writeUnit(t *testing.T, cmds ...[]string) {
	t.Helper()
	var calls []Call
	for _, args := range cmds {
		calls = append(calls, mustPrepare(t, args...))
	}
	slot := slotString(calls[0].Keys[0])
	if err := d.writeCalls(slot, true, calls).Err(); err != nil && err != redis.Nil {
		t.Fatalf("unit %v in %s: %v", cmds, d.name, err)
	}
	d.repl.Wrote(0, slot)
}

// TestConvergeUnitWritesAKeyTwice: the effects of one unit share its stamp, so an effect on a
// key that an earlier effect of the same unit restamped meets its own stamp there. Until
// session 43 APPLY took that for a newer write and skipped the effect: `MULTI; SET k v;
// EXPIRE k 60; EXEC` left k without expiry in the other DCs, `DEL h; HSET h f v` left h
// absent, `SET k a; SET k b` left a, `RPUSH tmp x; RENAME tmp l` left tmp. Every DC must end
// as the origin did, in both data formats (outboxes and group logs).
func TestConvergeUnitWritesAKeyTwice(t *testing.T) {
	for _, format := range []int{fsm.FirstDataFormat, LogDataFormat} {
		t.Run(fmt.Sprint("format ", format), func(t *testing.T) {
			dcs := startDCsAt(t, format, "a", "b")
			a := dcs[0]
			a.write(t, "HSET", "{u}h", "old", "1")
			a.writeUnit(t, []string{"SET", "{u}k", "v"}, []string{"EXPIRE", "{u}k", "600"})
			a.writeUnit(t, []string{"DEL", "{u}h"}, []string{"HSET", "{u}h", "f", "v"})
			a.writeUnit(t, []string{"SET", "{u}s", "a"}, []string{"SET", "{u}s", "b"}, []string{"APPEND", "{u}s", "c"})
			a.writeUnit(t, []string{"RPUSH", "{u}tmp", "x"}, []string{"RENAME", "{u}tmp", "{u}l"})
			a.writeUnit(t, []string{"SADD", "{u}set", "1"}, []string{"SREM", "{u}set", "1"}, []string{"SADD", "{u}set", "2"})
			for k, want := range map[string]string{"{u}k": "string v", "{u}h": "hash map[f:v]", "{u}s": "string bc",
				"{u}tmp": "none", "{u}l": "list [x]", "{u}set": "set [2]"} {
				waitEqual(t, dcs, 10*time.Second, k, stateOf(k), want)
			}
			ttl := func(d *testDC) (string, error) {
				ms, err := d.rc.PTTL(context.Background(), "{u}k").Result()
				return fmt.Sprint(ms > 500*time.Second), err
			}
			waitEqual(t, dcs, 10*time.Second, "k expires in 600 s", ttl, "true")
			noDivergence(t, dcs)
		})
	}
}
