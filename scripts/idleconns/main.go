// Command idleconns measures what idle client connections cost a redraft node: it reads the
// node's resident memory (/proc/PID/status) and its Go heap and stacks (the admin port's heap
// profile, after a forced GC), opens N connections that each run one GET and one SET and then
// stay idle, waits for the node to settle, reads both again and prints the difference per
// connection. make bench runs it (scripts/bench.sh).
//
// Usage: idleconns -addr 127.0.0.1:6380 -admin 127.0.0.1:8380 -pid 1234 -n 10000
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:6380", "the node's client address")
	admin := flag.String("admin", "127.0.0.1:8380", "the node's admin address (heap profile)")
	pid := flag.Int("pid", 0, "the node's process id (resident memory)")
	n := flag.Int("n", 10000, "connections to open")
	settle := flag.Duration("settle", 3*time.Second, "how long the connections stay idle before the second reading")
	flag.Parse()
	if *pid == 0 {
		log.Fatal("idleconns: -pid is required")
	}
	rss0, err := rss(*pid)
	if err != nil {
		log.Fatal(err)
	}
	heap0, err := goMem(*admin)
	if err != nil {
		log.Fatal(err)
	}
	conns, err := open(*addr, *n)
	if err != nil {
		log.Fatal(err)
	}
	time.Sleep(*settle) // the connections' idle time being measured, not a synchronisation
	heap1, err := goMem(*admin)
	if err != nil {
		log.Fatal(err)
	}
	rss1, err := rss(*pid)
	if err != nil {
		log.Fatal(err)
	}
	per := func(d int64) float64 { return float64(d) / float64(*n) / 1024 }
	fmt.Printf("idle clients %d: node RSS %+.1f MiB (%.1f KiB per connection); Go heap+stacks %+.1f MiB (%.1f KiB per connection)\n",
		*n, float64(rss1-rss0)/(1<<20), per(rss1-rss0), float64(heap1-heap0)/(1<<20), per(heap1-heap0))
	for _, c := range conns {
		_ = c.Close()
	}
}

// open dials n connections, 64 at a time, and runs one GET and one SET on each.
func open(addr string, n int) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	work := make(chan int)
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				c, err := exercise(addr, i)
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				conns[i] = c
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	if first != nil {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
		return nil, first
	}
	return conns, nil
}

func exercise(addr string, i int) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	key := "idle:" + strconv.Itoa(i)
	req := fmt.Sprintf("*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\nx\r\n", len(key), key, len(key), key)
	if _, err := io.WriteString(c, req); err != nil {
		_ = c.Close()
		return nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	// Two replies: a null bulk ($-1, or the value of an earlier run) and +OK; read until +OK.
	br := bufio.NewReaderSize(c, 64)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("connection %d: %w", i, err)
		}
		if strings.HasPrefix(line, "-") {
			_ = c.Close()
			return nil, fmt.Errorf("connection %d: %s", i, strings.TrimSpace(line))
		}
		if line == "+OK\r\n" {
			break
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, nil
}

// rss returns the resident memory of process pid in bytes.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// goMem returns the node's HeapInuse + StackInuse after a forced GC (the heap profile's
// gc=1 collects first and prints runtime.MemStats at its end with debug=1).
func goMem(admin string) (int64, error) {
	resp, err := http.Get("http://" + admin + "/debug/pprof/heap?debug=1&gc=1")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("heap profile: %s", resp.Status)
	}
	var heap, stack int64 = -1, -1
	for _, l := range bytes.Split(body, []byte("\n")) {
		s := string(l)
		switch {
		case strings.HasPrefix(s, "# HeapInuse = "):
			heap, err = strconv.ParseInt(strings.TrimPrefix(s, "# HeapInuse = "), 10, 64)
		case strings.HasPrefix(s, "# Stack = "):
			f := strings.Fields(strings.TrimPrefix(s, "# Stack = "))
			if len(f) > 0 {
				stack, err = strconv.ParseInt(f[0], 10, 64)
			}
		}
		if err != nil {
			return 0, err
		}
	}
	if heap < 0 || stack < 0 {
		return 0, fmt.Errorf("heap profile without MemStats")
	}
	return heap + stack, nil
}
