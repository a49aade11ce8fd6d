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

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/internal/testredis"
	"github.com/redraft/redraft/node"
)

// Distinctive secrets that must never show in any output or log.
const (
	secClientPW = "CLIENTPW-a81c3e9d2f"
	secGroupPW  = "GROUPPW-5b7e0c4a19"
	secToken    = "ADMINTOKEN-d3f96a2c71e0"
	secCluster  = "CLUSTERSECRET-19e4b7c0a5d8"
)

// cliEnv runs the CLI against p with extra environment variables.
func cliEnv(p *proc, env []string, args ...string) (string, error) {
	cmd := exec.Command(binary, append([]string{"--admin", p.Admin}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestSecurityBinary runs real nodes with an admin token, a cluster secret, a client
// password and a backend password (on a real redis-server with requirepass): the CLI works
// with the token from REDRAFT_ADMIN_TOKEN and is refused without it, clients get through with
// the password, a node without the cluster secret cannot join, and no secret appears in any
// CLI output or node log.
func TestSecurityBinary(t *testing.T) {
	backend := testredis.Start(t, testredis.WithPassword(secGroupPW))
	dir := t.TempDir()
	conf := filepath.Join(dir, "node.yaml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("groups:\n  - id: g1\n    master: %s\n    password: %s\n", backend.Addr, secGroupPW)), 0o600); err != nil {
		t.Fatal(err)
	}
	c := NewCluster(t)
	secure := []string{"--config", conf, "--admin-token", secToken, "--cluster-secret", secCluster, "--password", secClientPW}
	n1 := c.NewNode("n1", "dc1", secure...)
	n1.Start()
	n1.WaitHealthy(30 * time.Second)
	n2 := c.NewNode("n2", "dc1", secure...)
	n2.Start(n1.Peer)
	n2.WaitHealthy(30 * time.Second)

	withToken := []string{"REDRAFT_ADMIN_TOKEN=" + secToken}
	var outputs []string
	cli := func(p *proc, args ...string) string {
		t.Helper()
		out, err := cliEnv(p, withToken, args...)
		if err != nil {
			t.Fatalf("redraft %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		outputs = append(outputs, out)
		return out
	}
	waitFor(t, 30*time.Second, "g1 from the config registered", func() error {
		if out := cli(n2, "group", "list"); !strings.Contains(out, "g1") {
			return fmt.Errorf("group list:\n%s", out)
		}
		return nil
	})
	cli(n2, "slots", "assign", "--dc", "dc1", "--group", "g1", "0-16383")

	// Without the token, or with a wrong one, the CLI is refused and told how to pass it.
	for _, env := range [][]string{nil, {"REDRAFT_ADMIN_TOKEN=" + secCluster}} {
		out, err := cliEnv(n1, env, "status")
		if err == nil || !strings.Contains(out, "REDRAFT_ADMIN_TOKEN") {
			t.Fatalf("status with %v: %v\n%s", env, err, out)
		}
		outputs = append(outputs, out)
	}

	// Clients get through with the password; the backend password works behind the proxy.
	rdb := redis.NewClient(&redis.Options{Addr: n1.Listen, Password: secClientPW})
	defer rdb.Close()
	ctx := context.Background()
	waitFor(t, 20*time.Second, "a write through n1", func() error {
		return rdb.Set(ctx, "k", "v", 0).Err()
	})
	if v, err := rdb.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("get: %q %v", v, err)
	}

	// A node without the cluster secret is refused, on both sides, and does not get in.
	rogue := c.NewNode("rogue", "dc1")
	rogue.Start(n1.Peer)
	waitFor(t, 30*time.Second, "the refusal logged on both sides", func() error {
		for _, p := range []*proc{n1, rogue} {
			if !strings.Contains(p.Log(), "gave no cluster secret") {
				return fmt.Errorf("%s has not logged it", p.ID)
			}
		}
		return nil
	})
	var st node.Status
	if err := json.Unmarshal([]byte(cli(n1, "--json", "status")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Members) != 2 {
		t.Fatalf("members after the rogue join: %+v", st.Members)
	}
	if g := st.DCs[0].Groups[0]; g.Password != "set" {
		t.Fatalf("group password shows as %q, want \"set\"", g.Password)
	}

	for _, args := range [][]string{{"status"}, {"--json", "group", "list"}, {"group", "list"}, {"node", "list"}, {"--json", "node", "list"}, {"config", "get"}, {"slots", "show"}, {"health"}} {
		cli(n2, args...)
	}
	// Help never prints a secret taken from the environment.
	out, _ := cliEnv(n1, append(withToken, "REDRAFT_CLUSTER_SECRET="+secCluster, "REDRAFT_PASSWORD="+secClientPW, "REDRAFT_GROUP_PASSWORD="+secGroupPW), "node", "start", "--help")
	outputs = append(outputs, out)
	out, _ = cliEnv(n1, append(withToken, "REDRAFT_GROUP_PASSWORD="+secGroupPW), "group", "add", "--help")
	outputs = append(outputs, out)
	for _, p := range []*proc{n1, n2, rogue} {
		outputs = append(outputs, p.ID+" log: "+p.Log())
	}
	for _, o := range outputs {
		for _, s := range []string{secClientPW, secGroupPW, secToken, secCluster} {
			if i := strings.Index(o, s); i >= 0 {
				t.Errorf("a secret shows: ...%s...", o[max(0, i-300):min(len(o), i+len(s)+40)])
			}
		}
	}
}
