package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
)

// printJSON prints v as indented JSON.
func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table prints rows under a header, aligned.
func table(header []string, rows [][]string) {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(w, strings.Join(r, "\t"))
	}
	w.Flush()
}

// output prints v as JSON with --json, else calls human.
func output(c *cli.Context, v any, human func()) error {
	if wantJSON(c) {
		return printJSON(v)
	}
	human()
	return nil
}

// orDash shows "-" for an empty cell.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// wantJSON reports whether --json was given, before the command (global) or after it (the
// commands that also take it locally): a local flag would otherwise shadow the global one.
func wantJSON(c *cli.Context) bool {
	for _, x := range c.Lineage() {
		if x.IsSet("json") && x.Bool("json") {
			return true
		}
	}
	return false
}
