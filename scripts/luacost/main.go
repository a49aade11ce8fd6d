// Command luacost measures what redraft's replication functions cost a redis-server: WRITE of
// a plain SET (16 calls pipelined, as a node sends them) or the group log's APPLY (50 entries
// of a SET per call, as a receiving node sends them), per write: the server's CPU (INFO cpu)
// and FCALL's usec_per_call (INFO commandstats), with -stats each inner command's too.
//
// -variant FILE loads the library changed first: FILE holds pairs of texts separated by lines
// "====" (old, new, old, new...), each old text found exactly once in xdc.Library() (the
// library keeps its name, so xdc.WriteFunc and ApplyLogCall call the variant). A variant
// that empties a function's body measures what calling it costs (docs/replication.md,
// "Session 39"). It flushes the server it is given: start one of its own.
//
//	redis-server --port 7777 --save '' &
//	go run ./scripts/luacost -addr 127.0.0.1:7777 -mode write -n 100000
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/migrate"
	"github.com/redraft/redraft/router/xdc"
)

func main() {
	addr := flag.String("addr", "", "a redis-server of its own (it is flushed)")
	mode := flag.String("mode", "write", "write (WRITE of a SET) or apply (the group log's APPLY)")
	variant := flag.String("variant", "", "a file of text replacements in the library (see the doc comment)")
	n := flag.Int("n", 100000, "writes")
	stats := flag.Bool("stats", false, "print every command's stats, the inner calls included")
	flag.Parse()
	if *addr == "" || (*mode != "write" && *mode != "apply") {
		flag.Usage()
		os.Exit(2)
	}
	lib, err := library(*variant)
	if err != nil {
		fmt.Fprintln(os.Stderr, "luacost:", err)
		os.Exit(1)
	}
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: *addr})
	defer c.Close()
	for _, err := range []error{c.FlushAll(ctx).Err(), c.FunctionFlush(ctx).Err(), c.FunctionLoadReplace(ctx, lib).Err(), c.ConfigResetStat(ctx).Err()} {
		if err != nil {
			fmt.Fprintln(os.Stderr, "luacost:", err)
			os.Exit(1)
		}
	}
	cpu0 := serverCPU(ctx, c)
	t0 := time.Now()
	if *mode == "write" {
		err = writes(ctx, c, *n)
	} else {
		err = applies(ctx, c, *n)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "luacost:", err)
		os.Exit(1)
	}
	took, cpu1 := time.Since(t0), serverCPU(ctx, c)
	info := c.Info(ctx, "commandstats").Val()
	fcall := ""
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "cmdstat_fcall:") {
			fcall = line
		}
		if *stats && strings.HasPrefix(line, "cmdstat_") {
			fmt.Println("  " + line)
		}
	}
	label := *mode
	if *variant != "" {
		label += " (" + *variant + ")"
	}
	fmt.Printf("%s: %d writes in %v, server CPU %.2f us per write; %s\n", label, *n, took.Round(time.Millisecond), (cpu1-cpu0)*1e6/float64(*n), fcall)
}

// library returns xdc.Library() with variant's replacements made.
func library(variant string) (string, error) {
	lib := xdc.Library()
	if variant == "" {
		return lib, nil
	}
	b, err := os.ReadFile(variant)
	if err != nil {
		return "", err
	}
	parts := strings.Split(string(b), "\n====\n")
	if len(parts)%2 != 0 {
		return "", fmt.Errorf("%s: %d texts, not pairs", variant, len(parts))
	}
	for i := 0; i < len(parts); i += 2 {
		if k := strings.Count(lib, parts[i]); k != 1 {
			return "", fmt.Errorf("%s: text %d occurs %d times in the library", variant, i+1, k)
		}
		lib = strings.Replace(lib, parts[i], parts[i+1], 1)
	}
	return lib, nil
}

// serverCPU reads the server's used CPU (user and system), in seconds.
func serverCPU(ctx context.Context, c *redis.Client) float64 {
	f := migrate.InfoFields(c.Info(ctx, "cpu").Val())
	u, _ := strconv.ParseFloat(f["used_cpu_user"], 64)
	s, _ := strconv.ParseFloat(f["used_cpu_sys"], 64)
	return u + s
}

// writes sends n WRITEs of SET key:<i> with a 64-byte value, 16 per pipeline.
func writes(ctx context.Context, c *redis.Client, n int) error {
	val := strings.Repeat("v", 64)
	for i := 0; i < n; i += 16 {
		p := c.Pipeline()
		for j := i; j < min(i+16, n); j++ {
			k := "key:" + strconv.Itoa(j)
			call, err := xdc.Prepare([]string{"SET", k, val})
			if err != nil {
				return err
			}
			keys, argv := xdc.WriteLogArgs(migrate.SlotString(k), "dc1", 1000000, false, []xdc.Call{call})
			p.FCall(ctx, xdc.WriteFunc, keys, argv...)
		}
		if _, err := p.Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}

// applies sends n entries of dc2's log, each a SET key:<i> of a 64-byte value, 50 per APPLY.
func applies(ctx context.Context, c *redis.Client, n int) error {
	val := strings.Repeat("v", 64)
	l := xdc.LogID{DC: "dc2", Group: "g1"}
	prev, ms := "", int64(1000)
	for i := 0; i < n; i += 50 {
		var es []xdc.LogEntry
		for j := i; j < min(i+50, n); j++ {
			k := "key:" + strconv.Itoa(j)
			ms++
			es = append(es, xdc.LogEntry{Slot: migrate.SlotString(k), WireEntry: xdc.WireEntry{
				ID: strconv.FormatInt(ms, 10) + "-0", TS: strconv.FormatInt(ms*4096, 10),
				Cmds: [][]string{{"~s", k, "", "", val, "-1"}}}})
		}
		last := es[len(es)-1].ID
		call := xdc.ApplyLogCall(l, "", prev, last, es)
		args := make([]any, len(call))
		for i, s := range call {
			args[i] = s
		}
		if err := c.Do(ctx, args...).Err(); err != nil {
			return err
		}
		prev = last
	}
	return nil
}
