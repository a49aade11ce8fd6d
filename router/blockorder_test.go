package router

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// arrivalGap separates the two clients' sends. Bytes that reach the node in the same
// instant (one epoll wake-up) are read by their goroutines in an order the node cannot tell
// from arrival (Go's netpoller wakes them last-ready first): router/DESIGN.md, "Blocking
// order", gives the figures.
const arrivalGap = 200 * time.Microsecond

// TestBlockingArrivalOrder repeats Redis's "BRPOPLPUSH with multiple blocked clients" race 30
// times: client A sends BRPOPLPUSH src tA 0 (tA holds a string), client B the same on tB a
// moment later; once both wait, one element is pushed. Redis serves A first (WRONGTYPE, the
// element stays), then B gets it. Through a node, A's session dials its dedicated connection
// first while B's already has one, the race that let B overtake A and left A blocked forever.
// The test counts clients still blocked and replies out of order: both must be 0.
func TestBlockingArrivalOrder(t *testing.T) {
	tc := startCluster(t, 1, 1, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	c := tc.client(0)
	const tries = 30
	stuck, outOfOrder := 0, 0
	for i := 0; i < tries; i++ {
		src, ta, tb := fmt.Sprintf("{bo%d}src", i), fmt.Sprintf("{bo%d}ta", i), fmt.Sprintf("{bo%d}tb", i)
		if err := c.Set(ctx, ta, "nolist", 0).Err(); err != nil {
			t.Fatal(err)
		}
		a, b := dialRaw(t, tc.addrs[0]), dialRaw(t, tc.addrs[0])
		// B's session already has its dedicated connection; A's must dial one.
		b.send(cmdRaw("BLPOP", fmt.Sprintf("{bo%d}warm", i), "0.01"))
		if l := b.line(); l != "*-1" {
			t.Fatalf("warm-up BLPOP: %q", l)
		}
		a.send(cmdRaw("BRPOPLPUSH", src, ta, "0"))
		time.Sleep(arrivalGap)
		b.send(cmdRaw("BRPOPLPUSH", src, tb, "0"))
		waitFor(t, "both clients blocked", func() bool {
			return strings.Contains(c.Info(ctx, "clients").Val(), "\r\nblocked_clients:2\r\n")
		})
		if err := c.LPush(ctx, src, "foo").Err(); err != nil {
			t.Fatal(err)
		}
		ra, okA := replyWithin(a, 2*time.Second)
		rb, okB := replyWithin(b, 2*time.Second)
		switch {
		case !okA || !okB:
			stuck++
			t.Logf("try %d: A answered %q (%v), B %q (%v)", i, ra, okA, rb, okB)
		case !strings.HasPrefix(ra, "-WRONGTYPE") || rb != "$3 foo":
			outOfOrder++
			t.Logf("try %d: A answered %q, B %q", i, ra, rb)
		}
		a.nc.Close()
		b.nc.Close()
	}
	t.Logf("%d tries: %d stuck, %d out of order", tries, stuck, outOfOrder)
	if stuck != 0 || outOfOrder != 0 {
		t.Fatalf("%d of %d tries left a client blocked, %d served out of order", stuck, tries, outOfOrder)
	}
}

// cmdRaw encodes a command as RESP.
func cmdRaw(args ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.String()
}

// replyWithin reads one reply of a simple shape (a status, an error, a null, or a bulk string
// rendered "$n value") within d; false when none came.
func replyWithin(r *rawConn, d time.Duration) (string, bool) {
	_ = r.nc.SetReadDeadline(time.Now().Add(d))
	line, err := readLine(r.br)
	if err != nil {
		return "", false
	}
	if strings.HasPrefix(line, "$") && line != "$-1" {
		v, err := readLine(r.br)
		if err != nil {
			return "", false
		}
		line += " " + v
	}
	return line, true
}

func readLine(br *bufio.Reader) (string, error) {
	l, err := br.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}
