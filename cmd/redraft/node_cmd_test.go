package main

import (
	"bytes"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/node"
	"github.com/redraft/redraft/router/xdc"
)

// TestMaxDataFormatFromEnv: REDRAFT_MAX_DATA_FORMAT unset is 0 (the build's latest); a format
// from 1 to the latest is taken, logged at Info when below the latest; anything else is
// refused with an error that names the variable and the range.
func TestMaxDataFormatFromEnv(t *testing.T) {
	latest := strconv.Itoa(fsm.LatestDataFormat)
	for _, tc := range []struct {
		value string
		want  int
		err   string // "" when the value is taken
		info  bool   // whether an Info line is logged
	}{
		{value: "", want: 0},
		{value: "1", want: 1, info: true},
		{value: latest, want: fsm.LatestDataFormat},
		{value: "0", err: "from 1 to " + latest},
		{value: strconv.Itoa(fsm.LatestDataFormat + 1), err: "from 1 to " + latest},
		{value: "-1", err: "from 1 to " + latest},
		{value: "three", err: `REDRAFT_MAX_DATA_FORMAT="three"`},
		{value: " 1", err: "from 1 to " + latest},
	} {
		t.Run(strconv.Quote(tc.value), func(t *testing.T) {
			t.Setenv(maxDataFormatEnv, tc.value)
			var buf bytes.Buffer
			got, err := maxDataFormatFromEnv(slog.New(slog.NewTextHandler(&buf, nil)))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %d, %v; want an error with %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %d, %v; want %d", got, err, tc.want)
			}
			if logged := strings.Contains(buf.String(), "level=INFO"); logged != tc.info || strings.Contains(buf.String(), "level=WARN") {
				t.Errorf("logged %q, want an Info line: %v", buf.String(), tc.info)
			}
		})
	}
}

// TestLatestDataFormatHasGroupLogs: this build's latest data format is the one whose group logs
// the data plane writes and ships (xdc.LogDataFormat). A newer format needs the data plane's
// support before fsm.LatestDataFormat is raised to it, and this test then changes with them.
func TestLatestDataFormatHasGroupLogs(t *testing.T) {
	if fsm.LatestDataFormat != xdc.LogDataFormat {
		t.Errorf("fsm.LatestDataFormat is %d, xdc.LogDataFormat %d", fsm.LatestDataFormat, xdc.LogDataFormat)
	}
}

// TestRouterConfigTakesNodeOverrides: the node's write_consistency and flush_enabled reach
// its router (until session 44 both were parsed, checked and then dropped).
func TestRouterConfigTakesNodeOverrides(t *testing.T) {
	cfg := node.DefaultConfig()
	cfg.WriteConsistency = fsm.DCQuorum
	off := false
	cfg.FlushEnabled = &off
	rc, err := routerConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rc.WriteConsistency != fsm.DCQuorum {
		t.Errorf("router write level %q, want %q", rc.WriteConsistency, fsm.DCQuorum)
	}
	if rc.FlushEnabled == nil || rc.FlushEnabled() {
		t.Error("flush_enabled: false did not reach the router")
	}
	rc, err = routerConfig(node.DefaultConfig())
	if err != nil || rc.WriteConsistency != "" || rc.FlushEnabled != nil {
		t.Errorf("defaults: level %q, flush override set %v (%v)", rc.WriteConsistency, rc.FlushEnabled != nil, err)
	}
}

// TestApplyFlagsKeepsSecrets: an empty environment variable (an EnvironmentFile's
// "REDRAFT_PASSWORD=") does not clear a value the config file gave, and the global
// --admin-token is the node's token when 'node start' was given none.
func TestApplyFlagsKeepsSecrets(t *testing.T) {
	for _, env := range []string{"REDRAFT_PASSWORD", "REDRAFT_CLUSTER_SECRET", "REDRAFT_ADMIN_TOKEN"} {
		t.Setenv(env, "")
	}
	noFileToken := false
	run := func(args ...string) node.Config {
		t.Helper()
		cfg := node.DefaultConfig()
		cfg.Password, cfg.ClusterSecret, cfg.AdminToken = "from-file", "file-secret", "file-token"
		if noFileToken {
			cfg.AdminToken = ""
		}
		app := &cli.App{
			Flags: []cli.Flag{&cli.StringFlag{Name: "admin-token", EnvVars: []string{"REDRAFT_ADMIN_TOKEN"}}},
			Commands: []*cli.Command{{Name: "start", Flags: nodeFlags(), Action: func(c *cli.Context) error {
				return applyFlags(c, &cfg)
			}}},
		}
		if err := app.Run(append([]string{"redraft"}, args...)); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	if cfg := run("start"); cfg.Password != "from-file" || cfg.ClusterSecret != "file-secret" || cfg.AdminToken != "file-token" {
		t.Errorf("empty environment variables cleared the file's secrets: password %q, secret %q, token %q",
			cfg.Password, cfg.ClusterSecret, cfg.AdminToken)
	}
	if cfg := run("--admin-token", "global", "start"); cfg.AdminToken != "file-token" {
		t.Errorf("global --admin-token over the file's token: node token %q, want the file's", cfg.AdminToken)
	}
	noFileToken = true
	if cfg := run("--admin-token", "global", "start"); cfg.AdminToken != "global" {
		t.Errorf("global --admin-token without a token in the file: node token %q", cfg.AdminToken)
	}
	if cfg := run("--admin-token", "global", "start", "--admin-token", "own"); cfg.AdminToken != "own" {
		t.Errorf("both --admin-token flags: node token %q, want the command's own", cfg.AdminToken)
	}
	if cfg := run("start", "--password", "flag"); cfg.Password != "flag" {
		t.Errorf("--password: %q", cfg.Password)
	}
}
