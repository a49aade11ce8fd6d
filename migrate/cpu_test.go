package migrate

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// cpuTime is this process's user+system CPU time.
func cpuTime(t testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// serverCPU is a server's CPU time so far, user and system (INFO cpu, all threads).
func serverCPU(ctx context.Context, t testing.TB, c *redis.Client) (user, sys time.Duration) {
	t.Helper()
	s, err := c.Info(ctx, "cpu").Result()
	must(t, err)
	for _, line := range strings.Split(s, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		f, _ := strconv.ParseFloat(v, 64)
		switch k {
		case "used_cpu_user":
			user = time.Duration(f * float64(time.Second))
		case "used_cpu_sys":
			sys = time.Duration(f * float64(time.Second))
		}
	}
	return user, sys
}

// TestMoveSlotsCPUPerKey moves 20,000 keys of 512 B flat out and reports the CPU each moved key
// costs: on the source and the target (commandstats: the scripts' µs, and the commands run
// inside them) and in this process (the node's side). CPU time, unlike keys/s, hardly depends
// on the machine's load, so it compares changes to the copy's scripts on a shared host. The
// figures are logged (`go test -v -run CPUPerKey ./migrate/`; MIGCPU_KEYS and MIGCPU_BATCH set
// the keys moved and MoveOptions.BatchKeys); the test asserts the keys moved.
func TestMoveSlotsCPUPerKey(t *testing.T) {
	if testing.Short() {
		t.Skip("CPU figure only")
	}
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	slots, _ := FromRanges([2]int{0, NumSlots - 1})
	src, dst := e.src(t, 0), e.dst(t, 0)
	n, size := envInt("MIGCPU_KEYS", 20000), 512
	seedKeys(t, src, "c:", n, size, &slots)
	m := e.mover(t, nil)
	must(t, src.ConfigResetStat(ctx).Err())
	must(t, dst.ConfigResetStat(ctx).Err())
	su, ss := serverCPU(ctx, t, src)
	du, ds := serverCPU(ctx, t, dst)
	grind := callgrind(ctx, t, "-z", src, dst)
	cpu0, start := cpuTime(t), time.Now()
	var last Progress
	err := m.MoveSlots(ctx, slots, MoveOptions{BatchKeys: envInt("MIGCPU_BATCH", 0), LatencyFactor: -1, Progress: func(p Progress) { last = p }})
	took, node := time.Since(start), cpuTime(t)-cpu0
	if err != nil {
		t.Fatal(err)
	}
	if grind {
		callgrind(ctx, t, "-d", src, dst)
	}
	if last.KeysMoved != int64(n) || dst.DBSize(ctx).Val() != int64(n) {
		t.Fatalf("moved %d keys (target has %d), want %d", last.KeysMoved, dst.DBSize(ctx).Val(), n)
	}
	for _, side := range []struct {
		name string
		c    *redis.Client
	}{{"source", src}, {"target", dst}} {
		st := commandStats(ctx, t, side.c)
		names := slices.Sorted(maps.Keys(st))
		var b strings.Builder
		for _, name := range names {
			v := st[name]
			if usec := float64(v.calls) * v.usecPerCall; usec >= float64(n)/10 && name != "info" && name != "config|resetstat" {
				fmt.Fprintf(&b, " %s=%.2fµs(%d calls)", name, usec/float64(n), v.calls)
			}
		}
		t.Logf("%s per key:%s", side.name, b.String())
	}
	su1, ss1 := serverCPU(ctx, t, src)
	du1, ds1 := serverCPU(ctx, t, dst)
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(n) }
	t.Logf("process CPU per key: source %.2f µs (user %.2f, system %.2f), target %.2f µs (user %.2f, system %.2f)",
		us(su1-su+ss1-ss), us(su1-su), us(ss1-ss), us(du1-du+ds1-ds), us(du1-du), us(ds1-ds))
	t.Logf("node (this process) %.2f µs CPU per key; %d keys in %v (%.0f keys/s)",
		float64(node.Microseconds())/float64(n), n, took.Round(time.Millisecond), float64(n)/took.Seconds())
}

// callgrind runs callgrind_control with op (-z zeroes the counters, -d dumps them) on the
// servers' processes when MIGCALLGRIND is set: the servers then run under valgrind
// (REDIS_SERVER names a script that starts redis-server under --tool=callgrind), and their
// instruction counts, unlike CPU time, do not depend on the machine's load (DESIGN.md, "CPU per
// moved key"). It reports whether it ran.
func callgrind(ctx context.Context, t testing.TB, op string, servers ...*redis.Client) bool {
	if os.Getenv("MIGCALLGRIND") == "" {
		return false
	}
	for _, c := range servers {
		info, err := c.Info(ctx, "server").Result()
		must(t, err)
		_, rest, _ := strings.Cut(info, "process_id:")
		pid, _, _ := strings.Cut(rest, "\r")
		if out, err := exec.CommandContext(ctx, "callgrind_control", op, strings.TrimSpace(pid)).CombinedOutput(); err != nil {
			t.Fatalf("callgrind_control %s %s: %v: %s", op, pid, err, out)
		}
	}
	return true
}

// envInt is the integer in environment variable name, or def.
func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return n
	}
	return def
}
