// Command xdcload measures cross-DC replication for make bench: it writes SETs through a node
// of one DC (at a fixed rate, or as fast as -clients can) and watches another DC's Redis
// master with keyspace notifications, so each key's lag is the time from the write being sent
// to its apply in the other DC.
//
// It speaks RESP over plain sockets (one per client, and one for the watch) and keeps its
// times in integer slices and maps: with go-redis, a sync.Map of the keys and a go-redis
// subscription it took 0.3 of a core at 2,000 writes/s on the 2-core machine it measures, more
// than the receiving node, and its own scheduling entered both ends of every lag
// (docs/replication.md, "Figures").
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "", "RESP address of a node in the writing DC")
	watch := flag.String("watch", "", "Redis master in the other DC to watch (\"\": no lag, throughput only)")
	rate := flag.Int("rate", 0, "writes per second (0: as fast as the clients can)")
	dur := flag.Duration("duration", 5*time.Second, "how long to write")
	clients := flag.Int("clients", 50, "concurrent clients")
	prefix := flag.String("prefix", "xdcload", "key prefix (one run's keys must be new)")
	flag.Parse()
	if err := run(*addr, *watch, *rate, *dur, *clients, *prefix); err != nil {
		fmt.Fprintln(os.Stderr, "xdcload:", err)
		os.Exit(1)
	}
}

const value = "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv"

// writes is one client's record: the send and ack times of its i-th write (nanoseconds after
// the start; ack 0 for a write that failed).
type writes struct{ sent, ack []int64 }

func run(addr, watch string, rate int, dur time.Duration, clients int, prefix string) error {
	var w *watcher
	if watch != "" {
		var err error
		if w, err = startWatch(watch, prefix); err != nil {
			return err
		}
		defer w.conn.Close()
	}
	conns := make([]net.Conn, clients)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		conns[i] = c
	}
	var errs atomic.Int64
	recs := make([]writes, clients)
	start := time.Now()
	end := start.Add(dur)
	var wg sync.WaitGroup
	var interval time.Duration
	if rate > 0 {
		interval = time.Duration(int64(time.Second) * int64(clients) / int64(rate))
	}
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rd := bufio.NewReader(conns[c])
			var req []byte
			next := start.Add(time.Duration(c) * interval / time.Duration(clients))
			for i := 0; ; i++ {
				if interval > 0 {
					if d := time.Until(next); d > 0 {
						time.Sleep(d) // pacing the load, not synchronising
					}
					next = next.Add(interval)
				}
				if time.Now().After(end) {
					return
				}
				k := prefix + ":" + strconv.Itoa(c) + ":" + strconv.Itoa(i)
				req = append(req[:0], "*3\r\n$3\r\nSET\r\n$"...)
				req = strconv.AppendInt(req, int64(len(k)), 10)
				req = append(req, "\r\n"...)
				req = append(req, k...)
				req = append(req, "\r\n$"...)
				req = strconv.AppendInt(req, int64(len(value)), 10)
				req = append(req, "\r\n"+value+"\r\n"...)
				t0 := time.Since(start)
				_, err := conns[c].Write(req)
				var line string
				if err == nil {
					line, err = rd.ReadString('\n')
				}
				t1 := time.Since(start)
				if err != nil {
					errs.Add(1)
					return // the connection is gone
				}
				ack := int64(t1)
				if !strings.HasPrefix(line, "+") {
					errs.Add(1)
					ack = 0
				}
				recs[c].sent = append(recs[c].sent, int64(t0))
				recs[c].ack = append(recs[c].ack, ack)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var acks []time.Duration
	for _, r := range recs {
		for i, a := range r.ack {
			if a > 0 {
				acks = append(acks, time.Duration(a-r.sent[i]))
			}
		}
	}
	total := int64(len(acks))
	fmt.Printf("written %d in %.2fs: %.0f writes/s acked (%d errors); ack p50 %.2f ms, p99 %.2f ms\n", total, elapsed.Seconds(),
		float64(total)/elapsed.Seconds(), errs.Load(), quantile(acks, 0.5), quantile(acks, 0.99))
	if w == nil {
		return nil
	}
	// Wait for the other DC to apply everything (at most 60 s), then stop the collector.
	deadline := time.Now().Add(60 * time.Second)
	for w.count.Load() < total && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling the count with a deadline
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	off := int64(start.Sub(w.base)) // the watcher's times are after base, the writers' after start
	var lags []time.Duration
	var last int64
	for c, r := range recs {
		for i, t0 := range r.sent {
			if t, ok := w.recv[writeID(c, i)]; ok && r.ack[i] > 0 {
				at := t - off
				lags = append(lags, time.Duration(at-t0))
				last = max(last, at)
			}
		}
	}
	if len(lags) == 0 {
		return fmt.Errorf("no write was seen applied in the other DC")
	}
	if series := os.Getenv("XDCLOAD_SERIES"); series != "" {
		if err := writeSeries(series+"."+prefix, recs, w.recv, off); err != nil {
			return err
		}
	}
	q := func(p float64) float64 { return quantile(lags, p) }
	lastAt := time.Duration(last).Seconds()
	fmt.Printf("applied in the other DC: %d of %d; lag p50 %.2f ms, p99 %.2f ms, max %.2f ms; all applied %.2fs after the start: %.0f writes/s sustained across DCs\n",
		len(lags), total, q(0.5), q(0.99), q(1), lastAt, float64(len(lags))/lastAt)
	return nil
}

// writeID names client c's i-th write (its key is prefix:c:i) in the watcher's record.
func writeID(c, i int) uint64 { return uint64(c)<<32 | uint64(i) }

// watcher follows the other DC's keyspace notifications of SET and notes when each of this
// run's keys arrived (nanoseconds after base), by writeID.
type watcher struct {
	base  time.Time
	conn  net.Conn
	count atomic.Int64
	mu    sync.Mutex
	recv  map[uint64]int64
}

func startWatch(addr, prefix string) (*watcher, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	w := &watcher{base: time.Now(), conn: c, recv: make(map[uint64]int64, 1<<16)}
	rd := bufio.NewReaderSize(c, 1<<16)
	if _, err := fmt.Fprint(c, "*4\r\n$6\r\nCONFIG\r\n$3\r\nSET\r\n$22\r\nnotify-keyspace-events\r\n$2\r\nE$\r\n"+
		"*2\r\n$9\r\nSUBSCRIBE\r\n$18\r\n__keyevent@0__:set\r\n"); err != nil {
		c.Close()
		return nil, err
	}
	if line, err := rd.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
		c.Close()
		return nil, fmt.Errorf("CONFIG SET notify-keyspace-events: %q %v", line, err)
	}
	if m, err := readArray(rd); err != nil || len(m) != 3 || m[0] != "subscribe" {
		c.Close()
		return nil, fmt.Errorf("SUBSCRIBE: %q %v", m, err)
	}
	go func() {
		for {
			m, err := readArray(rd)
			if err != nil {
				return // closed at the end of the run
			}
			now := int64(time.Since(w.base))
			if len(m) != 3 || m[0] != "message" || !strings.HasPrefix(m[2], prefix+":") {
				continue
			}
			f := strings.Split(m[2][len(prefix)+1:], ":")
			if len(f) != 2 {
				continue
			}
			cl, err1 := strconv.Atoi(f[0])
			i, err2 := strconv.Atoi(f[1])
			if err1 != nil || err2 != nil {
				continue
			}
			k := writeID(cl, i)
			w.mu.Lock()
			if _, seen := w.recv[k]; !seen {
				w.recv[k] = now
				w.count.Add(1)
			}
			w.mu.Unlock()
		}
	}()
	return w, nil
}

// readArray reads one RESP array of bulk strings.
func readArray(rd *bufio.Reader) ([]string, error) {
	line, err := rd.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || line[0] != '*' {
		return nil, fmt.Errorf("unexpected reply %q", line)
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, n)
	for range n {
		line, err := rd.ReadString('\n')
		if err != nil {
			return nil, err
		}
		switch {
		case len(line) > 1 && line[0] == '$':
			size, err := strconv.Atoi(strings.TrimSpace(line[1:]))
			if err != nil {
				return nil, err
			}
			b := make([]byte, size+2)
			if _, err := io.ReadFull(rd, b); err != nil {
				return nil, err
			}
			out = append(out, string(b[:size]))
		case len(line) > 1 && line[0] == ':':
			out = append(out, strings.TrimSpace(line[1:]))
		default:
			return nil, fmt.Errorf("unexpected element %q", line)
		}
	}
	return out, nil
}

// quantile sorts d and returns its quantile p in milliseconds (0 for none).
func quantile(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return float64(d[int(p*float64(len(d)-1))].Microseconds()) / 1000
}

// writeSeries writes, for a run with XDCLOAD_SERIES=FILE (to FILE.PREFIX), one line per write applied in the
// other DC: when it was sent (ms after the start), how long its ack took and its lag (ms),
// sorted by send time, to tell stalls (lags clustered in time) from a spread.
func writeSeries(path string, recs []writes, recv map[uint64]int64, off int64) error {
	type row struct{ at, ack, lag float64 }
	var rows []row
	ms := func(ns int64) float64 { return float64(ns/1000) / 1000 }
	for c, r := range recs {
		for i, t0 := range r.sent {
			t, ok := recv[writeID(c, i)]
			if !ok || r.ack[i] == 0 {
				continue
			}
			rows = append(rows, row{ms(t0), ms(r.ack[i] - t0), ms(t - off - t0)})
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].at < rows[j].at })
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "%.3f %.3f %.3f\n", r.at, r.ack, r.lag)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
