package main

import (
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestJSONFlagWhereAdvertised: a command whose usage offers --json takes it after its name too
// (urfave/cli refuses a global flag there unless the command defines it as well).
func TestJSONFlagWhereAdvertised(t *testing.T) {
	var walk func(path string, cmds []*cli.Command)
	n := 0
	walk = func(path string, cmds []*cli.Command) {
		for _, c := range cmds {
			name := strings.TrimSpace(path + " " + c.Name)
			walk(name, c.Subcommands)
			if !strings.Contains(c.UsageText, "--json") {
				continue
			}
			n++
			has := false
			for _, f := range c.Flags {
				if f.Names()[0] == "json" {
					has = true
				}
			}
			if !has {
				t.Errorf("redraft %s offers --json but does not take it", name)
			}
		}
	}
	walk("", commands())
	if n < 8 {
		t.Errorf("%d commands offer --json, want at least 8 (status, health, node list, group list, group failover, slots show, config get, migrations...)", n)
	}
}
