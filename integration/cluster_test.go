package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testredis"
	"github.com/redraft/redraft/node"
)

// leaderOf returns the node the cluster reports as leader, polling until one is known.
func leaderOf(t *testing.T, c *Cluster, via *proc) *proc {
	t.Helper()
	var leader *proc
	waitFor(t, 15*time.Second, "a leader", func() error {
		st := via.Status()
		if st.Leader == "" {
			return fmt.Errorf("no leader yet")
		}
		leader = c.Nodes[st.Leader]
		if leader == nil {
			return fmt.Errorf("leader %q is not one of ours", st.Leader)
		}
		return nil
	})
	return leader
}

func TestJoinThreeNodes(t *testing.T) {
	c := NewCluster(t)
	nodes := c.Start3("dc1")
	for _, p := range nodes {
		waitFor(t, 10*time.Second, p.ID+" sees 3 members", func() error {
			if n := len(p.Status().Members); n != 3 {
				return fmt.Errorf("%d members", n)
			}
			return nil
		})
		st := p.Status()
		leaders := 0
		for _, m := range st.Members {
			if m.Suffrage != "voter" {
				t.Errorf("%s: member %s suffrage %q, want voter", p.ID, m.ID, m.Suffrage)
			}
			if m.Role == "Leader" {
				leaders++
			}
		}
		if leaders != 1 {
			t.Errorf("%s: %d leaders in status, want 1", p.ID, leaders)
		}
	}
	// Joining again with the same command line is a no-op.
	n3 := nodes[2]
	n3.Stop()
	n3.Start(nodes[0].Peer)
	n3.WaitHealthy(30 * time.Second)
	if st := nodes[0].Status(); len(st.Members) != 3 {
		t.Fatalf("after rejoin: %d members, want 3", len(st.Members))
	}
	// The CLI shows the members.
	out := nodes[1].MustCLI("node", "list")
	for _, id := range []string{"n1", "n2", "n3"} {
		if !strings.Contains(out, id) {
			t.Errorf("node list lacks %s:\n%s", id, out)
		}
	}
}

func TestAdminChangesForwardedAndValidated(t *testing.T) {
	c := NewCluster(t)
	nodes := c.Start3("dc1")
	leader := leaderOf(t, c, nodes[0])
	var follower *proc
	for _, p := range nodes {
		if p != leader {
			follower = p
			break
		}
	}
	follower.MustCLI("group", "add", "--dc", "dc1", "--id", "g1", "--master", "127.0.0.1:7001")
	follower.MustCLI("group", "add", "--dc", "dc1", "--id", "g2", "--master", "127.0.0.1:7002", "--replica", "127.0.0.1:7003")
	follower.MustCLI("slots", "assign", "--dc", "dc1", "--group", "g1", "0-8191")
	follower.MustCLI("slots", "assign", "--dc", "dc1", "--group", "g2", "8192-16383")

	// Contradicting the state gives clear errors.
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"group", "add", "--dc", "dc1", "--id", "g1", "--master", "127.0.0.1:7009"}, "already exists"},
		{[]string{"group", "add", "--dc", "dc1", "--id", "g3", "--master", "127.0.0.1:7001"}, "already belongs to group g1"},
		{[]string{"slots", "assign", "--dc", "dc1", "--group", "g1", "9000"}, "already belongs to group g2"},
		{[]string{"slots", "assign", "--dc", "dc1", "--group", "g1", "16384"}, "outside"},
		{[]string{"group", "remove", "--dc", "dc1", "--id", "g2"}, "still serves 8192 slots"},
		{[]string{"config", "set", "max_voterz", "3"}, "unknown setting"},
		{[]string{"node", "remove", "n9"}, "not a member"},
	}
	for _, tc := range cases {
		out, err := follower.CLI(tc.args...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("redraft %s: err=%v, output %q; want an error containing %q", strings.Join(tc.args, " "), err, out, tc.want)
		}
	}
	// --force reassigns an owned slot.
	follower.MustCLI("slots", "assign", "--dc", "dc1", "--group", "g1", "--force", "9000")
	out := nodes[2].MustCLI("--json", "slots", "show")
	var sl node.SlotsReply
	if err := json.Unmarshal([]byte(out), &sl); err != nil {
		t.Fatalf("slots show --json: %v\n%s", err, out)
	}
	if got := strings.Join(sl["dc1"]["g1"], " "); got != "0-8191 9000" {
		t.Errorf("g1 ranges %q, want \"0-8191 9000\"", got)
	}
	// Every node converges on the same state.
	waitFor(t, 10*time.Second, "same applied index everywhere", func() error {
		var idx []uint64
		for _, p := range nodes {
			idx = append(idx, p.Status().AppliedIndex)
		}
		if idx[0] != idx[1] || idx[1] != idx[2] {
			return fmt.Errorf("applied indexes %v", idx)
		}
		return nil
	})
	// Metrics are exposed.
	out2 := metrics(t, nodes[1])
	for _, want := range []string{"redraft_raft_applied_index", `redraft_fsm_commands_applied_total{dc="dc1",node="n2",type="assign_slots"} 3`, "redraft_raft_term", "redraft_client_panics_total 0"} {
		if !strings.Contains(out2, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestLeaderKilledAdminKeepsWorking(t *testing.T) {
	c := NewCluster(t)
	nodes := c.Start3("dc1")
	leader := leaderOf(t, c, nodes[0])
	leader.Kill9()
	var survivor *proc
	for _, p := range nodes {
		if p != leader {
			survivor = p
			break
		}
	}
	start := time.Now()
	waitFor(t, 10*time.Second, "an admin change through a survivor", func() error {
		_, err := survivor.CLI("group", "add", "--dc", "dc1", "--id", "gx", "--master", "127.0.0.1:7100")
		if err != nil {
			// A retried add may have committed before its answer was lost.
			if st := survivor.Status(); len(st.DCs) > 0 && len(st.DCs[0].Groups) == 1 {
				return nil
			}
		}
		return err
	})
	t.Logf("admin change accepted %v after the leader was killed", time.Since(start).Round(time.Millisecond))
	// The old leader restarts and catches up.
	leader.Start(survivor.Peer)
	leader.WaitHealthy(30 * time.Second)
	waitFor(t, 10*time.Second, "restarted node sees the change", func() error {
		st := leader.Status()
		for _, d := range st.DCs {
			for _, g := range d.Groups {
				if g.ID == "gx" {
					return nil
				}
			}
		}
		return fmt.Errorf("group gx not on %s yet", leader.ID)
	})
}

func TestRestartEveryNodeKeepsState(t *testing.T) {
	c := NewCluster(t)
	nodes := c.Start3("dc1")
	nodes[0].MustCLI("group", "add", "--dc", "dc1", "--id", "g1", "--master", "127.0.0.1:7001")
	nodes[0].MustCLI("slots", "assign", "--dc", "dc1", "--group", "g1", "0-100")
	nodes[0].MustCLI("config", "set", "write_consistency", "dc_quorum")
	before := nodes[0].Status()
	for _, p := range nodes {
		p.Kill9()
	}
	nodes[0].Start()
	nodes[1].Start(nodes[0].Peer)
	nodes[2].Start(nodes[0].Peer)
	for _, p := range nodes {
		p.WaitHealthy(30 * time.Second)
	}
	for _, p := range nodes {
		waitFor(t, 10*time.Second, p.ID+" state restored", func() error {
			st := p.Status()
			if st.AppliedIndex < before.AppliedIndex {
				return fmt.Errorf("applied %d < %d", st.AppliedIndex, before.AppliedIndex)
			}
			if len(st.DCs) != 1 || len(st.DCs[0].Groups) != 1 || strings.Join(st.DCs[0].Groups[0].Ranges, " ") != "0-100" {
				return fmt.Errorf("dcs %+v", st.DCs)
			}
			if st.Settings["write_consistency"] != fsm.DCQuorum {
				return fmt.Errorf("write_consistency %q", st.Settings["write_consistency"])
			}
			if len(st.Members) != 3 {
				return fmt.Errorf("%d members", len(st.Members))
			}
			return nil
		})
	}
}

func TestRemoveNodeStopsIt(t *testing.T) {
	c := NewCluster(t)
	nodes := c.Start3("dc1")
	out := nodes[0].MustCLI("node", "remove", "n3")
	if !strings.Contains(out, "removed") {
		t.Fatalf("remove output: %s", out)
	}
	n3 := nodes[2]
	select {
	case <-n3.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("removed node n3 still running")
	}
	if !strings.Contains(n3.Log(), "removed from the cluster") {
		t.Errorf("n3 did not say why it stopped:\n%s", n3.Log())
	}
	if code := n3.cmd.ProcessState.ExitCode(); code != 3 {
		t.Errorf("n3 exit code %d, want 3", code)
	}
	st := nodes[1].Status()
	if len(st.Members) != 2 {
		t.Fatalf("%d members after remove, want 2", len(st.Members))
	}
	// Restarted with its old data dir, the removed node refuses to serve again.
	n3.Start(nodes[0].Peer)
	select {
	case <-n3.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("removed node came back")
	}
	if !strings.Contains(n3.Log(), "was removed") {
		t.Errorf("restarted removed node did not say why:\n%s", n3.Log())
	}
}

func TestFourthNodeJoinsPastMaxVotersAndVotersSpread(t *testing.T) {
	c := NewCluster(t)
	nodes := c.Start3("dc1", "--max-voters", "3")
	nodes[0].MustCLI("group", "add", "--dc", "dc1", "--id", "g1", "--master", "127.0.0.1:7001")
	n4 := c.NewNode("n4", "dc2", "--max-voters", "3")
	n4.Start(nodes[1].Peer, nodes[2].Peer)
	n4.WaitHealthy(30 * time.Second)
	// n4 joins past max_voters as a non-voter; the leader then spreads the voters over the two
	// DCs: n4 votes, one of dc1's three does not.
	var nonvoter string
	waitFor(t, 15*time.Second, "voters spread over dc1 and dc2", func() error {
		st := n4.Status()
		if len(st.Members) != 4 {
			return fmt.Errorf("%d members, want 4", len(st.Members))
		}
		voters, n4votes := 0, false
		nonvoter = ""
		for _, m := range st.Members {
			switch {
			case m.Suffrage == "voter":
				voters++
				n4votes = n4votes || m.ID == "n4"
			case m.ID != "n4":
				nonvoter = m.ID
			}
		}
		if voters != 3 || !n4votes || nonvoter == "" {
			return fmt.Errorf("members %+v", st.Members)
		}
		return nil
	})
	if st := n4.Status(); len(st.DCs) != 2 {
		t.Errorf("dcs %d, want 2 (dc1 and n4's dc2)", len(st.DCs))
	}
	// Admin changes made through n4 are forwarded to the leader.
	n4.MustCLI("group", "add", "--dc", "dc2", "--id", "g1", "--master", "127.0.0.1:7201")
	// Removing a dc1 voter (not the leader) promotes dc1's non-voter.
	var leader, victim *proc
	waitFor(t, 10*time.Second, "a leader", func() error {
		for _, p := range nodes {
			if p.Status().Leader == p.ID {
				leader = p
			}
		}
		if leader == nil {
			return fmt.Errorf("no dc1 leader")
		}
		return nil
	})
	for _, p := range nodes {
		if p != leader && p.ID != nonvoter {
			victim = p
		}
	}
	leader.MustCLI("node", "remove", victim.ID)
	waitFor(t, 15*time.Second, nonvoter+" promoted to voter", func() error {
		for _, m := range leader.Status().Members {
			if m.ID == nonvoter && m.Suffrage == "voter" {
				return nil
			}
		}
		return fmt.Errorf("%s not a voter yet", nonvoter)
	})
}

func TestDataDirOfAnotherNodeRefused(t *testing.T) {
	c := NewCluster(t)
	n1 := c.NewNode("n1", "dc1")
	n1.Start()
	n1.WaitHealthy(30 * time.Second)
	n1.Stop()
	impostor := c.NewNode("n9", "dc1")
	impostor.Data = n1.Data
	impostor.Start()
	select {
	case <-impostor.done:
	case <-time.After(20 * time.Second):
		t.Fatal("a node started on another node's data dir")
	}
	if !strings.Contains(impostor.Log(), `belongs to node "n1"`) {
		t.Errorf("no clear error:\n%s", impostor.Log())
	}
}

func TestConfigFileErrorsNameKeyAndFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(path, []byte("id: n1\ndatacenter: dc1\nlisen: 127.0.0.1:6380\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := (&proc{t: t}).cliNoAdmin("node", "start", "--config", path)
	if err == nil {
		t.Fatalf("started with a bad config:\n%s", out)
	}
	if !strings.Contains(out, "lisen") || !strings.Contains(out, path) {
		t.Errorf("error does not name the key and file:\n%s", out)
	}
}

func (p *proc) cliNoAdmin(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := execCommandContext(ctx, binary, args...).CombinedOutput()
	return string(out), err
}

// TestDataThroughEveryNode writes through one node and reads through the others, with real
// redis-server groups and redis-cli as the client.
func TestDataThroughEveryNode(t *testing.T) {
	r1, r2 := testredis.Start(t), testredis.Start(t)
	c := NewCluster(t)
	nodes := c.Start3("dc1")
	nodes[0].MustCLI("group", "add", "--dc", "dc1", "--id", "g1", "--master", r1.Addr)
	nodes[0].MustCLI("group", "add", "--dc", "dc1", "--id", "g2", "--master", r2.Addr)
	nodes[1].MustCLI("slots", "assign", "--dc", "dc1", "--group", "g1", "0-8191")
	nodes[2].MustCLI("slots", "assign", "--dc", "dc1", "--group", "g2", "8192-16383")
	cli := func(p *proc, args ...string) string {
		host, port, _ := strings.Cut(p.Listen, ":")
		out, err := exec.Command("redis-cli", append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	// Every node applies the slot table; poll until each routes.
	for _, p := range nodes {
		waitFor(t, 10*time.Second, p.ID+" routes", func() error {
			if got := cli(p, "set", "probe:"+p.ID, "1"); got != "OK" {
				return fmt.Errorf("set answered %q", got)
			}
			return nil
		})
	}
	// "foo" hashes to slot 12182 (g2), "bar" to 5061 (g1).
	if got := cli(nodes[0], "set", "foo", "v-foo"); got != "OK" {
		t.Fatalf("set foo: %q", got)
	}
	if got := cli(nodes[1], "set", "bar", "v-bar"); got != "OK" {
		t.Fatalf("set bar: %q", got)
	}
	for _, p := range nodes {
		if got := cli(p, "mget", "foo", "bar"); got != "v-foo\nv-bar" {
			t.Errorf("%s: mget foo bar = %q", p.ID, got)
		}
	}
	// The keys landed on the groups that own their slots.
	for _, tc := range []struct{ addr, key, want string }{{r2.Addr, "foo", "v-foo"}, {r1.Addr, "bar", "v-bar"}} {
		host, port, _ := strings.Cut(tc.addr, ":")
		out, _ := exec.Command("redis-cli", "-h", host, "-p", port, "get", tc.key).Output()
		if got := strings.TrimSpace(string(out)); got != tc.want {
			t.Errorf("backend %s: get %s = %q, want %q", tc.addr, tc.key, got, tc.want)
		}
	}
}
