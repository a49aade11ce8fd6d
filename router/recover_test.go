package router

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/redraft/redraft/router/command"
	"github.com/redraft/redraft/router/resp"
)

// lockedBuffer is a log sink the server's goroutines write to while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestClientPanicClosesOnlyItsConnection: a panic while serving one client answers that client
// an error after the replies its batch owed, closes its connection, releases the slots its
// batch counted, is logged with its stack (without the request's arguments) and counted in
// Stats and redraft_client_panics_total; the node keeps serving everyone else.
func TestClientPanicClosesOnlyItsConnection(t *testing.T) {
	echo := command.ByName("echo")
	orig := byID[echo.ID]
	// Swapped before the cluster starts and restored after it stops (cleanups run last first).
	byID[echo.ID] = func(c *client, spec *command.Spec, cmd resp.Command) {
		if strings.HasPrefix(string(cmd.Args[1]), "boom") {
			panic("test panic in a handler")
		}
		orig(c, spec, cmd)
	}
	t.Cleanup(func() { byID[echo.ID] = orig })
	var logs lockedBuffer
	tc := startCluster(t, 2, 1, Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	s := tc.servers[0]
	a, b := keyIn("a", 0, 2), keyIn("b", 1, 2)

	nc, err := net.Dial("tcp", tc.addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	var req []byte
	for _, args := range [][]string{{"SET", a, "1"}, {"SET", b, "2"}, {"ECHO", "boom-s3cret"}, {"SET", a, "3"}} {
		req = appendCommand(req, args)
	}
	if _, err := nc.Write(req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	var got []string
	for {
		r, err := resp.ReadReply(br, nil)
		if err != nil {
			if err != io.EOF {
				t.Errorf("after %q: %v, want the connection closed", got, err)
			}
			break
		}
		got = append(got, string(r))
	}
	want := []string{"+OK\r\n", "+OK\r\n", string(appendError(nil, errInternal))}
	if strings.Join(got, "") != strings.Join(want, "") {
		t.Errorf("replies %q, want %q then the connection closed", got, want)
	}

	c := tc.client(0)
	ctx := ctxT(t)
	if v, err := c.MGet(ctx, a, b).Result(); err != nil || v[0] != "1" || v[1] != "2" {
		t.Errorf("MGET after the panic = %v, %v; want [1 2] (the later SET not run)", v, err)
	}
	if v, err := c.Echo(ctx, "fine").Result(); err != nil || v != "fine" {
		t.Errorf("ECHO = %q, %v", v, err)
	}
	for _, k := range []string{a, b} {
		if n := s.inflight[slotOf(k)].Load(); n != 0 {
			t.Errorf("slot %d still counted in flight (%d) after the panic", slotOf(k), n)
		}
	}
	if n := s.Stats().ClientPanics; n != 1 {
		t.Errorf("Stats().ClientPanics = %d, want 1", n)
	}
	wantMetric := "# HELP redraft_client_panics_total Panics while serving a client; each closed that client's connection, nothing else.\n" +
		"# TYPE redraft_client_panics_total counter\nredraft_client_panics_total 1\n"
	if err := testutil.CollectAndCompare(s, strings.NewReader(wantMetric), "redraft_client_panics_total"); err != nil {
		t.Errorf("redraft_client_panics_total: %v", err)
	}
	log := logs.String()
	for _, w := range []string{"test panic in a handler", "stack=", "recoverClient", "command=echo"} {
		if !strings.Contains(log, w) {
			t.Errorf("log lacks %q:\n%s", w, log)
		}
	}
	if strings.Contains(log, "s3cret") {
		t.Errorf("log holds the request's arguments:\n%s", log)
	}
}
