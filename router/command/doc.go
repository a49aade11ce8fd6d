package command

import (
	"fmt"
	"sort"
	"strings"
)

// docOrder is the order of sections in docs/commands.md.
var docOrder = []Kind{Forward, Split, Script, Block, Tx, Fanout, PubSub, Publish, Local, Any, Unsupported}

var docTitles = map[Kind]string{
	Forward:     "Forwarded to the group of the keys' slot (keys must share a slot)",
	Split:       "Split over groups and merged in order",
	Script:      "Scripts (keys must share a slot)",
	Block:       "Blocking, on a dedicated backend connection",
	Tx:          "Transactions",
	Fanout:      "Sent to every group of the DC",
	PubSub:      "Subscriptions",
	Publish:     "Publishing and introspection",
	Local:       "Answered by the node",
	Any:         "Keyless, sent to the first group",
	Unsupported: "Not supported (answered with an error; the connection stays open)",
}

// Markdown renders the command table for docs/commands.md: one section per kind of handling.
func Markdown() string {
	byKind := map[Kind][]*Spec{}
	for _, s := range All() {
		if s.Subs != nil && s.Kind == Local && s.Note == "see subcommands" {
			continue // containers are listed through their subcommands
		}
		byKind[s.Kind] = append(byKind[s.Kind], s)
	}
	var b strings.Builder
	for _, k := range docOrder {
		specs := byKind[k]
		if len(specs) == 0 {
			continue
		}
		fmt.Fprintf(&b, "### %s\n\n", docTitles[k])
		if k == Unsupported {
			reasons := map[string][]string{}
			for _, s := range specs {
				reasons[s.Note] = append(reasons[s.Note], display(s.Name))
			}
			keys := make([]string, 0, len(reasons))
			for r := range reasons {
				keys = append(keys, r)
			}
			sort.Strings(keys)
			b.WriteString("| reason | commands |\n|---|---|\n")
			for _, r := range keys {
				fmt.Fprintf(&b, "| %s | %s |\n", r, strings.Join(reasons[r], ", "))
			}
			b.WriteString("\n")
			continue
		}
		b.WriteString("| command | r/w | notes |\n|---|---|---|\n")
		for _, s := range specs {
			rw := "r"
			if s.Write {
				rw = "w"
			}
			if !s.Write && !s.HasFlag("readonly") {
				rw = "-"
			}
			fmt.Fprintf(&b, "| %s | %s | %s |\n", display(s.Name), rw, s.Note)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func display(name string) string {
	return strings.ToUpper(strings.ReplaceAll(name, "|", " "))
}
