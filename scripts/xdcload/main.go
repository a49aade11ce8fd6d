// Command xdcload measures cross-DC replication for make bench: it writes SETs through a node
// of one DC (at a fixed rate, or as fast as -clients can) and watches another DC's Redis
// master with keyspace notifications, so each key's lag is the time from the write being sent
// to its apply in the other DC.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
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

func run(addr, watch string, rate int, dur time.Duration, clients int, prefix string) error {
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: clients, DisableIdentity: true})
	defer c.Close()
	var sent sync.Map  // key -> time sent
	var acked sync.Map // key -> time acked (with XDCLOAD_SERIES only)
	series := os.Getenv("XDCLOAD_SERIES")
	var mu sync.Mutex
	recv := map[string]time.Time{}
	if watch != "" {
		w := redis.NewClient(&redis.Options{Addr: watch, DisableIdentity: true})
		defer w.Close()
		if err := w.ConfigSet(ctx, "notify-keyspace-events", "E$").Err(); err != nil {
			return err
		}
		ps := w.Subscribe(ctx, "__keyevent@0__:set")
		defer ps.Close()
		if _, err := ps.Receive(ctx); err != nil {
			return err
		}
		go func() {
			for m := range ps.Channel(redis.WithChannelSize(1 << 16)) {
				if strings.HasPrefix(m.Payload, prefix) {
					mu.Lock()
					recv[m.Payload] = time.Now()
					mu.Unlock()
				}
			}
		}()
	}
	var n atomic.Int64
	var errs atomic.Int64
	start := time.Now()
	end := start.Add(dur)
	var wg sync.WaitGroup
	var interval time.Duration
	if rate > 0 {
		interval = time.Duration(int64(time.Second) * int64(clients) / int64(rate))
	}
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := start.Add(time.Duration(w) * interval / time.Duration(clients))
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
				k := prefix + ":" + strconv.Itoa(w) + ":" + strconv.Itoa(i)
				sent.Store(k, time.Now())
				if err := c.Set(ctx, k, "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv", 0).Err(); err != nil {
					errs.Add(1)
					continue
				}
				if series != "" {
					acked.Store(k, time.Now())
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	total := n.Load()
	fmt.Printf("written %d in %.2fs: %.0f writes/s acked (%d errors)\n", total, elapsed.Seconds(), float64(total)/elapsed.Seconds(), errs.Load())
	if watch == "" {
		return nil
	}
	// Wait for the other DC to apply everything (at most 60 s), then stop the collector.
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		got := int64(len(recv))
		mu.Unlock()
		if got >= total {
			break
		}
		time.Sleep(10 * time.Millisecond) // polling the count with a deadline
	}
	mu.Lock()
	defer mu.Unlock()
	var lags []time.Duration
	var last time.Time
	sent.Range(func(k, v any) bool {
		if t, ok := recv[k.(string)]; ok {
			lags = append(lags, t.Sub(v.(time.Time)))
			if t.After(last) {
				last = t
			}
		}
		return true
	})
	if len(lags) == 0 {
		return fmt.Errorf("no write was seen applied in the other DC")
	}
	if series != "" {
		if err := writeSeries(series+"."+prefix, start, &sent, &acked, recv); err != nil {
			return err
		}
	}
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	q := func(p float64) float64 { return float64(lags[int(p*float64(len(lags)-1))].Microseconds()) / 1000 }
	fmt.Printf("applied in the other DC: %d of %d; lag p50 %.2f ms, p99 %.2f ms, max %.2f ms; all applied %.2fs after the start: %.0f writes/s sustained across DCs\n",
		len(lags), total, q(0.5), q(0.99), q(1), last.Sub(start).Seconds(), float64(len(lags))/last.Sub(start).Seconds())
	return nil
}

// writeSeries writes, for a run with XDCLOAD_SERIES=FILE (to FILE.PREFIX), one line per write applied in the
// other DC: when it was sent (ms after the start), how long its ack took and its lag (ms),
// sorted by send time, to tell stalls (lags clustered in time) from a spread.
func writeSeries(path string, start time.Time, sent, acked *sync.Map, recv map[string]time.Time) error {
	type row struct{ at, ack, lag float64 }
	var rows []row
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	sent.Range(func(k, v any) bool {
		t0 := v.(time.Time)
		r, ok := recv[k.(string)]
		if !ok {
			return true
		}
		a := -1.0
		if t1, ok := acked.Load(k); ok {
			a = ms(t1.(time.Time).Sub(t0))
		}
		rows = append(rows, row{ms(t0.Sub(start)), a, ms(r.Sub(t0))})
		return true
	})
	sort.Slice(rows, func(i, j int) bool { return rows[i].at < rows[j].at })
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "%.3f %.3f %.3f\n", r.at, r.ack, r.lag)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
