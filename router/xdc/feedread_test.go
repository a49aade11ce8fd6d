package xdc

import (
	"context"
	"net"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/internal/testredis"
)

// The feed connection reads back exactly what was appended to the feed, binary-safe, as an
// ACL user in another database, entry ids in order, including field values larger than its
// read buffer and repeated field names.
func TestFeedConnReadsWhatWasAppended(t *testing.T) {
	ctx := context.Background()
	s := testredis.Start(t)
	admin := client(t, s)
	const pw = "feed-secret-Pw"
	if err := admin.Do(ctx, "ACL", "SETUSER", "feeder", "on", ">"+pw, "~*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	src := redis.NewClient(&redis.Options{Addr: s.Addr, Username: "feeder", Password: pw, DB: 3, Protocol: 2})
	t.Cleanup(func() { _ = src.Close() })
	big := strings.Repeat("x", 150<<10) // over the connection's 64 KiB read buffer
	want := [][]string{
		{"o", OutboxKey(7)},
		{"o", OutboxKey(8), "p", "", "i", "5-0", "dc", "dc1", "t", "99", "n", "1", "3", "SET", "k\r\n\x00", ""},
		{"o", OutboxKey(9), "v", big, "v", "\r\n$3\r\n"},
	}
	var ids []string
	for _, f := range want {
		id, err := src.XAdd(ctx, &redis.XAddArgs{Stream: DirtyKey, Values: toAny(f)}).Result()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if n := admin.XLen(ctx, DirtyKey).Val(); n != 0 {
		t.Fatalf("the feed was written in db 0 (%d entries), not db 3", n)
	}
	fc, err := dialFeed(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	defer fc.close()
	for round := range 2 { // twice on one connection: nothing is left unread between replies
		msgs, err := fc.xread(ctx, "0-0")
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if len(msgs) != len(want) {
			t.Fatalf("round %d: %d entries, want %d", round, len(msgs), len(want))
		}
		for i, m := range msgs {
			if m.id != ids[i] || !reflect.DeepEqual(m.fields, want[i]) {
				t.Fatalf("round %d entry %d: %s %.80q, want %s %.80q", round, i, m.id, m.fields, ids[i], want[i])
			}
		}
	}
	msgs, err := fc.xread(ctx, ids[1])
	if err != nil || len(msgs) != 1 || msgs[0].id != ids[2] {
		t.Fatalf("after %s: %v %v, want the last entry alone", ids[1], msgs, err)
	}
}

// A wrong password fails the dial with the server's error and without the password; a read
// blocked on an empty feed returns as soon as its context ends.
func TestFeedConnAuthAndCancel(t *testing.T) {
	ctx := context.Background()
	s := testredis.Start(t, testredis.WithPassword("right-pw"))
	bad := redis.NewClient(&redis.Options{Addr: s.Addr, Password: "wrong-secret-pw"})
	t.Cleanup(func() { _ = bad.Close() })
	if _, err := dialFeed(ctx, bad); err == nil || strings.Contains(err.Error(), "wrong-secret-pw") {
		t.Fatalf("dial with a wrong password: %v", err)
	}
	good := redis.NewClient(&redis.Options{Addr: s.Addr, Password: "right-pw"})
	t.Cleanup(func() { _ = good.Close() })
	fc, err := dialFeed(ctx, good)
	if err != nil {
		t.Fatal(err)
	}
	defer fc.close()
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := fc.xread(cctx, "$")
		done <- err
	}()
	// Cancel once the server has the read blocked.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(good.Info(ctx, "clients").Val(), "blocked_clients:1") {
		if time.Now().After(deadline) {
			t.Fatal("the feed read never blocked on the server")
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a cancelled read returned no error")
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("the cancelled read took %v to return", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled read did not return")
	}
}

// BenchmarkFeedRead compares reading a full feed reply (4,096 WRITE-sized entries) through
// go-redis, as follow did until session 17, with the feed connection: this process's CPU and
// allocations per entry (the server's work is not counted). `go test -run '^$' -bench FeedRead -benchmem ./router/xdc/`.
func BenchmarkFeedRead(b *testing.B) {
	ctx := context.Background()
	s := testredis.Start(b)
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	b.Cleanup(func() { _ = c.Close() })
	value := strings.Repeat("v", 64)
	p := c.Pipeline()
	for i := range dirtyCount {
		k := "key:" + strconv.Itoa(i)
		f := []string{"o", OutboxKey(i), "p", strconv.Itoa(i) + "-0", "i", strconv.Itoa(i+1) + "-0", "dc", "dc1", "t", strconv.Itoa(i * 4096), "n", "1", "6", "~s", k, "", "", value, "-1", ""}
		p.XAdd(ctx, &redis.XAddArgs{Stream: DirtyKey, Values: toAny(f)})
	}
	if _, err := p.Exec(ctx); err != nil {
		b.Fatal(err)
	}
	b.Run("go-redis", func(b *testing.B) {
		cpu0 := processCPU()
		for range b.N {
			res, err := c.Do(ctx, "XREAD", "COUNT", dirtyCount, "STREAMS", DirtyKey, "0-0").Result()
			if err != nil {
				b.Fatal(err)
			}
			if n := countEntries(res); n != dirtyCount {
				b.Fatalf("%d entries", n)
			}
		}
		reportCPU(b, cpu0, dirtyCount)
	})
	b.Run("feedConn", func(b *testing.B) {
		fc, err := dialFeed(ctx, c)
		if err != nil {
			b.Fatal(err)
		}
		defer fc.close()
		cpu0 := processCPU()
		for range b.N {
			msgs, err := fc.xread(ctx, "0-0")
			if err != nil || len(msgs) != dirtyCount {
				b.Fatalf("%d entries: %v", len(msgs), err)
			}
		}
		reportCPU(b, cpu0, dirtyCount)
	})
}

// processCPU is this process's CPU time so far (user and system): the node's side of a read,
// not the server's.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the process's CPU per entry since cpu0.
func reportCPU(b *testing.B, cpu0 time.Duration, perOp int) {
	b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N*perOp), "cpu-ns/entry")
}

// countEntries counts the entries of a go-redis XREAD reply (RESP3 map or RESP2 array), turning
// each field into a string as follow did.
func countEntries(raw any) int {
	var entries []any
	switch v := raw.(type) {
	case map[any]any:
		for _, e := range v {
			entries, _ = e.([]any)
		}
	case []any:
		if st, ok := v[0].([]any); ok && len(st) == 2 {
			entries, _ = st[1].([]any)
		}
	}
	n := 0
	for _, e := range entries {
		pair := e.([]any)
		vals := pair[1].([]any)
		fields := make([]string, len(vals))
		for i, v := range vals {
			fields[i], _ = v.(string)
		}
		n += len(fields) & 0 // keep the conversion
		n++
	}
	return n
}

// A reply that is not what Redis sends (a server that is not Redis, a corrupted stream) is an
// error, and a length out of all proportion is never allocated. A stand-in server, since a
// real redis-server cannot be made to send these.
func TestFeedConnRefusesMalformedReplies(t *testing.T) {
	key := "$" + strconv.Itoa(len(DirtyKey)) + "\r\n" + DirtyKey + "\r\n"
	cases := []struct{ name, reply, want string }{
		{"error reply", "-ERR boom\r\n", "boom"},
		{"not an array", "+OK\r\n", "unexpected reply"},
		{"entries past the count", "*1\r\n*2\r\n" + key + "*999999999\r\n", "entries for a read"},
		{"huge bulk", "*1\r\n*2\r\n" + key + "*1\r\n*2\r\n$2000000000\r\n", "bulk string of"},
		{"fields past the bound", "*1\r\n*2\r\n" + key + "*1\r\n*2\r\n$3\r\n1-0\r\n*99999999\r\n", "fields"},
		{"bad length", "*x\r\n", "bad length"},
		{"no CRLF", "*1\n", "malformed"},
		{"truncated", "*1\r\n*2\r\n" + key + "*1\r\n*2\r\n$3\r\n1-", "EOF"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				buf := make([]byte, 4096)
				_, _ = c.Read(buf) // the XREAD
				_, _ = c.Write([]byte(tc.reply))
			}()
			src := redis.NewClient(&redis.Options{Addr: ln.Addr().String()})
			defer src.Close()
			fc, err := dialFeed(context.Background(), src)
			if err != nil {
				t.Fatal(err)
			}
			defer fc.close()
			msgs, err := fc.xread(context.Background(), "0-0")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("reply %q: %v, %v; want an error with %q", tc.reply, msgs, err, tc.want)
			}
		})
	}
}
