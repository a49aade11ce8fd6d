package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testredis"
	"github.com/redraft/redraft/node"
)

// binary is the redraft binary built once for the package's tests, with -race when the tests
// themselves run with -race.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "redraft-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "redraft")
	args := []string{"build", "-o", binary}
	if raceOn {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../cmd/redraft")...)
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building redraft:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePortOn returns a port nobody listens on right now on any of the given loopback IPs (a
// node's own and its relay's, say), outside the ephemeral range, and that no other call of
// this test binary has handed out (nodes are given their ports before they bind them).
func freePortOn(t testing.TB, ips ...string) int {
	t.Helper()
	port, err := testredis.FreePortOn(ips...)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// proc is one redraft node process.
type proc struct {
	ID                        string
	DC                        string
	Listen, Peer, Admin, Data string
	Args                      []string // extra flags

	t       testing.TB
	cmd     *exec.Cmd
	log     *bytes.Buffer
	logMu   sync.Mutex
	done    chan struct{}
	exitErr error
}

// Cluster is a set of redraft node processes started by a test.
type Cluster struct {
	t     testing.TB
	dir   string
	Nodes map[string]*proc
	order []string
}

// NewCluster returns an empty cluster whose processes stop when the test ends. Each node's
// log is printed when the test failed, or always with REDRAFT_TEST_NODE_LOGS set.
func NewCluster(t testing.TB) *Cluster {
	c := &Cluster{t: t, dir: t.TempDir(), Nodes: map[string]*proc{}}
	t.Cleanup(func() {
		for _, p := range c.Nodes {
			p.kill()
		}
		if t.Failed() || os.Getenv("REDRAFT_TEST_NODE_LOGS") != "" {
			for _, id := range c.order {
				t.Logf("---- log of %s ----\n%s", id, c.Nodes[id].Log())
			}
		}
	})
	return c
}

// NewNode prepares a node with fresh loopback ports (not started).
func (c *Cluster) NewNode(id, dc string, extra ...string) *proc {
	return c.NewNodeOn("127.0.0.1", id, dc, extra...)
}

// NewNodeOn prepares a node whose three addresses are on the loopback IP ip (not started).
func (c *Cluster) NewNodeOn(ip, id, dc string, extra ...string) *proc {
	at := func() string { return net.JoinHostPort(ip, strconv.Itoa(freePortOn(c.t, ip))) }
	p := &proc{
		ID: id, DC: dc, t: c.t,
		Listen: at(), Peer: at(), Admin: at(),
		Data: filepath.Join(c.dir, id), Args: extra,
	}
	c.Nodes[id] = p
	c.order = append(c.order, id)
	return p
}

// Start starts the first node (bootstrap) or, with seeds, a joining node.
func (p *proc) Start(seeds ...string) {
	p.t.Helper()
	verb := "start"
	args := []string{"node", verb}
	if len(seeds) > 0 {
		args = []string{"node", "join", "--seed", strings.Join(seeds, ",")}
	}
	args = append(args, "--id", p.ID, "--dc", p.DC, "--listen", p.Listen, "--peer-listen", p.Peer,
		"--admin-listen", p.Admin, "--data-dir", p.Data)
	args = append(args, p.Args...)
	p.run(args...)
}

// run starts the binary with args, logging into the proc's buffer.
func (p *proc) run(args ...string) {
	p.t.Helper()
	p.logMu.Lock()
	if p.log == nil {
		p.log = &bytes.Buffer{}
	} else { // a restart: keep what the earlier run printed
		fmt.Fprintf(p.log, "---- restarted at %s ----\n", time.Now().Format(time.RFC3339Nano))
	}
	p.logMu.Unlock()
	p.cmd = exec.Command(binary, args...)
	testredis.DieWithParent(p.cmd)
	p.cmd.Stdout = p
	p.cmd.Stderr = p
	p.done = make(chan struct{})
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.ID, err)
	}
	go func() {
		p.exitErr = p.cmd.Wait()
		close(p.done)
	}()
}

// Write collects the process's output.
func (p *proc) Write(b []byte) (int, error) {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	return p.log.Write(b)
}

// Log returns what the process printed.
func (p *proc) Log() string {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	if p.log == nil {
		return ""
	}
	return p.log.String()
}

// goroutines makes the process print its goroutines (SIGQUIT, which also ends it) and returns
// how many sit in each of redraft's own functions, the busiest first: what a node that stopped
// answering was doing.
func (p *proc) goroutines() string {
	if p.cmd == nil || p.cmd.Process == nil {
		return ""
	}
	_ = p.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.Kill9()
	}
	counts := map[string]int{}
	inG, found, state := false, false, ""
	for _, line := range strings.Split(p.Log(), "\n") {
		switch {
		case strings.HasPrefix(line, "goroutine "):
			inG, found = true, false
			if i, j := strings.Index(line, "["), strings.Index(line, "]"); i > 0 && j > i {
				state, _, _ = strings.Cut(line[i+1:j], ",")
			}
		case line == "":
			inG = false
		case inG && !found && strings.Contains(line, "redraft/redraft/") && !strings.HasPrefix(line, "\t"):
			counts["["+state+"] "+strings.TrimSpace(line)]++
			found = true
		}
	}
	type kv struct {
		f string
		n int
	}
	var all []kv
	for f, n := range counts {
		all = append(all, kv{f, n})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].n > all[j].n })
	var b strings.Builder
	for i, e := range all {
		if i == 30 {
			break
		}
		fmt.Fprintf(&b, "%5d %s\n", e.n, e.f)
	}
	return b.String()
}

// Kill9 kills the process with SIGKILL and waits for it.
func (p *proc) Kill9() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and waits for a clean exit.
func (p *proc) Stop() {
	p.t.Helper()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.Kill9()
		p.t.Fatalf("%s did not stop within 15s of SIGTERM", p.ID)
	}
}

func (p *proc) kill() {
	if p.cmd != nil && p.cmd.Process != nil {
		select {
		case <-p.done:
		default:
			p.Kill9()
		}
	}
}

// Exited reports whether the process has exited.
func (p *proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Client returns an admin client for this node.
func (p *proc) Client() *node.Client { return node.NewClient(p.Admin) }

// WaitHealthy waits until the node's /healthz says ok.
func (p *proc) WaitHealthy(d time.Duration) {
	p.t.Helper()
	waitFor(p.t, d, p.ID+" healthy", func() error {
		if p.Exited() {
			return fmt.Errorf("process exited: %v\n%s", p.exitErr, p.Log())
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := p.Client().Health(ctx)
		return err
	})
}

// CLI runs the redraft CLI against this node's admin address and returns its output.
func (p *proc) CLI(args ...string) (string, error) {
	cmd := exec.Command(binary, append([]string{"--admin", p.Admin}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// MustCLI is CLI that fails the test on error.
func (p *proc) MustCLI(args ...string) string {
	p.t.Helper()
	out, err := p.CLI(args...)
	if err != nil {
		p.t.Fatalf("redraft %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// waitFor polls f until it returns nil or d passes.
func waitFor(t testing.TB, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s: %v", d, what, err)
		}
		time.Sleep(50 * time.Millisecond) // poll interval, not synchronisation
	}
}

// Start3 starts a three-node cluster in one DC and waits until every node is healthy.
func (c *Cluster) Start3(dc string, extra ...string) []*proc {
	c.t.Helper()
	n1 := c.NewNode("n1", dc, extra...)
	n1.Start()
	n1.WaitHealthy(30 * time.Second)
	n2 := c.NewNode("n2", dc, extra...)
	n3 := c.NewNode("n3", dc, extra...)
	n2.Start(n1.Peer)
	n3.Start(n1.Peer)
	n2.WaitHealthy(30 * time.Second)
	n3.WaitHealthy(30 * time.Second)
	return []*proc{n1, n2, n3}
}

// Status returns the cluster status as the node sees it.
func (p *proc) Status() node.Status {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := p.Client().Status(ctx)
	if err != nil {
		p.t.Fatalf("status from %s: %v", p.ID, err)
	}
	return st
}

// maxDataFormatEnv holds a node at or below a data format (cmd/redraft); the nodes a test
// starts inherit it from the test's environment, so t.Setenv(maxDataFormatEnv, "1") at a
// test's start runs its cluster at data format 1.
const maxDataFormatEnv = "REDRAFT_MAX_DATA_FORMAT"

// settledFormat returns the data format the nodes a test starts now settle on: the one
// maxDataFormatEnv gives, else this build's latest.
func settledFormat(t testing.TB) int {
	t.Helper()
	v := os.Getenv(maxDataFormatEnv)
	if v == "" {
		return fsm.LatestDataFormat
	}
	f, err := strconv.Atoi(v)
	if err != nil || f < fsm.FirstDataFormat || f > fsm.LatestDataFormat {
		t.Fatalf("%s=%q: want %d to %d", maxDataFormatEnv, v, fsm.FirstDataFormat, fsm.LatestDataFormat)
	}
	return f
}

// waitSettledFormat waits until every node of nodes reports the cluster at the data format
// they settle on (settledFormat), with all of nodes members and every member acting on it,
// and returns that format. A new cluster's leader raises its format one step at a time (1, 2,
// 3) within seconds of its start, and a write whose batch straddled a raise answers
// -TRYAGAIN: a test writes once it is over.
func waitSettledFormat(t testing.TB, nodes ...*proc) int {
	t.Helper()
	want := settledFormat(t)
	for _, p := range nodes {
		waitFor(t, 60*time.Second, fmt.Sprintf("%s: data format %d", p.ID, want), func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			st, err := p.Client().Status(ctx)
			if err != nil {
				return err
			}
			if st.DataFormat != want {
				return fmt.Errorf("the cluster runs data format %d (%s)", st.DataFormat, st.DataFormatWaiting)
			}
			members := map[string]bool{}
			for _, m := range st.Members {
				if m.ActsOn() != want {
					return fmt.Errorf("member %s acts on data format %d", m.ID, m.ActsOn())
				}
				members[m.ID] = true
			}
			for _, q := range nodes {
				if !members[q.ID] {
					return fmt.Errorf("%s is not a member yet", q.ID)
				}
			}
			return nil
		})
	}
	return want
}
