// Command migload measures what a slot migration costs clients, for make bench: it loads keys
// through a node, runs a GET load of many clients for a baseline period, then runs a command
// (one that starts a migration and returns when it has switched) while the same load goes on,
// and reports throughput and latency percentiles of the GETs sent during each window, so the
// two windows compare like for like.
//
// The clients speak RESP over plain sockets (one connection each, one request in flight), as
// redis-benchmark does, so the load costs little CPU of its own.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "", "RESP address of a node")
	keys := flag.Int("keys", 100000, "keys key:000000000000 ... (loaded with -load, read at random)")
	size := flag.Int("size", 512, "value size of loaded keys")
	load := flag.Bool("load", false, "load the keys, then exit")
	hash := flag.String("hash", "", "instead, build a hash of this name with -keys fields of -size bytes, then exit")
	clients := flag.Int("clients", 50, "concurrent GET clients")
	base := flag.Duration("base", 3*time.Second, "baseline window before the command runs")
	slice := flag.Duration("slices", 0, "also print, to stderr, each window cut in slices of this length (0: no)")
	watch := flag.String("watch", "", "instead, poll this admin address until every migration of -dc is over, printing each state change")
	dc := flag.String("dc", "dc1", "the datacenter -watch looks at")
	since := flag.Int64("since", 0, "the Unix time in ms -watch counts its times from (0: its start)")
	flag.Parse()
	var err error
	if *watch != "" {
		err = watchMigrations(*watch, *dc, *since)
	} else if *hash != "" {
		err = loadHash(*addr, *hash, *keys, *size)
	} else if *load {
		err = loadKeys(*addr, *keys, *size)
	} else {
		err = measure(*addr, *keys, *clients, *base, *slice, flag.Args())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "migload:", err)
		os.Exit(1)
	}
}

func keyName(i int) string { return fmt.Sprintf("key:%012d", i) }

// loadKeys SETs every key over 8 connections, 256 commands per pipelined write.
func loadKeys(addr string, n, size int) error {
	val := strings.Repeat("v", size)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			bw, br := bufio.NewWriterSize(c, 1<<16), bufio.NewReader(c)
			pending := 0
			flush := func() error {
				if err := bw.Flush(); err != nil {
					return err
				}
				for ; pending > 0; pending-- {
					line, err := br.ReadString('\n')
					if err != nil {
						return err
					}
					if line != "+OK\r\n" {
						return fmt.Errorf("SET answered %q", strings.TrimSpace(line))
					}
				}
				return nil
			}
			for i := w; i < n; i += 8 {
				k := keyName(i)
				fmt.Fprintf(bw, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(k), k, len(val), val)
				if pending++; pending == 256 {
					if err := flush(); err != nil {
						errs <- err
						return
					}
				}
			}
			if err := flush(); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// loadHash builds a hash of n fields with pipelined HSETs of 1000 fields each.
func loadHash(addr, name string, n, size int) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	bw, br := bufio.NewWriterSize(c, 1<<20), bufio.NewReader(c)
	val := strings.Repeat("h", size)
	sent := 0
	for i := 0; i < n; i += 1000 {
		m := min(1000, n-i)
		fmt.Fprintf(bw, "*%d\r\n$4\r\nHSET\r\n$%d\r\n%s\r\n", 2+2*m, len(name), name)
		for j := i; j < i+m; j++ {
			f := fmt.Sprintf("f%d", j)
			fmt.Fprintf(bw, "$%d\r\n%s\r\n$%d\r\n%s\r\n", len(f), f, len(val), val)
		}
		sent++
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	for ; sent > 0; sent-- {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if line[0] != ':' {
			return fmt.Errorf("HSET answered %q", strings.TrimSpace(line))
		}
	}
	return nil
}

// sample is one GET: when it was sent (since the start) and how long it took.
type sample struct {
	at, took time.Duration
}

// measure runs the GET load, the baseline window, then cmd, and prints both windows.
func measure(addr string, nkeys, clients int, base, slice time.Duration, cmd []string) error {
	if len(cmd) == 0 {
		return errors.New("no command to run after the baseline (migload [flags] -- cmd args...)")
	}
	start := time.Now()
	var stop atomic.Bool
	var errCount atomic.Int64
	per := make([][]sample, clients)
	errc := make(chan error, clients)
	var wg sync.WaitGroup
	for w := range clients {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			bw, br := bufio.NewWriter(c), bufio.NewReader(c)
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for !stop.Load() {
				k := keyName(rng.IntN(nkeys))
				t0 := time.Now()
				fmt.Fprintf(bw, "*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", len(k), k)
				if err := bw.Flush(); err != nil {
					errc <- err
					return
				}
				bad, err := readReply(br)
				if err != nil {
					errc <- err
					return
				}
				if bad {
					errCount.Add(1)
				}
				per[w] = append(per[w], sample{at: t0.Sub(start), took: time.Since(t0)})
			}
		}()
	}
	time.Sleep(base) // the load runs on its own; this only times the window
	c0 := time.Since(start)
	out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput()
	c1 := time.Since(start)
	stop.Store(true)
	wg.Wait()
	close(errc)
	if e := <-errc; e != nil {
		return e
	}
	if err != nil {
		return fmt.Errorf("%s: %v: %s", cmd[0], err, out)
	}
	var all []sample
	for _, s := range per {
		all = append(all, s...)
	}
	report(os.Stdout, "without", all, 0, c0)
	report(os.Stdout, "during", all, c0, c1)
	if slice > 0 {
		for at := c0 - slice*(c0/slice/2); at < c1; at += slice {
			report(os.Stderr, fmt.Sprintf("at%+.2fs", (at-c0).Seconds()), all, at, min(at+slice, c1))
		}
	}
	fmt.Printf("errors %d\n", errCount.Load())
	return nil
}

// readReply reads one GET reply; bad is true for an error reply.
func readReply(br *bufio.Reader) (bad bool, err error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return false, err
	}
	switch line[0] {
	case '-':
		return true, nil
	case '$':
		n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
		if err != nil {
			return false, fmt.Errorf("bad reply %q", line)
		}
		if n >= 0 {
			_, err = br.Discard(n + 2)
		}
		return false, err
	}
	return false, fmt.Errorf("unexpected reply %q", line)
}

// report prints one window: "<name> <rps> <p50 ms> <p99 ms> <seconds>".
func report(w io.Writer, name string, all []sample, from, to time.Duration) {
	var lat []time.Duration
	for _, s := range all {
		if s.at >= from && s.at < to {
			lat = append(lat, s.took)
		}
	}
	if len(lat) == 0 {
		fmt.Fprintf(w, "%s 0 0 0 %.3f\n", name, (to - from).Seconds())
		return
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / 1e6 }
	fmt.Fprintf(w, "%s %.0f %.3f %.3f %.3f\n", name, float64(len(lat))/(to-from).Seconds(), q(0.5), q(0.99), (to - from).Seconds())
}

// watchMigrations polls GET /migrations of the admin API at addr every 5 ms, over one kept-alive
// connection, until no migration of dc is active, and prints "<ms since start> ms: <states>"
// at each change (ms since the Unix time since, or since its start when 0). One process polling costs the machine far less than a CLI process started
// per poll, which took CPU from the migration being measured.
func watchMigrations(addr, dc string, since int64) error {
	url := "http://" + addr + "/migrations?dc=" + dc
	start := time.Now()
	if since > 0 {
		start = time.UnixMilli(since)
	}
	seen := ""
	for {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		var ms []struct {
			State string `json:"state"`
		}
		err = json.NewDecoder(resp.Body).Decode(&ms)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("GET %s: %w", url, err)
		}
		var states []string
		active := false
		for _, m := range ms {
			states = append(states, m.State)
			active = active || (m.State != "migrated" && m.State != "cancelled")
		}
		if st := strings.Join(states, " "); st != seen {
			fmt.Printf("%d ms: %s\n", time.Since(start).Milliseconds(), st)
			seen = st
		}
		if !active {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
}
